"""The Eyeriss row-stationary mapping of a conv layer onto ``hw/rs_array.py`` and its cycles.

``map_conv`` folds and replicates a layer onto the array (docs/internals.md, "Row-stationary array
in the Eyeriss mapping"); ``rs_conv_cycles`` runs each PE's exact timing (``sim/rs_pe.py``) through
the column chain, pass by pass. The block tests check it against the RTL; ``stamen bench --suite
sparsity`` reports it as ``rs-eyeriss``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sim.rs_pe import RsPeTiming, check_positive, rs_pe_timing

__all__ = ["RsConvShape", "linear_shape", "RsPass", "RsMapping", "map_conv", "chain_cycles",
           "RsLayerCycles", "rs_conv_cycles", "window_activations"]


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
            check_positive(f"RsConvShape.{f}", getattr(self, f))
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
    rows, cols = check_positive("Array rows", rows), check_positive("Array cols", cols)
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
