"""The MATMUL unit: streams weight tiles and activation rows through the systolic array and
read-modify-writes the accumulator scratchpad."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .params import AccelConfig
from .pe import WT_BANKS
from .pe_array import SystolicArray, acts_layout, psums_layout, wts_layout

__all__ = ["MatmulEngine", "WeightLoader", "ActStreamer", "Accumulator", "acc_read_transparent",
           "WT_READ_LATENCY", "ACT_READ_LATENCY"]

#: Cycles from a weight-spad read to its beat on the array's ``i_wts`` (synchronous read).
WT_READ_LATENCY = 1
#: Cycles from an act-spad read to its beat on the array's ``i_acts`` (read, then ``a - zp``).
ACT_READ_LATENCY = 2


def _check_cfg(cfg):
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Configuration must be an AccelConfig, not {cfg!r}")


def _rd_port(cfg, spad):
    return In(memory.ReadPort.Signature(addr_width=bus.spad_addr_width(cfg, spad),
                                        shape=bus.spad_row_layout(cfg, spad)))


def _wr_port(cfg, spad):
    return In(memory.WritePort.Signature(addr_width=bus.spad_addr_width(cfg, spad),
                                         shape=bus.spad_row_layout(cfg, spad)))


def _field(name):
    return isa.MatmulArgs.as_shape()[name].shape


def _bank_release_delay(cfg):
    """Cycles from the act read of a tile's last row to the first weight read that may reuse its
    bank (see :class:`SystolicArray`: the bank may be shifted ``rows + cols - 2`` cycles after the
    last beat using it was on ``i_acts``)."""
    return ACT_READ_LATENCY + cfg.rows + cfg.cols - 2 - WT_READ_LATENCY


class WeightLoader(wiring.Component):
    """Read the MATMUL's weight tiles, tile after tile, into alternating array banks.

    On ``start`` (with ``args`` valid in that cycle) it reads tile ``kt`` (bank ``kt % 2``) rows
    ``wt_addr + kt*R + R-1`` down to ``wt_addr + kt*R``, one per cycle, and puts each row on
    ``o_wts`` one cycle after its read. Both banks are free at start; a tile from the third on
    waits for one ``release`` pulse per tile (the pulse may come in the cycle of the first read).
    ``loaded`` counts the tiles whose reads are all issued, including one finishing this cycle.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; ``release`` : ``In(1)``
    wt_rd : ``In(memory.ReadPort.Signature(...))`` of the WT spad
    o_wts : ``Out(stream.Signature(wts_layout(cols), always_ready=True))``
    loaded : ``Out(k_tiles shape)``
    """

    def __init__(self, cfg: AccelConfig):
        _check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "release": In(1),
            "wt_rd": _rd_port(cfg, "wt"),
            "o_wts": Out(stream.Signature(wts_layout(cfg.cols), always_ready=True)),
            "loaded": Out(_field("k_tiles")),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        rows = self.cfg.rows
        active = Signal()
        tile = Signal(_field("k_tiles"))
        k_tiles = Signal(_field("k_tiles"))
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
            # Rows go bottom-up within a tile; after row 0, jump to the next tile's last row.
            m.d.sync += [j.eq(Mux(last, 0, j + 1)),
                         addr.eq(Mux(last, addr + 2 * rows - 1, addr - 1))]
        with m.If(last):
            m.d.sync += [tile.eq(tile + 1), bank.eq(bank + 1)]
            with m.If(tile + 1 == k_tiles):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [active.eq(1), tile.eq(0), j.eq(0), bank.eq(0), credits.eq(WT_BANKS),
                         k_tiles.eq(self.args.k_tiles), addr.eq(self.args.wt_addr + rows - 1)]

        m.d.sync += [self.o_wts.valid.eq(issue), self.o_wts.p.bank.eq(bank)]
        m.d.comb += self.o_wts.p.row.eq(self.wt_rd.data)
        return m


class ActStreamer(wiring.Component):
    """Read the MATMUL's activation rows, one per cycle, and put ``a - zp`` on ``o_acts``.

    Tile ``kt``'s rows ``act_addr + kt*act_stride + i`` (``i < m``) are read once ``loaded``
    exceeds ``kt`` and arrive on ``o_acts`` ``ACT_READ_LATENCY`` cycles after their read, tagged
    with bank ``kt % 2``. ``release`` pulses ``_bank_release_delay`` cycles after the read of a
    tile's last row, when the array no longer needs that tile's bank.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``; ``loaded`` : ``In(k_tiles shape)``
    act_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT spad
    o_acts : ``Out(stream.Signature(acts_layout(rows), always_ready=True))``
    release : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        _check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs), "loaded": In(_field("k_tiles")),
            "act_rd": _rd_port(cfg, "act"),
            "o_acts": Out(stream.Signature(acts_layout(cfg.rows), always_ready=True)),
            "release": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        args = Signal(isa.MatmulArgs)
        active = Signal()
        tile = Signal(_field("k_tiles"))
        i = Signal(_field("m"))
        addr = Signal.like(self.act_rd.addr)
        base = Signal.like(self.act_rd.addr)
        bank = Signal(range(WT_BANKS))

        issue = active & (tile < self.loaded)
        last = issue & (i == args.m - 1)
        m.d.comb += [self.act_rd.addr.eq(addr), self.act_rd.en.eq(issue)]
        with m.If(issue):
            m.d.sync += [i.eq(Mux(last, 0, i + 1)),
                         addr.eq(Mux(last, base + args.act_stride, addr + 1))]
        with m.If(last):
            m.d.sync += [tile.eq(tile + 1), bank.eq(bank + 1), base.eq(base + args.act_stride)]
            with m.If(tile + 1 == args.k_tiles):
                m.d.sync += active.eq(0)
        with m.If(self.start):
            m.d.sync += [args.eq(self.args), active.eq(1), tile.eq(0), i.eq(0), bank.eq(0),
                         addr.eq(self.args.act_addr), base.eq(self.args.act_addr)]

        s1_valid = Signal()
        s1_bank = Signal.like(bank)
        m.d.sync += [s1_valid.eq(issue), s1_bank.eq(bank)]
        m.d.sync += [self.o_acts.valid.eq(s1_valid), self.o_acts.p.bank.eq(s1_bank)]
        with m.If(s1_valid):                       # hold the operands while idle
            m.d.sync += [self.o_acts.p.row[r].eq(self.act_rd.data[r] - args.zp)
                         for r in range(self.cfg.rows)]

        release = last
        for n in range(_bank_release_delay(self.cfg)):
            release_d = Signal(name=f"release_d{n + 1}")
            m.d.sync += release_d.eq(release)
            release = release_d
        m.d.comb += self.release.eq(release)
        return m


def acc_read_transparent(cfg: AccelConfig) -> bool:
    """Return whether the ACC read port must be transparent for the ACC write port.

    The :class:`Accumulator` reads a row in the cycle its psums leave the array and writes it in
    the next one; the same row of two consecutive tiles is ``max(m, R)`` cycles apart (a tile
    needs ``R`` weight reads), so it reads the row being written only when ``R == 1``. Otherwise
    the read enable may be masked by a same-address write (which never happens), so that Yosys
    maps the port to BRAM without bypass or collision logic."""
    return cfg.rows == 1


class Accumulator(wiring.Component):
    """Add each output row of the array into its ACC row, or overwrite it.

    The ``n``-th valid ``i_psums`` row after ``start`` (tile ``n // m``, row ``i = n % m``) is
    written to ``acc_addr + i`` one cycle later, as ``psum + old`` when ``accumulate`` or tile > 0,
    else as ``psum`` (int32, wrapping). ``old`` is read from ``acc_rd`` in the cycle the row
    arrives; the ACC read port must return a row written in the previous cycle (it never reads
    the row written in the same cycle unless :func:`acc_read_transparent`, when the port must be
    transparent for ``acc_wr``). ``done`` is 1 in the cycle of
    the final write.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``
    i_psums : ``In(stream.Signature(psums_layout(cols), always_ready=True))``
    acc_rd, acc_wr : ``In(memory.ReadPort/WritePort.Signature(...))`` of the ACC spad
    done : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        _check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs),
            "i_psums": In(stream.Signature(psums_layout(cfg.cols), always_ready=True)),
            "acc_rd": _rd_port(cfg, "acc"), "acc_wr": _wr_port(cfg, "acc"),
            "done": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        args = Signal(isa.MatmulArgs)
        first = Signal()                                  # in the first tile
        tiles_left = Signal(_field("k_tiles"))            # tiles after the current one
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

        s1_valid = Signal()
        s1_add = Signal()
        s1_last = Signal()
        s1_psum = Signal.like(psums.p)
        s1_addr = Signal.like(addr)
        m.d.sync += s1_valid.eq(psums.valid)
        with m.If(psums.valid):
            m.d.sync += [s1_add.eq(args.accumulate | ~first),
                         s1_last.eq(row_last & (tiles_left == 0)),
                         s1_psum.eq(psums.p), s1_addr.eq(addr)]
        m.d.comb += [self.acc_wr.en.eq(s1_valid), self.acc_wr.addr.eq(s1_addr),
                     self.done.eq(s1_valid & s1_last)]
        m.d.comb += [self.acc_wr.data[c].eq(s1_psum[c] + Mux(s1_add, self.acc_rd.data[c], 0))
                     for c in range(self.cfg.cols)]
        return m


class MatmulEngine(wiring.Component):
    """Execute MATMUL instructions (see ``hw/isa.py``) on a weight-stationary systolic array.

    Follows the unit command protocol of ``docs/internals.md``: ``i_cmd.ready = ~busy``; an
    accepted command raises ``busy`` from the next cycle until its last ACC write has been
    committed. The unit reads tile 0's weights (``R`` cycles), then streams activation rows back
    to back, one per cycle, while the next tile's weights are shifted into the other bank as soon
    as it is free (``rows + cols - 2`` cycles after the last activation row using it entered
    the array). The cycle count from acceptance to ``busy`` low is ``sw.isasim.matmul_cycles``
    (``tests/test_hw_matmul.py`` checks it); with ``m >= 2R + C - 3`` there are no bubbles
    between tiles and it is ``k_tiles*m + 2R + C + 3``.
    Each row's ACC read-modify-write reads in the cycle its psums leave the array and writes in
    the next one; rows of two consecutive tiles are at least ``max(m, R)`` cycles apart, so the
    ACC read port must be transparent for the ACC write port only when ``R == 1``
    (:func:`acc_read_transparent`).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i_cmd : ``In(stream.Signature(isa.MatmulArgs))``
    busy : ``Out(1)``
    act_rd, wt_rd, acc_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT, WT, ACC spads
    acc_wr : ``In(memory.WritePort.Signature(...))`` of the ACC spad
    macs_inc, gated_inc : ``Out(range(rows*cols + 1))``; the array's MACs and gated MACs this cycle
    """

    def __init__(self, cfg: AccelConfig):
        _check_cfg(cfg)
        self._cfg = cfg
        pe_count = cfg.rows * cfg.cols
        super().__init__({
            "i_cmd": In(stream.Signature(isa.MatmulArgs)),
            "busy": Out(1),
            "act_rd": _rd_port(cfg, "act"), "wt_rd": _rd_port(cfg, "wt"),
            "acc_rd": _rd_port(cfg, "acc"), "acc_wr": _wr_port(cfg, "acc"),
            "macs_inc": Out(range(pe_count + 1)), "gated_inc": Out(range(pe_count + 1)),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.array = array = SystolicArray(cfg.rows, cfg.cols, cfg.zero_gate)
        m.submodules.loader = loader = WeightLoader(cfg)
        m.submodules.streamer = streamer = ActStreamer(cfg)
        m.submodules.accum = accum = Accumulator(cfg)

        start = self.i_cmd.valid & ~self.busy
        m.d.comb += self.i_cmd.ready.eq(~self.busy)
        for unit in (loader, streamer, accum):
            m.d.comb += [unit.start.eq(start), unit.args.eq(self.i_cmd.p)]
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
        return m
