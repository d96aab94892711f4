"""Model of the output-stationary MATMUL engine (``hw/os_matmul.py``): cycles, MACs, accesses.

The members every engine model has are listed in ``sim/ws_engine.py``'s docstring.
"""
from __future__ import annotations

import numpy as np

from stamen.hw.params import AccelConfig
from stamen.hw.timing import ACC_WRITE_LATENCY, OS_ACT_LATENCY, os_array_latency

from . import ws_engine
from .matmul import MacCounts, MatmulAccesses, MatmulTiming

__all__ = ["matmul_cycles", "timing", "estimate", "count_macs", "accesses", "skip_savings",
           "GATES_ZERO_WEIGHTS", "RF_PER_MAC", "RF_PER_GATED", "DESCRIPTION"]

GATES_ZERO_WEIGHTS = True
#: PE register accesses of a performed MAC (act and weight registers) / of a gated one.
RF_PER_MAC, RF_PER_GATED = 2, 0
DESCRIPTION = ("output-stationary: activations and weights passed PE to PE each MAC, psums "
               "drained once per output")


def matmul_cycles(cfg: AccelConfig, m: int, k_tiles: int) -> int:
    """Return the cycles of a MATMUL after dispatch.

    The ``m`` rows go in ``G = ceil(m / R)`` groups of ``R``; each group streams its whole
    reduction, ``k_tiles * R`` steps, one per cycle and back to back with the next group (its
    outputs drain while the next computes). The last group's row ``(m - 1) % R`` gets its last
    operand ``OS_ACT_LATENCY`` after the last read, leaves the array ``os_array_latency`` later
    and ``busy`` falls ``ACC_WRITE_LATENCY`` after that. SCALE-Sim's form ``G*(K + R + C - 2) - 1``
    pays every group's fill and drain; here they overlap the next group and are paid once.
    """
    groups = -(-m // cfg.rows)
    steps = groups * k_tiles * cfg.rows
    return (steps + (m - 1) % cfg.rows + OS_ACT_LATENCY + os_array_latency(cfg.rows, cfg.cols)
            + ACC_WRITE_LATENCY)


def timing(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray | None = None
           ) -> MatmulTiming:
    """Return the MATMUL's cycles (they depend on ``m`` and ``k_tiles`` only)."""
    return MatmulTiming(matmul_cycles(cfg, args["m"], args["k_tiles"]))


def estimate(cfg: AccelConfig, args: dict, loop: dict) -> int:
    """Return the MATMUL's cycles (exact: they never depend on the data)."""
    return matmul_cycles(cfg, args["m"], args["k_tiles"])


def count_macs(cfg: AccelConfig, args: dict, loop: dict, zeros: np.ndarray, gated_w: int,
               skipped_rows: int) -> MacCounts:
    """Return a MATMUL's counter additions: as the ws engine's, which skips nothing here."""
    return ws_engine.count_macs(cfg, args, loop, zeros, gated_w, skipped_rows)


def accesses(cfg: AccelConfig, args: dict, loop: dict) -> MatmulAccesses:
    """Return a MATMUL's accesses: weights read once per group of ``R`` rows, psums drained once
    per output (each tile with ``acc_max``, which makes each tile its own reduction)."""
    R, C = cfg.rows, cfg.cols
    m, k, a = args["m"], args["k_tiles"], args["accumulate"]
    n = m * k * R * C
    passes = -(-m // R)
    drains = k if args["acc_max"] else 1
    return MatmulAccesses(wt_reads=passes * k * R * C, act_reads=k * m * R,
                          acc_reads=(drains - 1 + a) * m * C, acc_writes=drains * m * C,
                          array_wt=n, array_act=n, array_psum=drains * m * C, rf_fixed=0,
                          macs=n)


def skip_savings(cfg: AccelConfig, skipped_macs: int) -> tuple[int, int]:
    """The engine skips nothing: no savings."""
    return 0, 0
