"""The weight-stationary MATMUL unit: streams weight tiles and activation rows through the
systolic array and read-modify-writes the accumulator scratchpad. What every engine shares is in
``hw/engine.py``; the pipeline latencies are ``hw/timing.py``'s."""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .engine import (AccumulatorBase, MatmulEngineBase, act_row_layout, check_cfg,
                     loop_registers, matmul_field, spad_read_port)
from .params import WS_SKIP_ROWS, AccelConfig
from .pe import WT_BANKS
from .pe_array import SystolicArray, acts_layout, wts_layout
from .timing import array_latency, bank_release_delay

__all__ = ["MatmulEngine", "WeightLoader", "ActAddressGenerator", "ActStreamer", "Accumulator",
           "SkipActStreamer", "SkipAccumulator", "skip_tag_layout", "acc_read_transparent"]


class WeightLoader(wiring.Component):
    """Read the MATMUL's weight tiles, tile after tile, into alternating array banks.

    On ``start`` (with ``args`` valid in that cycle) it reads tile ``kt`` (bank ``kt % 2``) rows
    ``w0 + R-1`` down to ``w0`` (``w0 = wt_addr`` with ``wt_repeat``, else ``wt_addr + kt*R``),
    one per cycle, and puts each row on ``o_wts`` one cycle after its read (``hw/timing.py``'s
    ``WT_READ_LATENCY``). Both banks are free at start; a tile from the third on waits for one
    ``release`` pulse per tile (the pulse may come in the cycle of the first read). ``loaded``
    counts the tiles whose reads are all issued, including one finishing this cycle.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; ``release`` : ``In(1)``
    wt_rd : ``In(memory.ReadPort.Signature(...))`` of the WT spad
    o_wts : ``Out(stream.Signature(wts_layout(cols), always_ready=True))``
    loaded : ``Out(k_tiles shape)``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "release": In(1),
            "wt_rd": spad_read_port(cfg, "wt"),
            "o_wts": Out(stream.Signature(wts_layout(cfg.cols), always_ready=True)),
            "loaded": Out(matmul_field("k_tiles")),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        rows = self.cfg.rows
        active = Signal()
        tile = Signal(matmul_field("k_tiles"))
        k_tiles = Signal(matmul_field("k_tiles"))
        repeat = Signal()
        j = Signal(range(rows))
        addr = Signal.like(self.wt_rd.addr)
        bank = Signal(range(WT_BANKS))
        credits = Signal(range(WT_BANKS + 1))

        issue = active & ((j != 0) | (credits != 0) | self.release)
        last = issue & (j == rows - 1)
        take = issue & (j == 0)
        m.d.comb += [self.wt_rd.addr.eq(addr), self.wt_rd.en.eq(issue),
                     self.loaded.eq(tile + last)]
        m.d.sync += credits.eq(credits + self.release - take)
        with m.If(issue):
            # Rows go bottom-up within a tile; after row 0, jump to the next tile's last row (or
            # back to this tile's with wt_repeat).
            m.d.sync += [j.eq(Mux(last, 0, j + 1)),
                         addr.eq(Mux(last, addr + Mux(repeat, rows - 1, 2 * rows - 1), addr - 1))]
        with m.If(last):
            m.d.sync += [tile.eq(tile + 1), bank.eq(bank + 1)]
            with m.If(tile + 1 == k_tiles):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [active.eq(1), tile.eq(0), j.eq(0), bank.eq(0), credits.eq(WT_BANKS),
                         k_tiles.eq(self.args.k_tiles), repeat.eq(self.args.wt_repeat),
                         addr.eq(self.args.wt_addr + rows - 1)]

        m.d.sync += [self.o_wts.valid.eq(issue), self.o_wts.p.bank.eq(bank)]
        m.d.comb += self.o_wts.p.row.eq(self.wt_rd.data)
        return m


class ActAddressGenerator(wiring.Component):
    """Generate the MATMUL's activation rows (``act_row`` of ``hw/isa.py``) with counters and
    running sums, and hold the LOOP state they follow.

    The LOOP state is set by ``loop`` in a cycle with ``loop_set`` and reset to
    ``isa.LOOP_RESET`` by ``clear`` (``clear`` wins); neither may come while rows are generated.
    On ``start`` (with ``args`` valid in that cycle), ``row`` becomes ``act_row(0, 0)`` from the
    next cycle. Each cycle with ``step`` it moves to the next row in MATMUL order:
    ``act_row(kt + 1, 0)`` with ``tile_end``, else ``act_row(kt, i + 1)``. The levels are
    counters that wrap at their wrap count (0: never) and nested base registers
    (``act_addr + t2*k_stride2``, ``+ t1*k_stride1``, ``+ t0*act_stride``, ``+ i1*m_stride1``,
    ``+ i0*m_stride``), each a running sum of one addition per step, that restart from the base
    of the level above when their level wraps. Every register keeps only the address bits
    and a sticky ``over`` bit (:func:`act_row_layout`), so a row beyond the ACT depth is
    flagged however large its sum; no multiplier, no divider.

    With ``pairs`` (the zero-skipping :class:`SkipActStreamer`) it also makes ``row1``, the row
    after ``row`` within its tile (``act_row(kt, i + 1)``; undefined when ``row`` ends the
    tile), and ``step2`` moves two rows in one cycle: to ``row1``'s successor, which is
    ``act_row(kt + 1, 0)`` with ``tile_end`` (then ``row1`` ends the tile).

    Parameters
    ----------
    cfg : AccelConfig
    pairs : bool
        Add ``row1`` and ``step2``.

    Members
    -------
    loop : ``In(isa.LoopArgs)``; loop_set, clear : ``In(1)``
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; step, tile_end : ``In(1)``
    row : ``Out(act_row_layout(cfg))``
    step2 : ``In(1)``; row1 : ``Out(act_row_layout(cfg))`` (only with ``pairs``)
    """

    def __init__(self, cfg: AccelConfig, pairs: bool = False):
        check_cfg(cfg)
        if not isinstance(pairs, bool):
            raise TypeError(f"ActAddressGenerator pairs must be a bool, not {pairs!r}")
        self._cfg = cfg
        self._pairs = pairs
        extra = {"step2": In(1), "row1": Out(act_row_layout(cfg))} if pairs else {}
        super().__init__({
            "loop": In(isa.LoopArgs), "loop_set": In(1), "clear": In(1),
            "start": In(1), "args": In(isa.MatmulArgs), "step": In(1), "tile_end": In(1),
            "row": Out(act_row_layout(cfg)), **extra,
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def pairs(self) -> bool:
        return self._pairs

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        row_layout = act_row_layout(cfg)
        aw = bus.spad_addr_width(cfg, "act")
        depth = cfg.act_spad_depth
        stride_layout, stride, plus, wraps, strides = loop_registers(m, cfg, self)
        loop_fields = isa.LoopArgs.as_shape()

        act_stride = Signal(stride_layout)
        # Level counters (t0, t1: kt; i0: i) and nested bases, outermost first.
        t0, t1, i0 = (Signal(loop_fields["k_wrap0"].shape, name=n) for n in ("t0", "t1", "i0"))
        k2, k1, k0, m1 = (Signal(row_layout, name=n) for n in ("k2", "k1", "k0", "m1"))
        row = self.row
        k2_next, k1_next, k0_next, m1_next, row_next = (
            Signal(row_layout, name=f"{n}_next") for n in ("k2", "k1", "k0", "m1", "row"))
        m.d.comb += [k2_next.eq(plus(k2, strides["k_stride2"])),
                     k1_next.eq(plus(k1, strides["k_stride1"])), k0_next.eq(plus(k0, act_stride)),
                     m1_next.eq(plus(m1, strides["m_stride1"])),
                     row_next.eq(plus(row, strides["m_stride"]))]
        # A new tile's base: act_addr on start, else from the outermost level that steps.
        k0_wrap, k1_wrap = t0 + 1 == wraps["k_wrap0"], t1 + 1 == wraps["k_wrap1"]
        first = Cat(self.args.act_addr[:aw], self.args.act_addr >= depth)
        tile_next = Signal(row_layout)
        m.d.comb += tile_next.eq(Mux(self.start, first,
                                     Mux(k0_wrap, Mux(k1_wrap, k2_next, k1_next), k0_next)))
        step2 = self.step2 if self.pairs else C(0)
        if self.pairs:
            # Row-level state after one step (row1's) and after two steps.
            wrap1 = i0 + 1 == wraps["m_wrap"]
            i0_1 = Signal.like(i0, name="i0_1")
            m1_1, row1, m1_2, row_2 = (Signal(row_layout, name=n)
                                       for n in ("m1_1", "row1_next", "m1_2", "row_2"))
            m.d.comb += [i0_1.eq(Mux(wrap1, 0, i0 + 1)), m1_1.eq(Mux(wrap1, m1_next, m1)),
                         row1.eq(Mux(wrap1, m1_next, row_next)), self.row1.eq(row1),
                         m1_2.eq(plus(m1_1, strides["m_stride1"])),
                         row_2.eq(plus(row1, strides["m_stride"]))]
            wrap2 = i0_1 + 1 == wraps["m_wrap"]
        with m.If(self.start | ((self.step | step2) & self.tile_end)):
            m.d.sync += [i0.eq(0), *(r.eq(tile_next) for r in (k0, m1, row))]
            with m.If(self.start | k0_wrap):
                m.d.sync += [t0.eq(0), k1.eq(tile_next)]
                with m.If(self.start | k1_wrap):
                    m.d.sync += [t1.eq(0), k2.eq(tile_next)]
                with m.Else():
                    m.d.sync += t1.eq(t1 + 1)
            with m.Else():
                m.d.sync += t0.eq(t0 + 1)
        if self.pairs:
            with m.Elif(step2):
                with m.If(wrap2):
                    m.d.sync += [i0.eq(0), m1.eq(m1_2), row.eq(m1_2)]
                with m.Else():
                    m.d.sync += [i0.eq(i0_1 + 1), m1.eq(m1_1), row.eq(row_2)]
        with m.Elif(self.step):
            with m.If(i0 + 1 == wraps["m_wrap"]):
                m.d.sync += [i0.eq(0), m1.eq(m1_next), row.eq(m1_next)]
            with m.Else():
                m.d.sync += [i0.eq(i0 + 1), row.eq(row_next)]
        with m.If(self.start):
            m.d.sync += act_stride.eq(stride(self.args.act_stride))
        return m


class ActStreamer(wiring.Component):
    """Read the MATMUL's activation rows, one per cycle, and put ``a - zp`` on ``o_acts``.

    Tile ``kt``'s rows ``row`` (from :class:`ActAddressGenerator`, which ``step`` and
    ``tile_end`` advance) for ``i < m`` are read once ``loaded`` exceeds ``kt`` and arrive on
    ``o_acts`` ``timing.ACT_READ_LATENCY`` cycles after their read, tagged with bank ``kt % 2``.
    ``release`` pulses ``timing.bank_release_delay`` cycles after the read of a tile's last row,
    when the array no longer needs that tile's bank. A row read with ``row.over`` (at or beyond the
    ACT depth) is read at its truncated address and sets ``fault`` from the next cycle until the
    next ``start``.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; ``loaded`` : ``In(k_tiles shape)``
    row : ``In(act_row_layout(cfg))``; step, tile_end : ``Out(1)``
    act_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT spad
    o_acts : ``Out(stream.Signature(acts_layout(rows), always_ready=True))``
    release, fault : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "loaded": In(matmul_field("k_tiles")),
            "row": In(act_row_layout(cfg)), "step": Out(1), "tile_end": Out(1),
            "act_rd": spad_read_port(cfg, "act"),
            "o_acts": Out(stream.Signature(acts_layout(cfg.rows), always_ready=True)),
            "release": Out(1), "fault": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        m_rows = Signal(matmul_field("m"))
        k_tiles = Signal(matmul_field("k_tiles"))
        zp = Signal(matmul_field("zp"))
        active = Signal()
        tile = Signal(matmul_field("k_tiles"))
        i = Signal(matmul_field("m"))
        bank = Signal(range(WT_BANKS))

        issue = active & (tile < self.loaded)
        last = issue & (i == m_rows - 1)
        m.d.comb += [self.act_rd.addr.eq(self.row.addr), self.act_rd.en.eq(issue),
                     self.step.eq(issue), self.tile_end.eq(i == m_rows - 1)]
        with m.If(issue):
            m.d.sync += i.eq(Mux(last, 0, i + 1))
            with m.If(self.row.over):
                m.d.sync += self.fault.eq(1)
        with m.If(last):
            m.d.sync += [tile.eq(tile + 1), bank.eq(bank + 1)]
            with m.If(tile + 1 == k_tiles):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [m_rows.eq(self.args.m), k_tiles.eq(self.args.k_tiles),
                         zp.eq(self.args.zp), active.eq(1), tile.eq(0), i.eq(0), bank.eq(0),
                         self.fault.eq(0)]

        s1_valid = Signal()
        s1_bank = Signal.like(bank)
        m.d.sync += [s1_valid.eq(issue), s1_bank.eq(bank)]
        m.d.sync += [self.o_acts.valid.eq(s1_valid), self.o_acts.p.bank.eq(s1_bank)]
        with m.If(s1_valid):                       # hold the operands while idle
            m.d.sync += [self.o_acts.p.row[r].eq(self.act_rd.data[r] - zp)
                         for r in range(self.cfg.rows)]

        release = last
        for n in range(bank_release_delay(self.cfg)):
            release_d = Signal(name=f"release_d{n + 1}")
            m.d.sync += release_d.eq(release)
            release = release_d
        m.d.comb += self.release.eq(release)
        return m


def skip_tag_layout(cfg: AccelConfig) -> data.StructLayout:
    """Return the layout of the tag that travels beside each act row of the zero-skipping
    engine, through :func:`array_latency` registers, to the :class:`SkipAccumulator`: ``addr``,
    the row's ACC row; ``keep``, its psums are added into (with ``acc_max``: maxed with) the old
    ACC row rather than written over it; ``last``, the MATMUL's final row."""
    check_cfg(cfg)
    return data.StructLayout({"addr": bus.spad_addr_width(cfg, "acc"), "keep": 1, "last": 1})


class SkipActStreamer(wiring.Component):
    """Read the MATMUL's activation rows :data:`WS_SKIP_ROWS` at a time and put ``a - zp`` of
    the rows that need the array on ``o_acts``, one per cycle, dropping the all-zero rows that
    do not (``cfg.zero_skip``).

    Tile ``kt``'s rows are taken in pairs ``(i, i + 1)``, ``i`` even (the last row alone when
    ``m`` is odd; a pair never spans two tiles): ``row`` through ``act_rd`` and ``row1``
    through ``act_rd1`` in one cycle (``step2`` or ``step``, and ``tile_end``, advance an
    :class:`ActAddressGenerator` built with ``pairs``), once ``loaded`` exceeds ``kt`` and the
    previous pair has been taken. A row is *skipped* when every lane equals ``zp``, it is
    inside the ACT depth, its zero product changes nothing (``accumulate`` or ``kt > 0``, and
    not ``acc_max``: a first-tile overwrite and a maximum must see it) and it is not the
    MATMUL's final row (which carries ``last``); every other row is *fed*. A pair is taken in
    the cycle after its read when it feeds at most one row, else one cycle later (the read
    ports hold the pair meanwhile: no read is issued while a pair waits), so a pair costs
    ``max(1, fed rows)`` cycles. A fed row is on ``o_acts`` one cycle after the cycle that
    takes it (``ACT_READ_LATENCY`` after its read when it is the pair's first), tagged with
    bank ``kt % 2``, with ``o_tag`` (:func:`skip_tag_layout`) beside it. ``skipped`` is the
    number of skipped rows of the pair taken this cycle. ``release`` pulses
    ``bank_release_delay - 1`` cycles after the cycle that takes a tile's last pair (the last
    beat using its bank was on ``o_acts`` at most one cycle after it). A row with ``over`` is
    read at its truncated address, is fed, and sets ``fault`` from the next cycle until the
    next ``start``.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; ``loaded`` : ``In(k_tiles shape)``
    row, row1 : ``In(act_row_layout(cfg))``; step, step2, tile_end : ``Out(1)``
    act_rd, act_rd1 : ``In(memory.ReadPort.Signature(...))`` of the ACT spad
    o_acts : ``Out(stream.Signature(acts_layout(rows), always_ready=True))``
    o_tag : ``Out(skip_tag_layout(cfg))``
    skipped : ``Out(range(WS_SKIP_ROWS + 1))``
    release, fault : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "loaded": In(matmul_field("k_tiles")),
            "row": In(act_row_layout(cfg)), "row1": In(act_row_layout(cfg)),
            "step": Out(1), "step2": Out(1), "tile_end": Out(1),
            "act_rd": spad_read_port(cfg, "act"), "act_rd1": spad_read_port(cfg, "act"),
            "o_acts": Out(stream.Signature(acts_layout(cfg.rows), always_ready=True)),
            "o_tag": Out(skip_tag_layout(cfg)), "skipped": Out(range(WS_SKIP_ROWS + 1)),
            "release": Out(1), "fault": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m_rows = Signal(matmul_field("m"))
        k_tiles = Signal(matmul_field("k_tiles"))
        zp = Signal(matmul_field("zp"))
        accumulate, acc_max = Signal(), Signal()
        acc_addr = Signal.like(self.o_tag.addr)
        active = Signal()
        tile = Signal(matmul_field("k_tiles"))
        i = Signal(matmul_field("m"))                          # the first row of the next pair
        bank = Signal(range(WT_BANKS))

        # The pair on the read ports' data (read with the last issue): its first row's index
        # as an ACC row, whether it has a second row, ends its tile / the MATMUL, is in tile 0,
        # which rows are beyond the ACT depth, and whether its first row was already fed.
        s1_valid, s1_has1, s1_tile_end, s1_final, s1_first, s1_over0, s1_over1, s1_done0 = (
            Signal(name=n) for n in ("s1_valid", "s1_has1", "s1_tile_end", "s1_final",
                                     "s1_first", "s1_over0", "s1_over1", "s1_done0"))
        s1_bank = Signal.like(bank)
        s1_addr = Signal.like(acc_addr)

        has1 = i + 1 < m_rows
        pair_end = i + 2 >= m_rows                        # the pair ends its tile
        ident = ~acc_max & (accumulate | ~s1_first)      # a zero product changes nothing
        fed = []
        for n, (rd, over) in enumerate(((self.act_rd, s1_over0), (self.act_rd1, s1_over1))):
            zero = Cat(*(rd.data[r] == zp for r in range(cfg.rows))).all()
            final = s1_final & (s1_has1 if n else ~s1_has1)
            fed.append((~zero | over | ~ident | final) & (s1_has1 if n else 1))
        both = fed[0] & fed[1]
        take = s1_valid & (~both | s1_done0)             # the pair leaves the read ports
        emit = s1_valid & (fed[0] | fed[1])
        sel1 = s1_done0 | ~fed[0]                        # the fed row is the second one
        issue = active & (tile < self.loaded) & (~s1_valid | take)

        m.d.comb += [self.act_rd.addr.eq(self.row.addr), self.act_rd.en.eq(issue),
                     self.act_rd1.addr.eq(self.row1.addr), self.act_rd1.en.eq(issue & has1),
                     self.step.eq(issue & ~has1), self.step2.eq(issue & has1),
                     self.tile_end.eq(pair_end),
                     self.skipped.eq(Mux(take, ~fed[0] + (s1_has1 & ~fed[1]), 0))]
        with m.If(issue):
            m.d.sync += [s1_valid.eq(1), s1_has1.eq(has1), s1_tile_end.eq(pair_end),
                         s1_final.eq(pair_end & (tile + 1 == k_tiles)), s1_first.eq(tile == 0),
                         s1_over0.eq(self.row.over), s1_over1.eq(self.row1.over & has1),
                         s1_bank.eq(bank), s1_addr.eq(acc_addr + i)]
            m.d.sync += i.eq(Mux(pair_end, 0, i + 2))
            with m.If(self.row.over | (has1 & self.row1.over)):
                m.d.sync += self.fault.eq(1)
            with m.If(pair_end):
                m.d.sync += [tile.eq(tile + 1), bank.eq(bank + 1)]
                with m.If(tile + 1 == k_tiles):
                    m.d.sync += active.eq(0)
        with m.Elif(take):
            m.d.sync += s1_valid.eq(0)
        m.d.sync += s1_done0.eq(s1_valid & both & ~s1_done0)
        with m.If(self.start):
            m.d.sync += [m_rows.eq(self.args.m), k_tiles.eq(self.args.k_tiles),
                         zp.eq(self.args.zp), accumulate.eq(self.args.accumulate),
                         acc_max.eq(self.args.acc_max), acc_addr.eq(self.args.acc_addr),
                         active.eq(1), tile.eq(0), i.eq(0), bank.eq(0), self.fault.eq(0)]

        m.d.sync += self.o_acts.valid.eq(emit)
        with m.If(emit):                           # hold the operands while idle
            m.d.sync += [self.o_acts.p.bank.eq(s1_bank),
                         self.o_tag.addr.eq(s1_addr + sel1),
                         self.o_tag.keep.eq(accumulate | ~s1_first),
                         self.o_tag.last.eq(s1_final & (sel1 == s1_has1))]
            for r in range(cfg.rows):
                lane = Mux(sel1, self.act_rd1.data[r], self.act_rd.data[r])
                m.d.sync += self.o_acts.p.row[r].eq(lane - zp)

        release = take & s1_tile_end
        for n in range(bank_release_delay(cfg) - 1):
            release_d = Signal(name=f"release_d{n + 1}")
            m.d.sync += release_d.eq(release)
            release = release_d
        m.d.comb += self.release.eq(release)
        return m


def acc_read_transparent(cfg: AccelConfig) -> bool:
    """Return whether the ACC read port must be transparent for the ACC write port.

    The :class:`Accumulator` reads a row in the cycle its psums leave the array and writes it in
    the next one; the same row of two consecutive tiles is ``max(m, R)`` cycles apart (a tile
    needs ``R`` weight reads), so it reads the row being written only when ``R == 1``. With
    zero skipping (:class:`SkipAccumulator`, ``dataflow="ws"``) a tile costs at least
    ``ceil(m/2)`` cycles, and tiles of ``m <= 2`` rows are paced by their ``R`` weight reads,
    so the same row of two tiles is at least ``min(ceil(m/2), R - 1)`` cycles apart; it may read
    the row being written when ``R <= 2``. Otherwise the read enable may be masked by a
    same-address write (which never happens), so that Yosys maps the port to BRAM without
    bypass or collision logic."""
    return cfg.rows == 1 or (cfg.dataflow == "ws" and cfg.zero_skip and cfg.rows <= 2)


class Accumulator(AccumulatorBase):
    """Add (or max) each output row of the array into its ACC row, or overwrite it.

    The ``n``-th valid ``i_psums`` row after ``start`` (tile ``n // m``, row ``i = n % m``) is
    written to ``acc_addr + i`` one cycle later: when ``accumulate`` or tile > 0 as ``psum + old``
    (int32, wrapping) or, with ``acc_max``, as the per-column signed ``max(old, psum)``; else as
    ``psum``. ``old`` is read from ``acc_rd`` in the cycle the row arrives; the ACC read port
    must return a row written in the previous cycle (it never reads the row written in the same
    cycle unless :func:`acc_read_transparent`, when the port must be transparent for
    ``acc_wr``). ``done`` is 1 in the cycle of the final write.

    Members
    -------
    Those of :class:`~hw.engine.AccumulatorBase`.
    """

    def elaborate(self, platform):
        m = Module()
        args = Signal(isa.MatmulArgs)
        first = Signal()                                  # in the first tile
        tiles_left = Signal(matmul_field("k_tiles"))            # tiles after the current one
        addr = Signal.like(self.acc_rd.addr)
        # The ACC row of a tile's last psum row (legal operands: acc_addr + m <= ACC depth).
        last_addr = Signal.like(addr)
        psums = self.i_psums

        row_last = addr == last_addr
        m.d.comb += [self.acc_rd.addr.eq(addr), self.acc_rd.en.eq(psums.valid)]
        with m.If(psums.valid):
            m.d.sync += addr.eq(Mux(row_last, args.acc_addr, addr + 1))
            with m.If(row_last):
                m.d.sync += [first.eq(0), tiles_left.eq(tiles_left - 1)]
        with m.If(self.start):
            m.d.sync += [args.eq(self.args), first.eq(1), tiles_left.eq(self.args.k_tiles - 1),
                         addr.eq(self.args.acc_addr),
                         last_addr.eq(self.args.acc_addr + self.args.m - 1)]

        keep = args.accumulate | ~first
        self.write_stage(m, addr, keep, args.acc_max, row_last & (tiles_left == 0))
        return m


class SkipAccumulator(AccumulatorBase):
    """Add (or max) each output row of the zero-skipping array into the ACC row its tag names,
    or overwrite it.

    Each valid ``i_psums`` row comes with ``i_tag`` (:func:`skip_tag_layout`, valid in the same
    cycle) and is written to ``i_tag.addr`` one cycle later: with ``i_tag.keep`` as
    ``psum + old`` (int32, wrapping) or, with the command's ``acc_max``, as the per-column signed
    ``max(old, psum)``; else as ``psum``. ``old`` is read from ``acc_rd`` in the cycle the row
    arrives; as rows are skipped, the same ACC row of two tiles may arrive in consecutive
    cycles when ``R <= 2``, and then the ACC read port must be transparent for ``acc_wr``
    (:func:`acc_read_transparent`). ``done`` is 1 in the cycle of the write of the row tagged
    ``last``.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``
    i_psums : ``In(stream.Signature(psums_layout(cols), always_ready=True))``
    i_tag : ``In(skip_tag_layout(cfg))``
    acc_rd, acc_wr : ``In(memory.ReadPort/WritePort.Signature(...))`` of the ACC spad
    done : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        super().__init__(cfg, {"i_tag": In(skip_tag_layout(cfg))})

    def elaborate(self, platform):
        m = Module()
        acc_max = Signal()
        tag = self.i_tag
        m.d.comb += [self.acc_rd.addr.eq(tag.addr), self.acc_rd.en.eq(self.i_psums.valid)]
        with m.If(self.start):
            m.d.sync += acc_max.eq(self.args.acc_max)
        self.write_stage(m, tag.addr, tag.keep, acc_max, tag.last)
        return m


class MatmulEngine(MatmulEngineBase):
    """Execute MATMUL instructions (see ``hw/isa.py``) on a weight-stationary systolic array.

    Follows the unit command protocol of ``docs/internals.md``: ``i_cmd.ready = ~busy``; an
    accepted command raises ``busy`` from the next cycle until its last ACC write has been
    committed. The unit reads tile 0's weights (``R`` cycles), then streams activation rows back
    to back, one per cycle, while the next tile's weights are shifted into the other bank as soon
    as it is free (``rows + cols - 2`` cycles after the last activation row using it entered
    the array). The cycle count from acceptance to ``busy`` low is ``sw.sim.ws_engine.matmul_cycles``
    (``tests/test_hw_matmul.py`` checks it); with ``m >= 2R + C - 3`` there are no bubbles
    between tiles and it is ``k_tiles*m + 2R + C + 3``.
    Each row's ACC read-modify-write reads in the cycle its psums leave the array and writes in
    the next one; rows of two consecutive tiles are at least ``max(m, R)`` cycles apart, so the
    ACC read port must be transparent for the ACC write port only when ``R == 1``
    (:func:`acc_read_transparent`; with zero skipping, below, when ``R <= 2``).

    The activation rows follow the LOOP state (:class:`ActAddressGenerator`): a beat on
    ``i_loop`` (``ready`` is ``~busy``; no ``busy`` cycle) sets it, and ``loop_clear`` resets it
    to ``isa.LOOP_RESET``. An act row at or beyond the ACT depth is not checked up front: the
    command reads its truncated address, completes in the same cycles (the ACC rows it writes
    are then undefined), and ``fault`` is set.

    Zero skipping (``cfg.zero_skip``): the engine has a second ACT read port, ``act_rd1``, and
    a :class:`SkipActStreamer` reads the act rows in pairs, one pair per cycle, and feeds the
    array only the rows that need it: an act row whose every lane is ``zp`` (its product is
    exactly 0) is dropped when adding 0 changes nothing (a tile after the first, or
    ``accumulate``; not ``acc_max``, not the MATMUL's final row), so it costs no array cycle
    and its ``R*C`` MACs count as ``skipped_inc``. A pair costs ``max(1, fed rows)`` cycles
    instead of two, so a tile costs between ``ceil(m/2)`` and ``m``. The ACC row, the first-tile
    flag and the final-row flag of each fed row travel beside the array
    (:func:`skip_tag_layout`) to a :class:`SkipAccumulator`; the bank release is timed from
    the cycle that takes a tile's last pair. Results are those of ``hw/isa.py`` bit for bit;
    the cycles depend on the ACT contents and are ``sw.sim.engines.matmul_cycles_of`` (exact; with
    no skipped row, the dense figure). The same row of two tiles may then be one cycle apart
    when ``R <= 2``, so the ACC read port must be transparent (:func:`acc_read_transparent`).

    Parameters
    ----------
    cfg : AccelConfig

    Members: those of :class:`MatmulEngineBase`; with ``cfg.zero_skip`` also
    act_rd1 : ``In(memory.ReadPort.Signature(...))``, a second read port of the ACT spad.
    """

    def __init__(self, cfg: AccelConfig):
        check_cfg(cfg)
        super().__init__(cfg, {"act_rd1": spad_read_port(cfg, "act")} if cfg.zero_skip else None)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        skip = cfg.zero_skip
        m.submodules.array = array = SystolicArray(cfg.rows, cfg.cols, cfg.zero_gate)
        m.submodules.loader = loader = WeightLoader(cfg)
        m.submodules.streamer = streamer = (SkipActStreamer if skip else ActStreamer)(cfg)
        m.submodules.addr_gen = gen = ActAddressGenerator(cfg, pairs=skip)
        m.submodules.accum = accum = (SkipAccumulator if skip else Accumulator)(cfg)

        start = self.i_cmd.valid & ~self.busy
        m.d.comb += [self.i_cmd.ready.eq(~self.busy), self.i_loop.ready.eq(~self.busy)]
        for unit in (loader, streamer, gen, accum):
            m.d.comb += [unit.start.eq(start), unit.args.eq(self.i_cmd.p)]
        m.d.comb += [gen.loop.eq(self.i_loop.p), gen.loop_set.eq(self.i_loop.valid & ~self.busy),
                     gen.clear.eq(self.loop_clear), streamer.row.eq(gen.row),
                     gen.step.eq(streamer.step), gen.tile_end.eq(streamer.tile_end),
                     self.fault.eq(streamer.fault)]
        with m.If(start):
            m.d.sync += self.busy.eq(1)
        with m.If(accum.done):
            m.d.sync += self.busy.eq(0)

        wiring.connect(m, wiring.flipped(self.wt_rd), loader.wt_rd)
        wiring.connect(m, wiring.flipped(self.act_rd), streamer.act_rd)
        wiring.connect(m, wiring.flipped(self.acc_rd), accum.acc_rd)
        wiring.connect(m, wiring.flipped(self.acc_wr), accum.acc_wr)
        m.d.comb += [streamer.loaded.eq(loader.loaded), loader.release.eq(streamer.release)]
        wiring.connect(m, loader.o_wts, array.i_wts)
        wiring.connect(m, streamer.o_acts, array.i_acts)
        wiring.connect(m, array.o_psums, accum.i_psums)
        m.d.comb += [self.macs_inc.eq(array.macs_inc), self.gated_inc.eq(array.gated_inc)]
        if skip:
            wiring.connect(m, wiring.flipped(self.act_rd1), streamer.act_rd1)
            m.d.comb += [streamer.row1.eq(gen.row1), gen.step2.eq(streamer.step2),
                         self.skipped_inc.eq(streamer.skipped * (cfg.rows * cfg.cols))]
            # The tags pass beside the array, through as many registers as its latency.
            tag = streamer.o_tag
            for n in range(array_latency(cfg.rows, cfg.cols)):
                tag_d = Signal.like(tag, name=f"tag_d{n + 1}")
                m.d.sync += tag_d.eq(tag)
                tag = tag_d
            m.d.comb += accum.i_tag.eq(tag)
        return m
