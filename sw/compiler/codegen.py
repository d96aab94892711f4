"""Code generation: the instructions of one op under a :class:`Plan`.

For each output tile and band the act rows and weight tiles are loaded into scratchpad slots
(:class:`SpadCache` keeps what is resident across ops), one MATMUL per group of input chunks walks
the windows under the LOOP registers, and REQUANT and STORE write the band back
(docs/internals.md, "Lowering a graph").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from .ops import LoweredOp, Tensor, Term

__all__ = ["Plan", "SpadCache", "CodegenState", "gen_op", "tiles_of", "encode"]

_OP = isa.Opcode
_SP = isa.Spad


@dataclass(frozen=True)
class Plan:
    """How one op is tiled: ``oht`` output rows per band (``nbt`` images per group for a 1x1
    output) in whole padded rows (``owt == 0``) or in segments of ``owt`` output columns,
    ``cg`` input chunks per MATMUL (and ``kr`` kernel rows, or ``kc`` taps of one kernel row,
    when the whole kernel does not fit the WT spad; 0: all), the loop ``order`` (``"band"``: output tiles inside
    bands, ``"channel"``: bands inside output tiles), the act and weight slot sizes in rows, and
    once chosen its estimated cycles and instruction count."""
    oht: int
    nbt: int
    owt: int
    cg: int
    kr: int
    kc: int
    order: str
    act_slot: int
    wt_slot: int
    est_cycles: int = 0
    n_instr: int = 0


class SpadCache:
    """What each region of one scratchpad holds, across ops: ``key -> (base, rows)``.

    An op uses the scratchpad as a direct-mapped cache of equal slots, but slot sizes differ
    between ops, so a hit is looked up by key (wherever it was loaded) and a new load evicts
    every region it overlaps."""

    def __init__(self):
        self.regions: dict = {}
        self.next_slot = 0

    def copy(self) -> "SpadCache":
        c = SpadCache()
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




@dataclass
class CodegenState:
    """What code generation carries from op to op: the LOOP registers and the scratchpad caches."""
    loop: dict = field(default_factory=lambda: dict(isa.LOOP_RESET))
    act: SpadCache = field(default_factory=SpadCache)
    wt: SpadCache = field(default_factory=SpadCache)
    param: SpadCache = field(default_factory=SpadCache)

    def copy(self) -> "CodegenState":
        return CodegenState(dict(self.loop), self.act.copy(), self.wt.copy(), self.param.copy())


@functools.lru_cache(maxsize=1 << 16)
def encode(op: isa.Opcode, items: tuple) -> int:
    return isa.encode(op, **dict(items))


def tiles_of(op: LoweredOp, cfg: AccelConfig, plan: Plan) -> list[tuple]:
    """Return the output tiles ``(b0, nb, oy0, rows, ox0, cols)`` of an op: bands of ``oht``
    output rows per image (cut into segments of ``owt`` columns when set), or groups of ``nbt``
    images for a 1x1 output."""
    o = op.out
    if op.batch_rows:
        return [(b0, min(plan.nbt, o.b - b0), 0, 1, 0, 1) for b0 in range(0, o.b, plan.nbt)]
    segs = [(0, o.w)] if not plan.owt else [(x0, min(plan.owt, o.w - x0))
                                           for x0 in range(0, o.w, plan.owt)]
    return [(b, 1, y0, min(plan.oht, o.h - y0), x0, n) for b in range(o.b)
            for y0 in range(0, o.h, plan.oht) for x0, n in segs]


def gen_op(op: LoweredOp, cfg: AccelConfig, plan: Plan, state: CodegenState):
    """Yield ``(opcode, operands)`` of one op under ``plan``; ``state`` carries the LOOP
    registers and the scratchpad caches across ops."""
    nt_count = len(op.terms[0].tiles)
    tiles = tiles_of(op, cfg, plan)
    order = ([(t, nt) for t in tiles for nt in range(nt_count)] if plan.order == "band"
             else [(t, nt) for nt in range(nt_count) for t in tiles])
    for tile, nt in order:
        b0, nb, oy0, oht, ox0, ows = tile
        m = nb if op.batch_rows else oht * ows
        first = True
        for ti, term in enumerate(op.terms):
            first = yield from _term_matmuls(op, cfg, plan, state, ti, term, tile, nt, m, first)
        yield from _requant_and_store(op, cfg, state, tile, nt, m)


def _term_walk(op: LoweredOp, term: Term, tile: tuple, owt: int) -> tuple[int, int, int, int, dict]:
    """Return how a tile's band of one input chunk lies in the act spad: its act rows, its
    first padded input row and column, its width in pixels (``x.wp`` for whole rows), and the
    LOOP registers that walk its windows."""
    b0, nb, oy0, oht, ox0, ows = tile
    x = term.src
    (kh, kw), (sh, sw), (ph, pw) = term.kernel, term.stride, term.pad
    if op.batch_rows:
        rows = nb * x.hp * x.wp
        return rows, 0, x.hx - pw, x.wp, dict(k_wrap0=kw, k_wrap1=kh, k_stride1=x.wp,
                                              k_stride2=rows, m_wrap=0, m_stride=x.hp * x.wp,
                                              m_stride1=0)
    width = x.wp if not owt else (ows - 1) * sw + kw
    rows = ((oht - 1) * sh + kh) * width
    return rows, oy0 * sh + x.hy - ph, ox0 * sw + x.hx - pw, width, dict(
        k_wrap0=kw, k_wrap1=kh, k_stride1=width, k_stride2=rows,
        m_wrap=ows, m_stride=sw, m_stride1=sh * width)


def _term_matmuls(op: LoweredOp, cfg: AccelConfig, plan: Plan, state: CodegenState, ti: int,
                  term: Term, tile: tuple, nt: int, m: int, first: bool):
    """Yield the LOADs, LOOP and MATMULs of one term of a tile, a group of input chunks per
    MATMUL (``first``: no MATMUL of the tile yet, so do not accumulate); return ``first``."""
    R, C, bb = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    b0 = tile[0]
    x = term.src
    kh, kw = term.kernel
    pix = x.cp // bb
    rows_per_chunk, y0, x0, width, loop = _term_walk(op, term, tile, plan.owt)
    # whole rows are one LOAD from pixel (y0, 0); a segment one LOAD per input row from x0
    runs = ([(0, 0, rows_per_chunk)] if not plan.owt or op.batch_rows else
            [(yy * width, yy * x.wp + x0, width) for yy in range(rows_per_chunk // width)])
    act_slots = cfg.act_spad_depth // plan.act_slot
    wt_slots = cfg.wt_spad_depth // plan.wt_slot
    chunks = term.chunks[nt]
    step = 1 if term.repeat else plan.cg
    kgroups = _kernel_groups(plan, kh, kw, term.repeat)
    for j0 in range(0, len(chunks), step):
        grp = chunks[j0:j0 + step]
        # activations: the chunks of the band
        akey = (x.name, b0, y0, x0 if plan.owt else 0, width, rows_per_chunk, tuple(grp))
        abase, hit = state.act.fetch(akey, plan.act_slot, act_slots)
        if not hit:
            for j, cc in enumerate(grp):
                for spad_off, pix_off, n in runs:
                    yield _OP.LOAD, (("spad", _SP.ACT),
                                     ("spad_addr", abase + j * rows_per_chunk + spad_off),
                                     ("rows", n),
                                     ("dram_addr", x.addr + ((b0 * x.hp + y0) * x.wp + pix_off)
                                      * pix + cc * R // bb),
                                     ("dram_stride", pix), *compress_fields(x))
        # weights: the group's tiles are contiguous (a group of kernel rows of one chunk too)
        taps = 1 if term.repeat else kh * kw
        for ky0, nky, kx0, nkx in kgroups:
            whole = (nky, nkx) == (kh, kw)
            wkey = (op.out.name, ti, nt, j0, len(grp), ky0, nky, kx0, nkx)
            wbase, hit = state.wt.fetch(wkey, plan.wt_slot, wt_slots)
            if not hit:
                yield _OP.LOAD, (("spad", _SP.WT), ("spad_addr", wbase),
                                 ("rows", len(grp) * (taps if whole else nky * nkx) * R),
                                 ("dram_addr", term.w_addr[nt]
                                  + (j0 * taps + ky0 * kw + kx0) * R * C // bb),
                                 ("dram_stride", C // bb))
            walk = loop if whole else dict(loop, k_wrap0=nkx, k_wrap1=nky)
            if state.loop != walk:
                state.loop = walk
                yield _OP.LOOP, tuple(walk.items())
            yield _OP.MATMUL, (("act_addr", abase + (0 if plan.owt else x0) + ky0 * width + kx0),
                               ("wt_addr", wbase), ("acc_addr", 0), ("m", m),
                               ("k_tiles", len(grp) * nky * nkx),
                               ("act_stride", 1), ("zp", term.zp),
                               ("accumulate", int(not first)),
                               ("acc_max", int(term.acc_max)),
                               ("wt_repeat", int(term.repeat)))
            first = False
    return first


def _kernel_groups(plan: Plan, kh: int, kw: int, repeat: bool) -> list[tuple[int, int, int, int]]:
    """Return the ``(ky0, rows, kx0, taps)`` parts of a kernel, one MATMUL each: the whole
    kernel, groups of ``plan.kr`` rows, or groups of ``plan.kc`` taps of each row."""
    if repeat or not (plan.kr or plan.kc):
        return [(0, kh, 0, kw)]
    if plan.kc:
        return [(ky, 1, c0, min(plan.kc, kw - c0)) for ky in range(kh)
                for c0 in range(0, kw, plan.kc)]
    return [(k0, min(plan.kr, kh - k0), 0, kw) for k0 in range(0, kh, plan.kr)]


def _requant_and_store(op: LoweredOp, cfg: AccelConfig, state: CodegenState, tile: tuple,
                       nt: int, m: int):
    """Yield the REQUANT of a tile's ``m`` ACC rows (with its param rows' LOAD) and the STOREs
    of its interior rows (raw int32 ACC rows for a ``gemm``)."""
    C, bb = cfg.cols, cfg.mem_bus_bytes
    b0, nb, oy0, oht, ox0, ows = tile
    o = op.out
    out_pix = o.pix_words(bb)
    if op.params is None:
        spad = _SP.ACC                   # raw int32 accumulators
    else:
        spad = _SP.OUT
        prow_words = cfg.spad_row_words("param")
        pbase, hit = state.param.fetch((o.name, nt), 3, cfg.param_spad_depth // 3)
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
                          ("dram_stride", o.hp * o.wp * out_pix), *compress_fields(o))
    elif o.hx == 0 and ows == o.w:
        yield _OP.STORE, (("spad", spad), ("spad_addr", 0), ("rows", m),
                          ("dram_addr", o.addr + ((b0 * o.hp + o.hy + oy0) * o.wp) * out_pix
                           + ch_off),
                          ("dram_stride", out_pix), *compress_fields(o))
    else:
        for r in range(oht):
            yield _OP.STORE, (("spad", spad), ("spad_addr", r * ows), ("rows", ows),
                              ("dram_addr", o.addr + ((b0 * o.hp + o.hy + oy0 + r) * o.wp
                                                      + o.hx + ox0) * out_pix + ch_off),
                              ("dram_stride", out_pix), *compress_fields(o))


def compress_fields(t: Tensor) -> tuple:
    """The LOAD / STORE fields that move ``t``'s act rows through the zero-row directory
    (``cfg.compress_acts``): rows equal to its zero point cost no data words."""
    return (("compress", 1), ("zp", t.zp)) if t.compressed else ()


