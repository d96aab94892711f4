"""A compiled program: instruction words, the device-memory layout of its tensors, constants and
the quantized graph it came from (its golden reference).

Tensor layouts (``meta["input"]``, ``meta["output"]``, ``meta["fills"]``) are
``{"addr", "shape": [B, H, W, C], "cp", "halo": [hy, hx], "zp", "itemsize", "words"}``: the tensor
is ``[B][H + 2 hy][W + 2 hx][cp]`` elements of ``itemsize`` bytes at word ``addr`` (see
``sw/compiler/lower.py``). Programs of MLP-style graphs (a ``1 x 1`` input) take and give 2-D ``(B, C)``
arrays.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from .asm import disassemble, from_bytes, to_bytes
from .graph import QuantizedGraph
from .zero_dir import write_zero_dir

__all__ = ["Program", "LayerInfo", "FORMAT_VERSION"]

#: Version of the :meth:`Program.save` file format (2: programs carry their QuantizedGraph).
FORMAT_VERSION = 2


@dataclass(frozen=True)
class LayerInfo:
    """One compiled layer: ``kind`` is ``"gemm"`` (int32 output), ``"linear"`` (int8 output) or a
    graph op kind (``"conv"``, ``"maxpool"``, ``"avgpool"``, ``"add"``); ``macs`` counts useful
    multiply-accumulates (``m * k * n`` for GEMM and Linear); ``desc`` describes the shape;
    ``min_dram_bytes`` is the device-memory traffic if every input, weight and output byte moved
    once (0 when not computed)."""
    name: str
    kind: str
    m: int
    k: int
    n: int
    macs: int
    desc: str = ""
    min_dram_bytes: int = 0



class Program:
    """A compiled program: instruction words, device-memory layout and constants.

    Attributes
    ----------
    cfg : AccelConfig
    words : list[int]
        The instruction words (``INSTR_BITS`` bits each).
    prog_addr : int
        Word address of the first instruction.
    used_words : int
        Device-memory words the program touches (perf area, constants, tensors and code).
    input_shape, output_shape : tuple[int, int]
    output_dtype : numpy dtype (``int8`` or ``int32``)
    layers : list[LayerInfo]
    config_hash : int
        ``cfg.config_hash`` at compile time.
    est_cycles : int
        The compiler's cycle estimate (ISA-simulator cycle model).
    """

    def __init__(self, cfg: AccelConfig, words: list[int], meta: dict, const: np.ndarray,
                 graph: QuantizedGraph):
        self.cfg = cfg
        self.words = list(words)
        self._meta = meta
        self._const = np.asarray(const, dtype=np.uint8)
        self.graph = graph
        self.prog_addr = meta["prog_addr"]
        self.used_words = meta["used_words"]
        self.input_shape = tuple(meta["input_shape"])
        self.output_shape = tuple(meta["output_shape"])
        self.output_dtype = np.dtype(meta["output_dtype"])
        self.layers = [LayerInfo(**li) for li in meta["layers"]]
        self.config_hash = meta["config_hash"]
        self.est_cycles = meta.get("est_cycles", 0)

    def __repr__(self) -> str:
        return (f"<Program {len(self.layers)} layer(s) {self.input_shape}->{self.output_shape} "
                f"{len(self.words)} instrs, {self.used_words} words, cfg={self.cfg.name}>")

    @property
    def layout(self) -> dict:
        """Return the layout metadata (addresses in words, padded sizes, tiling plans)."""
        return json.loads(json.dumps(self._meta))

    @property
    def constants(self) -> np.ndarray:
        """Return a copy of the constants (weight tiles, requant params) as uint8, placed at word
        ``layout["const_addr"]`` of the memory image."""
        return self._const.copy()

    def disassemble(self) -> str:
        """Return the program text with word addresses."""
        return disassemble(self.words, self.cfg, self.prog_addr)

    def _check_x(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Program input must be a numpy array, not {type(x).__name__}")
        if x.dtype != np.int8:
            raise ValueError(f"Program input must have dtype int8, not {x.dtype}")
        if x.shape != self.input_shape:
            raise ValueError(f"Program input must have shape {self.input_shape}, not {x.shape}")
        return x

    def memory_image(self, x: np.ndarray) -> np.ndarray:
        """Return the device-memory image (uint8, ``cfg.mem_bytes``) with code, constants and ``x``.

        Every tensor region is first filled with its zero point (halos and padding channels keep
        it), then ``x`` is written into the input tensor's interior. The rows of a tensor that
        moves through the zero-row directory (``cfg.compress_acts``) are all zero points then,
        so their directory bits are set: its halo rows, which no STORE writes, are never read.

        Raises
        ------
        TypeError, ValueError
            When ``x`` is not an int8 array of shape :attr:`input_shape`.
        """
        x = self._check_x(x)
        cfg, meta = self.cfg, self._meta
        bb = cfg.mem_bus_bytes
        mem = np.zeros(cfg.mem_bytes, np.uint8)
        c0 = meta["const_addr"] * bb
        mem[c0:c0 + self._const.size] = self._const
        for t in meta["fills"]:
            mem[t["addr"] * bb:(t["addr"] + t["words"]) * bb] = np.uint8(t["zp"] & 0xFF)
        t = meta["input"]
        view = self._tensor_view(mem, t)
        b, h, w, c = t["shape"]
        (hy, hx) = t["halo"]
        view[:, hy:hy + h, hx:hx + w, :c] = x.reshape(b, h, w, c)
        for t in meta["fills"]:
            if t.get("compressed"):
                self._set_zero_rows(mem, t)
        code = np.frombuffer(to_bytes(self.words, cfg), np.uint8)
        p0 = self.prog_addr * bb
        mem[p0:p0 + code.size] = code
        return mem

    def _set_zero_rows(self, mem: np.ndarray, t: dict) -> None:
        """Set the zero-row directory bits of tensor layout ``t``'s row slots in ``mem``: 1 for
        a slot whose bytes are all its zero point, else 0 (``hw/isa.py``, LOAD ``compress``)."""
        cfg = self.cfg
        rb = cfg.zero_row_words * cfg.mem_bus_bytes
        rows = mem[t["addr"] * cfg.mem_bus_bytes:(t["addr"] + t["words"]) * cfg.mem_bus_bytes]
        zero = (rows.reshape(-1, rb) == np.uint8(t["zp"] & 0xFF)).all(axis=1)
        write_zero_dir(cfg, mem, t["addr"] // cfg.zero_row_words + np.arange(zero.size), zero)

    def _tensor_view(self, mem: np.ndarray, t: dict) -> np.ndarray:
        """Return the ``[B][Hp][Wp][Cp]`` view of tensor layout ``t`` in a memory image."""
        bb = self.cfg.mem_bus_bytes
        b, h, w, _ = t["shape"]
        (hy, hx) = t["halo"]
        dt = np.dtype("<i4") if t["itemsize"] == 4 else np.dtype(np.int8)
        n = b * (h + 2 * hy) * (w + 2 * hx) * t["cp"]
        raw = np.asarray(mem, np.uint8)[t["addr"] * bb:t["addr"] * bb + n * dt.itemsize]
        return raw.view(dt).reshape(b, h + 2 * hy, w + 2 * hx, t["cp"])

    def read_output(self, mem: np.ndarray) -> np.ndarray:
        """Return the output tensor (unpadded, shape :attr:`output_shape`) from a memory image."""
        t = self._meta["output"]
        b, h, w, c = t["shape"]
        (hy, hx) = t["halo"]
        y = self._tensor_view(mem, t)[:, hy:hy + h, hx:hx + w, :c]
        return y.reshape(self.output_shape).astype(self.output_dtype)

    def result_ranges(self) -> list[tuple[int, int]]:
        """Return the ``(start word, words)`` ranges of device memory that hold the output and the
        PERF snapshots: all a backend must read back after a run."""
        t = self._meta["output"]
        perf_words = (len(self.layers) + 1) * isa.perf_words(self.cfg)
        return [(t["addr"], t["words"]), (self._meta["perf_addr"], perf_words)]

    def read_perf(self, mem: np.ndarray) -> list[dict[str, int]]:
        """Return the PERF snapshots (``len(layers) + 1`` of them) from a memory image.

        Each snapshot holds the counters as they were when that PERF executed: it counts every
        earlier instruction and the PERF's own fetch, not the PERF itself. Per-layer figures are the
        differences of consecutive snapshots.
        """
        bb = self.cfg.mem_bus_bytes
        pw = isa.perf_words(self.cfg)
        mem = np.asarray(mem, np.uint8)
        out = []
        for s in range(len(self.layers) + 1):
            a = (self._meta["perf_addr"] + s * pw) * bb
            vals = mem[a:a + pw * bb].view("<u8")
            out.append({n: int(v) for n, v in zip(isa.PERF_COUNTERS, vals)})
        return out

    def reference(self, x: np.ndarray) -> np.ndarray:
        """Return the golden result for ``x`` (the graph's ``sw/golden.py`` functions), shaped
        like the device output."""
        x = self._check_x(x)
        b, h, w, c = self._meta["input"]["shape"]
        y = self.graph.reference(x.reshape(b, h, w, c))
        return y.reshape(self.output_shape)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the program to ``path`` (an ``.npz`` archive, whatever the file name): the
        instruction bytes, the config dict, the layout metadata, the constants and the layer
        graph used by :meth:`reference`."""
        arrays = {
            "format": np.array(FORMAT_VERSION),
            "code": np.frombuffer(to_bytes(self.words, self.cfg), np.uint8),
            "config": np.array(json.dumps(self.cfg.to_dict())),
            "meta": np.array(json.dumps(self._meta)),
            "const": self._const,
        }
        gmeta, garrays = self.graph.to_dict()
        arrays["graph"] = np.array(json.dumps(gmeta))
        arrays.update({f"graph_{k}": v for k, v in garrays.items()})
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> "Program":
        """Read a program written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not a Stamen program of a known format version.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a Stamen program file ({e})") from None
        if "format" not in d or int(d["format"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: program format must be version {FORMAT_VERSION}, not "
                             f"{d.get('format')!r}")
        cfg = AccelConfig.from_dict(json.loads(str(d["config"])))
        meta = json.loads(str(d["meta"]))
        if meta["config_hash"] != cfg.config_hash:
            raise ValueError(f"{path}: stored config hash {meta['config_hash']:#x} does not match "
                             f"the stored config ({cfg.config_hash:#x})")
        words = from_bytes(d["code"].tobytes(), cfg)
        garrays = {k[len("graph_"):]: v for k, v in d.items() if k.startswith("graph_")}
        graph = QuantizedGraph.from_dict(json.loads(str(d["graph"])), garrays)
        return cls(cfg, words, meta, d["const"], graph)


