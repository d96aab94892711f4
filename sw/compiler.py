"""Compiler: tiles GEMM / quantized Linear layers onto a Stamen device and lays out device memory.

Device-memory layout (word addresses, words of ``cfg.mem_bus_bytes`` bytes; ``R, C = cfg.rows,
cfg.cols``, ``L = lcm(R, C)``)::

    0                perf area: (len(layers) + 1) PERF snapshots of perf_words(cfg) words each
    const_addr       per layer: weights, then requant params (Linear only)
    act buffers      two ping-pong activation buffers (layer i reads buffer i % 2, writes (i+1) % 2)
    prog_addr        the instruction stream (ends with HALT)

* Activations ``M x K`` int8: row-major, ``K`` padded to ``Kp = ceil(K / L) * L`` with the
  activation zero point (so padded products are exactly zero); a k-tile of ``R`` columns of ``Mt``
  rows is one 2-D LOAD (``rows=Mt``, ``dram_stride=Kp / bus_bytes``).
* Weights ``K x N`` int8: row-major, zero-padded to ``Kp x Np`` with ``Np = ceil(N / L) * L``; the
  ``ktc * R`` x ``C`` weight block of k-chunk ``kc`` and N-tile ``nt`` is one LOAD
  (``rows = ktc * R``, ``dram_stride = Np / bus_bytes``).
* Requant params: per N-tile of ``C`` channels 3 consecutive rows (bias, mult, shift) of ``C``
  int32; padding channels hold 0, 0, 0, so they requantize to the output zero point (the next
  layer's activation padding).
* Outputs ``M x Np``: int8 (Linear) or little-endian int32 (raw GEMM), row-major.

Tiling: ``KT = ceil(K / R)`` k-tiles (the all-padding tail of ``Kp`` is never read), ``NT = Np / C``
N-tiles, M-tiles of ``Mt`` rows, k-chunks of ``KTc`` whole k-tiles with ``KTc * R <= wt depth``,
``KTc * Mt <= act depth`` and ``Mt <= acc depth`` (and ``<= out depth`` for Linear). Each
scratchpad is used as a direct-mapped cache of chunks (weights: ``(nt, kc)`` chunks of ``KTc * R``
rows; activations: ``(mt, kc)`` chunks of ``KTc * Mt`` rows; params: 3 rows per ``nt``), so a chunk
already resident is not reloaded. The compiler tries loop orders M-outer (``mt, nt, kc``) and
N-outer (``nt, mt, kc``) over a set of ``(Mt, KTc)`` candidates and keeps the plan with the fewest
estimated cycles (the ISA simulator's cycle model), which keeps weights resident where possible;
when the code would not fit device memory it keeps the plans with the fewest instructions instead.
Per (mt, nt): MATMULs over the k-chunks (``accumulate=1`` after the first) into ACC rows
``0..Mt-1``, then REQUANT + STORE OUT (Linear) or STORE ACC (GEMM). ``PERF`` runs once at the start
and after each layer.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from . import golden
from .asm import disassemble, from_bytes, to_bytes
from .errors import CompileError
from .isasim import (fetch_cycles, load_cycles, matmul_cycles, perf_cycles, requant_cycles,
                     store_cycles, misc_cycles)

__all__ = ["Program", "LayerInfo", "compile_gemm", "compile_linear", "compile_model",
           "K_MAX_INT32", "FORMAT_VERSION"]

#: Largest K whose worst-case sum of (a - zp) * w (|a - zp| <= 255, |w| <= 128) fits int32.
K_MAX_INT32 = (golden.INT32_MAX) // (255 * 128)
#: Version of the :meth:`Program.save` file format.
FORMAT_VERSION = 1

ARG_MAX_STRIDE = isa.ARG_RANGES["dma"]["dram_stride"][1]
_OP = isa.Opcode
_SP = isa.Spad


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


@dataclass
class _Layer:
    name: str
    kind: str
    w: np.ndarray
    zp_in: int
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    zp_out: int = 0
    relu: bool = False
    # layout and plan
    kp: int = 0
    np_: int = 0
    w_addr: int = 0
    p_addr: int = 0
    in_addr: int = 0
    out_addr: int = 0
    plan: dict = field(default_factory=dict)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=1 << 16)
def _encode(op: isa.Opcode, items: tuple) -> int:
    return isa.encode(op, **dict(items))


# -- validation ------------------------------------------------------------------------------------
def _check_int(name: str, what: str, v, lo: int, hi: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: {what} must be an integer, not {v!r}")
    if not lo <= int(v) <= hi:
        raise CompileError(f"{name}: {what} must be in [{lo}, {hi}], not {v!r}")
    return int(v)


def _check_layer(layer: _Layer, cfg: AccelConfig) -> None:
    name = layer.name
    w = layer.w
    if not isinstance(w, np.ndarray) or w.dtype != np.int8:
        raise TypeError(f"{name}: weights must be an int8 numpy array, not "
                        f"{getattr(w, 'dtype', type(w).__name__)}")
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise CompileError(f"{name}: weights must have shape (K, N) with K, N >= 1, not {w.shape}")
    k, n = w.shape
    if k > K_MAX_INT32:
        raise CompileError(f"{name}: K={k} is too large for int32 accumulation "
                           f"(at most {K_MAX_INT32} products of 9-bit by 8-bit operands)")
    layer.zp_in = _check_int(name, "input zero point", layer.zp_in, -128, 127)
    if layer.kind == "linear":
        layer.zp_out = _check_int(name, "output zero point", layer.zp_out, -128, 127)
        for pname, lo, hi in (("bias", golden.INT32_MIN, golden.INT32_MAX),
                              ("mult", 0, golden.INT32_MAX),
                              ("shift", 0, isa.REQUANT_MAX_SHIFT)):
            v = np.asarray(getattr(layer, pname))
            if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
                raise CompileError(f"{name}: {pname} must be an integer array of shape ({n},), "
                                   f"not {v.dtype} {v.shape}")
            if v.size and (v.min() < lo or v.max() > hi):
                rule = (f"in [{lo}, {hi}] (a requant scale >= 1 cannot be represented)"
                        if pname != "bias" else f"in [{lo}, {hi}]")
                raise CompileError(f"{name}: every {pname} must be {rule}, not "
                                   f"[{v.min()}, {v.max()}]")
            setattr(layer, pname, v.astype(np.int32))
        layer.relu = bool(layer.relu)
    bb = cfg.mem_bus_bytes
    L = math.lcm(cfg.rows, cfg.cols)
    layer.kp = _ceil(k, L) * L
    layer.np_ = _ceil(n, L) * L
    stride_max = ARG_MAX_STRIDE
    row_bytes_out = layer.np_ * (4 if layer.kind == "gemm" else 1)
    for what, nbytes in (("input row", layer.kp), ("weight row", layer.np_),
                         ("output row", row_bytes_out)):
        if nbytes // bb > stride_max:
            raise CompileError(f"{name}: a padded {what} of {nbytes} bytes exceeds the largest DMA "
                               f"stride ({stride_max} words of {bb} bytes)")



# -- tiling ----------------------------------------------------------------------------------------
def _instrs(layer: _Layer, cfg: AccelConfig, m: int, mt_rows: int, ktc: int, order: str):
    """Yield ``(opcode, operands)`` of one layer under a tiling plan (see the module docstring)."""
    R, C, bb = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    k, _ = layer.w.shape
    KT = _ceil(k, R)
    NT = layer.np_ // C
    MT = _ceil(m, mt_rows)
    KC = _ceil(KT, ktc)
    wt_slot_rows = ktc * R
    wt_slots = cfg.wt_spad_depth // wt_slot_rows
    act_slot_rows = ktc * mt_rows
    act_slots = cfg.act_spad_depth // act_slot_rows
    par_slots = cfg.param_spad_depth // 3
    wt_res, act_res, par_res = {}, {}, {}
    in_stride = layer.kp // bb
    w_stride = layer.np_ // bb
    linear = layer.kind == "linear"
    out_stride = (layer.np_ if linear else 4 * layer.np_) // bb
    prow_words = cfg.spad_row_words("param")
    pairs = ([(mt, nt) for mt in range(MT) for nt in range(NT)] if order == "mn"
             else [(mt, nt) for nt in range(NT) for mt in range(MT)])
    for mt, nt in pairs:
        i0 = mt * mt_rows
        rows = min(mt_rows, m - i0)
        for kc in range(KC):
            k0 = kc * ktc
            nk = min(ktc, KT - k0)
            wid = nt * KC + kc
            wslot = wid % wt_slots
            if wt_res.get(wslot) != wid:
                wt_res[wslot] = wid
                yield _OP.LOAD, (("spad", _SP.WT), ("spad_addr", wslot * wt_slot_rows),
                                 ("rows", nk * R),
                                 ("dram_addr", layer.w_addr + (k0 * R * layer.np_ + nt * C) // bb),
                                 ("dram_stride", w_stride))
            aid = mt * KC + kc
            aslot = aid % act_slots
            if act_res.get(aslot) != aid:
                act_res[aslot] = aid
                for j in range(nk):
                    yield _OP.LOAD, (("spad", _SP.ACT),
                                     ("spad_addr", aslot * act_slot_rows + j * mt_rows),
                                     ("rows", rows),
                                     ("dram_addr", layer.in_addr
                                      + (i0 * layer.kp + (k0 + j) * R) // bb),
                                     ("dram_stride", in_stride))
            yield _OP.MATMUL, (("act_addr", aslot * act_slot_rows),
                               ("wt_addr", wslot * wt_slot_rows), ("acc_addr", 0), ("m", rows),
                               ("k_tiles", nk), ("act_stride", mt_rows), ("zp", layer.zp_in),
                               ("accumulate", int(kc > 0)))
        if linear:
            pslot = nt % par_slots
            if par_res.get(pslot) != nt:
                par_res[pslot] = nt
                yield _OP.LOAD, (("spad", _SP.PARAM), ("spad_addr", 3 * pslot), ("rows", 3),
                                 ("dram_addr", layer.p_addr + 3 * nt * prow_words),
                                 ("dram_stride", prow_words))
            yield _OP.REQUANT, (("acc_addr", 0), ("out_addr", 0), ("param_addr", 3 * pslot),
                                ("rows", rows), ("zp_out", layer.zp_out),
                                ("relu", int(layer.relu)))
            yield _OP.STORE, (("spad", _SP.OUT), ("spad_addr", 0), ("rows", rows),
                              ("dram_addr", layer.out_addr + (i0 * layer.np_ + nt * C) // bb),
                              ("dram_stride", out_stride))
        else:
            yield _OP.STORE, (("spad", _SP.ACC), ("spad_addr", 0), ("rows", rows),
                              ("dram_addr",
                               layer.out_addr + (i0 * 4 * layer.np_ + nt * 4 * C) // bb),
                              ("dram_stride", out_stride))


_SPAD_NAME = {_SP.ACT: "act", _SP.WT: "wt", _SP.ACC: "acc", _SP.OUT: "out", _SP.PARAM: "param"}


def _estimate(cfg: AccelConfig, op, ops: tuple) -> int:
    """Return the cycle-model estimate (execution + fetch) of one instruction from ``_instrs``."""
    if op == _OP.LOAD or op == _OP.STORE:
        return _cost(cfg, op, ops[0][1], ops[2][1], 0)
    if op == _OP.MATMUL:
        return _cost(cfg, op, None, ops[3][1], ops[4][1])
    if op == _OP.REQUANT:
        return _cost(cfg, op, None, ops[3][1], 0)
    return _cost(cfg, op, None, 0, 0)


@functools.lru_cache(maxsize=1 << 14)
def _cost(cfg: AccelConfig, op, spad, a: int, b: int) -> int:
    if op == _OP.LOAD:
        c = load_cycles(cfg, _SPAD_NAME[spad], a)
    elif op == _OP.STORE:
        c = store_cycles(cfg, _SPAD_NAME[spad], a)
    elif op == _OP.MATMUL:
        c = matmul_cycles(cfg, a, b)
    elif op == _OP.REQUANT:
        c = requant_cycles(cfg, a)
    else:
        c = misc_cycles(cfg)
    return c + fetch_cycles(cfg)


def _plan(layer: _Layer, cfg: AccelConfig, m: int) -> dict:
    R = cfg.rows
    k = layer.w.shape[0]
    KT = _ceil(k, R)
    cap = min(m, cfg.acc_spad_depth, cfg.act_spad_depth, isa.ARG_RANGES["matmul"]["m"][1])
    if layer.kind == "linear":
        cap = min(cap, cfg.out_spad_depth)
    if cap < 1 or cfg.wt_spad_depth // R < 1:
        raise CompileError(f"{layer.name}: a single {cfg.rows}x{cfg.cols} tile with Mt=1 does not "
                           f"fit the scratchpads (act {cfg.act_spad_depth}, wt "
                           f"{cfg.wt_spad_depth}, acc {cfg.acc_spad_depth}, out "
                           f"{cfg.out_spad_depth} rows)")
    kt_fit = min(KT, cfg.wt_spad_depth // R)
    cands = {min(cap, _ceil(m, j)) for j in range(1, 17)}             # even M splits
    cands |= {min(cap, cfg.act_spad_depth // _ceil(kt_fit, d)) for d in (1, 2, 4, 8)}  # whole K
    cands = {c for c in cands if c >= 1}
    plans = []
    best_cost = best_n = math.inf
    for mt_rows in sorted(cands, reverse=True):
        ktc_max = min(KT, cfg.wt_spad_depth // R, cfg.act_spad_depth // mt_rows,
                      isa.ARG_RANGES["matmul"]["k_tiles"][1])
        if ktc_max < 1:
            continue
        for ktc in sorted({ktc_max, _ceil(ktc_max, 2), _ceil(ktc_max, 4)}):
            for order in ("mn", "nm"):
                cost = n_instr = 0
                for op, ops in _instrs(layer, cfg, m, mt_rows, ktc, order):
                    cost += _estimate(cfg, op, ops)
                    n_instr += 1
                    if cost > best_cost and n_instr > best_n:
                        break                     # cannot win on either criterion of _pick
                else:
                    best_cost, best_n = min(best_cost, cost), min(best_n, n_instr)
                    plans.append({"mt": mt_rows, "ktc": ktc, "order": order,
                                  "est_cycles": cost, "n_instr": n_instr})
    if not plans:
        raise CompileError(f"{layer.name}: no tiling fits the scratchpads")
    return plans


def _pick(plans: list[dict], small_code: bool) -> dict:
    """Return the plan with the fewest estimated cycles, or with the fewest instructions."""
    if small_code:
        return min(plans, key=lambda p: (p["n_instr"], p["est_cycles"]))
    return min(plans, key=lambda p: (p["est_cycles"], p["n_instr"]))


# -- program ---------------------------------------------------------------------------------------
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
                 ref_layers: list[dict] | None = None, graph=None):
        self.cfg = cfg
        self.words = list(words)
        self._meta = meta
        self._const = np.asarray(const, dtype=np.uint8)
        self._ref = ref_layers or []
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
        it), then ``x`` is written into the input tensor's interior.

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
        code = np.frombuffer(to_bytes(self.words, cfg), np.uint8)
        p0 = self.prog_addr * bb
        mem[p0:p0 + code.size] = code
        return mem

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
        """Return the golden result for ``x`` (computed with ``sw/golden.py`` only)."""
        y = self._check_x(x)
        if self.graph is not None:
            return self.graph.reference(y)
        for layer in self._ref:
            if layer["kind"] == "gemm":
                y = golden.gemm(y, layer["w"], layer["zp_in"])
            else:
                y = golden.linear(y, layer["w"], layer["bias"], layer["mult"], layer["shift"],
                                  layer["zp_in"], layer["zp_out"], layer["relu"])
        return y

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the program to ``path`` (an ``.npz`` archive, whatever the file name): the
        instruction bytes, the config dict, the layout metadata, the constants and the layer
        tensors used by :meth:`reference`."""
        arrays = {
            "format": np.array(FORMAT_VERSION),
            "code": np.frombuffer(to_bytes(self.words, self.cfg), np.uint8),
            "config": np.array(json.dumps(self.cfg.to_dict())),
            "meta": np.array(json.dumps(self._meta)),
            "const": self._const,
        }
        for i, layer in enumerate(self._ref):
            for key in ("w", "bias", "mult", "shift"):
                if layer.get(key) is not None:
                    arrays[f"layer{i}_{key}"] = layer[key]
        if self.graph is not None:
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
        ref = []
        for i, lm in enumerate(meta.get("ref", [])):
            layer = dict(lm)
            for key in ("w", "bias", "mult", "shift"):
                layer[key] = d.get(f"layer{i}_{key}")
            ref.append(layer)
        graph = None
        if "graph" in d:
            from .graph import QuantizedGraph
            garrays = {k[len("graph_"):]: v for k, v in d.items() if k.startswith("graph_")}
            graph = QuantizedGraph.from_dict(json.loads(str(d["graph"])), garrays)
        return cls(cfg, words, meta, d["const"], ref, graph=graph)


# -- compilation -----------------------------------------------------------------------------------
def _compile(layers: list[_Layer], cfg: AccelConfig, m: int) -> Program:
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Compiler config must be an AccelConfig, not {cfg!r}")
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise CompileError(f"Batch size (rows M) must be a positive integer, not {m!r}")
    m = int(m)
    bb = cfg.mem_bus_bytes
    C = cfg.cols
    for layer in layers:
        _check_layer(layer, cfg)
    for prev, nxt in zip(layers, layers[1:]):
        if prev.w.shape[1] != nxt.w.shape[0]:
            raise CompileError(f"{nxt.name}: input features {nxt.w.shape[0]} must equal the "
                               f"previous layer's {prev.w.shape[1]} outputs")
        if prev.zp_out != nxt.zp_in:
            raise CompileError(f"{nxt.name}: input zero point {nxt.zp_in} must equal the previous "
                               f"layer's output zero point {prev.zp_out}")

    # -- layout: perf, constants, ping-pong activation buffers, code
    pw = isa.perf_words(cfg)
    perf_addr = 0
    addr = perf_addr + (len(layers) + 1) * pw
    const_addr = addr
    chunks = []
    for layer in layers:
        k, n = layer.w.shape
        wpad = np.zeros((layer.kp, layer.np_), np.int8)
        wpad[:k, :n] = layer.w
        layer.w_addr = addr
        chunks.append(wpad.reshape(-1).view(np.uint8))
        addr += wpad.size // bb
        if layer.kind == "linear":
            nt = layer.np_ // C
            p = np.zeros((nt, 3, C), "<i4")
            for row, v in enumerate((layer.bias, layer.mult, layer.shift)):
                vp = np.zeros(layer.np_, np.int64)
                vp[:n] = v
                p[:, row, :] = vp.reshape(nt, C)
            layer.p_addr = addr
            chunks.append(p.reshape(-1).view(np.uint8))
            addr += p.size * 4 // bb
    const = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    sizes = [0, 0]
    sizes[0] = m * layers[0].kp // bb
    for i, layer in enumerate(layers):
        ob = m * layer.np_ * (4 if layer.kind == "gemm" else 1) // bb
        sizes[(i + 1) % 2] = max(sizes[(i + 1) % 2], ob)
    bufs = [addr, addr + sizes[0]]
    addr += sizes[0] + sizes[1]
    for i, layer in enumerate(layers):
        layer.in_addr = bufs[i % 2]
        layer.out_addr = bufs[(i + 1) % 2]

    if addr > cfg.mem_words:
        raise CompileError(f"Program data needs {addr} words of device memory (perf, weights, "
                           f"params and activations for M={m}) but the device has "
                           f"{cfg.mem_words} ({cfg.name})")

    # -- plan and emit
    iw = isa.instr_words(cfg)
    prog_addr = addr
    plans = [_plan(layer, cfg, m) for layer in layers]
    fixed = len(layers) + 2                                   # PERFs and HALT
    for small_code in (False, True):
        for layer, pl in zip(layers, plans):
            layer.plan = _pick(pl, small_code)
        n_instr = fixed + sum(layer.plan["n_instr"] for layer in layers)
        if prog_addr + n_instr * iw <= cfg.mem_words:
            break
    words = [_encode(_OP.PERF, (("dram_addr", perf_addr),))]
    est = perf_cycles(cfg) + fetch_cycles(cfg)
    for i, layer in enumerate(layers):
        est += layer.plan["est_cycles"]
        for op, ops in _instrs(layer, cfg, m, layer.plan["mt"], layer.plan["ktc"],
                               layer.plan["order"]):
            words.append(_encode(op, ops))
        words.append(_encode(_OP.PERF, (("dram_addr", perf_addr + (i + 1) * pw),)))
        est += perf_cycles(cfg) + fetch_cycles(cfg)
    words.append(_encode(_OP.HALT, ()))
    est += misc_cycles(cfg) + fetch_cycles(cfg)
    used = prog_addr + len(words) * iw
    if used > cfg.mem_words:
        raise CompileError(f"Program needs {used} words of device memory (code "
                           f"{len(words) * iw}, data {prog_addr}) but the device has "
                           f"{cfg.mem_words} ({cfg.name})")
    last = layers[-1]
    kin = int(layers[0].w.shape[0])
    in_t = {"name": "input", "addr": layers[0].in_addr, "shape": [m, 1, 1, kin],
            "cp": layers[0].kp, "halo": [0, 0], "zp": layers[0].zp_in, "itemsize": 1,
            "words": m * layers[0].kp // bb}
    isz = 4 if last.kind == "gemm" else 1
    out_t = {"name": last.name, "addr": last.out_addr, "shape": [m, 1, 1, int(last.w.shape[1])],
             "cp": last.np_, "halo": [0, 0], "zp": 0, "itemsize": isz,
             "words": -(-m * last.np_ * isz // bb)}
    meta = {
        "prog_addr": prog_addr, "used_words": used, "perf_addr": perf_addr,
        "const_addr": const_addr, "input": in_t, "output": out_t, "fills": [in_t],
        "input_shape": [m, int(layers[0].w.shape[0])],
        "output_shape": [m, int(last.w.shape[1])],
        "output_dtype": "int32" if last.kind == "gemm" else "int8",
        "config_hash": cfg.config_hash, "est_cycles": est,
        "layers": [{"name": ly.name, "kind": ly.kind, "m": m, "k": int(ly.w.shape[0]),
                    "n": int(ly.w.shape[1]), "macs": m * int(ly.w.shape[0]) * int(ly.w.shape[1])}
                   for ly in layers],
        "tensors": [{"name": ly.name, "in_addr": ly.in_addr, "out_addr": ly.out_addr,
                     "w_addr": ly.w_addr, "p_addr": ly.p_addr, "kp": ly.kp, "np": ly.np_,
                     **ly.plan} for ly in layers],
        "ref": [{"kind": ly.kind, "zp_in": ly.zp_in, "zp_out": ly.zp_out, "relu": ly.relu}
                for ly in layers],
    }
    ref = [{"kind": ly.kind, "w": ly.w.copy(), "bias": ly.bias, "mult": ly.mult,
            "shift": ly.shift, "zp_in": ly.zp_in, "zp_out": ly.zp_out, "relu": ly.relu}
           for ly in layers]
    return Program(cfg, words, meta, const, ref)


def compile_gemm(w: np.ndarray, cfg: AccelConfig, m: int, zp: int = 0) -> Program:
    """Compile the raw GEMM ``(x - zp) @ w`` (int32 output, wrapping) for ``m`` input rows.

    Parameters
    ----------
    w : int8 array (K, N)
    cfg : AccelConfig
    m : int
        Rows of the input ``x`` (M x K int8).
    zp : int
        Activation zero point in [-128, 127].

    Raises
    ------
    TypeError
        When ``w`` is not an int8 array or ``cfg`` not an AccelConfig.
    CompileError
        When a limit is exceeded (K for int32 accumulation, scratchpads, DMA stride, memory size).
    """
    return _compile([_Layer(name="gemm", kind="gemm", w=w, zp_in=zp)], cfg, m)


def compile_linear(w: np.ndarray, bias, mult, shift, zp_in: int, zp_out: int, relu: bool,
                   cfg: AccelConfig, m: int) -> Program:
    """Compile one quantized Linear layer: ``golden.linear(x, w, bias, mult, shift, zp_in, zp_out,
    relu)`` with int8 output.

    Raises
    ------
    TypeError, CompileError
        As :func:`compile_gemm`; also for a bias / mult / shift of the wrong shape or range.
    """
    return _compile([_Layer(name="linear", kind="linear", w=w, zp_in=zp_in, bias=bias, mult=mult,
                            shift=shift, zp_out=zp_out, relu=relu)], cfg, m)


def compile_model(qnet, cfg: AccelConfig, batch: int = 1) -> Program:
    """Compile a :class:`~sw.quantize.QuantizedNet` (a chain of quantized Linear layers) or a
    :class:`~sw.graph.QuantizedGraph` (a CNN; see :func:`sw.lower.compile_graph`) for ``batch``
    input rows or images (the whole batch runs as one program); each layer's output buffer is
    the next layer's input.

    Raises
    ------
    CompileError
        Naming the layer and the limit.
    """
    from .graph import QuantizedGraph
    if isinstance(qnet, QuantizedGraph):
        from .lower import compile_graph
        return compile_graph(qnet, cfg, batch)
    qlayers = list(getattr(qnet, "layers", []))
    if not qlayers:
        raise CompileError("Model must have at least one quantized Linear layer")
    layers = [_Layer(name=ql.name, kind="linear", w=ql.w, zp_in=ql.zp_in, bias=ql.bias,
                     mult=ql.mult, shift=ql.shift, zp_out=ql.zp_out, relu=ql.relu)
              for ql in qlayers]
    return _compile(layers, cfg, batch)
