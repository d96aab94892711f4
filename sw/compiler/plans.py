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
from .ops import K_MAX, LOOP_MAX, M_MAX, ROWS_MAX, LoweredOp, ceil_div

__all__ = ["candidate_plans", "choose_plan", "instrs_cost"]

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
    o = op.out
    cap = min(cfg.acc_spad_depth, M_MAX)
    if op.params is not None:
        cap = min(cap, cfg.out_spad_depth)
    if op.batch_rows:
        shapes = sorted({min(o.b, cap, ceil_div(o.b, d)) for d in (1, 2, 4, 8, 16)}, reverse=True)
        bands = [(1, nbt) for nbt in shapes]
    else:
        hmax = max(1, min(o.h, cap // o.w))
        bands = [(oht, 1) for oht in sorted({max(1, ceil_div(o.h, d)) for d in range(1, 9)}
                                            | {hmax}, reverse=True) if oht <= hmax]
        if o.w > cap:
            raise CompileError(f"{op.q.name}: an output row of {o.w} pixels exceeds the ACC/OUT "
                               f"scratchpads ({cap} rows)")
    plans = []
    for oht, nbt in bands:
        for t in op.terms:
            x = t.src
            if max(x.wp, t.kernel[0] * x.wp) > LOOP_MAX:
                raise CompileError(f"{op.q.name}: an input row of {x.wp} pixels exceeds the "
                                   f"address generator's strides ({LOOP_MAX})")
        # rows per chunk of each term, and the largest group of chunks that fits
        need = []
        for t in op.terms:
            x = t.src
            rpc = (nbt * x.hp * x.wp if op.batch_rows
                   else ((oht - 1) * t.stride[0] + t.kernel[0]) * x.wp)
            need.append(rpc)
        max_rpc = max(need)
        if max_rpc > min(cfg.act_spad_depth, ROWS_MAX, LOOP_MAX):
            continue
        max_chunks = max(len(c) for t in op.terms for c in t.chunks.values())
        taps_max = max((1 if t.repeat else t.kernel[0] * t.kernel[1]) for t in op.terms)
        kk = max(t.kernel[0] * t.kernel[1] for t in op.terms)
        cg_fit = min(max_chunks, cfg.act_spad_depth // max_rpc,
                     cfg.wt_spad_depth // (taps_max * R), K_MAX // kk,
                     ROWS_MAX // (taps_max * R))
        if cg_fit < 1:
            continue
        for cg in sorted({cg_fit, ceil_div(cg_fit, 2)}):
            # a repeat term loads one chunk at a time
            act_slot = max(max_rpc * (1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values())))
                           for t in op.terms)
            wt_slot = max((1 if t.repeat else min(cg, max(len(c) for c in t.chunks.values()))) *
                          (1 if t.repeat else t.kernel[0] * t.kernel[1]) * R for t in op.terms)
            for order in ("band", "channel"):
                plans.append(Plan(oht, nbt, cg, order, act_slot, wt_slot))
    if not plans:
        raise CompileError(f"{op.q.name}: no tiling fits the scratchpads (act "
                           f"{cfg.act_spad_depth}, wt {cfg.wt_spad_depth}, acc "
                           f"{cfg.acc_spad_depth}, out {cfg.out_spad_depth} rows): one output "
                           f"row needs {max(t.kernel[0] * t.src.wp for t in op.terms)} act rows "
                           f"per input chunk")
    return plans


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
