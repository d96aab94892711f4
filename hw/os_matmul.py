"""The output-stationary MATMUL unit: executes the same MATMUL as :class:`~hw.matmul.MatmulEngine`
(``hw/isa.py``) on an :class:`~hw.os_array.OsSystolicArray`, selected by ``cfg.dataflow == "os"``.

Schedule. The ``m`` output rows are taken in groups of ``R`` (``G = ceil(m / R)`` groups, the last
one possibly partial); PE ``(r, c)`` keeps output ``(g*R + r, c)`` while the group's whole reduction
(``k_tiles * R`` steps) streams through, so a MATMUL streams ``G * k_tiles * R`` steps, one per
cycle, with no bubbles between tiles or groups. In each cycle the act spad is read once
(``act_row(kt, g*R + r)`` for the group's rows in turn, ``R`` cycles per tile) and the weight spad
once (one weight row ``W[k][:]`` per step). An act row holds the ``R`` reduction values of one
output row, so each PE row has an ``R``-entry shift register (together an ``R x R`` transposing
buffer): row ``r`` of a tile is loaded into it as its read's data arrives (the tile's ``r``-th read)
and shifted out one value per cycle, which is also exactly the skew the array needs. A group's
outputs leave the PEs' drain registers while the next group computes and are read-modify-written
into ACC one row per cycle. With ``acc_max`` each tile is its own reduction (its products are
drained per tile and maxed into ACC, as the ISA requires); otherwise the PEs reduce all tiles and
each ACC row is written once.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .engine import (AccumulatorBase, MatmulEngineBase, act_row_layout, check_cfg, loop_registers,
                     matmul_field, spad_read_port)
from .os_array import OsActBeat, OsSystolicArray, os_wts_layout
from .params import AccelConfig

__all__ = ["OsMatmulEngine", "OsActAddressGenerator", "OsActStager", "OsWeightReader",
           "OsAccumulator"]


class OsActAddressGenerator(wiring.Component):
    """Generate the MATMUL's activation rows (``act_row`` of ``hw/isa.py``) in output-stationary
    order, and hold the LOOP state they follow.

    The LOOP state behaves as in :class:`~hw.matmul.ActAddressGenerator` (``loop`` with
    ``loop_set``, ``clear`` wins; neither while rows are generated). On ``start`` (with ``args``
    valid in that cycle), ``row`` becomes ``act_row(0, 0)`` from the next cycle. Each cycle with
    ``step`` it moves to the next row slot: for each group of ``R`` rows, for each tile ``kt``,
    the rows ``i = g*R .. g*R + R-1`` (rows at or beyond ``m`` are generated too; they are not
    read). ``block_end`` marks the last slot of a tile (``i = g*R + R-1``), ``group_end`` that of
    the group's last tile. ``act_row`` splits into a tile part ``act_addr + t0*act_stride +
    t1*k_stride1 + t2*k_stride2`` and a row part ``i0*m_stride + i1*m_stride1``, each walked with
    counters and running sums as in ``ActAddressGenerator``; the row part is rewound to the
    group's first row at each tile end and the tile part to ``act_addr`` at each group end.
    ``row`` is their sum, with ``over`` as :func:`~hw.engine.act_row_layout` defines it.

    Members
    -------
    loop : ``In(isa.LoopArgs)``; loop_set, clear : ``In(1)``
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``
    step, block_end, group_end : ``In(1)``
    row : ``Out(act_row_layout(cfg))``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "loop": In(isa.LoopArgs), "loop_set": In(1), "clear": In(1),
            "start": In(1), "args": In(isa.MatmulArgs), "step": In(1), "block_end": In(1),
            "group_end": In(1), "row": Out(act_row_layout(cfg)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        row_layout = act_row_layout(self.cfg)
        aw = bus.spad_addr_width(self.cfg, "act")
        depth = self.cfg.act_spad_depth
        stride_layout, stride, plus, wraps, strides = loop_registers(m, self.cfg, self)
        loop_fields = isa.LoopArgs.as_shape()

        step, block_end, group_end = self.step, self.block_end, self.group_end
        # Tile part: counters t0, t1 and bases k2, k1, k0 (outermost first), from `base`.
        act_stride = Signal(stride_layout)
        base = Signal(row_layout)
        t0, t1 = (Signal(loop_fields["k_wrap0"].shape, name=n) for n in ("t0", "t1"))
        k2, k1, k0 = (Signal(row_layout, name=n) for n in ("k2", "k1", "k0"))
        k0_wrap, k1_wrap = t0 + 1 == wraps["k_wrap0"], t1 + 1 == wraps["k_wrap1"]
        tile_next = Signal(row_layout)
        m.d.comb += tile_next.eq(Mux(k0_wrap, Mux(k1_wrap, plus(k2, strides["k_stride2"]),
                                                  plus(k1, strides["k_stride1"])),
                                     plus(k0, act_stride)))
        first = Cat(self.args.act_addr[:aw], self.args.act_addr >= depth)
        with m.If(self.start | (step & group_end)):
            restart = Mux(self.start, first, base)
            m.d.sync += [t0.eq(0), t1.eq(0), k0.eq(restart), k1.eq(restart), k2.eq(restart)]
        with m.Elif(step & block_end):
            m.d.sync += k0.eq(tile_next)
            with m.If(k0_wrap):
                m.d.sync += [t0.eq(0), k1.eq(tile_next)]
                with m.If(k1_wrap):
                    m.d.sync += [t1.eq(0), k2.eq(tile_next)]
                with m.Else():
                    m.d.sync += t1.eq(t1 + 1)
            with m.Else():
                m.d.sync += t0.eq(t0 + 1)
        with m.If(self.start):
            m.d.sync += [base.eq(first), act_stride.eq(stride(self.args.act_stride))]

        # Row part: counter i0 and bases m1, mrow, plus their values at the group's first row.
        i0, g_i0 = (Signal(loop_fields["m_wrap"].shape, name=n) for n in ("i0", "g_i0"))
        m1, mrow, g_m1, g_mrow = (Signal(row_layout, name=n)
                                  for n in ("m1", "mrow", "g_m1", "g_mrow"))
        i0_wrap = i0 + 1 == wraps["m_wrap"]
        n_i0, n_m1, n_mrow = Signal.like(i0), Signal(row_layout), Signal(row_layout)
        m.d.comb += [n_i0.eq(Mux(i0_wrap, 0, i0 + 1)),
                     n_m1.eq(Mux(i0_wrap, plus(m1, strides["m_stride1"]), m1)),
                     n_mrow.eq(Mux(i0_wrap, n_m1, plus(mrow, strides["m_stride"])))]
        state, saved, nxt = (i0, m1, mrow), (g_i0, g_m1, g_mrow), (n_i0, n_m1, n_mrow)
        with m.If(self.start):
            m.d.sync += [s.eq(0) for s in state + saved]
        with m.Elif(step & group_end):
            m.d.sync += [s.eq(n) for s, n in zip(state + saved, nxt + nxt)]
        with m.Elif(step & block_end):
            m.d.sync += [s.eq(g) for s, g in zip(state, saved)]
        with m.Elif(step):
            m.d.sync += [s.eq(n) for s, n in zip(state, nxt)]

        total = k0.addr + mrow.addr
        m.d.comb += self.row.eq(Cat(total[:aw], k0.over | mrow.over | (total >= depth)))
        return m


class OsActStager(wiring.Component):
    """Read the MATMUL's activation rows in output-stationary order, one per cycle, and stage
    them into the per-PE-row shift registers that feed the array.

    After ``start`` (with ``args`` valid in that cycle) it runs ``G * k_tiles * R`` slot cycles
    (``G = ceil(m / R)``), ``step`` high in each, ``block_end`` / ``group_end`` as
    :class:`OsActAddressGenerator` defines them. Slot ``r`` of a tile reads ``row`` (the generator's
    row of that slot) when ``g*R + r < m``. The row's ``R`` values ``a - zp`` are loaded into PE row
    ``r``'s shift register in the cycle the read's data arrives and leave on ``o_acts[r]`` one per
    cycle, element ``j`` ``2 + j`` cycles after the read (step ``j`` of the tile), so row ``r`` is
    skewed by ``r`` cycles; the last beat of a reduction is marked ``last`` (a reduction is all
    tiles of the group, or one tile with ``acc_max``). A row read with ``row.over`` is read at its
    truncated address and sets ``fault`` from the next cycle until the next ``start``.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; row : ``In(act_row_layout(cfg))``
    step, block_end, group_end : ``Out(1)``
    act_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT spad
    o_acts : ``Out(stream.Signature(OsActBeat, always_ready=True)).array(rows)``
    fault : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "row": In(act_row_layout(cfg)),
            "step": Out(1), "block_end": Out(1), "group_end": Out(1),
            "act_rd": spad_read_port(cfg, "act"),
            "o_acts": Out(stream.Signature(OsActBeat, always_ready=True)).array(cfg.rows),
            "fault": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        rows = self.cfg.rows
        active, acc_max = Signal(), Signal()
        k_tiles, kt = Signal(matmul_field("k_tiles")), Signal(matmul_field("k_tiles"))
        rem = Signal(matmul_field("m"))                  # rows of this group and the later ones
        zp = Signal(matmul_field("zp"))
        r = Signal(range(rows))

        read = active & (r < rem)
        block_end = r == rows - 1
        group_end = block_end & (kt == k_tiles - 1)
        m.d.comb += [self.act_rd.addr.eq(self.row.addr), self.act_rd.en.eq(read),
                     self.step.eq(active), self.block_end.eq(block_end),
                     self.group_end.eq(group_end)]
        with m.If(active):
            m.d.sync += r.eq(Mux(block_end, 0, r + 1))
            with m.If(block_end):
                m.d.sync += kt.eq(Mux(group_end, 0, kt + 1))
            with m.If(group_end):
                m.d.sync += rem.eq(rem - rows)
                with m.If(rem <= rows):
                    m.d.sync += active.eq(0)
        with m.If(read & self.row.over):
            m.d.sync += self.fault.eq(1)
        with m.If(self.start):
            m.d.sync += [active.eq(1), r.eq(0), kt.eq(0), rem.eq(self.args.m),
                         k_tiles.eq(self.args.k_tiles), zp.eq(self.args.zp),
                         acc_max.eq(self.args.acc_max), self.fault.eq(0)]

        # The read's data arrives in the next cycle: load it into PE row r's shift register.
        s1_load, s1_last = Signal(), Signal()
        s1_r = Signal.like(r)
        m.d.sync += [s1_load.eq(read), s1_r.eq(r), s1_last.eq(acc_max | (kt == k_tiles - 1))]
        entry = data.StructLayout({"valid": 1, "beat": OsActBeat})
        for pr in range(rows):
            sr = [Signal(entry, name=f"sr{pr}_{j}") for j in range(rows)]
            with m.If(s1_load & (s1_r == pr)):
                for j in range(rows):
                    m.d.sync += [sr[j].valid.eq(1), sr[j].beat.act.eq(self.act_rd.data[j] - zp),
                                 sr[j].beat.last.eq(s1_last if j == rows - 1 else 0)]
            with m.Else():
                m.d.sync += [sr[j].eq(sr[j + 1]) for j in range(rows - 1)]
                m.d.sync += sr[rows - 1].eq(0)
            m.d.comb += [self.o_acts[pr].valid.eq(sr[0].valid), self.o_acts[pr].p.eq(sr[0].beat)]
        return m


class OsWeightReader(wiring.Component):
    """Read one weight row per step of the output-stationary schedule and put it on ``o_wts``.

    ``step``, ``block_end`` and ``group_end`` are :class:`OsActStager`'s (the cycle of the step's
    act slot). One cycle after each slot it reads the weight row of that step,
    ``wt_addr + (u mod (k_tiles*R))`` for the ``u``-th step (``wt_addr + (u mod R)`` with
    ``wt_repeat``), and puts it on ``o_wts`` in the next cycle.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``
    step, block_end, group_end : ``In(1)``
    wt_rd : ``In(memory.ReadPort.Signature(...))`` of the WT spad
    o_wts : ``Out(stream.Signature(os_wts_layout(cols), always_ready=True))``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs),
            "step": In(1), "block_end": In(1), "group_end": In(1),
            "wt_rd": spad_read_port(cfg, "wt"),
            "o_wts": Out(stream.Signature(os_wts_layout(cfg.cols), always_ready=True)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        repeat = Signal()
        base = Signal.like(self.wt_rd.addr)
        addr = Signal.like(self.wt_rd.addr)
        s1_step, s1_wrap = Signal(), Signal()
        m.d.sync += [s1_step.eq(self.step),
                     s1_wrap.eq(Mux(repeat, self.block_end, self.group_end))]
        m.d.comb += [self.wt_rd.addr.eq(addr), self.wt_rd.en.eq(s1_step)]
        with m.If(s1_step):
            m.d.sync += addr.eq(Mux(s1_wrap, base, addr + 1))
        with m.If(self.start):
            m.d.sync += [repeat.eq(self.args.wt_repeat), base.eq(self.args.wt_addr),
                         addr.eq(self.args.wt_addr)]
        m.d.sync += self.o_wts.valid.eq(s1_step)
        m.d.comb += self.o_wts.p.eq(self.wt_rd.data)
        return m


class OsAccumulator(AccumulatorBase):
    """Add (or max) each output row of the output-stationary array into its ACC row, or
    overwrite it.

    After ``start`` (with ``args`` valid in that cycle) the valid ``i_psums`` rows come, per
    group ``g`` of ``R`` rows, as ``min(R, m - g*R)`` rows in order: once per group (the sum over
    all tiles), or with ``acc_max`` once per tile ``kt`` (that tile's products). Row ``i`` is
    written to ``acc_addr + i`` one cycle later, as :class:`~hw.matmul.Accumulator` writes it:
    ``psum + old`` when ``accumulate`` or ``kt > 0``, the per-column maximum with ``acc_max``,
    else ``psum``; ``old`` is read from ``acc_rd`` in the cycle the row arrives, only when it is
    used (an overwrite reads nothing). The same ACC row comes again only with ``acc_max``, ``R``
    cycles later, so the ACC read port must be transparent for ``acc_wr`` only when
    :func:`~hw.matmul.acc_read_transparent`. ``done`` is 1 in the cycle of the final write.

    Members
    -------
    Those of :class:`~hw.engine.AccumulatorBase`.
    """

    def elaborate(self, platform):
        m = Module()
        rows = self.cfg.rows
        args = Signal(isa.MatmulArgs)
        addr, group = Signal.like(self.acc_rd.addr), Signal.like(self.acc_rd.addr)
        r = Signal(range(rows))
        kt = Signal(matmul_field("k_tiles"))
        rem = Signal(matmul_field("m"))                  # rows of this group and the later ones
        psums = self.i_psums

        block_end = (r == rows - 1) | (r + 1 == rem)
        group_end = block_end & (~args.acc_max | (kt == args.k_tiles - 1))
        keep = args.accumulate | (kt != 0)                # the old value is used
        m.d.comb += [self.acc_rd.addr.eq(addr), self.acc_rd.en.eq(psums.valid & keep)]
        with m.If(psums.valid):
            m.d.sync += [r.eq(Mux(block_end, 0, r + 1)), addr.eq(addr + 1)]
            with m.If(group_end):
                m.d.sync += [kt.eq(0), rem.eq(rem - rows), group.eq(group + rows),
                             addr.eq(group + rows)]
            with m.Elif(block_end):
                m.d.sync += [kt.eq(kt + 1), addr.eq(group)]
        with m.If(self.start):
            m.d.sync += [args.eq(self.args), r.eq(0), kt.eq(0), rem.eq(self.args.m),
                         addr.eq(self.args.acc_addr), group.eq(self.args.acc_addr)]

        self.write_stage(m, addr, keep, args.acc_max, group_end & (rem <= rows))
        return m


class OsMatmulEngine(MatmulEngineBase):
    """Execute MATMUL instructions (see ``hw/isa.py``) on an output-stationary systolic array.

    The same unit as :class:`~hw.matmul.MatmulEngine` (same members, command protocol, LOOP
    state, ``fault`` and counter semantics; ``macs_inc`` / ``gated_inc`` sum to the same totals),
    scheduled as the module docstring describes. The cycle count from acceptance to ``busy``
    low is ``sw.sim.os_engine.matmul_cycles``:
    ``ceil(m/R)*k_tiles*R + (m-1) % R + C + 5`` (``tests/test_hw_matmul.py`` and
    ``tests/test_hw_os.py`` check it): the act read of step ``u`` is in cycle ``1 + u``, PE row
    ``r``'s last operand reaches the array ``2 + r`` cycles after the last step's read
    (``hw/timing.py``'s ``OS_ACT_LATENCY + r``; weights are read one cycle after the act slot of
    their step, so they arrive with it), its outputs leave the array ``os_array_latency = C + 1``
    later, and the ACC read-modify-write and ``busy`` falling take ``ACC_WRITE_LATENCY = 2`` more
    cycles.

    Parameters
    ----------
    cfg : AccelConfig

    Members: those of :class:`~hw.engine.MatmulEngineBase`.
    """

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.array = array = OsSystolicArray(cfg.rows, cfg.cols, cfg.zero_gate)
        m.submodules.addr_gen = gen = OsActAddressGenerator(cfg)
        m.submodules.stager = stager = OsActStager(cfg)
        m.submodules.wt_reader = reader = OsWeightReader(cfg)
        m.submodules.accum = accum = OsAccumulator(cfg)

        start = self.i_cmd.valid & ~self.busy
        m.d.comb += [self.i_cmd.ready.eq(~self.busy), self.i_loop.ready.eq(~self.busy)]
        for unit in (gen, stager, reader, accum):
            m.d.comb += [unit.start.eq(start), unit.args.eq(self.i_cmd.p)]
        m.d.comb += [gen.loop.eq(self.i_loop.p), gen.loop_set.eq(self.i_loop.valid & ~self.busy),
                     gen.clear.eq(self.loop_clear), stager.row.eq(gen.row),
                     self.fault.eq(stager.fault)]
        for unit in (gen, reader):
            m.d.comb += [unit.step.eq(stager.step), unit.block_end.eq(stager.block_end),
                         unit.group_end.eq(stager.group_end)]
        with m.If(start):
            m.d.sync += self.busy.eq(1)
        with m.If(accum.done):
            m.d.sync += self.busy.eq(0)

        wiring.connect(m, wiring.flipped(self.wt_rd), reader.wt_rd)
        wiring.connect(m, wiring.flipped(self.act_rd), stager.act_rd)
        wiring.connect(m, wiring.flipped(self.acc_rd), accum.acc_rd)
        wiring.connect(m, wiring.flipped(self.acc_wr), accum.acc_wr)
        wiring.connect(m, reader.o_wts, array.i_wts)
        for r in range(cfg.rows):
            wiring.connect(m, stager.o_acts[r], array.i_acts[r])
        wiring.connect(m, array.o_psums, accum.i_psums)
        m.d.comb += [self.macs_inc.eq(array.macs_inc), self.gated_inc.eq(array.gated_inc)]
        return m
