"""Graph compiler: lowers a :class:`~sw.graph.QuantizedGraph` (convolutions, pooling, residual
adds, Linear layers) onto the array as one program, with no host round trips between layers.

Device-memory layout (word addresses; ``R, C = cfg.rows, cfg.cols``, ``L = lcm(R, C)``)::

    0            perf area: (len(ops) + 1) PERF snapshots
    const_addr   per op: weight tiles, requant params
    tensors      every tensor, NHWC per image with a halo and padded channels (below)
    prog_addr    the instruction stream (ends with HALT)

Tensors. A tensor of ``B`` images of ``H x W x Ch`` is stored as ``[B][Hp][Wp][Cp]`` int8 with
``Hp = H + 2*hy``, ``Wp = W + 2*hx`` (the halo is the largest padding its consumers use) and
``Cp = ceil(Ch / L) * L``. The halo and the padding channels hold the tensor's zero point (the real
zero) and are written once, in the memory image; producers store only the interior. So a
convolution's padding is read from memory like any other pixel and the DMA never forms patches.

Ops. Every op is MATMULs into ACC, then one REQUANT to OUT and STOREs of the interior rows:

* ``conv``: for an output tile of ``C`` channels ``n0..n0+C-1`` and a band of ``OHt`` output rows,
  each needed input chunk of ``R`` channels is loaded once as ``BH = (OHt-1)*sh + KH`` whole padded
  rows (one LOAD of ``BH * Wp`` act rows: act spad layout ``[chunk][y][x]``), and one MATMUL walks
  the windows: ``LOOP`` sets the tile levels to kernel column (stride 1), kernel row (stride
  ``Wp``) and chunk (stride ``BH * Wp``) and the row levels to output column (stride ``sw``) and
  output row (stride ``sh * Wp``). Weight tiles are ``[chunk][ky][kx]`` ``R x C`` tiles, packed
  per output tile in device memory, so a group of chunks is one contiguous LOAD. A grouped or
  depthwise convolution uses only the chunks its output channels read, with block-diagonal tiles.
  A convolution whose output is ``1 x 1`` (a Linear layer) runs all images of the batch in one
  MATMUL: the row level walks images instead of pixels.
* ``avgpool``: a depthwise convolution with diagonal weight ``golden.AVGPOOL_GAIN`` (``wt_repeat``:
  one tile for every tap), requantized by ``1 / (KH * KW * AVGPOOL_GAIN)``.
* ``maxpool``: the same walk with diagonal weight 2, ``zp = -128`` (every operand is
  ``a + 128 >= 0``) and ``acc_max``; REQUANT with multiplier ``2**30`` and ``zp_out = -128``
  returns the maximum exactly. Padding needs a halo of -128, i.e. an input zero point of -128.
* ``add``: two MATMULs with diagonal weights ``w1``, ``w2`` and the two zero points, accumulated.

Tiling per op: output tiles (``C`` channels), bands of ``OHt`` output rows (or groups of images for
``1 x 1`` outputs) and groups of input chunks, with ``m = OHt * OW`` within ACC and OUT and the
band and weights within the act and weight scratchpads. The scratchpads act as direct-mapped
caches of act bands, weight groups and param rows, so resident data is not reloaded. The compiler
tries band-outer and channel-outer loop orders over candidate tile sizes and keeps the plan with
the fewest estimated cycles (the ISA simulator's cycle model).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from .. import golden
from ..errors import CompileError
from ..graph import QOp, QuantizedGraph
from ..sim.cycles import estimate_cycles
from ..program import LayerInfo, Program

__all__ = ["compile_graph"]

_OP = isa.Opcode
_SP = isa.Spad
_M_MAX = isa.ARG_RANGES["matmul"]["m"][1]
_K_MAX = isa.ARG_RANGES["matmul"]["k_tiles"][1]
_ROWS_MAX = isa.ARG_RANGES["dma"]["rows"][1]
_STRIDE_MAX = isa.ARG_RANGES["dma"]["dram_stride"][1]
_LOOP_MAX = isa.ARG_RANGES["loop"]["m_stride"][1]
#: Q31 multiplier 0.5: ``srdhm(2 v, MAX_MULT) == v`` exactly (max pooling).
_HALF_MULT = 1 << 30
#: Largest number of products per output whose worst-case sum of ``(a - zp) * w``
#: (``|a - zp| <= 255``, ``|w| <= 128``) fits int32.
K_MAX_INT32 = golden.INT32_MAX // (255 * 128)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=1 << 16)
def _encode(op: isa.Opcode, items: tuple) -> int:
    return isa.encode(op, **dict(items))


@dataclass
class _Tensor:
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
class _Term:
    """One MATMUL operand stream of an op: an input tensor walked by a window."""
    src: _Tensor
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
class _Op:
    q: QOp
    out: _Tensor
    terms: list[_Term]
    params: np.ndarray | None     # (NT, 3, C) int32 bias / mult / shift rows; None: raw int32
    zp_out: int
    relu: bool
    p_addr: int = 0
    plan: dict = field(default_factory=dict)

    @property
    def batch_rows(self) -> bool:
        """A 1x1 output: the MATMUL rows walk images, not pixels."""
        return self.out.h == 1 and self.out.w == 1


# -- graph to ops ----------------------------------------------------------------------------------
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
    return {nt: list(range((nt * C) // R, min(_ceil((nt + 1) * C, R), cp_in // R)))
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
        chunks = list(range(lo // R, _ceil(hi, R)))
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


def _check_qop(q: QOp, src: list[_Tensor]) -> None:
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


def _lower(graph: QuantizedGraph, cfg: AccelConfig, batch: int):
    R, C = cfg.rows, cfg.cols
    L = math.lcm(R, C)
    h, w, ch = graph.input_shape
    tensors = {"input": _Tensor("input", batch, h, w, ch, graph.input_zp)}
    ops = []
    for q in graph.ops:
        src = [tensors[t] for t in q.inputs]
        _check_qop(q, src)
        oh, ow, oc = q.out_shape
        out = _Tensor(q.name, batch, oh, ow, oc, q.zp_out)
        tensors[q.name] = out
        cp_in = _ceil(src[0].ch, L) * L
        nt_count = _ceil(oc, L) * L // C
        if q.kind in ("conv", "gemm"):
            chunks, tiles = _conv_tiles(cfg, q, cp_in, nt_count)
            terms = [_Term(src[0], q.zp_in[0], q.kernel, q.stride, q.padding, chunks, tiles)]
            params = (_params(cfg, q, nt_count, q.bias, q.mult, q.shift) if q.kind == "conv"
                      else None)
            if q.kind == "gemm":
                out.itemsize = 4
        elif q.kind in ("maxpool", "avgpool"):
            mx = q.kind == "maxpool"
            chunks = _diag_chunks(cfg, nt_count, cp_in)
            tiles = _diag_tiles(cfg, chunks, nt_count, 1, 2 if mx else golden.AVGPOOL_GAIN)
            terms = [_Term(src[0], -128 if mx else q.zp_in[0], q.kernel, q.stride, q.padding,
                           chunks, tiles, repeat=True, acc_max=mx)]
            params = (_params(cfg, q, nt_count, 0, _HALF_MULT, 0) if mx else
                      _params(cfg, q, nt_count, 0, q.mult, q.shift))
        else:
            terms = []
            for x, zp, wv in zip(src, q.zp_in, q.add_w):
                chunks = _diag_chunks(cfg, nt_count, cp_in)
                terms.append(_Term(x, zp, (1, 1), (1, 1), (0, 0), chunks,
                                   _diag_tiles(cfg, chunks, nt_count, 1, wv)))
            params = _params(cfg, q, nt_count, 0, q.mult, q.shift)
        for t in terms:
            t.src.hy = max(t.src.hy, t.pad[0])
            t.src.hx = max(t.src.hx, t.pad[1])
        mx = q.kind == "maxpool"
        ops.append(_Op(q, out, terms, params, -128 if mx else q.zp_out,
                       bool(q.relu) and not mx))
    for t in tensors.values():
        t.cp = _ceil(t.ch, L) * L
    return tensors, ops


# -- code generation -------------------------------------------------------------------------------
def _tiles_of(op: _Op, cfg: AccelConfig, oht: int, nbt: int):
    """Return the output tiles ``(b0, nb, oy0, rows)`` of an op: bands of ``oht`` output rows per
    image, or groups of ``nbt`` images for a 1x1 output."""
    o = op.out
    if op.batch_rows:
        return [(b0, min(nbt, o.b - b0), 0, 1) for b0 in range(0, o.b, nbt)]
    return [(b, 1, y0, min(oht, o.h - y0)) for b in range(o.b) for y0 in range(0, o.h, oht)]


def _gen_op(op: _Op, cfg: AccelConfig, plan: dict, state: dict):
    """Yield ``(opcode, operands)`` of one op under ``plan`` (see the module docstring);
    ``state`` carries the LOOP registers and the scratchpad caches across ops."""
    R, C, bb = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    o = op.out
    nt_count = len(op.terms[0].tiles)
    ow = o.w
    tiles = _tiles_of(op, cfg, plan["oht"], plan["nbt"])
    cgc = plan["cg"]                                 # input chunks per MATMUL (non-repeat)
    act_cache, wt_cache, par_cache = state["act"], state["wt"], state["param"]
    act_slot_rows, wt_slot_rows = plan["act_slot"], plan["wt_slot"]
    act_slots = cfg.act_spad_depth // act_slot_rows
    wt_slots = cfg.wt_spad_depth // wt_slot_rows
    par_slots = cfg.param_spad_depth // 3
    prow_words = cfg.spad_row_words("param")
    out_pix = o.pix_words(bb)
    order = ([(t, nt) for t in tiles for nt in range(nt_count)] if plan["order"] == "band"
             else [(t, nt) for nt in range(nt_count) for t in tiles])
    for (b0, nb, oy0, oht), nt in order:
        first = True
        m = nb if op.batch_rows else oht * ow
        for ti, term in enumerate(op.terms):
            x = term.src
            (kh, kw), (sh, sw), (ph, pw) = term.kernel, term.stride, term.pad
            pix = x.cp // bb
            if op.batch_rows:
                rows_per_chunk = nb * x.hp * x.wp
                y0 = 0
                loop = dict(k_wrap0=kw, k_wrap1=kh, k_stride1=x.wp, k_stride2=rows_per_chunk,
                            m_wrap=0, m_stride=x.hp * x.wp, m_stride1=0)
            else:
                bh = (oht - 1) * sh + kh
                rows_per_chunk = bh * x.wp
                y0 = oy0 * sh + x.hy - ph
                loop = dict(k_wrap0=kw, k_wrap1=kh, k_stride1=x.wp, k_stride2=rows_per_chunk,
                            m_wrap=ow, m_stride=sw, m_stride1=sh * x.wp)
            chunks = term.chunks[nt]
            step = 1 if term.repeat else cgc
            for j0 in range(0, len(chunks), step):
                grp = chunks[j0:j0 + step]
                # activations: one LOAD per chunk of the band
                akey = (x.name, b0, y0, rows_per_chunk, tuple(grp))
                abase, hit = act_cache.fetch(akey, act_slot_rows, act_slots)
                if not hit:
                    for j, cc in enumerate(grp):
                        yield _OP.LOAD, (("spad", _SP.ACT), ("spad_addr", abase + j * rows_per_chunk),
                                         ("rows", rows_per_chunk),
                                         ("dram_addr", x.addr + ((b0 * x.hp + y0) * x.wp) * pix
                                          + cc * R // bb),
                                         ("dram_stride", pix), *_compress(x))
                # weights: the group's tiles are contiguous
                taps = 1 if term.repeat else kh * kw
                wkey = (o.name, ti, nt, j0, len(grp))
                wbase, hit = wt_cache.fetch(wkey, wt_slot_rows, wt_slots)
                if not hit:
                    yield _OP.LOAD, (("spad", _SP.WT), ("spad_addr", wbase),
                                     ("rows", len(grp) * taps * R),
                                     ("dram_addr", term.w_addr[nt] + j0 * taps * R * C // bb),
                                     ("dram_stride", C // bb))
                if state["loop"] != loop:
                    state["loop"] = loop
                    yield _OP.LOOP, tuple(loop.items())
                yield _OP.MATMUL, (("act_addr", abase + x.hx - pw), ("wt_addr", wbase),
                                   ("acc_addr", 0), ("m", m), ("k_tiles", len(grp) * kh * kw),
                                   ("act_stride", 1), ("zp", term.zp),
                                   ("accumulate", int(not first)),
                                   ("acc_max", int(term.acc_max)),
                                   ("wt_repeat", int(term.repeat)))
                first = False
        if op.params is None:
            spad = _SP.ACC                   # raw int32 accumulators
        else:
            spad = _SP.OUT
            pkey = (o.name, nt)
            pbase, hit = par_cache.fetch(pkey, 3, par_slots)
            if not hit:
                yield _OP.LOAD, (("spad", _SP.PARAM), ("spad_addr", pbase), ("rows", 3),
                                 ("dram_addr", op.p_addr + 3 * nt * prow_words),
                                 ("dram_stride", prow_words))
            yield _OP.REQUANT, (("acc_addr", 0), ("out_addr", 0), ("param_addr", pbase),
                                ("rows", m), ("zp_out", op.zp_out), ("relu", int(op.relu)))
        ch_off = nt * C * o.itemsize // bb
        if op.batch_rows:
            yield _OP.STORE, (("spad", spad), ("spad_addr", 0), ("rows", nb),
                              ("dram_addr", o.addr + ((b0 * o.hp + o.hy) * o.wp + o.hx) * out_pix
                               + ch_off),
                              ("dram_stride", o.hp * o.wp * out_pix), *_compress(o))
        elif o.hx == 0:
            yield _OP.STORE, (("spad", spad), ("spad_addr", 0), ("rows", m),
                              ("dram_addr", o.addr + ((b0 * o.hp + o.hy + oy0) * o.wp) * out_pix
                               + ch_off),
                              ("dram_stride", out_pix), *_compress(o))
        else:
            for r in range(oht):
                yield _OP.STORE, (("spad", spad), ("spad_addr", r * ow), ("rows", ow),
                                  ("dram_addr", o.addr + ((b0 * o.hp + o.hy + oy0 + r) * o.wp
                                                          + o.hx) * out_pix + ch_off),
                                  ("dram_stride", out_pix), *_compress(o))


def _compress(t: _Tensor) -> tuple:
    """The LOAD / STORE fields that move ``t``'s act rows through the zero-row directory
    (``cfg.compress_acts``): rows equal to its zero point cost no data words."""
    return (("compress", 1), ("zp", t.zp)) if t.compressed else ()


class _SpadCache:
    """What each region of one scratchpad holds, across ops: ``key -> (base, rows)``.

    An op uses the scratchpad as a direct-mapped cache of equal slots, but slot sizes differ
    between ops, so a hit is looked up by key (wherever it was loaded) and a new load evicts
    every region it overlaps."""

    def __init__(self):
        self.regions: dict = {}
        self.next_slot = 0

    def copy(self) -> "_SpadCache":
        c = _SpadCache()
        c.regions, c.next_slot = dict(self.regions), self.next_slot
        return c

    def find(self, key) -> int | None:
        """Return the base row where ``key`` is resident, or None."""
        hit = self.regions.get(key)
        return None if hit is None else hit[0]

    def place(self, key, slot_rows: int, slots: int) -> int:
        """Return the base row of the next slot (round robin) for ``key``, now resident there."""
        s = self.next_slot % slots
        self.next_slot = s + 1
        base = s * slot_rows
        self.regions = {k: (b, n) for k, (b, n) in self.regions.items()
                        if b + n <= base or b >= base + slot_rows}
        self.regions[key] = (base, slot_rows)
        return base

    def fetch(self, key, slot_rows: int, slots: int) -> tuple[int, bool]:
        """Return ``(base, hit)``: where ``key`` lives, and whether it is already loaded."""
        base = self.find(key)
        if base is not None:
            return base, True
        return self.place(key, slot_rows, slots), False


def _instrs_cost(cfg: AccelConfig, instrs: list, loop: dict) -> int:
    """Return the estimated cycles of ``instrs`` (``sim.cycles.estimate_cycles``), starting
    under LOOP state ``loop``."""
    cost = 0
    for op, ops in instrs:
        args = dict(ops)
        if op == _OP.LOOP:
            loop = args
        cost += estimate_cycles(cfg, op, args, loop)
    return cost


def _plans(op: _Op, cfg: AccelConfig) -> list[dict]:
    """Return the candidate plans of an op that fit the scratchpads and ISA fields."""
    R = cfg.rows
    o = op.out
    cap = min(cfg.acc_spad_depth, _M_MAX)
    if op.params is not None:
        cap = min(cap, cfg.out_spad_depth)
    if op.batch_rows:
        shapes = sorted({min(o.b, cap, _ceil(o.b, d)) for d in (1, 2, 4, 8, 16)}, reverse=True)
        bands = [(1, nbt) for nbt in shapes]
    else:
        hmax = max(1, min(o.h, cap // o.w))
        bands = [(oht, 1) for oht in sorted({max(1, _ceil(o.h, d)) for d in range(1, 9)}
                                            | {hmax}, reverse=True) if oht <= hmax]
        if o.w > cap:
            raise CompileError(f"{op.q.name}: an output row of {o.w} pixels exceeds the ACC/OUT "
                               f"scratchpads ({cap} rows)")
    plans = []
    for oht, nbt in bands:
        for t in op.terms:
            x = t.src
            if max(x.wp, t.kernel[0] * x.wp) > _LOOP_MAX:
                raise CompileError(f"{op.q.name}: an input row of {x.wp} pixels exceeds the "
                                   f"address generator's strides ({_LOOP_MAX})")
        # rows per chunk of each term, and the largest group of chunks that fits
        need = []
        for t in op.terms:
            x = t.src
            rpc = (nbt * x.hp * x.wp if op.batch_rows
                   else ((oht - 1) * t.stride[0] + t.kernel[0]) * x.wp)
            need.append(rpc)
        max_rpc = max(need)
        if max_rpc > min(cfg.act_spad_depth, _ROWS_MAX, _LOOP_MAX):
            continue
        max_chunks = max(len(c) for t in op.terms for c in t.chunks.values())
        taps_max = max((1 if t.repeat else t.kernel[0] * t.kernel[1]) for t in op.terms)
        kk = max(t.kernel[0] * t.kernel[1] for t in op.terms)
        cg_fit = min(max_chunks, cfg.act_spad_depth // max_rpc,
                     cfg.wt_spad_depth // (taps_max * R), _K_MAX // kk,
                     _ROWS_MAX // (taps_max * R))
        if cg_fit < 1:
            continue
        for cg in sorted({cg_fit, _ceil(cg_fit, 2)}):
            # a repeat term loads one chunk at a time
            act_slot = max(max_rpc * (1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values())))
                           for t in op.terms)
            wt_slot = max((1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values()))) *
                          (1 if t.repeat else t.kernel[0] * t.kernel[1]) * R for t in op.terms)
            for order in ("band", "channel"):
                plans.append({"oht": oht, "nbt": nbt, "cg": cg, "order": order,
                              "act_slot": act_slot, "wt_slot": wt_slot})
    if not plans:
        raise CompileError(f"{op.q.name}: no tiling fits the scratchpads (act "
                           f"{cfg.act_spad_depth}, wt {cfg.wt_spad_depth}, acc "
                           f"{cfg.acc_spad_depth}, out {cfg.out_spad_depth} rows): one output "
                           f"row needs {max(t.kernel[0] * t.src.wp for t in op.terms)} act rows "
                           f"per input chunk")
    return plans


def _fresh_state() -> dict:
    return {"loop": dict(isa.LOOP_RESET), "act": _SpadCache(), "wt": _SpadCache(),
            "param": _SpadCache()}


def _copy_state(state: dict) -> dict:
    return {"loop": dict(state["loop"]), "act": state["act"].copy(), "wt": state["wt"].copy(),
            "param": state["param"].copy()}


def _choose(op: _Op, cfg: AccelConfig, state: dict, small_code: bool) -> tuple[dict, list]:
    """Return the plan with the fewest estimated cycles (``small_code``: the fewest
    instructions) and its instructions; advance ``state`` past it."""
    best = None
    for plan in _plans(op, cfg):
        st = _copy_state(state)
        instrs = list(_gen_op(op, cfg, plan, st))
        cost = _instrs_cost(cfg, instrs, state["loop"])
        key = (len(instrs), cost) if small_code else (cost, len(instrs))
        if best is None or key < best[0]:
            best = (key, plan, instrs, st, cost)
    _, plan, instrs, st, cost = best
    state.clear()
    state.update(st)
    return {**plan, "est_cycles": cost, "n_instr": len(instrs)}, instrs


def _layer_info(op: _Op, batch: int) -> LayerInfo:
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


def compile_graph(graph: QuantizedGraph, cfg: AccelConfig, batch: int = 1) -> Program:
    """Compile a quantized graph for ``batch`` images into one program.

    The program's input is int8 NHWC ``(batch, H, W, C)`` (``graph.quantize_input``) and its output
    int8 NHWC ``(batch, OH, OW, OC)`` (int32 for a ``gemm`` output). A graph whose input is
    ``1 x 1 x C`` (an MLP) takes ``(batch, C)`` and, with a ``1 x 1`` output, gives
    ``(batch, OC)``. Each op's plan is the one with the fewest estimated cycles; when the code
    would not fit the device memory, the ones with the fewest instructions.

    Raises
    ------
    CompileError
        Naming the op and the limit (scratchpads, address generator, device memory) or an
        unsupported arrangement.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Compiler config must be an AccelConfig, not {cfg!r}")
    if not isinstance(graph, QuantizedGraph):
        raise TypeError(f"compile_graph needs a QuantizedGraph, not {type(graph).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise CompileError(f"Batch size must be a positive integer, not {batch!r}")
    batch = int(batch)
    R, C, bb = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    tensors, ops = _lower(graph, cfg, batch)
    if cfg.compress_acts:
        # The int8 activations go through the zero-row directory: the input's bits and the
        # other tensors' halo bits are set with the memory image (Program.memory_image), the
        # rows an op writes by its compressed STOREs (from OUT) before any compressed LOAD reads
        # them. The output (read by the host) and raw int32 outputs stay plain.
        tensors["input"].compressed = graph.output != "input"
        for op in ops:
            if op.params is not None and op.out.name != graph.output:
                op.out.compressed = True
    mem_words = cfg.zero_dir_base               # below the zero-row directory, if any

    # -- layout: perf, constants, tensors
    pw = isa.perf_words(cfg)
    perf_addr = 0
    addr = perf_addr + (len(ops) + 1) * pw
    const_addr = addr
    chunks = []
    for op in ops:
        for t in op.terms:
            for nt, tiles in t.tiles.items():
                blob = np.ascontiguousarray(tiles).reshape(-1).view(np.uint8)
                t.w_addr[nt] = addr
                chunks.append(blob)
                addr += blob.size // bb
        if op.params is not None:
            op.p_addr = addr
            blob = np.ascontiguousarray(op.params).reshape(-1).view(np.uint8)
            chunks.append(blob)
            addr += blob.size // bb
    const = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    for t in tensors.values():
        if t.compressed:                        # its rows start on directory slots
            addr = _ceil(addr, cfg.zero_row_words) * cfg.zero_row_words
        t.addr = addr
        addr += t.words(bb)
        if t.pix_words(bb) > _STRIDE_MAX:
            raise CompileError(f"{t.name}: a pixel of {t.cp} padded channels exceeds the "
                               f"largest DMA stride ({_STRIDE_MAX} words of {bb} bytes)")
    if addr > mem_words:
        raise CompileError(f"Program data needs {addr} words of device memory (weights, params "
                           f"and {len(tensors)} tensors for batch {batch}) but the device has "
                           f"{mem_words} ({cfg.name})")

    # -- plan and emit
    prog_addr = addr
    for small_code in (False, True):
        state = _fresh_state()
        words = [_encode(_OP.PERF, (("dram_addr", perf_addr),))]
        est = estimate_cycles(cfg, _OP.PERF, {}, {})
        for i, op in enumerate(ops):
            op.plan, instrs = _choose(op, cfg, state, small_code)
            est += op.plan["est_cycles"]
            words.extend(_encode(o, a) for o, a in instrs)
            words.append(_encode(_OP.PERF, (("dram_addr", perf_addr + (i + 1) * pw),)))
            est += estimate_cycles(cfg, _OP.PERF, {}, {})
        words.append(_encode(_OP.HALT, ()))
        est += estimate_cycles(cfg, _OP.HALT, {}, {})
        used = prog_addr + len(words) * isa.instr_words(cfg)
        if used <= mem_words:
            break
    if used > mem_words:
        raise CompileError(f"Program needs {used} words of device memory (code "
                           f"{len(words) * isa.instr_words(cfg)}, data {prog_addr}) but the "
                           f"device has {mem_words} ({cfg.name})")
    out = tensors[graph.output]
    in_shape, out_shape = [batch, *graph.input_shape], [batch, *graph.output_shape]
    if graph.input_shape[:2] == (1, 1):                 # MLP style: 2-D rows
        in_shape = [batch, graph.input_shape[2]]
        if graph.output_shape[:2] == (1, 1):
            out_shape = [batch, graph.output_shape[2]]
    meta = {
        "prog_addr": prog_addr, "used_words": used, "perf_addr": perf_addr,
        "const_addr": const_addr,
        "input": tensors["input"].layout(bb), "output": out.layout(bb),
        "fills": [t.layout(bb) for t in tensors.values()],
        "input_shape": in_shape, "output_shape": out_shape,
        "output_dtype": "int32" if out.itemsize == 4 else "int8",
        "config_hash": cfg.config_hash, "est_cycles": est,
        "layers": [vars(_layer_info(op, batch)) for op in ops],
        "tensors": [{"name": op.q.name, **{k: v for k, v in op.plan.items()}} for op in ops],
    }
    return Program(cfg, words, meta, const, graph)
