"""Model of the weight-stationary MATMUL engine (``hw/matmul.py``): cycles, MACs, accesses.

Every engine model (``ws_engine``, ``os_engine``, ``rs_engine``; found through
``sim/engines.py``) has the same members: :func:`matmul_cycles` (the figure of ``m`` and
``k_tiles`` alone), :func:`timing` (exact, from the LOOP state and the ACT spad), :func:`estimate`
(the compiler's data-independent bound), :func:`count_macs`, :func:`accesses`,
:func:`skip_savings` and the constants ``GATES_ZERO_WEIGHTS``, ``RF_PER_MAC``, ``RF_PER_GATED``
and ``DESCRIPTION``. The formulas are derived in docs/internals.md ("Cycle model").
"""
from __future__ import annotations

import numpy as np

from stamen.hw.params import AccelConfig
from stamen.hw.timing import (ACC_WRITE_LATENCY, ACT_READ_LATENCY, array_latency,
                              bank_release_delay)

from .matmul import (MacCounts, MatmulAccesses, MatmulTiming, act_chunks, act_rows, act_tiles,
                     zp_rows)

__all__ = ["matmul_cycles", "timing", "estimate", "count_macs", "accesses", "skip_savings",
           "ws_skipped_rows", "ws_skip_cycles", "GATES_ZERO_WEIGHTS", "RF_PER_MAC",
           "RF_PER_GATED", "DESCRIPTION"]

#: A zero weight gates a MAC as a zero activation does.
GATES_ZERO_WEIGHTS = True
#: PE register accesses of a MAC that is performed (the act and psum registers) / gated.
RF_PER_MAC, RF_PER_GATED = 1, 0
DESCRIPTION = ("weight-stationary: weights shifted in once per tile, activations and psums "
               "passed PE to PE each MAC")


def matmul_cycles(cfg: AccelConfig, m: int, k_tiles: int) -> int:
    """Return the cycles of a MATMUL after dispatch that skips no row.

    Tile ``t``'s ``m`` act rows are read back to back from the cycle its last weight row is read
    and after tile ``t - 1``'s rows; with two weight banks tile ``t >= 2``'s weights wait
    :func:`bank_release_delay` after tile ``t - 2``'s last act read. The last tile's first read
    is at ``R + max(k*s, (k // 2)*J + (k % 2)*s)`` (``k = k_tiles - 1``, ``s = max(m, R)``,
    ``J = m + bank_release_delay + R - 2``); its last row then crosses the act read, the array
    and the accumulator write. With ``m >= 2R + C - 3`` this is ``k_tiles*m + 2R + C + 3``.
    """
    r = cfg.rows
    s = max(m, r)
    pair = m + bank_release_delay(cfg) + r - 2
    k = k_tiles - 1
    last_tile_first_read = r + max(k * s, (k // 2) * pair + (k % 2) * s)
    return (last_tile_first_read + m - 1 + ACT_READ_LATENCY + array_latency(cfg.rows, cfg.cols)
            + ACC_WRITE_LATENCY)


def _zero_rows(cfg: AccelConfig, args: dict, rows: np.ndarray, act: np.ndarray, kt0: int
               ) -> np.ndarray:
    """Return which of the act ``rows`` (tiles ``kt0 ..``) a zero-skipping engine skips
    (:func:`ws_skipped_rows`)."""
    zero = zp_rows(cfg, rows, act, args["zp"])
    if args["acc_max"]:
        return np.zeros_like(zero)
    if not args["accumulate"] and kt0 == 0:
        zero[0] = False
    if kt0 + len(rows) == args["k_tiles"]:
        zero[-1, -1] = False
    return zero


def ws_skipped_rows(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray) -> np.ndarray:
    """Return which act rows ``(kt, i)`` a zero-skipping engine skips (``SkipActStreamer``), a
    ``(k_tiles, m)`` bool array: all ``R`` lanes equal ``zp`` in ``act`` (``(depth, R)``
    int8), inside the ACT depth, a zero product changes nothing (``accumulate`` or ``kt > 0``,
    and not ``acc_max``), and not the MATMUL's final row."""
    return _zero_rows(cfg, args, act_rows(args, loop), act, 0)


def _tile_costs(skipped: np.ndarray) -> np.ndarray:
    """Return each tile's cycles of act-row pairs (:func:`ws_skip_cycles`), ``(k_tiles,)``."""
    k_tiles, m = skipped.shape
    fed = ~skipped
    if m % 2:
        fed = np.concatenate([fed, np.zeros((k_tiles, 1), bool)], axis=1)
    return np.maximum(1, fed[:, 0::2].astype(np.int64) + fed[:, 1::2]).sum(axis=1)


def _skip_costs(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray
                ) -> tuple[np.ndarray, int]:
    """Return a zero-skipping MATMUL's tile costs (:func:`_tile_costs`) and its skipped rows.
    Each distinct tile's rows are read once, a chunk at a time; the first tile (without
    ``accumulate``) and the last, which the rule treats apart, are counted on their own."""
    tile, offs = act_tiles(args, loop)
    k_tiles = len(tile)
    if args["acc_max"]:
        return np.repeat(_tile_costs(np.zeros((1, len(offs)), bool)), k_tiles), 0
    bases, inv, counts = np.unique(tile, return_inverse=True, return_counts=True)
    costs_b = np.empty(len(bases), np.int64)
    zero_b = np.empty(len(bases), np.int64)
    for c0, c1, rows in act_chunks(bases, offs, cfg.rows):
        zero = zp_rows(cfg, rows, act, args["zp"])
        costs_b[c0:c1] = _tile_costs(zero)
        zero_b[c0:c1] = zero.sum(axis=1)
    costs = costs_b[inv]
    skipped = int((counts * zero_b).sum())
    for t in sorted({k_tiles - 1} | (set() if args["accumulate"] else {0})):
        zero = _zero_rows(cfg, args, tile[t] + offs[None, :], act, t)
        costs[t] = _tile_costs(zero)[0]
        skipped += int(zero.sum()) - int(zero_b[inv[t]])
    return costs, skipped


def ws_skip_cycles(cfg: AccelConfig, skipped: np.ndarray) -> int:
    """Return the cycles of a zero-skipping MATMUL whose skipped rows are ``skipped``
    (``(k_tiles, m)`` bool, :func:`ws_skipped_rows`).

    Rows are read in pairs, one pair per cycle, and a pair that feeds both rows takes a second
    cycle: tile ``t`` costs ``T_t = sum(max(1, fed rows of the pair))``. Its weight reads end at
    ``L_t`` (as in :func:`matmul_cycles`, the bank release after ``E_{t-2}``), its pairs start at
    ``S_t = max(L_t, E_{t-1})`` and end at ``E_t = S_t + T_t``. With no skipped row this is
    :func:`matmul_cycles`."""
    return _cycles_of_costs(cfg, _tile_costs(skipped))


def _cycles_of_costs(cfg: AccelConfig, costs: np.ndarray) -> int:
    """Return :func:`ws_skip_cycles` from the tiles' costs (:func:`_tile_costs`)."""
    r = cfg.rows
    release = bank_release_delay(cfg) - 1
    last_wt, end = 0, 0
    ends = []
    for t, cost in enumerate(costs.tolist()):
        first_wt = last_wt + 1 if t < 2 else max(last_wt + 1, ends[t - 2] + release)
        last_wt = first_wt + r - 1
        end = max(last_wt, end) + cost
        ends.append(end)
    return end + ACT_READ_LATENCY - 1 + array_latency(cfg.rows, cfg.cols) + ACC_WRITE_LATENCY


def timing(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray | None = None
           ) -> MatmulTiming:
    """Return the exact cycles of the MATMUL ``args`` and its skipped rows; with
    ``cfg.zero_skip`` they depend on the ACT spad contents ``act``."""
    if not cfg.zero_skip:
        return MatmulTiming(matmul_cycles(cfg, args["m"], args["k_tiles"]))
    if act is None:
        raise ValueError("A zero-skipping ws MATMUL's cycles depend on the ACT spad "
                         "contents: pass act")
    costs, skipped = _skip_costs(cfg, args, loop, act)
    return MatmulTiming(_cycles_of_costs(cfg, costs), skipped)


def estimate(cfg: AccelConfig, args: dict, loop: dict) -> int:
    """Return the cycles of a MATMUL that skips nothing (an upper bound with zero skipping)."""
    return matmul_cycles(cfg, args["m"], args["k_tiles"])


def count_macs(cfg: AccelConfig, args: dict, loop: dict, zeros: np.ndarray, gated_w: int,
               skipped_rows: int) -> MacCounts:
    """Return a MATMUL's counter additions from its zero activations per tile ``zeros``, the
    MACs of a non-zero activation with a zero weight ``gated_w`` and its skipped act rows: each
    skipped row's ``R * C`` MACs are skipped, every other MAC performed, and with
    ``cfg.zero_gate`` gated when its activation or its weight is zero."""
    R, C = cfg.rows, cfg.cols
    skipped = skipped_rows * R * C
    gated = (int(zeros.sum()) - skipped_rows * R) * C + gated_w if cfg.zero_gate else 0
    return MacCounts(args["m"] * R * C * args["k_tiles"] - skipped, gated, skipped)


def accesses(cfg: AccelConfig, args: dict, loop: dict) -> MatmulAccesses:
    """Return a MATMUL's accesses: weights read once per tile, every MAC an act and a psum hop."""
    R, C = cfg.rows, cfg.cols
    m, k, a = args["m"], args["k_tiles"], args["accumulate"]
    n = m * k * R * C
    return MatmulAccesses(wt_reads=k * R * C, act_reads=k * m * R, acc_reads=(k - 1 + a) * m * C,
                          acc_writes=k * m * C, array_wt=k * R * C, array_act=n, array_psum=n,
                          rf_fixed=k * R * C, macs=n)


def skip_savings(cfg: AccelConfig, skipped_macs: int) -> tuple[int, int]:
    """Return the array and buffer accesses that ``skipped_macs`` save: a dropped all-zero act
    row (``R*C`` MACs) saves its act and psum hops and its ACC read-modify-write."""
    return 2 * skipped_macs, 2 * skipped_macs // cfg.rows
