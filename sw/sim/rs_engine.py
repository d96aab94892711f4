"""Model of the row-stationary MATMUL engine (``hw/rs_matmul.py``): passes, cycles, MACs, accesses.

The members every engine model has are listed in ``sim/ws_engine.py``'s docstring; the engine's
passes and its event model are described in docs/internals.md ("Row-stationary device engine").
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from stamen.hw.params import RS_MAX_STRIDE, RS_PASS_QUEUE, RS_SEGMENT, AccelConfig
from stamen.hw.timing import (RS_END_CYCLES, RS_FEED_LATENCY, RS_FEED_START, RS_PSUM_LATENCY,
                              RS_QUEUE_FREE)

from .matmul import MacCounts, MatmulAccesses, MatmulTiming
from .rs_pe import RsPeTiming

__all__ = ["matmul_cycles", "timing", "estimate", "count_macs", "accesses", "skip_savings",
           "GATES_ZERO_WEIGHTS", "RF_PER_MAC", "RF_PER_GATED", "DESCRIPTION", "RsEnginePass",
           "rs_engine_mode", "rs_engine_passes", "rs_engine_pass_rows", "rs_matmul_cycles",
           "rs_fed_pe_timing", "rs_skipped_tiles"]

#: A row-stationary PE gates and skips on a zero activation only, never on a zero weight.
GATES_ZERO_WEIGHTS = False
#: PE register accesses of a performed MAC (act, filter, psum read and write) / of a gated one.
RF_PER_MAC, RF_PER_GATED = 4, 1
DESCRIPTION = ("row-stationary: filter rows loaded once per group, ifmap rows read once per pass "
               "and multicast along the PE row, psums accumulated in the PE and up the column")


@dataclass(frozen=True)
class RsEnginePass:
    """One pass of ``hw.rs_matmul.RsMatmulEngine`` (see its module docstring): the run of act
    rows ``base + p*pstep`` for ``p < width``, ``outputs`` windows of ``taps`` taps and stride
    ``stride``, filter ``group`` (its first tile ``kt``), ``first`` pass of its group; the
    outputs go to ACC rows ``acc_row ..``."""
    group: int
    kt: int
    base: int
    pstep: int
    width: int
    outputs: int
    taps: int
    stride: int
    acc_row: int
    first: bool


def rs_engine_mode(cfg, args: dict, loop: dict) -> tuple[bool, int, int, int]:
    """Return ``(window, taps, stride, pstep)`` of a MATMUL on the row-stationary engine:
    window mode when ``2 <= k_wrap0 <= cfg.rs_max_taps``, not ``acc_max`` and
    ``m_stride == stride * act_stride`` for a stride of 1 or 2; else tap mode (one tap, stride
    1, positions ``m_stride`` apart)."""
    s, a, ms = loop["k_wrap0"], args["act_stride"], loop["m_stride"]
    strides = [u for u in range(1, RS_MAX_STRIDE + 1) if ms == u * a]
    if 2 <= s <= cfg.rs_max_taps and not args["acc_max"] and strides:
        return True, s, strides[0], a
    return False, 1, 1, ms


def _engine_groups(cfg, args: dict, loop: dict):
    """Yield each group of a MATMUL on the row-stationary engine as ``(g, kt, taps, gbase,
    segments)``: its first tile, its taps, the act row of its run's position 0, and its passes
    ``(offset, outputs, acc_row, first)`` in order (the run of a pass starts at act row
    ``gbase + offset``). The segments are built once per MATMUL, so walking the groups costs
    no more than the group count."""
    _, taps, stride, pstep = rs_engine_mode(cfg, args, loop)
    m, k_tiles = args["m"], args["k_tiles"]
    row_outputs = loop["m_wrap"] or m
    segments = []
    for i1, i in enumerate(range(0, m, row_outputs)):
        in_row = min(row_outputs, m - i)
        for o0 in range(0, in_row, RS_SEGMENT):
            segments.append((i1 * loop["m_stride1"] + o0 * stride * pstep,
                             min(RS_SEGMENT, in_row - o0), args["acc_addr"] + i + o0,
                             i == 0 and o0 == 0))
    w0, w1 = loop["k_wrap0"], loop["k_wrap1"]
    for g, kt in enumerate(range(0, k_tiles, taps)):
        t0, rest = (kt % w0, kt // w0) if w0 else (kt, 0)
        t1, t2 = (rest % w1, rest // w1) if w1 else (rest, 0)
        gbase = (args["act_addr"] + t0 * args["act_stride"] + t1 * loop["k_stride1"]
                 + t2 * loop["k_stride2"])
        yield g, kt, min(taps, k_tiles - kt), gbase, segments


def rs_engine_passes(cfg, args: dict, loop: dict) -> list[RsEnginePass]:
    """Return the passes of a MATMUL on the row-stationary engine, in the order it runs them
    (group, then output row, then segment of at most ``RS_SEGMENT`` outputs)."""
    _, _, stride, pstep = rs_engine_mode(cfg, args, loop)
    return [RsEnginePass(group=g, kt=kt, base=gbase + off, pstep=pstep,
                         width=(n - 1) * stride + tk, outputs=n, taps=tk, stride=stride,
                         acc_row=acc_row, first=first)
            for g, kt, tk, gbase, segments in _engine_groups(cfg, args, loop)
            for off, n, acc_row, first in segments]


def rs_skipped_tiles(cfg, args: dict, loop: dict) -> np.ndarray:
    """Return, per tile ``kt`` of a MATMUL, whether a ``zero_skip`` row-stationary engine skips
    its zero activations: the tiles of groups of two taps or more (one-tap passes are fed
    dense, ``hw/rs_matmul.py``)."""
    _, taps, _, _ = rs_engine_mode(cfg, args, loop)
    k_tiles = args["k_tiles"]
    skip = np.zeros(k_tiles, bool)
    if cfg.zero_skip:
        for kt in range(0, k_tiles, taps):
            skip[kt:kt + taps] = min(taps, k_tiles - kt) >= 2
    return skip


def rs_engine_pass_rows(act: np.ndarray, p: RsEnginePass) -> np.ndarray:
    """Return the act spad rows of a pass's run, ``(width, R)`` (lane ``r``: PE row ``r``'s
    ifmap row); a row beyond the spad (a faulting MATMUL) wraps around it."""
    return act[(p.base + p.pstep * np.arange(p.width)) % len(act)]


def rs_matmul_cycles(cfg, args: dict, loop: dict, act: "np.ndarray | None" = None) -> int:
    """Return the cycles of ``hw.rs_matmul.RsMatmulEngine`` from accepting a MATMUL to ``busy``
    falling.

    Events (cycle 0 accepts the MATMUL; ``K = RS_PASS_QUEUE``):

    * **Issue.** Pass ``n`` is issued (queued for every PE row, the feeder and the accumulator)
      at ``I_n = max(I_{n-1} + 1, done_{n-K} + RS_QUEUE_FREE)``, ``I_0 = 1``: the accumulator
      holds ``K`` passes, and ``done_n`` is the cycle the column adder's top stage takes pass
      ``n``'s last psum.
    * **Filters.** Group ``g``'s loader reads ``taps*R`` WT rows from the end of group
      ``g-1``'s reads (group 0 from cycle 1), for ``g >= 2`` no earlier than the cycle after
      the last PE row started group ``g-1``; its filters count as loaded 1 cycle after the
      last read.
    * **Feeder.** It walks pass ``n``'s positions (and the end marker), one per cycle, from
      ``max(I_n + RS_FEED_START, end of the walk of pass n-1 + 1)``; a position's beat (with
      ``zero_skip`` only if it is not the zero point, in passes of two taps or more) and the
      watermark reach the PEs ``RS_FEED_LATENCY`` cycles after its read. The FIFOs hold ``K``
      passes, so the walk never waits for room.
    * **PE rows.** Row ``r`` starts pass ``n`` at ``max(I_n + 1, its end of pass n-1, loaded)``
      and runs it at its own pace (:func:`rs_fed_pe_timing` on the beats' arrival); it ends
      once its end marker is in and its last psum has left into the FIFO beside it (which
      holds ``K`` passes' psums, so a PE never waits for it).
    * **Adder.** Stage ``i`` (bottom to top) takes psum ``k`` once it is in its FIFO, the stage
      below has it and stage ``i`` took psum ``k - 1``, one stage per cycle. ``busy`` falls
      ``RS_END_CYCLES`` after the top stage took the MATMUL's last psum.

    Exact with a dense stream (``zero_skip=False``; ``act`` is then not needed); with
    ``zero_skip`` the PE rows' beats come from ``act`` (the ACT spad, ``(depth, R)`` int8).

    Closed forms (the cost is a few operations per pass, and the memory a pass's run):
    the beats of a pass arrive one per cycle in position order (``W0 + q`` for position ``q``,
    ``W0`` the walk's start plus ``RS_FEED_LATENCY``), and a window ends once the walk has
    passed the position beyond it, so :func:`rs_fed_pe_timing` is the max-plus recurrence
    ``t_0 = max(start + b_0 + 1, W0 + S)``, ``t_{x+1} = max(t_x + max(o_x, b_{x+1}),
    W0 + min((x+1)U + S, width))`` (``o_x`` the ops of window ``x``, ``b_{x+1}`` the beats
    window ``x + 1`` adds; psum ``x`` at ``t_x + o_x + RS_PSUM_LATENCY - 1``), solved with
    running sums and maxima; the adder's stage ``i`` takes psum ``k`` at the longest path
    ``max over i' >= i, k' <= k of (psum(i', k') + 1 + (i' - i) + (k - k'))`` (or from the
    previous pass's psums). While every PE row has the same timing (a dense pass that all
    rows start together) both collapse to integers.
    """
    R = cfg.rows
    zp = args["zp"]
    _, _, U, pstep = rs_engine_mode(cfg, args, loop)
    lanes = np.arange(R, dtype=np.int64)
    lat = RS_PSUM_LATENCY - 1               # psum x leaves at t_x + ops_x + lat
    dones: list[int] = []                   # the last K passes' done cycles
    issue = walk_end = 0
    load_end = started = 0                  # the previous group's last WT read / all-rows start
    # PE row state: while ``uniform``, every row ends its passes at ``row_end`` and adder stage
    # ``i`` took its last psum at ``fired - i``; else the arrays ``row_ends`` and ``fireds``.
    uniform, row_end, fired = True, 0, -1
    row_ends = fireds = None
    for chunk in _group_chunks(cfg, args, loop):
        summaries = _chunk_summaries(cfg, chunk, act, zp, U, pstep, lat)
        for (g, _, S, gbase, segments), summ in zip(chunk, summaries):
            begin = 1 if g == 0 else load_end
            if g >= 2:
                begin = max(begin, started + 1)
            load_end = begin + S * R
            loaded = load_end + 1
            for j, (off, n, _, first) in enumerate(segments):
                issue = max(issue + 1, dones[-RS_PASS_QUEUE] + RS_QUEUE_FREE
                            if len(dones) >= RS_PASS_QUEUE else 0)
                width = (n - 1) * U + S
                walk = max(issue + RS_FEED_START, walk_end + 1)
                walk_end = walk + width
                w0 = walk + RS_FEED_LATENCY
                ready = max(issue + 1, loaded)
                if uniform and summ is None:
                    start = max(ready, row_end)
                    c = max(S, U)               # a window's cycles: its ops or the next beats
                    t0 = max(start + S + 1, w0 + S)
                    row_end = t0 + (n - 1) * c + S + lat + 1
                    fired = n - 1 + max(t0 + (n - 1) * (c - 1) + S + lat + R, fired + 1)
                    if first:
                        started = start
                    done = fired
                else:
                    if uniform:
                        row_ends, fireds = np.full(R, row_end, np.int64), fired - lanes
                        uniform = False
                    starts = np.maximum(row_ends, ready)
                    if first:
                        started = int(starts.max())
                    if summ is None:
                        s = _pass_summaries(np.ones((1, width, 1), bool), n, S, U, lat)[0]
                    else:
                        s = summ[j]
                    t0 = np.maximum(starts + s[0] + 1, w0 + S)
                    row_ends = np.maximum(s[1] + np.maximum(t0, w0 + s[2]),
                                          s[3] + np.maximum(t0, w0 + s[4]) + s[5]) + 1
                    q = np.maximum(t0 + s[6], w0 + s[7]) + lanes
                    top = np.maximum.accumulate(np.maximum(q, fireds + lanes)[::-1])[::-1]
                    fireds = n - lanes + top
                    done = int(fireds[0])
                    if summ is None and ((row_ends == row_ends[0]).all()
                                         and (fireds + lanes == done).all()):
                        uniform, row_end, fired = True, int(row_ends[0]), done
                dones.append(done)
                if len(dones) > RS_PASS_QUEUE:
                    del dones[0]
    return int(dones[-1] + RS_END_CYCLES)


#: Elements (positions times lanes) of the act runs :func:`rs_matmul_cycles` reads at a time.
_RS_CHUNK_ELEMS = 1 << 18
_NEVER = -(1 << 30)          # a term that does not exist (below any t_0 - w0)


def _group_chunks(cfg, args: dict, loop: dict):
    """Yield the groups of :func:`_engine_groups` in lists whose passes' runs hold about
    :data:`_RS_CHUNK_ELEMS` act values."""
    from itertools import islice
    _, taps, stride, _ = rs_engine_mode(cfg, args, loop)
    groups = _engine_groups(cfg, args, loop)
    first = next(groups)
    per_group = sum((n - 1) * stride + taps for _, n, _, _ in first[4]) * cfg.rows
    size = max(1, _RS_CHUNK_ELEMS // per_group)
    yield [first] + list(islice(groups, size - 1))
    while chunk := list(islice(groups, size)):
        yield chunk


def _chunk_summaries(cfg, chunk: list, act, zp: int, U: int, pstep: int, lat: int) -> list:
    """Return, per group of ``chunk``, ``None`` for a dense group (every position has a beat)
    or its passes' :func:`_pass_summaries` ``(passes, 8, R)`` from the ACT spad ``act``."""
    out = [None] * len(chunk)
    runs: dict = {}                     # (taps, outputs) -> the passes' index and first row
    count = 0
    for k, (_, _, S, gbase, segments) in enumerate(chunk):
        if cfg.zero_skip and S >= 2:
            out[k] = slice(count, count + len(segments))
            for off, n, _, _ in segments:
                runs.setdefault((S, n), []).append((count, gbase + off))
                count += 1
    if not runs:
        return out
    if act is None:
        raise ValueError("rs_matmul_cycles with zero_skip needs the ACT spad contents")
    summ = np.empty((count, 8, cfg.rows), np.int64)
    for (S, n), passes in runs.items():
        index, bases = np.array(passes, np.int64).T
        pos = pstep * np.arange((n - 1) * U + S, dtype=np.int64)
        present = act[(bases[:, None] + pos) % len(act)] != zp             # (P, width, R)
        summ[index] = _pass_summaries(present, n, S, U, lat)
    return [None if s is None else summ[s] for s in out]


def _pass_summaries(present: np.ndarray, n: int, S: int, U: int, lat: int) -> np.ndarray:
    """Return, for passes of ``n`` outputs whose positions have a beat where ``present``
    (``(P, width, R)``; ``R`` may be 1 for equal rows), the figures ``(P, 8, R)`` that give a
    PE row's timing (:func:`rs_fed_pe_timing`, in :func:`rs_matmul_cycles`' closed form) from
    its start and the walk's first arrival ``w0``: ``b_0`` (the first window's beats),
    ``C_n, E_{n-1}, C_{n-1}, E_{n-2}, o_{n-1} + lat`` (the row's end is
    ``max(C_n + max(t_0, w0 + E_{n-1}), C_{n-1} + max(t_0, w0 + E_{n-2}) + o_{n-1} + lat) + 1``)
    and ``A_1 + lat, A_2 + lat`` (``max(t_0 + A_1, w0 + A_2) + lat`` is the latest
    ``psum_x - x``), with ``o_x`` window ``x``'s ops, ``C_x`` the sum of the first ``x``
    windows' cycles, ``E_x`` the running maximum of ``min((j+1)U + S, width) - C_{j+1}`` over
    ``j <= x``, ``A_1 = max(o_x - x + C_x)`` and ``A_2 = max(o_x - x + C_x + E_{x-1})`` over
    ``x >= 1`` (a term that does not exist is ``_NEVER``)."""
    i32 = np.int32                      # counts of at most a run's width: int32 is exact
    P, width, lanes = present.shape
    cum = np.empty((P, lanes, width + 1 + U), i32)          # beats before each position
    cum[:, :, 0] = 0
    np.cumsum(present.transpose(0, 2, 1), axis=2, dtype=i32, out=cum[:, :, 1:width + 1])
    cum[:, :, width + 1:] = cum[:, :, width:width + 1]      # no beat beyond the run
    xs = np.arange(n, dtype=i32)
    ops = np.maximum(cum[:, :, S:S + n * U:U] - cum[:, :, 0:n * U:U], 1)    # (P, R, n)
    cost = np.maximum(ops, cum[:, :, S + U:S + U + n * U:U] - cum[:, :, S:S + n * U:U])
    c = np.cumsum(cost, axis=2, dtype=i32)                                  # C_1 .. C_n
    bound = np.minimum((xs + 1) * U + S, width).astype(i32)
    e = np.maximum.accumulate(bound - c, axis=2)                            # E_0 .. E_{n-1}
    a = ops - xs + (c - cost)                                               # o_x - x + C_x
    a2 = (a[:, :, 1:] + e[:, :, :-1]).max(axis=2, initial=_NEVER)
    out = np.empty((P, 8, lanes), np.int64)
    out[:, 0] = cum[:, :, S]
    out[:, 1], out[:, 2] = c[:, :, -1], e[:, :, -1]
    out[:, 3], out[:, 4] = (c[:, :, -2], e[:, :, -2]) if n > 1 else (0, _NEVER)
    out[:, 5] = ops[:, :, -1] + lat
    out[:, 6], out[:, 7] = a.max(axis=2) + lat, a2 + lat
    return out


def rs_fed_pe_timing(present: np.ndarray, taps: int, stride: int, watermark: bool = False,
                     arrive: "np.ndarray | None" = None) -> RsPeTiming:
    """Return a PE's timing on one row (one filter) when its beats come from a walk of the
    row's positions: the beat of position ``p`` (and the end marker, position ``width``) is
    presented no earlier than cycle ``arrive[p]`` after the command handshake (default
    ``1 + p``: a walk that starts with the command) and no earlier than cycle 1;
    ``present[p]`` says whether it has a beat (all with a dense stream). Otherwise as
    :func:`rs_pe_timing` (identical for a dense row with the default ``arrive``): window
    ``x + 1``'s new beats load one per cycle from window ``x``'s start, and a window starts
    when the previous one's ops are done, its beats are loaded and the beat beyond it (or the
    end marker) is presented, or with ``watermark`` (``hw/rs_matmul.py``'s feeder tells the
    PEs how far its walk has got, from the cycle a position's beat would arrive) as soon as
    the walk has passed the position beyond it.
    """
    width = len(present)
    if arrive is None:
        arrive = 1 + np.arange(width + 1)
    pos = [int(q) for q in np.flatnonzero(present)] + [width]      # the end marker last
    beat_at = [int(arrive[q]) for q in pos]
    n_out = (width - taps) // stride + 1 if width >= taps else 0
    prefix = np.concatenate([[0], np.cumsum(present)])
    idx = 0

    def load(upto: int, begin: int) -> int:
        nonlocal idx
        t = begin - 1
        while pos[idx] <= upto and idx < len(pos) - 1:
            t = max(beat_at[idx], t + 1)
            idx += 1
        return t

    def seen(end: int) -> int:
        """When the window ending at ``end`` knows it is complete."""
        t = beat_at[idx]
        if watermark:       # the walk passing the position beyond it
            t = min(t, int(arrive[min(end + 1, width)]))
        return t
    last_load = load(taps - 1, 1)
    t = max(last_load + 1, seen(taps - 1), 1)
    psum_cycles = []
    for x in range(n_out):
        lo, hi = x * stride, min(x * stride + taps - 1, width - 1)
        ops = max(1, int(prefix[hi + 1] - prefix[lo]))
        psum_cycles.append(t + ops - 1 + RS_PSUM_LATENCY)
        last_load = load(x * stride + taps - 1 + stride, t)
        t = max(t + ops, last_load + 1, seen(x * stride + taps - 1 + stride))
    return RsPeTiming(cycles=t + 1, psum_cycles=tuple(psum_cycles))


def matmul_cycles(cfg: AccelConfig, m: int, k_tiles: int) -> int:
    """A row-stationary MATMUL's cycles depend on the LOOP state: raises ``ValueError``."""
    raise ValueError("A row-stationary MATMUL's cycles depend on the LOOP state: use "
                     "matmul_cycles_of")


def timing(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray | None = None
           ) -> MatmulTiming:
    """Return the exact cycles of the MATMUL ``args`` (:func:`rs_matmul_cycles`)."""
    return MatmulTiming(rs_matmul_cycles(cfg, args, loop, act))


def estimate(cfg: AccelConfig, args: dict, loop: dict) -> int:
    """Return the cycles with a dense stream (zero skipping only makes a MATMUL faster)."""
    return _dense_cycles(cfg, tuple(args.items()), tuple(loop.items()))


@functools.lru_cache(maxsize=1 << 14)
def _dense_cycles(cfg: AccelConfig, args: tuple, loop: tuple) -> int:
    return rs_matmul_cycles(cfg.replace(zero_skip=False), dict(args), dict(loop))


def count_macs(cfg: AccelConfig, args: dict, loop: dict, zeros: np.ndarray, gated_w: int,
               skipped_rows: int) -> MacCounts:
    """Return a MATMUL's counter additions from its zero activations per tile ``zeros``: those
    of the tiles :func:`rs_skipped_tiles` marks are skipped (``C`` MACs each), the others are
    performed, and gated with ``cfg.zero_gate``; zero weights change nothing."""
    C = cfg.cols
    total = args["m"] * cfg.rows * C * args["k_tiles"]
    skip = rs_skipped_tiles(cfg, args, loop)
    skipped = int(zeros[skip].sum()) * C
    gated = int(zeros[~skip].sum()) * C if cfg.zero_gate else 0
    return MacCounts(total - skipped, gated, skipped)


def accesses(cfg: AccelConfig, args: dict, loop: dict) -> MatmulAccesses:
    """Return a MATMUL's accesses, pass by pass (:func:`rs_engine_passes`): filters read once per
    group, each pass's run read once and multicast along the PE rows, psums up the columns."""
    R, C = cfg.rows, cfg.cols
    k = args["k_tiles"]
    passes = rs_engine_passes(cfg, args, loop)
    beats = sum(p.width for p in passes)                 # per PE row
    outs = sum(p.outputs for p in passes)
    kept = sum(p.outputs for p in passes if args["accumulate"] or p.kt)
    return MatmulAccesses(wt_reads=k * R * C, act_reads=beats * R, acc_reads=kept * C,
                          acc_writes=outs * C, array_wt=k * R * C, array_act=beats * R * C,
                          array_psum=outs * C * R,
                          rf_fixed=k * R * C + beats * R * C + 2 * outs * C * R,
                          macs=args["m"] * k * R * C)


def skip_savings(cfg: AccelConfig, skipped_macs: int) -> tuple[int, int]:
    """No buffer or array accesses are modelled as saved by a skipped zero."""
    return 0, 0
