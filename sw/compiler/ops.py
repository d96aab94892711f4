"""Graph to ops: the tensors of a QuantizedGraph and its ops as MATMUL terms on the array.

Each op becomes a :class:`LoweredOp`: its output :class:`Tensor` and one :class:`Term` per
operand stream (the input walked by a window, its zero point and the ``R x C`` weight tiles of
each output tile). docs/internals.md ("Lowering a graph") describes the mapping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from .. import golden
from ..errors import CompileError
from ..graph import QOp, QuantizedGraph
from ..program import LayerInfo

__all__ = ["Tensor", "Term", "LoweredOp", "lower_graph", "layer_info", "ceil_div", "M_MAX",
           "K_MAX", "ROWS_MAX", "STRIDE_MAX", "LOOP_MAX", "K_MAX_INT32"]

M_MAX = isa.ARG_RANGES["matmul"]["m"][1]
K_MAX = isa.ARG_RANGES["matmul"]["k_tiles"][1]
ROWS_MAX = isa.ARG_RANGES["dma"]["rows"][1]
STRIDE_MAX = isa.ARG_RANGES["dma"]["dram_stride"][1]
LOOP_MAX = isa.ARG_RANGES["loop"]["m_stride"][1]
#: Q31 multiplier 0.5: ``srdhm(2 v, MAX_MULT) == v`` exactly (max pooling).
HALF_MULT = 1 << 30
#: Largest number of products per output whose worst-case sum of ``(a - zp) * w``
#: (``|a - zp| <= 255``, ``|w| <= 128``) fits int32.
K_MAX_INT32 = golden.INT32_MAX // (255 * 128)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Tensor:
    name: str
    b: int
    h: int
    w: int
    ch: int
    zp: int
    cp: int = 0
    hy: int = 0
    hx: int = 0
    addr: int = 0
    itemsize: int = 1             # 4: the int32 output of a gemm
    compressed: bool = False      # stored and loaded through the zero-row directory

    def pix_words(self, bb: int) -> int:
        return self.cp * self.itemsize // bb

    @property
    def hp(self) -> int:
        return self.h + 2 * self.hy

    @property
    def wp(self) -> int:
        return self.w + 2 * self.hx

    def words(self, bb: int) -> int:
        return self.b * self.hp * self.wp * self.pix_words(bb)

    def layout(self, bb: int) -> dict:
        return {"name": self.name, "addr": self.addr, "shape": [self.b, self.h, self.w, self.ch],
                "cp": self.cp, "halo": [self.hy, self.hx], "zp": self.zp, "itemsize": self.itemsize,
                "words": self.words(bb), "compressed": self.compressed}


@dataclass
class Term:
    """One MATMUL operand stream of an op: an input tensor walked by a window."""
    src: Tensor
    zp: int                       # MATMUL zero point
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    chunks: dict                  # nt -> list of input chunk indices
    tiles: dict                   # nt -> int8 (len(chunks), taps, R, C) weight tiles
    repeat: bool = False          # wt_repeat: one tile per chunk for every tap
    acc_max: bool = False
    w_addr: dict = field(default_factory=dict)     # nt -> word address of its packed tiles


@dataclass
class LoweredOp:
    q: QOp
    out: Tensor
    terms: list[Term]
    params: np.ndarray | None     # (NT, 3, C) int32 bias / mult / shift rows; None: raw int32
    zp_out: int
    relu: bool
    p_addr: int = 0
    plan: object = None           # the codegen.Plan chosen for it

    @property
    def batch_rows(self) -> bool:
        """A 1x1 output: the MATMUL rows walk images, not pixels."""
        return self.out.h == 1 and self.out.w == 1


def _diag_tiles(cfg, chunks_of, nt_count, taps, value):
    """Return ``{nt: (len(chunks), taps, R, C)}`` tiles with ``value`` where input channel
    ``chunk*R + r`` equals output channel ``nt*C + c``."""
    R, C = cfg.rows, cfg.cols
    out = {}
    for nt in range(nt_count):
        chunks = chunks_of[nt]
        t = np.zeros((len(chunks), taps, R, C), np.int8)
        for j, cc in enumerate(chunks):
            ci = cc * R + np.arange(R)[:, None]
            co = nt * C + np.arange(C)[None, :]
            t[j, :] = np.where(ci == co, value, 0).astype(np.int8)
        out[nt] = t
    return out


def _diag_chunks(cfg, nt_count, cp_in):
    R, C = cfg.rows, cfg.cols
    return {nt: list(range((nt * C) // R, min(ceil_div((nt + 1) * C, R), cp_in // R)))
            for nt in range(nt_count)}


def _conv_tiles(cfg, q: QOp, cp_in: int, nt_count: int):
    """Return the chunks each output tile reads and its weight tiles (see the module docstring)."""
    R, C = cfg.rows, cfg.cols
    kh, kw, cg, cout = q.w.shape
    og = cout // q.groups
    chunks_of, tiles = {}, {}
    for nt in range(nt_count):
        co = np.arange(nt * C, (nt + 1) * C)
        real = co[co < cout]
        if real.size == 0:
            chunks_of[nt] = [0]
            tiles[nt] = np.zeros((1, kh * kw, R, C), np.int8)
            continue
        g_lo, g_hi = real[0] // og, real[-1] // og
        lo, hi = g_lo * cg, (g_hi + 1) * cg                        # input channels read
        chunks = list(range(lo // R, ceil_div(hi, R)))
        t = np.zeros((len(chunks), kh, kw, R, C), np.int8)
        for j, cc in enumerate(chunks):
            ci = cc * R + np.arange(R)
            for c, o in enumerate(real):
                g = o // og
                sel = (ci >= g * cg) & (ci < (g + 1) * cg)
                if sel.any():
                    t[j, :, :, sel, c] = q.w[:, :, ci[sel] - g * cg, o].transpose(2, 0, 1)
        chunks_of[nt] = chunks
        tiles[nt] = t.reshape(len(chunks), kh * kw, R, C)
    return chunks_of, tiles


def _params(cfg, q: QOp, nt_count: int, bias, mult, shift) -> np.ndarray:
    C = cfg.cols
    n = q.out_shape[2]
    p = np.zeros((nt_count, 3, C), np.int64)
    for row, v in enumerate((bias, mult, shift)):
        vp = np.zeros(nt_count * C, np.int64)
        vp[:n] = np.broadcast_to(np.asarray(v, np.int64), (n,))
        p[:, row, :] = vp.reshape(nt_count, C)
    return p.astype(np.int32)


def _check_int(name: str, what: str, v, lo: int, hi: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: {what} must be an integer, not {v!r}")
    if not lo <= int(v) <= hi:
        raise CompileError(f"{name}: {what} must be in [{lo}, {hi}], not {v!r}")
    return int(v)


def _check_params(name: str, q: QOp, n: int) -> None:
    """Check (and normalise to int32) a conv's per-channel bias / mult / shift."""
    for pname, lo, hi in (("bias", golden.INT32_MIN, golden.INT32_MAX),
                          ("mult", 0, golden.INT32_MAX), ("shift", 0, isa.REQUANT_MAX_SHIFT)):
        v = np.asarray(getattr(q, pname))
        if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
            raise CompileError(f"{name}: {pname} must be an integer array of shape ({n},), not "
                               f"{v.dtype} {v.shape}")
        if v.size and (v.min() < lo or v.max() > hi):
            rule = (f"in [{lo}, {hi}] (a requant scale >= 1 cannot be represented)"
                    if pname != "bias" else f"in [{lo}, {hi}]")
            raise CompileError(f"{name}: every {pname} must be {rule}, not [{v.min()}, "
                               f"{v.max()}]")
        setattr(q, pname, v.astype(np.int32))


def _check_qop(q: QOp, src: list[Tensor]) -> None:
    name = f"{q.name} ({q.torch_op})" if q.torch_op else q.name
    if q.kind not in ("conv", "maxpool", "avgpool", "add", "gemm"):
        raise CompileError(f"{name}: op kind must be conv, maxpool, avgpool, add or gemm, not "
                           f"{q.kind!r}")
    for i, zp in enumerate(q.zp_in):
        _check_int(name, "input zero point", zp, -128, 127)
    if q.kind != "gemm":
        _check_int(name, "output zero point", q.zp_out, -128, 127)
    if q.kind == "add":
        a, b = src
        if (a.h, a.w, a.ch) != (b.h, b.w, b.ch):
            raise CompileError(f"{name}: add inputs must have equal shapes, not "
                               f"{(a.h, a.w, a.ch)} and {(b.h, b.w, b.ch)}")
    else:
        x = src[0]
        kh, kw = q.kernel
        (sh, sw), (ph, pw) = q.stride, q.padding
        if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or ph >= kh or pw >= kw:
            raise CompileError(f"{name}: kernel {q.kernel}, stride {q.stride} and padding "
                               f"{q.padding} must be >= 1, >= 1 and below the kernel")
        oh = golden.conv_out_size(x.h, kh, sh, ph)
        ow = golden.conv_out_size(x.w, kw, sw, pw)
        if (oh, ow) != tuple(q.out_shape[:2]):
            raise CompileError(f"{name}: output {q.out_shape[:2]} does not match a {kh}x{kw} "
                               f"window with stride {q.stride} and padding {q.padding} over "
                               f"{x.h}x{x.w} (expected {oh}x{ow})")
        if q.kind == "maxpool" and (ph or pw) and x.zp != -128:
            raise CompileError(f"{name}: a padded max pool needs an input with zero point -128 "
                               f"(a non-negative tensor, e.g. after ReLU), not {x.zp}")
    if q.kind in ("conv", "gemm"):
        w = q.w
        if not isinstance(w, np.ndarray) or w.dtype != np.int8:
            raise TypeError(f"{name}: weights must be an int8 numpy array, not "
                            f"{getattr(w, 'dtype', type(w).__name__)}")
        if w.ndim != 4 or min(w.shape) < 1:
            raise CompileError(f"{name}: weights must have shape (KH, KW, Cin/groups, Cout) with "
                               f"every size >= 1, not {w.shape}")
        kh, kw, cg, cout = w.shape
        if (kh, kw) != tuple(q.kernel) or cg * q.groups != src[0].ch or cout != q.out_shape[2]:
            raise CompileError(f"{name}: weights {w.shape} do not match kernel {q.kernel}, "
                               f"{src[0].ch} input channels in {q.groups} groups and "
                               f"{q.out_shape[2]} outputs")
        if kh * kw * cg > K_MAX_INT32:
            raise CompileError(f"{name}: K={kh * kw * cg} products per output is too many for "
                               f"int32 accumulation (at most {K_MAX_INT32} products of 9-bit by "
                               f"8-bit operands)")
        if q.kind == "conv":
            _check_params(name, q, cout)


def lower_graph(graph: QuantizedGraph, cfg: AccelConfig, batch: int):
    R, C = cfg.rows, cfg.cols
    L = math.lcm(R, C)
    h, w, ch = graph.input_shape
    tensors = {"input": Tensor("input", batch, h, w, ch, graph.input_zp)}
    ops = []
    for q in graph.ops:
        src = [tensors[t] for t in q.inputs]
        _check_qop(q, src)
        oh, ow, oc = q.out_shape
        out = Tensor(q.name, batch, oh, ow, oc, q.zp_out)
        tensors[q.name] = out
        cp_in = ceil_div(src[0].ch, L) * L
        nt_count = ceil_div(oc, L) * L // C
        if q.kind in ("conv", "gemm"):
            chunks, tiles = _conv_tiles(cfg, q, cp_in, nt_count)
            terms = [Term(src[0], q.zp_in[0], q.kernel, q.stride, q.padding, chunks, tiles)]
            params = (_params(cfg, q, nt_count, q.bias, q.mult, q.shift) if q.kind == "conv"
                      else None)
            if q.kind == "gemm":
                out.itemsize = 4
        elif q.kind in ("maxpool", "avgpool"):
            mx = q.kind == "maxpool"
            chunks = _diag_chunks(cfg, nt_count, cp_in)
            tiles = _diag_tiles(cfg, chunks, nt_count, 1, 2 if mx else golden.AVGPOOL_GAIN)
            terms = [Term(src[0], -128 if mx else q.zp_in[0], q.kernel, q.stride, q.padding,
                           chunks, tiles, repeat=True, acc_max=mx)]
            params = (_params(cfg, q, nt_count, 0, HALF_MULT, 0) if mx else
                      _params(cfg, q, nt_count, 0, q.mult, q.shift))
        else:
            terms = []
            for x, zp, wv in zip(src, q.zp_in, q.add_w):
                chunks = _diag_chunks(cfg, nt_count, cp_in)
                terms.append(Term(x, zp, (1, 1), (1, 1), (0, 0), chunks,
                                   _diag_tiles(cfg, chunks, nt_count, 1, wv)))
            params = _params(cfg, q, nt_count, 0, q.mult, q.shift)
        for t in terms:
            t.src.hy = max(t.src.hy, t.pad[0])
            t.src.hx = max(t.src.hx, t.pad[1])
        mx = q.kind == "maxpool"
        ops.append(LoweredOp(q, out, terms, params, -128 if mx else q.zp_out,
                       bool(q.relu) and not mx))
    for t in tensors.values():
        t.cp = ceil_div(t.ch, L) * L
    return tensors, ops



def layer_info(op: LoweredOp, batch: int) -> LayerInfo:
    q = op.q
    x = op.terms[0].src
    oh, ow, oc = q.out_shape
    if q.kind in ("conv", "gemm"):
        kh, kw, cg, _ = q.w.shape
        k = kh * kw * cg
    elif q.kind == "add":
        k = 2
    else:
        k = q.kernel[0] * q.kernel[1]
    desc = f"{x.h}x{x.w}x{x.ch}->{oh}x{ow}x{oc}"
    if q.kind != "add":
        desc += f" k{q.kernel[0]}x{q.kernel[1]}s{q.stride[0]}"
        if q.groups > 1:
            desc += f"g{q.groups}"
    if (x.h, x.w) == (1, 1) and q.kind in ("conv", "gemm"):
        desc = ""                           # a GEMM-shaped layer: the report shows M x K x N
    kind = "linear" if q.kind == "conv" and q.extra.get("linear") else q.kind
    srcs = {t.src.name: t.src for t in op.terms}           # add(x, x) reads x once
    in_bytes = sum(x.b * x.h * x.w * x.ch for x in srcs.values())
    w_bytes = q.w.size if q.w is not None else 0
    min_bytes = in_bytes + w_bytes + batch * oh * ow * oc
    return LayerInfo(name=q.name, kind=kind, m=batch * oh * ow, k=k, n=oc,
                     macs=op.q.macs_per_image * batch, desc=desc, min_dram_bytes=min_bytes)


