"""Analytic model of the row-stationary PE (``hw.rs_pe.RsPE``): its exact cycles for a row.

NumPy, with the RTL's latencies from ``hw/timing.py``. The timing is the one the module
docstring of ``hw/rs_pe.py`` states, for streams that never stall (the next activation beat
always presented, incoming psums always valid, outgoing psums always taken).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stamen.hw.timing import (RS_END_CYCLES, RS_FEED_LATENCY, RS_FEED_START, RS_PSUM_LATENCY,
                              RS_QUEUE_FREE)

__all__ = ["compress_row", "RsPeTiming", "rs_pe_timing", "rs_pe_cycles", "RsConvShape",
           "linear_shape", "RsPass", "RsMapping", "map_conv", "chain_cycles",
           "RsLayerCycles", "rs_conv_cycles", "window_activations", "RsEnginePass",
           "rs_engine_mode", "rs_engine_passes", "rs_engine_pass_rows", "rs_matmul_cycles",
           "rs_fed_pe_timing", "rs_skipped_tiles"]


def _row(acts) -> np.ndarray:
    a = np.asarray(acts)
    if a.ndim != 1 or a.dtype != np.int8:
        raise TypeError(f"Activation row must be a 1-D int8 array, not {a.dtype} {a.shape}")
    return a


def _check_positive(name: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return int(v)


def compress_row(acts, zp: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the compressed form of a row: the values ``!= zp`` and their offsets (int64),
    in increasing offset; the stream ends with a marker carrying ``len(acts)``."""
    a = _row(acts)
    offsets = np.flatnonzero(a != zp)
    return a[offsets], offsets


@dataclass(frozen=True)
class RsPeTiming:
    """Timing of one row on the PE, in cycles counted from its command handshake (cycle 0).

    Attributes
    ----------
    cycles : int
        Busy cycles: the command, the fill, the windows and the end marker; the next row's
        command is accepted in cycle ``cycles``.
    psum_cycles : tuple of int
        The cycle each psum is valid on ``o_psums``, in output order (window-major, then filter).
    """
    cycles: int
    psum_cycles: tuple[int, ...]


def rs_pe_timing(acts, taps: int, *, stride: int = 1, zp: int = 0, zero_skip: bool = False,
                 filters: int = 1) -> RsPeTiming:
    """Return the exact timing of ``RsPE`` on one row.

    With ``present`` the positions that have a beat (all with a dense stream, the ones
    ``!= zp`` with a compressed one), ``m_x`` the present positions in window ``x``
    (``[x*stride, x*stride + taps - 1]``) and ``n_x`` those in ``(end_{x-1}, end_x]``
    (``end_x = x*stride + taps - 1``, ``end_{-1} = -1``):
    ``t_0 = 1 + n_0``, ``T_x = max(filters * max(1, m_x), n_{x+1})``, ``t_{x+1} = t_x + T_x``,
    psum ``(x, f)`` at ``t_x + filters*(max(1, m_x) - 1) + f + RS_PSUM_LATENCY``, and
    ``cycles = t_OW + 1``.

    Parameters
    ----------
    acts : int8 array (W,)
        The dense row.
    taps, stride, filters : int
        Filter row length S, stride U and interleaved filters F.
    zp : int
        Activation zero point (what counts as a zero with ``zero_skip``).
    zero_skip : bool
        Compressed (True) or dense (False) activation stream.

    Raises
    ------
    TypeError, ValueError
        For a row that is not 1-D int8, or a non-positive ``taps``, ``stride`` or ``filters``.
    """
    a = _row(acts)
    taps = _check_positive("Filter taps", taps)
    stride = _check_positive("Stride", stride)
    filters = _check_positive("Filters", filters)
    width = len(a)
    present = (a != zp) if zero_skip else np.ones(width, bool)
    prefix = np.concatenate([[0], np.cumsum(present)])

    def count(lo: int, hi: int) -> int:      # present positions in [lo, hi]
        lo, hi = max(lo, 0), min(hi, width - 1)
        return int(prefix[hi + 1] - prefix[lo]) if hi >= lo else 0

    n_out = (width - taps) // stride + 1 if width >= taps else 0
    t = 1 + count(0, taps - 1)
    psum_cycles = []
    for x in range(n_out):
        start, end = x * stride, x * stride + taps - 1
        m = count(start, end)
        ops = filters * max(1, m)
        psum_cycles += [t + ops - filters + f + RS_PSUM_LATENCY for f in range(filters)]
        t += max(ops, count(end + 1, end + stride))
    return RsPeTiming(cycles=t + 1, psum_cycles=tuple(psum_cycles))


def rs_pe_cycles(acts, taps: int, *, stride: int = 1, zp: int = 0, zero_skip: bool = False,
                 filters: int = 1) -> int:
    """Return the busy cycles of ``RsPE`` on one row (:attr:`RsPeTiming.cycles`).

    With a dense stream, ``W >= taps`` and ``filters*taps >= stride`` this is
    ``2 + taps + OW*filters*taps``; with zero skipping a window costs
    ``filters * max(1, non-zeros in it)`` (plus load cycles only where the next window brings
    more new non-zeros than that).
    """
    return rs_pe_timing(acts, taps, stride=stride, zp=zp, zero_skip=zero_skip,
                        filters=filters).cycles


# -- the row-stationary array: mapping a conv layer, and the array's cycles -------------------------

@dataclass(frozen=True)
class RsConvShape:
    """A conv layer as the row-stationary array sees it (input already padded).

    ``in_ch`` x ``in_h`` x ``in_w`` int8 input, ``out_ch`` filters of ``in_ch // groups`` x
    ``kh`` x ``kw``, stride ``stride`` in both directions. A Linear layer of ``K`` inputs and
    ``N`` outputs over a batch of ``B`` is ``RsConvShape(K, 1, B, N, 1, 1)``: a 1 x 1 conv whose
    ifmap row is the batch (:func:`linear_shape`).
    """
    in_ch: int
    in_h: int
    in_w: int
    out_ch: int
    kh: int
    kw: int
    stride: int = 1
    groups: int = 1

    def __post_init__(self):
        for f in ("in_ch", "in_h", "in_w", "out_ch", "kh", "kw", "stride", "groups"):
            _check_positive(f"RsConvShape.{f}", getattr(self, f))
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(f"RsConvShape: groups ({self.groups}) must divide in_ch "
                             f"({self.in_ch}) and out_ch ({self.out_ch})")
        if self.kh > self.in_h or self.kw > self.in_w:
            raise ValueError(f"RsConvShape: kernel {self.kh}x{self.kw} is larger than the "
                             f"(padded) input {self.in_h}x{self.in_w}")

    @property
    def out_h(self) -> int:
        return (self.in_h - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w - self.kw) // self.stride + 1

    @property
    def macs(self) -> int:
        return (self.out_ch * self.out_h * self.out_w * (self.in_ch // self.groups)
                * self.kh * self.kw)


def linear_shape(in_features: int, out_features: int, batch: int = 1) -> RsConvShape:
    """Return a Linear layer as a 1 x 1 conv whose ifmap row is the batch."""
    return RsConvShape(in_features, 1, batch, out_features, 1, 1)


@dataclass(frozen=True)
class RsPass:
    """One pass of the array: every used PE runs one row command, all started together.

    PE row ``i`` (0 = top) holds filter row ``ky`` of input channel ``c`` for
    ``items[i] = (c, ky)``; column ``j`` computes output row ``out_rows[j % len(out_rows)]`` for
    the filters ``filter_sets[j // len(out_rows)]`` (horizontal replication: several blocks of
    columns, each a different set of filters), so PE ``(i, j)`` receives ifmap row
    ``out_row*stride + ky`` of channel ``c``. Psums run up each column; the bottom used PE adds
    the psums of the previous pass over the same outputs when ``acc``, and the top PE's psums
    (output column outer, filter inner) go to the psum buffer.
    """
    group: int
    items: tuple[tuple[int, int], ...]
    out_rows: tuple[int, ...]
    filter_sets: tuple[tuple[int, ...], ...]
    acc: bool

    @property
    def used_rows(self) -> int:
        return len(self.items)

    @property
    def used_cols(self) -> int:
        return len(self.out_rows) * len(self.filter_sets)

    @property
    def filters(self) -> int:
        """Interleaved filters per PE (every block runs this many; a short last set is padded
        with zero filters whose psums are dropped)."""
        return max(len(s) for s in self.filter_sets)

    def pe_rows(self, shape: RsConvShape):
        """Yield ``(i, j, c, y, ky, filters)``: each used PE, the ifmap row it receives and its
        filters."""
        e = len(self.out_rows)
        for j in range(self.used_cols):
            oy, fs = self.out_rows[j % e], self.filter_sets[j // e]
            for i, (c, ky) in enumerate(self.items):
                yield i, j, c, oy * shape.stride + ky, ky, fs


@dataclass(frozen=True)
class RsMapping:
    """A conv layer mapped onto a ``rows`` x ``cols`` row-stationary array (:func:`map_conv`)."""
    shape: RsConvShape
    rows: int
    cols: int
    filters: int           # F: interleaved filters per PE
    strip: int             # e: output rows per column block
    blocks: int            # column blocks (horizontal replication over filter sets)
    passes: tuple[RsPass, ...]

    @property
    def pe_slots(self) -> int:
        """PE row commands issued (over all passes)."""
        return sum(p.used_rows * p.used_cols for p in self.passes)

    @property
    def mapped_utilization(self) -> float:
        """Share of the array's PEs the passes use, averaged over passes (spatial mapping)."""
        return self.pe_slots / (len(self.passes) * self.rows * self.cols)


def map_conv(shape: RsConvShape, rows: int, cols: int, pe: "RsPEConfig | None" = None
             ) -> RsMapping:
    """Map a conv layer onto the row-stationary array, Eyeriss style.

    The logical PE set of one channel is ``kh`` x ``out_h`` (filter rows down, output rows across).
    *Folding* when it is larger than the array: the ``(channel, filter row)`` items of a group
    are cut into passes of ``rows`` PE rows whose psums accumulate through the psum buffer
    (``acc``), and the output rows into strips of ``cols``. *Replication* when smaller: the
    items of several channels stack in one column (their psums add on the way up), and when a
    strip is narrower than the array, ``cols // out_h`` blocks of columns run different filter
    sets side by side. Each PE interleaves ``F`` filters, at most the psum spad depth and half
    the filter spad (``F * kw <= wt_depth // 2``, so the next pass's filters load into the other
    half while a pass runs), balanced over the filter sets (40 filters with at most 24 per set
    run as two sets of 20).

    Raises
    ------
    ValueError
        When the layer does not fit the PE: a filter row longer than ``pe.max_taps``, a
        stride above ``pe.max_stride``, an ifmap row wider than ``pe.max_width``.
    """
    from stamen.hw.rs_pe import RsPEConfig
    pe = RsPEConfig() if pe is None else pe
    rows, cols = _check_positive("Array rows", rows), _check_positive("Array cols", cols)
    if shape.kw > pe.max_taps:
        raise ValueError(f"conv kernel width {shape.kw} exceeds the row-stationary PE's "
                         f"{pe.max_taps} taps (ifmap spad {pe.ifmap_depth} - max stride "
                         f"{pe.max_stride})")
    if shape.stride > pe.max_stride:
        raise ValueError(f"conv stride {shape.stride} exceeds the row-stationary PE's max "
                         f"stride {pe.max_stride}")
    if shape.in_w > pe.max_width:
        raise ValueError(f"conv input row of {shape.in_w} exceeds the row-stationary PE's "
                         f"max width {pe.max_width}")
    g_in, g_out = shape.in_ch // shape.groups, shape.out_ch // shape.groups
    f_max = min(g_out, pe.psum_depth, pe.wt_depth // (2 * shape.kw))
    f = -(-g_out // -(-g_out // f_max))      # balanced sets: no padding filters when avoidable
    strip = min(shape.out_h, cols)
    blocks = max(1, cols // strip)
    fsets = [tuple(range(s, min(s + f, g_out))) for s in range(0, g_out, f)]
    items = [(c, ky) for c in range(g_in) for ky in range(shape.kh)]
    passes = []
    for g in range(shape.groups):
        for b0 in range(0, len(fsets), blocks):
            sets = tuple(tuple(g * g_out + o for o in s) for s in fsets[b0:b0 + blocks])
            for oy0 in range(0, shape.out_h, strip):
                out_rows = tuple(range(oy0, min(oy0 + strip, shape.out_h)))
                for i0 in range(0, len(items), rows):
                    its = tuple((g * g_in + c, ky) for c, ky in items[i0:i0 + rows])
                    passes.append(RsPass(g, its, out_rows, sets, i0 > 0))
    return RsMapping(shape, rows, cols, f, strip, blocks, tuple(passes))


def chain_cycles(timings: list[RsPeTiming]) -> int:
    """Return the cycles of one column of chained PEs (``timings[0]`` the top PE) from their
    common command handshake until the top PE's last psum has left and every PE is idle, with
    ideal streams at the column's ends (incoming psums always valid, outgoing always taken).

    Each PE runs its own unstalled timing (:func:`rs_pe_timing`) delayed by the stalls so far: a
    psum's last op waits in the MAC stage until the PE below has delivered the matching psum
    and the PE above has taken the previous one (one output register per PE). A stall freezes
    the PE, so its later events shift by it (max-plus recursion); this is exact when the stalled
    PE has no activation beats left to load meanwhile and an upper bound otherwise.
    """
    h = len(timings)
    n = len(timings[0].psum_cycles)
    if any(len(t.psum_cycles) != n for t in timings):
        raise ValueError("chained PEs must produce the same number of psums")
    s = [[0] * n for _ in range(h)]        # cycle each psum's last op is in the MAC stage
    delay = [0] * h
    for k in range(n):
        for i in reversed(range(h)):        # bottom PE first: its psum feeds the one above
            t = timings[i].psum_cycles[k] - 1 + delay[i]
            if i + 1 < h:
                t = max(t, s[i + 1][k] + 1)
            if i > 0 and k > 0:
                t = max(t, s[i - 1][k - 1])
            delay[i] = t - (timings[i].psum_cycles[k] - 1)
            s[i][k] = t
    end = max(tm.cycles + d for tm, d in zip(timings, delay))
    if n:
        end = max(end, s[0][n - 1] + 2)     # the top PE's last psum taken
    return end


def window_activations(x: np.ndarray, shape: RsConvShape, zp: int) -> np.ndarray:
    """Return, for each ifmap row of ``x`` (any leading axes, the last one ``in_w`` wide), its
    activations ``!= zp`` summed over the row's ``out_w`` windows (an activation counts once
    per window that holds it): the ops a compressed row costs a PE per filter."""
    win = np.lib.stride_tricks.sliding_window_view(np.asarray(x) != zp, shape.kw, axis=-1)
    return win[..., ::shape.stride, :][..., :shape.out_w, :].sum(axis=(-2, -1))


@dataclass(frozen=True)
class RsLayerCycles:
    """Cycles of a conv layer on the row-stationary array (:func:`rs_conv_cycles`)."""
    cycles: int             # sum over passes of the slowest column
    pass_cycles: tuple[int, ...]
    macs: int               # the layer's MACs (dense)
    issued_macs: int        # MACs the PEs spent a cycle on (skipped ones excluded)
    skipped_macs: int
    pe_utilization: float   # issued MACs / (PEs x cycles): the share of PE cycles spent on a MAC op


def rs_conv_cycles(x: np.ndarray, mapping: RsMapping, zp: int, zero_skip: bool = False
                   ) -> RsLayerCycles:
    """Return the array cycles of a conv layer on one input ``x`` (int8, ``(in_ch, in_h, in_w)``,
    already padded with ``zp``), pass by pass: each pass costs its slowest column
    (:func:`chain_cycles`), passes run back to back (filters preloaded, see :func:`map_conv`).
    """
    shape = mapping.shape
    x = np.asarray(x)
    if x.dtype != np.int8 or x.shape != (shape.in_ch, shape.in_h, shape.in_w):
        raise ValueError(f"rs_conv_cycles: input must be int8 of shape "
                         f"{(shape.in_ch, shape.in_h, shape.in_w)}, not {x.dtype} {x.shape}")
    cache: dict = {}
    live = window_activations(x, shape, zp)

    def timing(c: int, y: int, f: int) -> RsPeTiming:
        key = (c, y, f)
        if key not in cache:
            cache[key] = rs_pe_timing(x[c, y], shape.kw, stride=shape.stride, zp=zp,
                                      zero_skip=zero_skip, filters=f)
        return cache[key]

    per_pass, issued, skipped = [], 0, 0
    for p in mapping.passes:
        f = p.filters
        cols: dict[int, list] = {}
        for i, j, c, y, ky, fs in p.pe_rows(shape):
            cols.setdefault(j, []).append(timing(c, y, f))
            n_present = int(live[c, y]) if zero_skip else shape.out_w * shape.kw
            issued += f * n_present
            skipped += f * (shape.out_w * shape.kw - n_present)
        per_pass.append(max(chain_cycles(t) for t in cols.values()))
    total = sum(per_pass)
    pes = mapping.rows * mapping.cols
    return RsLayerCycles(total, tuple(per_pass), shape.macs, issued, skipped,
                         issued / (pes * total) if total else 0.0)


# -- the row-stationary device engine (hw/rs_matmul.py): a MATMUL's passes and cycles -----------


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
    from stamen.hw.params import RS_MAX_STRIDE
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
    from stamen.hw.params import RS_SEGMENT
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
    from stamen.hw.params import RS_PASS_QUEUE
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
