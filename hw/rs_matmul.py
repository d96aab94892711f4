"""The row-stationary MATMUL engine: the shared ISA's MATMULs as 1-D convolutions on an
:class:`~.rs_array.RsArray` of Eyeriss-style PEs (``dataflow="rs"``).

docs/internals.md ("Row-stationary device engine") gives the mapping (PE ``(r, j)``: lane ``r``,
weight column ``j``), the groups (window mode, tap mode) and the passes.

Units
-----
* :class:`RsPassSequencer` walks the passes (running sums, no multiplier) and holds the LOOP state.
* :class:`RsFilterLoader` reads each group's ``taps*R`` WT rows, one per cycle, and writes row
  ``r`` of the tile to PE row ``r`` (column ``j`` gets byte ``j``) into one of two filter spad
  halves, so group ``g+1`` loads while group ``g`` runs; group ``g`` may load once every PE
  row has started group ``g-1`` (so it is done with ``g-2``, whose half ``g`` overwrites).
* A pass is *issued* to three queues at once: :class:`RsRowDispatcher` (one queue per PE
  row), :class:`RsFeeder` and :class:`RsAccumulator`, when the accumulator has room: at most
  ``RS_PASS_QUEUE`` passes are in flight (issued and not yet written to ACC).
* :class:`RsRowDispatcher` gives each PE row its next pass as soon as the row has finished its
  last one and the pass's filters are loaded: the rows run apart (a fast row up to
  ``RS_PASS_QUEUE`` passes ahead), so with zero skipping a row's work averages over its
  passes instead of every pass lasting as long as its busiest row.
* :class:`RsFeeder` walks the issued passes' runs one after another, one act row per cycle,
  and pushes lane ``r`` into PE row ``r``'s FIFO (``RS_PASS_QUEUE`` runs plus
  ``RS_FEED_DEPTH`` beats, so the walk never waits for a slow row), then the end marker; with
  ``zero_skip`` and windows of two taps or more it pushes only the lanes that differ from the
  zero point (the compressed row: value and position), and tells the PEs how far its walk of
  the current pass has got, so a PE whose FIFO is empty ends a window without waiting for the
  next non-zero. A one-tap pass gains nothing from skipping (the walk already costs a cycle
  per position), so its zeros go to the PEs and are gated. Every PE of a row sees the same
  beats and commands, so the PEs of a row stay in step and PE ``(r, 0)``'s ``ready`` stands
  for the row. The walk runs ahead of the rows, so a pass's beats wait in the FIFOs when a
  row starts it.
* The array runs with psum FIFOs beside its PEs, a column adder and a command stream per PE
  row (``RsArray(psum_fifo_depth=rs_psum_fifo_depth(cfg))``, deep enough for the psums of
  ``RS_PASS_QUEUE`` passes): no PE waits for the PE below, and the psums of a pass meet in
  the adder however far apart the rows ran.
* :class:`RsAccumulator` read-modify-writes each psum row (all columns leave in the same cycle)
  into its ACC row, pass by pass.

The engine's cycles are therefore the rows' own paces, bounded by the passes in flight, plus
the first group's load and the pipeline latencies (``sw/sim/rs_engine.py``'s ``rs_matmul_cycles``): those
of ``hw/timing.py`` (``RS_FEED_START``, ``RS_FEED_LATENCY``, ``RS_QUEUE_FREE``,
``RS_END_CYCLES``, the PEs' ``RS_PSUM_LATENCY``), which follow from the units' registers below;
``tests/test_hw_matmul.py`` checks the engine's cycles against that model.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from . import bus, isa
from .engine import AccumulatorBase, MatmulEngineBase, check_cfg, matmul_field, spad_read_port
from .params import RS_FEED_DEPTH, RS_MAX_STRIDE, RS_PASS_QUEUE, RS_SEGMENT, AccelConfig
from .rs_array import RsArray, rs_wt_write_layout
from .rs_pe import RsPEConfig

__all__ = ["RsMatmulEngine", "RsPassSequencer", "RsFilterLoader", "RsFeeder", "RsRowDispatcher",
           "RsAccumulator", "rs_pe_config", "rs_pass_layout", "rs_psum_fifo_depth",
           "rs_act_fifo_depth", "RS_WIDE_ADDR"]

#: The largest window stride the window test, the run width and the segment step below handle
#: (strides 1 and 2, as shifts).
_HANDLED_MAX_STRIDE = 2


def _check_max_stride() -> None:
    if RS_MAX_STRIDE != _HANDLED_MAX_STRIDE:
        raise ValueError(f"The row-stationary engine's maximum window stride must be "
                         f"{_HANDLED_MAX_STRIDE}, not RS_MAX_STRIDE = {RS_MAX_STRIDE!r}")

#: Bits of an exact act row sum (``act_addr`` plus five products of 16-bit fields < ``2**35``):
#: the engine keeps untruncated addresses and compares them with the ACT depth.
RS_WIDE_ADDR = isa.SPAD_ADDR_WIDTH + 19


def _bits(name):
    return Shape.cast(matmul_field(name)).width


def _loop_bits(name):
    return Shape.cast(isa.LoopArgs.as_shape()[name].shape).width


#: Bits of a run's position step (``act_stride`` in window mode, ``m_stride`` in tap mode).
_PSTEP_BITS = max(_bits("act_stride"), _loop_bits("m_stride"))


def rs_pe_config(cfg: AccelConfig) -> RsPEConfig:
    """Return the PE sizes of a row-stationary device.

    Raises
    ------
    ValueError
        If ``params.RS_MAX_STRIDE`` is a window stride this engine does not implement (it
        handles strides 1 and 2).
    """
    check_cfg(cfg)
    _check_max_stride()
    return RsPEConfig(wt_depth=cfg.rs_wt_depth, ifmap_depth=cfg.rs_ifmap_depth,
                      psum_depth=cfg.rs_psum_depth, max_width=cfg.rs_max_width,
                      max_stride=RS_MAX_STRIDE)


def rs_psum_fifo_depth(cfg: AccelConfig) -> int:
    """Depth of the psum FIFO beside each PE (``RsArray(psum_fifo_depth=)``): the outputs of
    the ``RS_PASS_QUEUE`` passes in flight and the column adder's stages, so a PE that runs
    ahead of the others never waits."""
    return RS_PASS_QUEUE * RS_SEGMENT + cfg.rows + RS_FEED_DEPTH


def rs_act_fifo_depth(cfg: AccelConfig) -> int:
    """Depth of each PE row's activation FIFO (:class:`RsFeeder`): the runs of the
    ``RS_PASS_QUEUE`` passes in flight, each with its end marker."""
    return RS_PASS_QUEUE * (cfg.rs_max_width + 1) + RS_FEED_DEPTH


def rs_pass_layout(cfg: AccelConfig) -> data.StructLayout:
    """Layout of a pass: the run's first act row ``base`` (exact), position step ``pstep``,
    ``width`` positions, ``outputs``, ``taps``, ``stride``; the filter spad ``half``; the
    group index ``group``, ``first`` (the group's first pass); ACC ``acc_row`` of output 0,
    ``keep`` (add to / max with the old ACC rows) and ``last`` (the MATMUL's last pass)."""
    pe = rs_pe_config(cfg)
    return data.StructLayout({
        "base": RS_WIDE_ADDR, "pstep": _PSTEP_BITS, "width": range(pe.max_width + 1),
        "outputs": range(RS_SEGMENT + 1), "taps": range(pe.max_taps + 1),
        "stride": range(RS_MAX_STRIDE + 1), "half": 1, "group": matmul_field("k_tiles"), "first": 1,
        "acc_row": bus.spad_addr_width(cfg, "acc"), "keep": 1, "last": 1})


class RsPassSequencer(wiring.Component):
    """Walk a MATMUL's passes (module docstring) and hold the LOOP state.

    ``loop_set`` loads ``loop``, ``clear`` resets it to ``isa.LOOP_RESET``. On ``start`` (with
    ``args``) the passes follow on ``o_pass``, one per handshake, group outer, then output row,
    then segment; ``o_pass.valid`` falls after the last. ``group_taps`` is the taps of a full
    group of the running MATMUL (valid from the cycle after ``start``).

    Members
    -------
    loop : ``In(isa.LoopArgs)``; loop_set, clear : ``In(1)``
    start : ``In(1)``; args : ``In(isa.MatmulArgs)``
    o_pass : ``Out(stream.Signature(rs_pass_layout(cfg)))``
    group_taps : ``Out(range(cfg.rs_max_taps + 1))``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({
            "loop": In(isa.LoopArgs), "loop_set": In(1), "clear": In(1),
            "start": In(1), "args": In(isa.MatmulArgs),
            "o_pass": Out(stream.Signature(rs_pass_layout(cfg))),
            "group_taps": Out(range(cfg.rs_max_taps + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        wide = unsigned(RS_WIDE_ADDR)
        loop = Signal(isa.LoopArgs, init=isa.LOOP_RESET)
        with m.If(self.clear):
            m.d.sync += loop.eq(isa.LoopArgs.const(isa.LOOP_RESET))
        with m.Elif(self.loop_set):
            m.d.sync += loop.eq(self.loop)

        args = Signal(isa.MatmulArgs)
        window = Signal()
        taps = self.group_taps                         # S
        stride = Signal(range(RS_MAX_STRIDE + 1))      # U
        pstep = Signal(_PSTEP_BITS)
        row_outputs = Signal(matmul_field("m"))              # OW
        seg_step = Signal(wide)                        # RS_SEGMENT * U * pstep
        kt = Signal(_bits("k_tiles") + 1)
        group = Signal(matmul_field("k_tiles"))
        t0, t1 = Signal(_loop_bits("k_wrap0")), Signal(_loop_bits("k_wrap1"))
        k2, k1, k0, rbase, sbase = (Signal(wide, name=n) for n in ("k2", "k1", "k0", "rbase",
                                                                   "sbase"))
        i = Signal(_bits("m") + 1)                     # first output of the row
        o0 = Signal(_bits("m"))                        # first output of the segment
        p = self.o_pass

        # The pass at the current position of the walk.
        left = Signal(_bits("m") + 1)
        in_row = Signal(_bits("m") + 1)
        seg_left = Signal.like(in_row)
        n = Signal(range(RS_SEGMENT + 1))
        tk = Signal(range(cfg.rs_max_taps + 1))
        m.d.comb += [
            left.eq(args.m - i),
            in_row.eq(Mux(row_outputs < left, row_outputs, left)),
            seg_left.eq(in_row - o0),
            n.eq(Mux(seg_left < RS_SEGMENT, seg_left, RS_SEGMENT)),
            tk.eq(Mux(args.k_tiles - kt < taps, args.k_tiles - kt, taps)),
        ]
        next_seg = o0 + RS_SEGMENT < in_row
        next_row = i + row_outputs < args.m
        next_group = kt + taps < args.k_tiles
        m.d.comb += [
            p.p.base.eq(sbase), p.p.pstep.eq(pstep), p.p.outputs.eq(n), p.p.taps.eq(tk),
            p.p.width.eq(Mux(stride == 2, (n - 1) << 1, n - 1) + tk), p.p.stride.eq(stride),
            p.p.half.eq(group[0]), p.p.group.eq(group), p.p.first.eq((i == 0) & (o0 == 0)),
            p.p.acc_row.eq(args.acc_addr + i + o0), p.p.keep.eq(args.accumulate | (kt != 0)),
            p.p.last.eq(~next_seg & ~next_row & ~next_group),
        ]

        # The next group's base: step the kernel levels by S taps (window) or one (tap mode).
        t0_wrap = t0 + 1 == loop.k_wrap0
        step_t1 = window | t0_wrap
        t1_wrap = t1 + 1 == loop.k_wrap1
        k0_next = Signal(wide)
        m.d.comb += k0_next.eq(Mux(step_t1, Mux(t1_wrap, k2 + loop.k_stride2, k1 + loop.k_stride1),
                                   k0 + args.act_stride))

        with m.If(p.valid & p.ready):
            with m.If(next_seg):
                m.d.sync += [o0.eq(o0 + RS_SEGMENT), sbase.eq(sbase + seg_step)]
            with m.Elif(next_row):
                m.d.sync += [i.eq(i + row_outputs), o0.eq(0), rbase.eq(rbase + loop.m_stride1),
                             sbase.eq(rbase + loop.m_stride1)]
            with m.Elif(next_group):
                m.d.sync += [kt.eq(kt + taps), group.eq(group + 1), i.eq(0), o0.eq(0),
                             k0.eq(k0_next), rbase.eq(k0_next), sbase.eq(k0_next)]
                with m.If(step_t1):
                    m.d.sync += t0.eq(0)
                    with m.If(t1_wrap):
                        m.d.sync += [t1.eq(0), k2.eq(k0_next), k1.eq(k0_next)]
                    with m.Else():
                        m.d.sync += [t1.eq(t1 + 1), k1.eq(k0_next)]
                with m.Else():
                    m.d.sync += t0.eq(t0 + 1)
            with m.Else():
                m.d.sync += p.valid.eq(0)

        with m.If(self.start):
            a, lp = self.args, loop
            is_window = ((lp.k_wrap0 >= 2) & (lp.k_wrap0 <= cfg.rs_max_taps) & ~a.acc_max
                         & ((lp.m_stride == a.act_stride) | (lp.m_stride == 2 * a.act_stride)))
            u = Mux(is_window & (lp.m_stride != a.act_stride), 2, 1)
            step = Mux(is_window, a.act_stride, lp.m_stride)
            log_seg = exact_log2(RS_SEGMENT)
            m.d.sync += [
                args.eq(a), window.eq(is_window), taps.eq(Mux(is_window, lp.k_wrap0, 1)),
                stride.eq(u), pstep.eq(step),
                seg_step.eq(Mux(u == 2, step << (log_seg + 1), step << log_seg)),
                row_outputs.eq(Mux(lp.m_wrap == 0, a.m, lp.m_wrap)),
                kt.eq(0), group.eq(0), t0.eq(0), t1.eq(0), i.eq(0), o0.eq(0),
                *(r.eq(a.act_addr) for r in (k2, k1, k0, rbase, sbase)),
                p.valid.eq(1),
            ]
        return m


class RsFilterLoader(wiring.Component):
    """Read each group's filter rows from the WT spad into the array's filter spads.

    On ``start`` (with ``args``; ``group_taps`` valid from the next cycle) it walks the groups:
    group ``g`` (taps ``kt = g*S ..``, fewer in a last partial group) reads WT rows
    ``w0(kt) + r`` (``w0 = wt_addr + kt*R``, or ``wt_addr`` with ``wt_repeat``), tap outer,
    ``r`` inner, one per cycle, and writes row ``r``'s ``C`` weights to PE row ``r``, column
    ``j`` getting byte ``j``, at filter address ``half*rs_max_taps + tap`` (``half = g % 2``)
    one cycle later. Group ``g`` starts only when ``g <= max(1, started)`` (``started``: groups
    whose first pass every PE row has accepted). ``loaded`` counts the groups whose writes are
    done.

    Members
    -------
    start : ``In(1)``; args : ``In(isa.MatmulArgs)``; group_taps : ``In(range(rs_max_taps+1))``
    started : ``In(k_tiles shape)``; loaded : ``Out(k_tiles shape)``
    wt_rd : ``In(memory.ReadPort.Signature(...))`` of the WT spad
    wt_write : ``Out(rs_wt_write_layout(pe, cols)).array(rows)``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        pe = rs_pe_config(cfg)
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs),
            "group_taps": In(range(cfg.rs_max_taps + 1)),
            "started": In(matmul_field("k_tiles")), "loaded": Out(matmul_field("k_tiles")),
            "wt_rd": spad_read_port(cfg, "wt"),
            "wt_write": Out(rs_wt_write_layout(pe, cfg.cols)).array(cfg.rows),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        rows = cfg.rows
        active = Signal()
        args = Signal(isa.MatmulArgs)
        kt = Signal(_bits("k_tiles") + 1)       # the group's first tile
        group = Signal(matmul_field("k_tiles"))
        tap = Signal(range(cfg.rs_max_taps))
        r = Signal(range(rows))
        addr = Signal(_bits("wt_addr") + _bits("k_tiles"))
        group_taps = Signal(range(cfg.rs_max_taps + 1))
        m.d.comb += group_taps.eq(Mux(args.k_tiles - kt < self.group_taps, args.k_tiles - kt,
                                      self.group_taps))

        allowed = (group <= 1) | (group <= self.started)
        issue = active & allowed
        row_last = r == rows - 1
        tap_last = tap + 1 == group_taps
        m.d.comb += [self.wt_rd.addr.eq(addr), self.wt_rd.en.eq(issue)]
        with m.If(issue):
            m.d.sync += [r.eq(Mux(row_last, 0, r + 1)),
                         addr.eq(Mux(args.wt_repeat & row_last, args.wt_addr, addr + 1))]
            with m.If(row_last):
                m.d.sync += tap.eq(Mux(tap_last, 0, tap + 1))
                with m.If(tap_last):
                    m.d.sync += [group.eq(group + 1), kt.eq(kt + group_taps)]
                    with m.If(kt + group_taps >= args.k_tiles):
                        m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [args.eq(self.args), active.eq(1), kt.eq(0), group.eq(0), tap.eq(0),
                         r.eq(0), addr.eq(self.args.wt_addr), self.loaded.eq(0)]

        # Write stage: the row read last cycle goes to its PE row.
        s1_valid, s1_r, s1_last = Signal(), Signal.like(r), Signal()
        s1_addr = Signal(range(2 * cfg.rs_max_taps))
        m.d.sync += [s1_valid.eq(issue), s1_r.eq(r), s1_last.eq(issue & row_last & tap_last),
                     s1_addr.eq(Mux(group[0], cfg.rs_max_taps, 0) + tap)]
        with m.If(s1_last & ~self.start):
            m.d.sync += self.loaded.eq(self.loaded + 1)
        for row in range(rows):
            wr = self.wt_write[row]
            m.d.comb += [wr.en.eq(s1_valid & (s1_r == row)), wr.cols.eq(-1), wr.addr.eq(s1_addr),
                         *(wr.data[j].eq(self.wt_rd.data[j]) for j in range(cfg.cols))]
        return m


class RsFeeder(wiring.Component):
    """Stream the passes' runs of act rows into the PE rows' FIFOs, pass after pass.

    Passes queue on ``i_pass`` (up to ``RS_PASS_QUEUE``; ``zp`` steady through the MATMUL).
    For each in turn it reads act rows ``base + p*pstep`` for ``p < width``, one per cycle, and
    one cycle later pushes lane ``r`` (value, offset ``p``) into ``o_acts[r]`` (with
    ``zero_skip`` and ``taps >= 2`` only when it differs from ``zp``); then the end marker
    (offset ``width``) into every FIFO, and it reads the next pass's first row in the next
    cycle. Each FIFO holds ``RS_PASS_QUEUE`` whole runs plus ``RS_FEED_DEPTH`` beats, so, as
    long as a pass is issued only when the rows have finished the pass ``RS_PASS_QUEUE``
    before it, the walk never waits for a slow row and no row waits for a fast one.
    ``watermark`` is the positions of the walked pass pushed so far (each counted from the
    cycle its beats can be read; 0 from its end marker on), so a PE whose FIFO is empty knows
    the positions below it are zeros: such a PE is always in the pass being walked, since the
    pass's end marker is not in its FIFO yet.
    A row at or beyond the ACT depth is read at its truncated address and sets ``fault`` until
    ``clear``.

    Members
    -------
    i_pass : ``In(stream.Signature(rs_pass_layout(cfg)))``; zp : ``In(signed(8))``
    clear : ``In(1)``; fault : ``Out(1)``
    act_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT spad
    o_acts : ``Out(stream.Signature(pe.act_layout)).array(rows)``
    watermark : ``Out(range(pe.max_width + 1))``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        self._pe = rs_pe_config(cfg)
        super().__init__({
            "i_pass": In(stream.Signature(rs_pass_layout(cfg))), "zp": In(matmul_field("zp")),
            "clear": In(1), "fault": Out(1),
            "act_rd": spad_read_port(cfg, "act"),
            "o_acts": Out(stream.Signature(self._pe.act_layout)).array(cfg.rows),
            "watermark": Out(range(self._pe.max_width + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, pe = self._cfg, self._pe
        aw = bus.spad_addr_width(cfg, "act")
        beat = pe.act_layout
        layout = rs_pass_layout(cfg)
        m.submodules.queue = queue = SyncFIFO(width=layout.size, depth=RS_PASS_QUEUE)
        m.d.comb += [queue.w_en.eq(self.i_pass.valid), queue.w_data.eq(self.i_pass.payload),
                     self.i_pass.ready.eq(queue.w_rdy)]
        nxt = Signal(layout)
        m.d.comb += nxt.eq(queue.r_data)
        active = Signal()
        addr = Signal(RS_WIDE_ADDR)
        pstep = Signal(_PSTEP_BITS)
        pos = Signal(range(pe.max_width + 1))
        width = Signal.like(pos)
        compress = Signal()                    # zero_skip, and windows of two taps or more

        fifos = []
        depth = rs_act_fifo_depth(cfg)
        for r in range(cfg.rows):
            fifo = SyncFIFO(width=beat.size, depth=depth)
            m.submodules[f"fifo{r}"] = fifo
            fifos.append(fifo)
            o = self.o_acts[r]
            m.d.comb += [o.valid.eq(fifo.r_rdy), o.payload.eq(fifo.r_data),
                         fifo.r_en.eq(o.ready)]

        s1_valid, s1_end = Signal(), Signal()
        s1_pos = Signal.like(pos)
        room = Cat(f.w_level + s1_valid < depth for f in fifos).all()
        issue = active & room
        end = pos == width
        begin = queue.r_rdy & (~active | (issue & end))      # the next pass's walk
        m.d.comb += [self.act_rd.addr.eq(addr[:aw]), self.act_rd.en.eq(issue & ~end),
                     queue.r_en.eq(begin)]
        m.d.sync += [s1_valid.eq(issue), s1_end.eq(end), s1_pos.eq(pos)]
        with m.If(issue):
            m.d.sync += [pos.eq(pos + 1), addr.eq(addr + pstep)]
            with m.If(end):
                m.d.sync += active.eq(0)
            with m.Elif(addr >= cfg.act_spad_depth):
                m.d.sync += self.fault.eq(1)
        with m.If(self.clear):
            m.d.sync += self.fault.eq(0)
        with m.If(s1_valid):                                 # visible with the beat
            m.d.sync += self.watermark.eq(Mux(s1_end, 0, s1_pos + 1))
        with m.If(begin):
            m.d.sync += [active.eq(1), addr.eq(nxt.base), pstep.eq(nxt.pstep), pos.eq(0),
                         width.eq(nxt.width), compress.eq(nxt.taps >= 2)]

        for r, fifo in enumerate(fifos):
            value = self.act_rd.data[r]
            b = Signal(beat, name=f"beat{r}")
            m.d.comb += [b.value.eq(value), b.offset.eq(s1_pos), b.end.eq(s1_end),
                         fifo.w_data.eq(b)]
            present = s1_end | ((value != self.zp) | ~compress if cfg.zero_skip else C(1))
            m.d.comb += fifo.w_en.eq(s1_valid & present)
        return m


class RsRowDispatcher(wiring.Component):
    """Queue the passes' row commands for each PE row, so every row starts its next pass on
    its own.

    Passes queue on ``i_pass`` (one ``RS_PASS_QUEUE``-deep queue per PE row, all written in
    the same handshake). Row ``r``'s next command goes out on ``o_cmds[r]`` once its group's
    filters are loaded (``loaded > group``): the filter spad half's taps, ``taps``,
    ``stride``, one filter and the zero point ``zp``. ``started`` is the fewest groups any row
    has started (a group starts with its ``first`` pass), so the loader may overwrite the
    filter spad half of group ``g - 2`` once ``started >= g``. ``start`` resets it.

    Members
    -------
    start : ``In(1)``; i_pass : ``In(stream.Signature(rs_pass_layout(cfg)))``
    zp : ``In(signed(8))``; loaded : ``In(k_tiles shape)``; started : ``Out(k_tiles shape)``
    o_cmds : ``Out(stream.Signature(pe.cmd_layout)).array(rows)``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        self._pe = rs_pe_config(cfg)
        super().__init__({
            "start": In(1), "i_pass": In(stream.Signature(rs_pass_layout(cfg))),
            "zp": In(matmul_field("zp")), "loaded": In(matmul_field("k_tiles")),
            "started": Out(matmul_field("k_tiles")),
            "o_cmds": Out(stream.Signature(self._pe.cmd_layout)).array(cfg.rows),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        layout = rs_pass_layout(cfg)
        started = []
        ready = []
        for r in range(cfg.rows):
            queue = SyncFIFO(width=layout.size, depth=RS_PASS_QUEUE)
            m.submodules[f"queue{r}"] = queue
            ready.append(queue.w_rdy)
            m.d.comb += [queue.w_en.eq(self.i_pass.valid & self.i_pass.ready),
                         queue.w_data.eq(self.i_pass.payload)]
            head = Signal(layout, name=f"head{r}")
            n = Signal(matmul_field("k_tiles"), name=f"started{r}")
            started.append(n)
            o = self.o_cmds[r]
            m.d.comb += [
                head.eq(queue.r_data),
                o.valid.eq(queue.r_rdy & (self.loaded > head.group)), queue.r_en.eq(o.valid
                                                                                     & o.ready),
                o.p.wt_base.eq(Mux(head.half, cfg.rs_max_taps, 0)), o.p.taps.eq(head.taps),
                o.p.stride.eq(head.stride), o.p.filters.eq(1), o.p.zp.eq(self.zp),
                o.p.acc.eq(0),
            ]
            with m.If(self.start):
                m.d.sync += n.eq(0)
            with m.Elif(o.valid & o.ready & head.first):
                m.d.sync += n.eq(n + 1)
        m.d.comb += [self.i_pass.ready.eq(Cat(ready).all()), self.started.eq(_minimum(started))]
        return m


def _minimum(values):
    """The smallest of ``values`` (unsigned), as a tree of comparisons."""
    while len(values) > 1:
        pairs = [Mux(a < b, a, b) for a, b in zip(values[::2], values[1::2])]
        values = pairs + values[len(values) - len(values) % 2:]
    return values[0]


class RsAccumulator(AccumulatorBase):
    """Add (or max) the array's psum rows into ACC, pass by pass.

    Each pass is queued on ``i_pass`` when it is issued (up to ``RS_PASS_QUEUE``); its
    ``outputs`` psum rows go to ACC rows ``acc_row + x`` (``keep``: add to the old row, or max with it when ``acc_max``; else
    overwrite), with the write stage of :class:`~.engine.AccumulatorBase`; ``done`` marks the
    last write of a ``last`` pass.

    Members: those of :class:`~.engine.AccumulatorBase`, and
    ``i_pass`` : ``In(stream.Signature(rs_pass_layout(cfg)))``.
    """

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg, {"i_pass": In(stream.Signature(rs_pass_layout(cfg)))})

    def elaborate(self, platform):
        m = Module()
        layout = rs_pass_layout(self.cfg)
        m.submodules.queue = queue = SyncFIFO(width=layout.size, depth=RS_PASS_QUEUE)
        m.d.comb += [queue.w_en.eq(self.i_pass.valid), queue.w_data.eq(self.i_pass.payload),
                     self.i_pass.ready.eq(queue.w_rdy)]
        cur = Signal(layout)
        m.d.comb += cur.eq(queue.r_data)
        acc_max = Signal()
        with m.If(self.start):
            m.d.sync += acc_max.eq(self.args.acc_max)
        x = Signal(range(RS_SEGMENT))
        addr = Signal.like(self.acc_rd.addr)
        psums = self.i_psums
        out_last = x + 1 == cur.outputs
        m.d.comb += [addr.eq(cur.acc_row + x), self.acc_rd.addr.eq(addr),
                     self.acc_rd.en.eq(psums.valid), queue.r_en.eq(psums.valid & out_last)]
        with m.If(psums.valid):
            m.d.sync += x.eq(Mux(out_last, 0, x + 1))
        self.write_stage(m, addr, cur.keep, acc_max, cur.last & out_last)
        return m


class RsMatmulEngine(MatmulEngineBase):
    """Execute MATMUL instructions (``hw/isa.py``) on a row-stationary array; see the module
    docstring. The unit command protocol is that of :class:`~.matmul.MatmulEngine`; the cycles
    are ``sw.sim.rs_engine.rs_matmul_cycles``.

    Parameters
    ----------
    cfg : AccelConfig
        ``dataflow="rs"``; ``zero_gate`` and ``zero_skip`` pass to the PEs.

    Members: those of :class:`~.engine.MatmulEngineBase`.

    Raises
    ------
    ValueError
        If ``params.RS_MAX_STRIDE`` is not 2 (the engine handles window strides 1 and 2).
    """

    def __init__(self, cfg: AccelConfig):
        _check_max_stride()
        super().__init__(cfg)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pe = rs_pe_config(cfg)
        R, Cc = cfg.rows, cfg.cols
        m.submodules.array = array = RsArray(pe, R, Cc, zero_gate=cfg.zero_gate,
                                             zero_skip=cfg.zero_skip,
                                             psum_fifo_depth=rs_psum_fifo_depth(cfg))
        m.submodules.seq = seq = RsPassSequencer(cfg)
        m.submodules.loader = loader = RsFilterLoader(cfg)
        m.submodules.feeder = feeder = RsFeeder(cfg)
        m.submodules.dispatch = dispatch = RsRowDispatcher(cfg)
        m.submodules.accum = accum = RsAccumulator(cfg)

        start = self.i_cmd.valid & ~self.busy
        m.d.comb += [self.i_cmd.ready.eq(~self.busy), self.i_loop.ready.eq(~self.busy)]
        for unit in (seq, loader, accum):
            m.d.comb += [unit.start.eq(start), unit.args.eq(self.i_cmd.p)]
        m.d.comb += [seq.loop.eq(self.i_loop.p), seq.loop_set.eq(self.i_loop.valid & ~self.busy),
                     seq.clear.eq(self.loop_clear), loader.group_taps.eq(seq.group_taps),
                     feeder.clear.eq(start), self.fault.eq(feeder.fault),
                     dispatch.start.eq(start)]
        zp = Signal(matmul_field("zp"))
        with m.If(start):
            m.d.sync += [self.busy.eq(1), zp.eq(self.i_cmd.p.zp)]
        with m.If(accum.done):
            m.d.sync += self.busy.eq(0)

        # A pass is issued to the PE rows, the feeder and the accumulator at once, when the
        # accumulator has room (it frees a slot once a pass's psums are all written, and then
        # every row and the feeder are done with that pass, so their queues have room too).
        ps = seq.o_pass
        fire = ps.valid & dispatch.i_pass.ready & feeder.i_pass.ready & accum.i_pass.ready
        m.d.comb += [ps.ready.eq(fire), feeder.zp.eq(zp), dispatch.zp.eq(zp),
                     dispatch.loaded.eq(loader.loaded), loader.started.eq(dispatch.started)]
        for unit in (dispatch, feeder, accum):
            m.d.comb += [unit.i_pass.valid.eq(fire), unit.i_pass.payload.eq(ps.p)]
        for r in range(R):
            wiring.connect(m, dispatch.o_cmds[r], array.i_row_cmds[r])

        wiring.connect(m, wiring.flipped(self.wt_rd), loader.wt_rd)
        wiring.connect(m, wiring.flipped(self.act_rd), feeder.act_rd)
        wiring.connect(m, wiring.flipped(self.acc_rd), accum.acc_rd)
        wiring.connect(m, wiring.flipped(self.acc_wr), accum.acc_wr)
        m.d.comb += array.watermark.eq(feeder.watermark)
        for r in range(R):
            m.d.comb += array.wt_write[r].eq(loader.wt_write[r])
            o = feeder.o_acts[r]
            # The PEs of a row take the same beats in the same cycles (module docstring).
            m.d.comb += o.ready.eq(array.i_acts[r][0].ready)
            for j in range(Cc):
                m.d.comb += [array.i_acts[r][j].valid.eq(o.valid),
                             array.i_acts[r][j].payload.eq(o.payload)]
        for j in range(Cc):
            m.d.comb += [array.o_psums[j].ready.eq(1), accum.i_psums.p[j].eq(array.o_psums[j].p)]
        m.d.comb += [accum.i_psums.valid.eq(array.o_psums[0].valid),
                     self.macs_inc.eq(array.macs_inc), self.gated_inc.eq(array.gated_inc),
                     self.skipped_inc.eq(array.skipped_inc)]
        return m
