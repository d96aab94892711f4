"""Random instruction-stream fuzzer: random, structured and mutated programs for the ISA simulator
(and a sample of them for the Verilator-simulated device).

Every program is made from one integer seed and a configuration name (:data:`FUZZ_CONFIGS`: the
presets, and ``wide``, a custom 4x8 array with more columns than rows and a serial requantizer)
by :func:`make_case`, so a failure is replayed from ``(preset, seed)`` alone (with the same
version of this module). Three kinds:

``random``
    random 128-bit words (half of them with a legal opcode put into the opcode field), maybe a
    ``HALT`` at the end;
``structured``
    1..24 instructions drawn from ``LOAD / STORE / MATMUL / REQUANT / LOOP / PERF / SYNC`` with
    operands mostly in range for the configuration (addresses inside a small data area of device
    memory, short trip counts) and, field by field, edge values (0, a depth, one past it, the
    largest field value, the end of memory, ...) or pairs whose sum passes a field's width; now
    and then non-zero dependency-token or padding bits or a STORE / PERF over the program's
    own next instructions, rarely one MATMUL of up to
    :data:`BIG_MATMUL_ROWS` act rows; usually ending in ``HALT``, else running into zeroed
    memory, into random data, or off the end of memory;
``mutated``
    a program the compiler produced (a GEMM, a Linear layer or a small CNN: 3x3 conv, max pool,
    1x1 conv and a residual add) with one to three mutations: a word replaced by random bits, an
    operand field set to a random or edge value, a flipped bit, an instruction deleted,
    duplicated or swapped, ``HALT`` removed.

:func:`targeted_cases` adds hand-picked programs (operand sums past a field's width, REQUANT
shift faults). Every word is built with ``hw/isa.py`` (:func:`hw.isa.encode` or the
:class:`hw.isa.Instr` layout), never by hand-shifted bits. This module drives the host
library's simulator (``sw.sim.isasim``, ``sw.compiler``) as well as ``verif.device_job``.

The property (:func:`run_isasim`, :func:`check_isasim`): on every configuration a fresh
:class:`sw.sim.isasim.IsaSim` ends in ``HALT`` or raises :class:`sw.errors.DeviceError` whose
``code`` is a fault :class:`hw.isa.ErrorCode` (and ``pc`` a word address), within ``max_cycles``
cycles (its ``cycles`` counter; a legal program that ends later is a ``TIMEOUT``, as on a device
given that bound) and a wall-clock budget (a hang), and a fault leaves memory and
scratchpads as they were before the faulting instruction (but the ACC rows of a MATMUL's act-row
overrun, which ``hw/isa.py`` leaves undefined). Anything else is a violation.

On Verilator (:func:`verilator_sample`, :func:`compare_verilator`) the programs get a prologue
that zeroes the scratchpads (the device keeps them from job to job) and must agree with isasim on
how they end, the fault pc, the device memory they were given (and the zero-row directory) and
the final performance counters (those isasim models at a fault).

Command line (exit status 1 on a violation or a mismatch)::

    python tests/isa_fuzz.py --n 1000 --preset small --seed 1     # seeds 1 .. 1000
    python tests/isa_fuzz.py --preset all --n 200                  # every configuration
    python tests/isa_fuzz.py --preset tiny --replay 1234           # one program, verbose
    python tests/isa_fuzz.py --preset small --n 20 --verilator     # on Verilator too
    python tests/isa_fuzz.py --preset small --replay 7 --prologue  # as Verilator ran it
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from stamen.hw import isa
from stamen.hw.params import PRESETS, AccelConfig

__all__ = ["FUZZ_CONFIGS", "fuzz_config", "FuzzCase", "make_case", "Outcome", "run_isasim",
           "check_isasim", "with_prologue", "targeted_cases", "verilator_sample",
           "compare_verilator",
           "Comparison", "fuzz", "main", "KINDS", "MAX_CYCLES", "WALL_BUDGET_S",
           "BIG_MATMUL_ROWS"]

#: The program kinds :func:`make_case` draws from.
KINDS = ("random", "structured", "mutated")
#: Cycle bound of one fuzz program (isasim's ``cycles`` counter at HALT or fault).
MAX_CYCLES = 10 ** 7
#: Wall-clock budget of one isasim run, seconds.
WALL_BUDGET_S = 20.0

#: Configurations to fuzz: every preset plus ``wide``, an array with more columns than rows
#: (``tiny`` has more rows than columns) and a serial requantizer.
FUZZ_CONFIGS = tuple(PRESETS) + ("wide",)

_CUSTOM = {
    "wide": AccelConfig(name="wide", rows=4, cols=8, act_spad_depth=512, wt_spad_depth=256,
                        acc_spad_depth=256, out_spad_depth=256, param_spad_depth=24,
                        mem_bytes=1 << 18, requant_lanes=4),
}

_SPAD_NAMES = ("act", "wt", "acc", "out", "param")
_MAX_K_TILES = isa.ARG_RANGES["matmul"]["k_tiles"][1]
#: Bytes of the data area at the bottom of memory of structured and random programs.
_DATA_BYTES = 1 << 14


def fuzz_config(name: str) -> AccelConfig:
    """Return the configuration called ``name`` (:data:`FUZZ_CONFIGS`)."""
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name in PRESETS:
        return AccelConfig.preset(name)
    raise ValueError(f"Fuzz configuration must be one of {FUZZ_CONFIGS}, not {name!r}")


# -- instruction fields through the Instr layout -------------------------------------------------
def _slot(*path: str) -> tuple[int, int]:
    """Return ``(offset, width)`` of the field ``path`` (e.g. ``("args", "matmul", "m")``) in an
    instruction word, from :class:`hw.isa.Instr`'s layout."""
    layout, offset = isa.Instr.as_shape(), 0
    for i, name in enumerate(path):
        f = layout[name]
        offset += f.offset
        if i + 1 < len(path):
            layout = data.Layout.cast(f.shape)
    return offset, Shape.cast(f.shape).width


def _set_field(word: int, path: tuple[str, ...], value: int) -> int:
    """Return ``word`` with the field ``path`` set to ``value`` (two's complement, truncated to
    the field's width)."""
    off, width = _slot(*path)
    mask = ((1 << width) - 1) << off
    return (word & ~mask) | ((value << off) & mask)


def _field_names(kind: str) -> list[str]:
    return ["spad", *isa.ARG_RANGES[kind]] if kind == "dma" else list(isa.ARG_RANGES[kind])


def _encode(op: isa.Opcode, deps: int = 0, pad: int = 0, **args) -> int:
    """Encode with :func:`hw.isa.encode`, then set the reserved dependency-token and padding
    fields through the layout."""
    word = isa.encode(op, **args)
    if deps:
        word = _set_field(word, ("deps",), deps)
    if pad:
        word = _set_field(word, ("_pad",), pad)
    return word


# -- cases ---------------------------------------------------------------------------------------
@dataclass
class FuzzCase:
    """One fuzz program: the memory image it starts from and where its code is.

    ``used_words`` bounds what the program was given (data, code); ``note`` says how it was made.
    """
    preset: str
    seed: int
    kind: str
    cfg: AccelConfig
    words: list[int]
    prog_addr: int
    image: np.ndarray
    used_words: int
    note: str = ""

    def disassemble(self) -> str:
        """Return the program text with word addresses."""
        from stamen.sw.asm import disassemble
        return disassemble(self.words, self.cfg, self.prog_addr)

    @property
    def replay(self) -> str:
        """Return the command that reruns this case."""
        return f"python tests/isa_fuzz.py --preset {self.preset} --replay {self.seed}"

    def __str__(self) -> str:
        return f"{self.kind} program preset={self.preset} seed={self.seed} ({self.note})"


def _put_code(cfg: AccelConfig, image: np.ndarray, prog_addr: int, words: list[int]) -> None:
    from stamen.sw.asm import to_bytes
    code = np.frombuffer(to_bytes(words, cfg), np.uint8)
    start = prog_addr * cfg.mem_bus_bytes
    image[start:start + code.size] = code


class _Layout:
    """The data area of a structured / random program (word addresses).

    ``[0, perf)`` PERF snapshots (zero until a PERF writes them), a zero block, then random rows
    (some rows all-zp or all-zero), param blocks (bias, multiplier and a shift row in 0..31 each),
    and a zeroed output area, up to ``end``; the program follows at ``end``.
    """

    def __init__(self, cfg: AccelConfig, rng: np.random.Generator):
        bb = cfg.mem_bus_bytes
        self.cfg = cfg
        self.end = min(_DATA_BYTES // bb, cfg.mem_words // 4)
        self.pw = isa.perf_words(cfg)
        self.perf = 4 * self.pw
        widest = max(cfg.spad_row_words(s) for s in _SPAD_NAMES)
        self.zero = self.perf
        self.rand = self.zero + 2 * widest
        prw = cfg.spad_row_words("param")
        self.blocks = 4
        self.param = self.end // 2
        self.out = self.param + self.blocks * 3 * prw
        self.param_row_words = prw
        self.loaded_params: list[int] = []       # spad rows a LOAD PARAM of the program fills
        self.index = 0                            # the instruction being generated
        self.image = np.zeros(cfg.mem_bytes, np.uint8)
        img = self.image
        nrand = (self.param - self.rand) * bb
        blob = rng.integers(0, 256, nrand, dtype=np.uint8)
        zp = np.uint8(int(rng.integers(-128, 128)) & 0xFF)
        self.zp = int(np.int8(zp.view(np.int8)))
        chunk = 8
        mask = rng.random(nrand // chunk) < 0.25
        blob[:mask.size * chunk].reshape(-1, chunk)[mask] = zp
        mask = rng.random(nrand // chunk) < 0.1
        blob[:mask.size * chunk].reshape(-1, chunk)[mask] = 0
        img[self.rand * bb:self.param * bb] = blob
        C = cfg.cols
        for b in range(self.blocks):
            rows = np.zeros((3, C), np.int32)
            rows[0] = rng.integers(-1 << 20, 1 << 20, C)
            rows[1] = rng.integers(1 << 30, (1 << 31) - 1, C)
            rows[2] = rng.integers(0, isa.REQUANT_MAX_SHIFT + 1, C)
            if rng.random() < 0.35:
                rows[2, rng.integers(C)] = rng.choice([-1, 32, 1 << 30])     # a BAD_PARAM block
            a = (self.param + b * 3 * prw) * bb
            img[a:a + rows.nbytes] = rows.view(np.uint8).reshape(-1)
        if cfg.compress_acts:          # some directory bits of the data area set
            slots = (self.end + cfg.zero_row_words - 1) // cfg.zero_row_words
            from stamen.sw.zero_dir import write_zero_dir
            s = np.arange(slots)
            write_zero_dir(cfg, img, s, rng.random(slots) < 0.2)

    def param_addr(self, rng) -> int:
        return self.param + int(rng.integers(self.blocks)) * 3 * self.param_row_words


def _edge(rng, cfg: AccelConfig, kind: str, name: str, lo: int, hi: int) -> int:
    """Return an edge value for operand ``name`` of operand struct ``kind``."""
    cands = [lo, hi, 0, 1, 2, hi - 1]
    if name in ("spad_addr", "act_addr", "wt_addr", "acc_addr", "out_addr", "param_addr", "rows",
                "m", "act_stride", "k_stride1", "k_stride2", "m_stride", "m_stride1"):
        for s in _SPAD_NAMES:
            d = cfg.spad_depth(s)
            cands += [d - 1, d, d + 1, d - cfg.rows, d // 2]
    if name in ("dram_addr", "dram_stride"):
        w = cfg.mem_words
        cands += [w - 1, w, w + 1, w - isa.perf_words(cfg), cfg.zero_dir_base,
                  cfg.zero_dir_base - 1, 1 << 20, w // 2]
    if name in ("k_tiles", "k_wrap0", "k_wrap1", "m_wrap"):
        cands += [3, 7, 64, 255]
    if name == "zp":
        cands += [-128, 127, -1]
    cands = [c for c in cands if lo <= c <= hi]
    return int(rng.choice(cands))


#: Largest ``m * k_tiles`` of the occasional big MATMUL of a structured program.
BIG_MATMUL_ROWS = 1 << 21


def _fields_in_range(rng, cfg: AccelConfig, op: isa.Opcode, lay: _Layout,
                     big: bool = False) -> dict:
    """Return mostly-legal operands of ``op`` for ``cfg`` with a short trip count (``big``: a
    MATMUL of up to :data:`BIG_MATMUL_ROWS` act rows, one weight tile for every ``kt``)."""
    R = cfg.rows
    depth = {s: cfg.spad_depth(s) for s in _SPAD_NAMES}
    ri = lambda a, b: int(rng.integers(a, max(a, b) + 1))         # noqa: E731 (inclusive)
    if op in (isa.Opcode.LOAD, isa.Opcode.STORE):
        spad = isa.Spad(int(rng.integers(5)))
        name = spad.name.lower()
        rw = cfg.spad_row_words(name)
        rows = ri(1, min(48, depth[name]))
        stride = rw * int(rng.choice([1, 1, 1, 2, 0])) if rng.random() < 0.9 else ri(0, 3 * rw)
        compress = 0
        if cfg.compress_acts and rng.random() < 0.35:
            compress = 1
            spad = isa.Spad.OUT if op == isa.Opcode.STORE else isa.Spad.ACT
            name = spad.name.lower()
            rw = cfg.spad_row_words(name)
            stride = rw * int(rng.choice([0, 1, 1, 2]))
        if op == isa.Opcode.STORE and rng.random() < 0.04:     # over its own next instructions
            iw = isa.instr_words(cfg)
            return {"spad": spad, "spad_addr": ri(0, depth[name] - 4), "rows": ri(1, 4),
                    "dram_addr": lay.end + iw * (lay.index + ri(1, 3)), "dram_stride": rw,
                    "compress": 0, "zp": lay.zp}
        lo_d, hi_d = (lay.out, lay.end) if op == isa.Opcode.STORE else (lay.rand, lay.end)
        if op == isa.Opcode.LOAD and spad == isa.Spad.PARAM and rng.random() < 0.8:
            daddr, rows, stride = lay.param_addr(rng), 3, cfg.spad_row_words("param")
            saddr = ri(0, depth["param"] - rows)
            lay.loaded_params.append(saddr)
            return {"spad": spad, "spad_addr": saddr, "rows": rows, "dram_addr": daddr,
                    "dram_stride": stride, "compress": 0, "zp": 0}
        span = (rows - 1) * stride + rw
        daddr = ri(lo_d, hi_d - span) if hi_d - span >= lo_d else lo_d
        if compress:
            daddr -= daddr % cfg.zero_row_words
        return {"spad": spad, "spad_addr": ri(0, depth[name] - rows), "rows": rows,
                "dram_addr": daddr, "dram_stride": stride, "compress": compress,
                "zp": lay.zp if rng.random() < 0.7 else ri(-128, 127)}
    if op == isa.Opcode.MATMUL and big:
        m = ri(1, depth["acc"])
        kt = ri(256, min(_MAX_K_TILES, BIG_MATMUL_ROWS // m))
        return {"act_addr": ri(0, 16), "wt_addr": ri(0, depth["wt"] - R),
                "acc_addr": ri(0, depth["acc"] - m), "m": m, "k_tiles": kt,
                "act_stride": int(rng.choice([0, 0, 1])), "zp": lay.zp,
                "accumulate": int(rng.random() < 0.5), "acc_max": int(rng.random() < 0.2),
                "wt_repeat": 1}
    if op == isa.Opcode.MATMUL:
        m = ri(1, 40)
        kt = ri(1, 6)
        rep = int(rng.random() < 0.25)
        wt_rows = R if rep else kt * R
        stride = int(rng.choice([0, 1, m, R, ri(0, 16)]))
        return {"act_addr": ri(0, depth["act"] // 2), "wt_addr": ri(0, depth["wt"] - wt_rows),
                "acc_addr": ri(0, depth["acc"] - m), "m": m, "k_tiles": kt, "act_stride": stride,
                "zp": lay.zp if rng.random() < 0.7 else ri(-128, 127),
                "accumulate": int(rng.random() < 0.4), "acc_max": int(rng.random() < 0.2),
                "wt_repeat": rep}
    if op == isa.Opcode.REQUANT:
        rows = ri(1, 48)
        param = ri(0, depth["param"] - 3)
        if lay.loaded_params and rng.random() < 0.8:
            param = int(rng.choice(lay.loaded_params))
        return {"acc_addr": ri(0, depth["acc"] - rows), "out_addr": ri(0, depth["out"] - rows),
                "param_addr": param, "rows": rows, "zp_out": ri(-128, 127),
                "relu": int(rng.random() < 0.5)}
    if op == isa.Opcode.LOOP:
        if rng.random() < 0.2:
            return dict(isa.LOOP_RESET)
        return {"k_wrap0": int(rng.choice([0, 1, 2, 3])), "k_wrap1": int(rng.choice([0, 1, 2, 3])),
                "k_stride1": ri(0, 12), "k_stride2": ri(0, 40), "m_wrap": int(rng.choice([0, 1, 2,
                                                                                          3, 5])),
                "m_stride": ri(0, 3), "m_stride1": ri(0, 12)}
    if op == isa.Opcode.PERF:
        r = rng.random()
        if r < 0.05:                                          # over its own next instructions
            return {"dram_addr": lay.end + isa.instr_words(cfg) * (lay.index + ri(1, 3))}
        return {"dram_addr": ri(0, lay.perf - lay.pw) if r < 0.8
                else ri(lay.out, lay.end - lay.pw)}
    return {}


def _overflow(rng, op: isa.Opcode, f: dict) -> None:
    """Set a pair of ``op``'s operands in ``f`` so that their sum passes a field's width
    (an address just below ``2**16`` or ``2**32`` and a count or stride that carries it over),
    the case a narrow range check would wrap."""
    k = int(rng.integers(1, 4))
    if op in (isa.Opcode.LOAD, isa.Opcode.STORE):
        how = int(rng.integers(3))
        if how == 0:
            f["spad_addr"], f["rows"] = (1 << 16) - k, k + int(rng.integers(1, 3))
        elif how == 1:
            f["dram_addr"] = (1 << 32) - k
        else:
            f["dram_stride"] = (1 << 24) - k
            f["rows"] = max(f["rows"], 2)
    elif op == isa.Opcode.MATMUL:
        name = str(rng.choice(["act_addr", "wt_addr", "acc_addr", "act_stride"]))
        f[name] = (1 << 16) - k
        if name == "act_stride":
            f["k_tiles"] = max(f["k_tiles"], 2)
        elif name == "acc_addr":
            f["m"] = max(f["m"], k + 1)
    elif op == isa.Opcode.REQUANT:
        name = str(rng.choice(["acc_addr", "out_addr", "param_addr"]))
        f[name] = (1 << 16) - k
        f["rows"] = max(f["rows"], k + 1)
    elif op == isa.Opcode.LOOP:
        f[str(rng.choice(["k_stride1", "k_stride2", "m_stride", "m_stride1"]))] = (1 << 16) - k
    elif op == isa.Opcode.PERF:
        f["dram_addr"] = (1 << 32) - k


_STRUCT_OPS = (isa.Opcode.LOAD, isa.Opcode.STORE, isa.Opcode.MATMUL, isa.Opcode.REQUANT,
               isa.Opcode.LOOP, isa.Opcode.PERF, isa.Opcode.SYNC, isa.Opcode.HALT)
_STRUCT_P = np.array([6, 3, 5, 2, 2, 1, 0.5, 0.15])
_STRUCT_P = _STRUCT_P / _STRUCT_P.sum()


def _structured(rng, cfg: AccelConfig) -> tuple[list[int], _Layout, str]:
    lay = _Layout(cfg, rng)
    n = int(rng.integers(1, 25))
    p_edge = float(rng.choice([0.0, 0.0, 0.005, 0.02, 0.08, 0.4]))
    words, edges = [], 0
    big = int(rng.integers(n)) if rng.random() < 0.03 else -1     # one big MATMUL
    for j in range(n):
        op = _STRUCT_OPS[int(rng.choice(len(_STRUCT_OPS), p=_STRUCT_P))]
        if j == big:
            op = isa.Opcode.MATMUL
        lay.index = j
        f = _fields_in_range(rng, cfg, op, lay, big=j == big)
        kind = isa.OPCODE_ARGS[op]
        if kind is not None and rng.random() < 0.015:
            _overflow(rng, op, f)
            edges += 1
        if kind is not None:
            for name, (lo, hi) in isa.ARG_RANGES[kind].items():
                if rng.random() < p_edge:
                    f[name] = _edge(rng, cfg, kind, name, lo, hi)
                    edges += 1
        deps = int(rng.integers(1, 16)) if rng.random() < 0.03 else 0
        pad = int(rng.integers(1, 256)) if rng.random() < 0.03 else 0
        words.append(_encode(op, deps, pad, **f))
    end = rng.random()
    tail = "HALT"
    if end < 0.85:
        words.append(isa.encode(isa.Opcode.HALT))
    else:
        tail = "no HALT"
    big = ", a big MATMUL" if big >= 0 else ""
    return words, lay, f"{len(words)} instrs, {edges} edge operands{big}, {tail}"


def _random(rng, cfg: AccelConfig) -> tuple[list[int], _Layout, str]:
    lay = _Layout(cfg, rng)
    n = int(rng.integers(1, 12))
    words = []
    for _ in range(n):
        w = int.from_bytes(rng.bytes(isa.INSTR_BITS // 8), "little")
        if rng.random() < 0.5:
            w = _set_field(w, ("opcode",), int(rng.choice([op.value for op in isa.Opcode])))
        if rng.random() < 0.5:
            w = _set_field(w, ("deps",), 0)
            w = _set_field(w, ("_pad",), 0)
        words.append(w)
    if rng.random() < 0.5:
        words.append(isa.encode(isa.Opcode.HALT))
    return words, lay, f"{len(words)} words"


# -- mutated compiled programs -------------------------------------------------------------------
_BASES: dict[tuple[str, int], object] = {}
_N_BASES = 3


def _cnn_graph(rng):
    """Return a small CNN graph: 3x3 conv (pad 1, ReLU), 2x2 max pool, 1x1 conv, residual add."""
    from stamen.sw.graph import QOp, QuantizedGraph
    c0, c1 = int(rng.integers(1, 4)), int(rng.integers(2, 7))
    h = 6

    def conv(name, inp, k, cin, cout, pad, zp_in, relu, shape):
        w = rng.integers(-128, 128, (k, k, cin, cout), dtype=np.int8)
        return QOp(name, "conv", [inp], [zp_in], -128 if relu else int(rng.integers(-20, 20)),
                   [0.05], 0.05, shape, w=w, bias=rng.integers(-2000, 2000, cout).astype(np.int32),
                   mult=rng.integers(1 << 30, (1 << 31) - 1, cout).astype(np.int32),
                   shift=rng.integers(8, 14, cout).astype(np.int32), kernel=(k, k),
                   padding=(pad, pad), relu=relu)
    zp0 = int(rng.integers(-30, 30))
    c1op = conv("c1", "input", 3, c0, c1, 1, zp0, True, (h, h, c1))
    pool = QOp("p1", "maxpool", ["c1"], [-128], -128, [0.05], 0.05, (h // 2, h // 2, c1),
               kernel=(2, 2), stride=(2, 2))
    pw = conv("pw", "p1", 1, c1, c1, 0, -128, False, (h // 2, h // 2, c1))
    add = QOp("add", "add", ["p1", "pw"], [-128, pw.zp_out], 3, [0.05, 0.05], 0.05,
              (h // 2, h // 2, c1), mult=1 << 30, shift=1, add_w=(1, 1))
    return QuantizedGraph([c1op, pool, pw, add], (h, h, c0), 0.05, zp0), 2


def _base(preset: str, which: int):
    """Return ``(program, x)``: compiled base program ``which`` for ``preset`` (cached)."""
    key = (preset, which)
    if key in _BASES:
        return _BASES[key]
    from stamen.sw.compiler.driver import compile_gemm, compile_linear, compile_model
    cfg = fuzz_config(preset)
    rng = np.random.default_rng([which, 7])
    if which == 0:
        k, n, m = int(rng.integers(3, 21)), int(rng.integers(1, 12)), int(rng.integers(1, 10))
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        prog = compile_gemm(w, cfg, m=m, zp=int(rng.integers(-128, 128)))
        x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    elif which == 1:
        k, n, m = int(rng.integers(5, 30)), int(rng.integers(3, 17)), int(rng.integers(2, 7))
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        prog = compile_linear(w, rng.integers(-5000, 5000, n).astype(np.int32),
                              rng.integers(1 << 30, (1 << 31) - 1, n).astype(np.int32),
                              rng.integers(10, 16, n).astype(np.int32), 5, -3, True, cfg, m=m)
        x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    else:
        from stamen.sw.errors import CompileError
        graph, batch = _cnn_graph(rng)
        try:
            prog = compile_model(graph, cfg, batch=batch)
        except CompileError:            # a configuration too small for it: the GEMM instead
            _BASES[key] = _base(preset, 0)
            return _BASES[key]
        x = rng.integers(-128, 128, (batch, *graph.input_shape), dtype=np.int8)
    _BASES[key] = (prog, x)
    return _BASES[key]


def _mutate_field(rng, cfg, word: int) -> tuple[int, str]:
    code = isa.opcode_bits(word)
    ops = {o.value: o for o in isa.Opcode}
    kind = isa.OPCODE_ARGS.get(ops.get(code)) if code in ops else None
    if kind is None:
        return _set_field(word, ("opcode",), int(rng.integers(16))), "opcode"
    name = str(rng.choice(_field_names(kind)))
    _, width = _slot("args", kind, name)
    if name == "spad":
        v = int(rng.integers(1 << width))
    elif rng.random() < 0.5:
        lo, hi = isa.ARG_RANGES[kind][name]
        v = _edge(rng, cfg, kind, name, lo, hi)
    else:
        v = int(rng.integers(1 << width))
    return _set_field(word, ("args", kind, name), v), f"{kind}.{name}={v}"


def _mutated(rng, cfg: AccelConfig, preset: str) -> tuple[list[int], np.ndarray, int, int, str]:
    which = int(rng.integers(_N_BASES))
    prog, x = _base(preset, which)
    words = list(prog.words)
    image = prog.memory_image(x)
    notes = []
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(words)))
        how = int(rng.choice(6, p=[0.15, 0.45, 0.15, 0.1, 0.1, 0.05]))
        if how == 0:
            words[i] = int.from_bytes(rng.bytes(isa.INSTR_BITS // 8), "little")
            notes.append(f"word {i} random")
        elif how == 1:
            words[i], what = _mutate_field(rng, cfg, words[i])
            notes.append(f"word {i} {what}")
        elif how == 2:
            b = int(rng.integers(isa.INSTR_BITS))
            words[i] ^= 1 << b
            notes.append(f"word {i} bit {b}")
        elif how == 3 and len(words) > 1:
            del words[i]
            notes.append(f"word {i} deleted")
        elif how == 4:
            j = int(rng.integers(len(words)))
            words[i], words[j] = words[j], words[i]
            notes.append(f"words {i}<->{j}")
        else:
            words.insert(i, words[i])
            notes.append(f"word {i} duplicated")
    if rng.random() < 0.1 and isa.opcode_bits(words[-1]) == isa.Opcode.HALT.value:
        words[-1] = isa.encode(isa.Opcode.SYNC)
        notes.append("HALT removed")
    iw = isa.instr_words(cfg)
    old = len(prog.words) * iw * cfg.mem_bus_bytes
    image[prog.prog_addr * cfg.mem_bus_bytes:][:old] = 0
    _put_code(cfg, image, prog.prog_addr, words)
    used = max(prog.used_words, prog.prog_addr + len(words) * iw)
    kinds = ["gemm", "linear", "cnn"]
    return words, image, prog.prog_addr, used, f"{kinds[which]}: " + ", ".join(notes)


def make_case(preset: str, seed: int, kind: str | None = None) -> FuzzCase:
    """Return fuzz program ``seed`` for configuration ``preset`` (deterministic in both)."""
    cfg = fuzz_config(preset)
    rng = np.random.default_rng([int(seed), FUZZ_CONFIGS.index(preset)])
    if kind is None:
        kind = str(rng.choice(KINDS, p=[0.2, 0.5, 0.3]))
    iw = isa.instr_words(cfg)
    if kind == "mutated":
        words, image, prog_addr, used, note = _mutated(rng, cfg, preset)
        return FuzzCase(preset, seed, kind, cfg, words, prog_addr, image, used, note)
    words, lay, note = (_structured if kind == "structured" else _random)(rng, cfg)
    image = lay.image
    prog_addr = lay.end
    where = rng.random()
    if where < 0.03:                              # at the very end: falls off memory
        prog_addr = cfg.mem_words - len(words) * iw
        note += ", at the end of memory"
    elif where < 0.15 and isa.opcode_bits(words[-1]) != isa.Opcode.HALT.value:
        prog_addr = int(rng.integers(lay.rand, lay.param - len(words) * iw))
        note += ", runs on into random data"
    _put_code(cfg, image, prog_addr, words)
    used = max(lay.end, prog_addr) + len(words) * iw
    return FuzzCase(preset, seed, kind, cfg, words, prog_addr, image, used, note)


def with_prologue(case: FuzzCase) -> FuzzCase:
    """Return ``case`` with a prologue that zeroes every scratchpad (a stride-0 LOAD of a zero
    row into each): a device that keeps its scratchpads from run to run then starts every
    program as a fresh :class:`~sw.sim.isasim.IsaSim` does. The zero row is word 0 (the PERF area
    of both layouts, zero until a PERF writes it). The prologue goes just before the program
    where those words are zero (every instruction keeps its address); else the program moves
    up to make room."""
    cfg = case.cfg
    pro = [isa.encode(isa.Opcode.LOAD, spad=isa.Spad[s.upper()], spad_addr=0,
                      rows=cfg.spad_depth(s), dram_addr=0, dram_stride=0) for s in _SPAD_NAMES]
    iw = isa.instr_words(cfg)
    bb = cfg.mem_bus_bytes
    image = case.image.copy()
    start = case.prog_addr - len(pro) * iw
    widest = max(cfg.spad_row_words(s) for s in _SPAD_NAMES)
    if start >= widest and not image[start * bb:case.prog_addr * bb].any():
        _put_code(cfg, image, start, pro)
        return replace(case, words=pro + case.words, image=image, prog_addr=start,
                       note=case.note + ", spad-clearing prologue before it")
    if case.prog_addr + len(pro + case.words) * iw > cfg.mem_words:
        raise ValueError(f"{case}: no room for the prologue before the end of memory")
    image[case.prog_addr * bb:(case.prog_addr + len(case.words) * iw) * bb] = 0
    words = pro + case.words
    _put_code(cfg, image, case.prog_addr, words)
    return replace(case, words=words, image=image,
                   used_words=max(case.used_words, case.prog_addr + len(words) * iw),
                   note=case.note + ", spad-clearing prologue (program moved)")


def targeted_cases(preset: str) -> list[FuzzCase]:
    """Return hand-picked programs for ``preset`` (kind ``targeted``, seeds 0, 1, ...): operand
    pairs whose sum passes a field's width or the memory's end (a range check that wrapped
    would let them through), act rows reached only through the LOOP strides, programs that
    overwrite their own next instructions (STORE, PERF) and REQUANTs that halt with
    ``BAD_PARAM`` (the fault's cycle count)."""
    base = make_case(preset, 0, "structured")
    cfg = base.cfg
    E, O, S = isa.encode, isa.Opcode, isa.Spad
    depth = cfg.act_spad_depth
    prw = cfg.spad_row_words("param")

    def mm(**f):
        return E(O.MATMUL, **({"act_addr": 0, "wt_addr": 0, "acc_addr": 0, "m": 1,
                               "k_tiles": 1, "act_stride": 0, "zp": 0, "accumulate": 0} | f))

    def loop(**f):
        return E(O.LOOP, **(isa.LOOP_RESET | f))

    def dma(op, **f):
        return E(op, **({"spad": S.ACT, "spad_addr": 0, "rows": 1, "dram_addr": 0x100,
                         "dram_stride": 1} | f))
    progs = {
        "LOAD spad_addr+rows past 2**16": [dma(O.LOAD, spad_addr=(1 << 16) - 1, rows=2)],
        "LOAD rows=65535": [dma(O.LOAD, spad=S.WT, spad_addr=2, rows=(1 << 16) - 1,
                                dram_stride=0)],
        "LOAD dram_addr past 2**32": [dma(O.LOAD, rows=2, dram_addr=(1 << 32) - 1,
                                          dram_stride=2)],
        "LOAD dram_stride 2**24-1": [dma(O.LOAD, rows=3, dram_stride=(1 << 24) - 1)],
        "LOAD dram_stride mem_words": [dma(O.LOAD, rows=2, dram_stride=cfg.mem_words)],
        "STORE dram_addr 2**32-1": [dma(O.STORE, spad=S.OUT, dram_addr=(1 << 32) - 1)],
        "PERF dram_addr past 2**32": [E(O.PERF, dram_addr=(1 << 32) - 2)],
        "PERF across the end": [E(O.PERF, dram_addr=cfg.mem_words - 1)],
        "MATMUL act_addr+m past 2**16": [mm(act_addr=(1 << 16) - 1, m=2)],
        "MATMUL act_stride 2**16-1": [mm(k_tiles=2, act_stride=(1 << 16) - 1, wt_repeat=1)],
        "MATMUL act row = depth": [mm(k_tiles=2, act_stride=depth, wt_repeat=1)],
        "MATMUL act row 2**16": [mm(k_tiles=3, act_stride=1 << 15, wt_repeat=1)],
        "LOOP k_stride2 2**16-1": [loop(k_wrap0=1, k_wrap1=1, k_stride2=(1 << 16) - 1),
                                   mm(k_tiles=3, wt_repeat=1)],
        "LOOP m_stride 2**16-1": [loop(m_stride=(1 << 16) - 1), mm(m=2)],
        "LOOP m_stride1 past 2**16": [loop(m_wrap=1, m_stride1=(1 << 16) - 1), mm(act_addr=1,
                                                                               m=2)],
        "MATMUL wt_addr past 2**16": [mm(wt_addr=(1 << 16) - 1)],
        "MATMUL wt rows past 2**16": [mm(wt_addr=cfg.rows, k_tiles=(1 << 16) - 1)],
        "MATMUL acc_addr+m past 2**16": [mm(acc_addr=(1 << 16) - 1, m=2)],
        "REQUANT acc_addr+rows past 2**16": [E(O.REQUANT, acc_addr=(1 << 16) - 1, out_addr=0,
                                               param_addr=0, rows=2, zp_out=0, relu=0)],
        "REQUANT param rows past 2**16": [E(O.REQUANT, acc_addr=0, out_addr=0,
                                            param_addr=(1 << 16) - 2, rows=1, zp_out=0,
                                            relu=0)],
    }
    iw = isa.instr_words(cfg)
    at = base.prog_addr
    orw = cfg.spad_row_words("out")
    cover = -(-iw // orw)                  # OUT rows that cover one instruction
    progs |= {   # the program overwrites its own next instructions: no stale prefetch may run
        "STORE zeros over the next instruction": [
            dma(O.STORE, spad=S.OUT, rows=cover, dram_addr=at + iw, dram_stride=orw),
            E(O.HALT)],
        "STORE zeros two instructions ahead": [
            dma(O.STORE, spad=S.OUT, rows=cover, dram_addr=at + 2 * iw, dram_stride=orw),
            E(O.SYNC), E(O.HALT)],
        "PERF over the next instructions": [E(O.PERF, dram_addr=at + iw)] + [E(O.HALT)] * (
            -(-isa.perf_words(cfg) // iw)),
        "LOAD the program, STORE it over the next instruction": [
            dma(O.LOAD, spad=S.OUT, rows=cover, dram_addr=at + 3 * iw, dram_stride=orw),
            dma(O.STORE, spad=S.OUT, rows=cover, dram_addr=at + 2 * iw, dram_stride=orw),
            E(O.SYNC), loop(m_wrap=3)],
    }
    cases = []
    for name, words in progs.items():
        cases.append((name, words + [E(O.HALT)], base.image.copy()))
    for rows in (1, 5):                 # BAD_PARAM: a negative / too large shift, 1 or 5 rows
        for bad in (-1, isa.REQUANT_MAX_SHIFT + 1):
            param = np.zeros((3, cfg.cols), np.int32)
            param[1], param[2] = 1 << 30, 3
            param[2, -1] = bad
            image = base.image.copy()
            addr = base.prog_addr - 4 * prw
            a = addr * cfg.mem_bus_bytes
            image[a:a + param.nbytes] = param.view(np.uint8).reshape(-1)
            cases.append((f"REQUANT rows={rows} shift {bad}",
                          [dma(O.LOAD, spad=S.PARAM, rows=3, dram_addr=addr, dram_stride=prw),
                           E(O.REQUANT, acc_addr=0, out_addr=0, param_addr=0, rows=rows,
                             zp_out=0, relu=0), E(O.HALT)], image))
    out = []
    for seed, (name, words, image) in enumerate(cases):
        _put_code(cfg, image, base.prog_addr, words)
        out.append(FuzzCase(preset, seed, "targeted", cfg, words, base.prog_addr, image,
                            base.prog_addr + len(words) * iw, name))
    return out


# -- running -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """How one run ended: ``status`` is ``"HALT"``, an :class:`hw.isa.ErrorCode` name,
    ``"TIMEOUT"`` (it ended, but after more than ``max_cycles`` cycles: a device given that
    bound reports a timeout), or, for a violation, ``"VIOLATION"`` with ``detail``."""
    status: str
    pc: int | None = None
    counters: dict = field(default_factory=dict)
    mem: np.ndarray | None = None
    detail: str = ""
    wall_s: float = 0.0
    spads: dict = field(default_factory=dict)

    @property
    def violation(self) -> bool:
        return self.status == "VIOLATION"


class _WallTimeout(BaseException):
    """Raised by the alarm in :func:`_wall_limit` (a BaseException, so no ``except
    Exception`` in the code under test swallows it)."""


@contextlib.contextmanager
def _wall_limit(seconds: float):
    """Raise :class:`_WallTimeout` after ``seconds`` (main thread only; elsewhere no limit)."""
    def alarm(signum, frame):
        raise _WallTimeout()
    try:
        old = signal.signal(signal.SIGALRM, alarm)
    except ValueError:              # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_isasim(case: FuzzCase, max_cycles: int = MAX_CYCLES,
               wall_budget_s: float = WALL_BUDGET_S, side_effects: bool = True) -> Outcome:
    """Run ``case`` on a fresh :class:`~sw.sim.isasim.IsaSim` and classify how it ended; with
    ``side_effects``, a fault that changed memory or a scratchpad (but a MATMUL's act-row
    overrun's ACC rows) is a violation too."""
    from stamen.sw.errors import DeviceError
    from stamen.sw.sim.isasim import IsaSim
    cfg = case.cfg
    mem = case.image.copy()
    t0 = time.perf_counter()
    limit = cfg.mem_words // isa.instr_words(cfg) + 1        # straight-line: a bound on retires
    sim = None
    try:
        with _wall_limit(wall_budget_s):
            sim = IsaSim(cfg)
            ctr = sim.run(mem, case.prog_addr, max_instructions=limit)
        out = Outcome("HALT", None, ctr, mem)
    except DeviceError as e:
        code = e.code
        counters = getattr(e, "counters", {})
        if not isinstance(code, isa.ErrorCode) or code == isa.ErrorCode.NONE:
            out = Outcome("VIOLATION", e.pc, counters, mem,
                          f"DeviceError with code {code!r}: {e}")
        elif not isinstance(e.pc, int) or not 0 <= e.pc <= cfg.mem_words:
            out = Outcome("VIOLATION", e.pc, counters, mem, f"DeviceError with pc {e.pc!r}: {e}")
        else:
            out = Outcome(code.name, e.pc, counters, mem, str(e))
    except _WallTimeout:
        out = Outcome("VIOLATION", None, {}, None,
                      f"isasim still running after {wall_budget_s} s (hang)")
    except (Exception, MemoryError) as e:        # noqa: BLE001 - any other exception is the bug
        import traceback
        tb = traceback.extract_tb(e.__traceback__)[-1]
        out = Outcome("VIOLATION", None, {}, None,
                      f"{type(e).__name__}: {e} (at {tb.filename.split('/')[-1]}:{tb.lineno})")
    out.wall_s = time.perf_counter() - t0
    if sim is not None:
        out.spads = sim.spads
    if not out.violation and out.counters.get("cycles", 0) > max_cycles:
        # a legal but long program: the device, given max_cycles, reports a timeout
        out.detail = (f"{out.status} after {out.counters['cycles']} cycles, beyond the bound "
                      f"{max_cycles}; " + out.detail)
        out.status = "TIMEOUT"
    if side_effects and out.status not in ("VIOLATION", "TIMEOUT", "HALT", "FETCH_RANGE"):
        touched = _fault_side_effects(case, out, wall_budget_s)
        if touched:
            out.detail = f"{touched}; " + out.detail
            out.status = "VIOLATION"
    return out


def _fault_side_effects(case: FuzzCase, out: Outcome, wall_budget_s: float) -> str:
    """Return what the faulting instruction of ``out`` changed ('' if nothing): the state of a
    rerun stopped just before it (``max_instructions``) must equal the state at the fault, as
    faults are found before an instruction touches anything, but for a MATMUL's act-row
    ``SPAD_RANGE``, which leaves its ACC rows undefined (``hw/isa.py``)."""
    from stamen.sw.sim.isasim import IsaSim
    cfg = case.cfg
    mem = case.image.copy()
    sim = IsaSim(cfg)
    try:
        with _wall_limit(wall_budget_s):
            sim.run(mem, case.prog_addr, max_instructions=out.counters["instructions"])
    except TimeoutError:
        pass
    else:
        return "a rerun stopped before the faulting instruction ended otherwise"
    bb = cfg.mem_bus_bytes
    raw = int.from_bytes(mem[out.pc * bb:out.pc * bb + isa.INSTR_BITS // 8].tobytes(), "little")
    skip = {"acc"} if (out.status == "SPAD_RANGE"
                       and isa.opcode_bits(raw) == isa.Opcode.MATMUL.value) else set()
    diffs = []
    if not np.array_equal(mem, out.mem):
        words = np.flatnonzero(mem != out.mem) // bb
        diffs.append(f"memory words {words[0]:#x}..{words[-1]:#x}")
    diffs += [f"{name} spad" for name, arr in sim.spads.items()
              if name not in skip and not np.array_equal(arr, out.spads[name])]
    return ("the faulting instruction changed " + ", ".join(diffs)) if diffs else ""


def check_isasim(case: FuzzCase, max_cycles: int = MAX_CYCLES,
                 wall_budget_s: float = WALL_BUDGET_S) -> Outcome:
    """Run ``case`` and return its outcome; raise ``AssertionError`` naming the seed and the
    replay command on a violation."""
    out = run_isasim(case, max_cycles, wall_budget_s)
    if out.violation:
        raise AssertionError(f"{case}: {out.detail}\nreplay: {case.replay}")
    return out


# -- Verilator ------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """A program's isasim and Verilator outcomes and how they differ (``diffs``: empty when
    they agree on status, fault pc and the device memory read back)."""
    case: FuzzCase
    isasim: Outcome
    status: str
    pc: int | None
    perf: dict
    diffs: list[str]


def _read_ranges(case: FuzzCase) -> list[tuple[int, int]]:
    cfg = case.cfg
    ranges = [(0, case.used_words)]
    if cfg.compress_acts:
        ranges.append((cfg.zero_dir_base, cfg.zero_dir_words))
    return ranges


def _writes_inside(case: FuzzCase, out: Outcome) -> bool:
    """Return whether every byte isasim changed lies in :func:`_read_ranges` (the device model
    clears only those between jobs)."""
    bb = case.cfg.mem_bus_bytes
    changed = np.flatnonzero(out.mem != case.image) // bb
    inside = np.zeros(changed.size, bool)
    for start, count in _read_ranges(case):
        inside |= (changed >= start) & (changed < start + count)
    return bool(inside.all())


def verilator_sample(preset: str, n: int, seed: int = 0, max_used_words: int = 1 << 13,
                     max_cycles: int = 200_000) -> list[tuple[FuzzCase, Outcome]]:
    """Return ``n`` fuzz programs (with :func:`with_prologue`) from seeds ``seed, seed + 1, ...``
    that suit a Verilator run: their data and writes inside ``[0, used_words)`` (at most
    ``max_used_words``) and the zero-row directory, at most ``max_cycles`` isasim cycles, no
    violation. ``--replay SEED --prologue`` reruns one of them."""
    picked, s = [], seed
    while len(picked) < n and s < seed + 50 * n:
        case = make_case(preset, s)
        s += 1
        if case.used_words + 8 * isa.instr_words(case.cfg) > max_used_words:
            continue
        case = with_prologue(case)
        out = run_isasim(case, max_cycles)
        if out.violation or out.counters.get("cycles", 0) > max_cycles or out.mem is None:
            continue
        if not _writes_inside(case, out):
            continue
        picked.append((case, out))
    return picked


def compare_verilator(preset: str, sample: list[tuple[FuzzCase, Outcome]],
                      log=None) -> list[Comparison]:
    """Run ``sample`` (from :func:`verilator_sample`) on the Verilator-simulated device (one
    build per configuration, cached) and compare each with its isasim outcome: status, fault pc,
    and the device memory in :func:`_read_ranges`."""
    from stamen.verif.device_job import Job, run_jobs
    cfg = fuzz_config(preset)
    bb = cfg.mem_bus_bytes
    jobs = [Job(case.image, case.prog_addr, case.used_words, _read_ranges(case),
                max_cycles=4 * out.counters.get("cycles", 0) + 10_000) for case, out in sample]
    results = run_jobs(cfg, jobs, log=log, name="isafuzz")
    comps = []
    for (case, out), res in zip(sample, results):
        diffs = []
        if not res.ran:
            status, pc = "NOT RUN", None
            diffs.append(f"not run (config id {res.config_id:#x})")
        elif res.timeout:
            status, pc = "TIMEOUT", None
            diffs.append(f"device timed out (isasim: {out.status} at "
                         f"{out.counters.get('cycles')} cycles)")
        else:
            status = isa.ErrorCode(res.error).name if res.error else "HALT"
            pc = res.fault_pc if res.error else None
            if status != out.status:
                diffs.append(f"status {status} != isasim {out.status}")
            elif pc != out.pc:
                diffs.append(f"fault pc {pc:#x} != isasim {out.pc:#x}")
            names = list(isa.PERF_COUNTERS)
            if status != "HALT":            # not modelled at a fault (sw/sim/isasim.py)
                names.remove("gated_macs")
                if cfg.zero_skip:
                    names = [n for n in names if n not in ("macs", "skipped_macs")]
            if not diffs:
                ctr_diff = {n: (res.perf[n], out.counters.get(n)) for n in names
                            if res.perf[n] != out.counters.get(n)}
                if ctr_diff:
                    diffs.append(f"counters (device, isasim): {ctr_diff}")
            for (start, count), got in zip(_read_ranges(case), res.reads):
                want = out.mem[start * bb:(start + count) * bb]
                if not np.array_equal(got, want):
                    bad = np.flatnonzero(got != want) // bb + start
                    diffs.append(f"{bad.size} byte(s) differ in words {start:#x}+{count:#x}, "
                                 f"first at word {bad[0]:#x}")
        comps.append(Comparison(case, out, status, pc, dict(res.perf), diffs))
    return comps


# -- the driver ----------------------------------------------------------------------------------
def fuzz(presets: list[str], n: int, seed: int, max_cycles: int = MAX_CYCLES,
         wall_budget_s: float = WALL_BUDGET_S, log=print) -> dict:
    """Run ``n`` programs (seeds ``seed .. seed + n - 1``) on each configuration of ``presets``
    through isasim; return a summary dict (``runs``, ``outcomes`` counters per preset and kind,
    ``violations`` as ``(preset, seed, kind, detail)``) and log each violation as found."""
    outcomes = collections.Counter()
    by_kind = collections.Counter()
    violations = []
    t0 = time.perf_counter()
    slowest = (0.0, None)
    for preset in presets:
        for s in range(seed, seed + n):
            case = make_case(preset, s)
            out = run_isasim(case, max_cycles, wall_budget_s)
            outcomes[(preset, out.status)] += 1
            by_kind[(case.kind, out.status)] += 1
            if out.wall_s > slowest[0]:
                slowest = (out.wall_s, case)
            if out.violation:
                violations.append((preset, s, case.kind, out.detail))
                if log:
                    log(f"VIOLATION {case}: {out.detail}\n  replay: {case.replay}")
    return {"runs": n * len(presets), "outcomes": outcomes, "by_kind": by_kind,
            "violations": violations, "wall_s": time.perf_counter() - t0, "slowest": slowest}


def _print_summary(summary: dict, presets: list[str]) -> None:
    statuses = sorted({s for (_, s) in summary["outcomes"]}, key=lambda s: (s != "HALT", s))
    print(f"programs run: {summary['runs']} in {summary['wall_s']:.1f} s "
          f"(slowest {summary['slowest'][0]:.2f} s: {summary['slowest'][1]})")
    width = max(len(p) for p in presets)
    print(" " * width + "  " + "  ".join(f"{s:>14}" for s in statuses))
    for p in presets:
        print(f"{p:>{width}}  " + "  ".join(f"{summary['outcomes'][(p, s)]:>14}"
                                            for s in statuses))
    for k in KINDS:
        print(f"{k:>{width}}  " + "  ".join(f"{summary['by_kind'][(k, s)]:>14}"
                                            for s in statuses))
    print(f"violations: {len(summary['violations'])}")
    for p, s, kind, detail in summary["violations"]:
        print(f"  preset={p} seed={s} ({kind}): {detail}")


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer from the command line; return the exit status (1 on a violation or a
    Verilator mismatch)."""
    ap = argparse.ArgumentParser(prog="tests/isa_fuzz.py", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small",
                    help=f"configuration, or 'all': {', '.join(FUZZ_CONFIGS)}")
    ap.add_argument("--n", type=int, default=200, help="programs per configuration")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--replay", type=int, default=None, metavar="SEED",
                    help="rerun one program, printing it and its outcome")
    ap.add_argument("--prologue", action="store_true",
                    help="with --replay: the spad-clearing prologue of the Verilator sample")
    ap.add_argument("--max-cycles", type=int, default=MAX_CYCLES)
    ap.add_argument("--wall", type=float, default=WALL_BUDGET_S, help="seconds per program")
    ap.add_argument("--verilator", action="store_true",
                    help="run N programs and the targeted ones on the Verilator-simulated "
                         "device and compare")
    args = ap.parse_args(argv)
    presets = list(FUZZ_CONFIGS) if args.preset == "all" else [args.preset]
    for p in presets:
        fuzz_config(p)
    if args.replay is not None:
        bad = False
        for p in presets:
            case = make_case(p, args.replay)
            if args.prologue:
                case = with_prologue(case)
            print(f"{case}\nprog_addr={case.prog_addr:#x} used_words={case.used_words:#x}")
            print(case.disassemble(), end="")
            out = run_isasim(case, args.max_cycles, args.wall)
            where = f" at pc {out.pc:#x}" if out.pc is not None else ""
            print(f"isasim: {out.status}{where} in {out.wall_s:.3f} s; {out.detail}")
            print(f"counters: {out.counters}")
            bad |= out.violation
        return int(bad)
    if args.verilator:
        bad = 0
        for p in presets:
            sample = verilator_sample(p, args.n, args.seed)
            sample += [(c, run_isasim(c)) for c in map(with_prologue, targeted_cases(p))]
            comps = compare_verilator(p, sample, log=print)
            hist = collections.Counter(c.status for c in comps)
            agree = sum(not c.diffs for c in comps)
            print(f"{p}: {len(comps)} programs on Verilator, {agree} agree with isasim; "
                  f"outcomes {dict(hist)}")
            for c in comps:
                if c.diffs:
                    bad += 1
                    how = ("targeted_cases" if c.case.kind == "targeted"
                           else c.case.replay + " --prologue")
                    print(f"  MISMATCH {c.case}: {'; '.join(c.diffs)}\n  replay: {how}")
        return int(bad > 0)
    summary = fuzz(presets, args.n, args.seed, args.max_cycles, args.wall)
    _print_summary(summary, presets)
    return int(bool(summary["violations"]))


if __name__ == "__main__":
    sys.exit(main())
