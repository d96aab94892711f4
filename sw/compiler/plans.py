"""Tiling: the candidate plans of an op and the choice of the cheapest.

Candidates are output bands (or image groups) and groups of input chunks that fit the
scratchpads and the ISA's fields, in both loop orders; each is generated and costed with the
cycle model (``sim.cycles.estimate_cycles``), and the cheapest kept.
"""
from __future__ import annotations

import dataclasses

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..errors import CompileError
from ..sim.cycles import estimate_cycles
from .codegen import CodegenState, Plan, gen_op
from .ops import K_MAX, LOOP_MAX, M_MAX, ROWS_MAX, LoweredOp, Term, ceil_div

__all__ = ["candidate_plans", "choose_plan", "instrs_cost", "rows_per_chunk"]

_OP = isa.Opcode


def instrs_cost(cfg: AccelConfig, instrs: list, loop: dict) -> int:
    """Return the estimated cycles of ``instrs`` (``sim.cycles.estimate_cycles``), starting
    under LOOP state ``loop``."""
    cost = 0
    for op, ops in instrs:
        args = dict(ops)
        if op == _OP.LOOP:
            loop = args
        cost += estimate_cycles(cfg, op, args, loop)
    return cost


def candidate_plans(op: LoweredOp, cfg: AccelConfig) -> list[Plan]:
    """Return the candidate plans of an op that fit the scratchpads and ISA fields."""
    R = cfg.rows
    for t in op.terms:
        x = t.src
        if max(x.wp, t.kernel[0] * x.wp) > LOOP_MAX:
            raise CompileError(f"{op.q.name}: an input row of {x.wp} pixels exceeds the "
                               f"address generator's strides ({LOOP_MAX})")
    plans = []
    for oht, nbt, owt in _band_shapes(op, cfg):
        # rows per chunk of each term, and the largest group of chunks that fits
        max_rpc = max(rows_per_chunk(op, t, oht, nbt, owt) for t in op.terms)
        if max_rpc > _act_limit(cfg):
            continue
        max_chunks = max(len(c) for t in op.terms for c in t.chunks.values())
        taps_max = max((1 if t.repeat else t.kernel[0] * t.kernel[1]) for t in op.terms)
        kk = max(t.kernel[0] * t.kernel[1] for t in op.terms)
        wt_lim = min(cfg.wt_spad_depth, ROWS_MAX)
        if taps_max * R > wt_lim:
            # a kernel too big for the WT spad: a group of its rows (or of one row's taps) per
            # MATMUL, one chunk each
            # (wt_spad_depth >= 2 R, so a group of two taps always fits)
            kw_max = max(t.kernel[1] for t in op.terms if not t.repeat)
            kr = wt_lim // (kw_max * R)
            kc = 0 if kr else wt_lim // R
            for order in ("band", "channel"):
                plans.append(Plan(oht, nbt, owt, 1, max(kr, 1), kc, order, max_rpc,
                                  (kc or kr * kw_max) * R))
            continue
        cg_fit = min(max_chunks, cfg.act_spad_depth // max_rpc, wt_lim // (taps_max * R),
                     K_MAX // kk)
        if cg_fit < 1:
            continue
        for cg in sorted({cg_fit, ceil_div(cg_fit, 2)}):
            # a repeat term loads one chunk at a time
            act_slot = max(max_rpc * (1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values())))
                           for t in op.terms)
            wt_slot = max((1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values()))) *
                          (1 if t.repeat else t.kernel[0] * t.kernel[1]) * R for t in op.terms)
            for order in ("band", "channel"):
                plans.append(Plan(oht, nbt, owt, cg, 0, 0, order, act_slot, wt_slot))
    if not plans:
        raise CompileError(f"{op.q.name}: no tiling fits the scratchpads (act "
                           f"{cfg.act_spad_depth}, wt {cfg.wt_spad_depth}, acc "
                           f"{cfg.acc_spad_depth}, out {cfg.out_spad_depth} rows): "
                           f"{_what_does_not_fit(op, cfg)}")
    return plans


def _what_does_not_fit(op: LoweredOp, cfg: AccelConfig) -> str:
    """Name the smallest tiling's first limit that an op exceeds."""
    for t in op.terms:
        smallest = rows_per_chunk(op, t, 1, 1, 0 if op.batch_rows else 1)
        if smallest > _act_limit(cfg):
            return (f"the smallest band of {t.src.name} needs {smallest} act rows per input "
                    f"chunk")
    return "the ISA's MATMUL fields cannot hold one window"


def _act_limit(cfg: AccelConfig) -> int:
    """The most act rows one input chunk of a band may take (spad, DMA and LOOP fields)."""
    return min(cfg.act_spad_depth, ROWS_MAX, LOOP_MAX)


def _out_cap(op: LoweredOp, cfg: AccelConfig) -> int:
    """The most output pixels one MATMUL may produce (ACC, and OUT when requantized)."""
    cap = min(cfg.acc_spad_depth, M_MAX)
    return min(cap, cfg.out_spad_depth) if op.params is not None else cap


def rows_per_chunk(op: LoweredOp, t: Term, oht: int, nbt: int, owt: int) -> int:
    """Return the act rows one input chunk of term ``t`` takes for a band of ``oht`` output
    rows (``nbt`` images for a 1x1 output) in whole padded rows (``owt == 0``) or in segments of
    ``owt`` output columns."""
    x = t.src
    if op.batch_rows:
        return nbt * x.hp * x.wp
    width = x.wp if owt == 0 else (owt - 1) * t.stride[1] + t.kernel[1]
    return ((oht - 1) * t.stride[0] + t.kernel[0]) * width


def _tallest_band(op: LoweredOp, t: Term, owt: int, lim: int) -> int:
    """Return the most output rows a band of term ``t`` may have with ``lim`` act rows per
    input chunk (0: not even one)."""
    width = rows_per_chunk(op, t, 1, 1, owt) // t.kernel[0]
    room = lim // width - t.kernel[0]
    return room // t.stride[0] + 1 if room >= 0 else 0


def _band_shapes(op: LoweredOp, cfg: AccelConfig) -> list[tuple[int, int, int]]:
    """Return the candidate ``(oht, nbt, owt)`` of an op: groups of images for a 1x1 output;
    else bands of whole output rows, or, when one output row does not fit the ACC / OUT rows or
    its input rows the act spad, bands of row segments (the widest that fit, and half of it)."""
    o = op.out
    cap, lim = _out_cap(op, cfg), _act_limit(cfg)
    if op.batch_rows:
        shapes = sorted({min(o.b, cap, ceil_div(o.b, d)) for d in (1, 2, 4, 8, 16)}, reverse=True)
        return [(1, nbt, 0) for nbt in shapes]
    if o.w <= cap and all(rows_per_chunk(op, t, 1, 1, 0) <= lim for t in op.terms):
        widths = [0]
    else:
        fit = min([cap] + [((lim // t.kernel[0]) - t.kernel[1]) // t.stride[1] + 1
                           for t in op.terms])
        widths = sorted({ceil_div(o.w, ceil_div(o.w, w)) for w in {fit, ceil_div(fit, 2)}
                         if w >= 1}, reverse=True)
    shapes = []
    for owt in widths:
        hmax = max(1, min(o.h, cap // (owt or o.w)))
        # the tallest band whose input rows fit the act spad, beside the even splits
        hfit = min(_tallest_band(op, t, owt, lim) for t in op.terms)
        bands = {max(1, ceil_div(o.h, d)) for d in range(1, 9)} | {hmax, min(hmax, hfit)} - {0}
        shapes += [(oht, 1, owt) for oht in sorted(bands, reverse=True) if oht <= hmax]
    return shapes


def choose_plan(op: LoweredOp, cfg: AccelConfig, state: CodegenState, small_code: bool
                ) -> tuple[Plan, list, CodegenState]:
    """Return the plan with the fewest estimated cycles (``small_code``: the fewest
    instructions), its instructions and the code generation state after them."""
    best = None
    for plan in candidate_plans(op, cfg):
        st = state.copy()
        instrs = list(gen_op(op, cfg, plan, st))
        cost = instrs_cost(cfg, instrs, state.loop)
        key = (len(instrs), cost) if small_code else (cost, len(instrs))
        if best is None or key < best[0]:
            best = (key, plan, instrs, st, cost)
    _, plan, instrs, st, cost = best
    return dataclasses.replace(plan, est_cycles=cost, n_instr=len(instrs)), instrs, st
