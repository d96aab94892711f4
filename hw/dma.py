"""DMA: executes LOAD and STORE between device memory and the scratchpads."""
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from . import bus, isa
from .params import AccelConfig

__all__ = ["DmaCmd", "DMA", "ZeroRowDMA"]

#: Command of the DMA: ``store=0`` executes LOAD, ``store=1`` STORE.
DmaCmd = data.StructLayout({"store": 1, "args": isa.DmaArgs})


def _spad_ports(cfg: AccelConfig, name: str) -> dict:
    addr_width = bus.spad_addr_width(cfg, name)
    shape = bus.spad_row_layout(cfg, name)
    return {
        f"{name}_rd": In(memory.ReadPort.Signature(addr_width=addr_width, shape=shape)),
        f"{name}_wr": In(memory.WritePort.Signature(addr_width=addr_width, shape=shape)),
    }


class DMA(wiring.Component):
    """Execute LOAD / STORE (see ``hw/isa.py``) between device memory and any scratchpad.

    A row of scratchpad ``s`` is ``cfg.spad_row_words(s)`` consecutive memory words, word ``j``
    holding row bytes ``j*mem_bus_bytes ..``. LOAD issues read requests back to back (one per cycle
    while the bus accepts them, with any number outstanding), always accepts responses and writes
    each row in the cycle its last word arrives. STORE reads a row (synchronous read ports, which
    hold the row while it is written) as the previous row's last write is accepted and issues one
    write request per cycle while the bus accepts them. Without
    backpressure ``busy`` lasts ``rows * row_words`` cycles plus the read latency (LOAD; 1 for a
    memory that answers in the next cycle) or plus 2 (STORE): ``hw/timing.py``'s
    ``DMA_READ_LATENCY`` / ``DMA_WRITE_LATENCY``, checked by ``tests/test_hw_dma.py``.

    With ``cfg.compress_acts`` a command with ``compress=1`` goes to a :class:`ZeroRowDMA`
    instead (which then drives the bus, the ACT write port and the OUT read port); the others
    run as above. Without it the DMA is exactly the row engine above.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i_cmd : ``In(stream.Signature(DmaCmd))``
        ``ready`` is ``~busy`` (unit command protocol of ``docs/internals.md``).
    busy : ``Out(1)``
        From the cycle after a command is accepted until the last scratchpad write is committed
        (LOAD) or the last memory write is accepted (STORE).
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    i_mem_rsp : ``In(stream.Signature(bus.mem_rsp_layout(cfg)))``
    <spad>_rd : ``In(memory.ReadPort.Signature(...))``
    <spad>_wr : ``In(memory.WritePort.Signature(...))``
        For every spad in ``bus.SPADS``.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"DMA configuration must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        self._members = members = {
            "i_cmd": In(stream.Signature(DmaCmd)),
            "busy": Out(1),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(cfg))),
        }
        for name in bus.SPADS:
            members.update(_spad_ports(cfg, name))
        super().__init__(members)

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        if not self._cfg.compress_acts:
            _row_engine(m, self._cfg, self)
            return m
        # The row engine drives an inner copy of the ports; the zero-row engine takes the
        # commands with compress=1; the busy one owns the bus and the spad ports they share.
        row = wiring.Signature(self._members).create(path=("row",))
        _row_engine(m, self._cfg, row)
        m.submodules.zero_dir = zd = ZeroRowDMA(self._cfg)
        cmd, req, rsp = self.i_cmd, self.o_mem_req, self.i_mem_rsp
        compress = cmd.payload.args.compress
        m.d.comb += [
            row.i_cmd.payload.eq(cmd.payload), zd.i_cmd.payload.eq(cmd.payload),
            row.i_cmd.valid.eq(cmd.valid & ~compress), zd.i_cmd.valid.eq(cmd.valid & compress),
            cmd.ready.eq(row.i_cmd.ready & zd.i_cmd.ready),
            self.busy.eq(row.busy | zd.busy),
            row.i_mem_rsp.payload.eq(rsp.payload), zd.i_mem_rsp.payload.eq(rsp.payload),
            row.i_mem_rsp.valid.eq(rsp.valid), zd.i_mem_rsp.valid.eq(rsp.valid),
            rsp.ready.eq(row.i_mem_rsp.ready | zd.i_mem_rsp.ready),   # only the busy one's
        ]
        for src, cond in ((zd.o_mem_req, zd.busy), (row.o_mem_req, ~zd.busy)):
            with m.If(cond):
                m.d.comb += [req.valid.eq(src.valid), req.payload.eq(src.payload),
                             src.ready.eq(req.ready)]
        for s in bus.SPADS:
            for port, fields in ((f"{s}_rd", ("addr", "en")), (f"{s}_wr", ("addr", "data", "en"))):
                outer, inner = getattr(self, port), getattr(row, port)
                shared = getattr(zd, port, None)        # act_wr and out_rd
                for f in fields:
                    src = getattr(inner, f)
                    if shared is not None:
                        src = Mux(zd.busy, getattr(shared, f), src)
                    m.d.comb += getattr(outer, f).eq(src)
            m.d.comb += getattr(row, f"{s}_rd").data.eq(getattr(self, f"{s}_rd").data)
        m.d.comb += zd.out_rd.data.eq(self.out_rd.data)
        return m


def _row_engine(m: Module, cfg: AccelConfig, dma):
    """Build the row engine of :class:`DMA` (LOAD / STORE without the directory) in ``m``,
    driving the DMA ports of the interface ``dma``."""
    r = _RowRegs(cfg)
    m.d.comb += dma.i_cmd.ready.eq(~dma.busy)
    with m.If(dma.i_cmd.valid & dma.i_cmd.ready):
        p = dma.i_cmd.payload
        m.d.sync += [r.store.eq(p.store), dma.busy.eq(1), r.row_base.eq(p.args.dram_addr),
                     r.stride.eq(p.args.dram_stride), r.req_left.eq(p.args.rows),
                     r.spad_left.eq(p.args.rows), r.spad_ptr.eq(p.args.spad_addr),
                     r.req_word.eq(0), r.rsp_word.eq(0)]
        for i, s in enumerate(bus.SPADS):
            m.d.sync += r.sel[s].eq(p.args.spad == isa.Spad(i))
        with m.Switch(p.args.spad):
            for i, s in enumerate(bus.SPADS):
                with m.Case(isa.Spad(i)):
                    m.d.sync += r.n_words.eq(r.words[s])
    row_sent = _row_requests(m, cfg, dma, r)
    row_done = _row_load_responses(m, cfg, dma, r)
    _row_store_reads(m, cfg, dma, r, row_sent)
    # Finish with the last memory write accepted (STORE) or the last row written (LOAD).
    with m.If(Mux(r.store, row_sent & (r.req_left == 1), row_done & (r.spad_left == 1))):
        m.d.sync += dma.busy.eq(0)


class _RowRegs:
    """The command state of the row engine: only what the transfer needs (the controller has
    range-checked it, so rows <= depth and every spad row and memory word is in range). Rows
    still to request (``req_left``) and to write (LOAD) or to read (STORE) (``spad_left``);
    ``spad_ptr``: the scratchpad row being written (LOAD) or the next to read (STORE)."""

    def __init__(self, cfg: AccelConfig):
        self.words = {s: cfg.spad_row_words(s) for s in bus.SPADS}
        self.max_words = max(self.words.values())
        depth = max(cfg.spad_depth(s) for s in bus.SPADS)
        self.store = Signal(name="store")
        self.sel = {s: Signal(name=f"sel_{s}") for s in bus.SPADS}      # the spad, one-hot
        self.n_words = Signal(range(self.max_words + 1), name="n_words")
        self.stride = Signal(cfg.mem_addr_width, name="stride")
        self.req_left = Signal(range(depth + 1), name="req_left")
        self.spad_left = Signal(range(depth + 1), name="spad_left")
        self.spad_ptr = Signal(max(bus.spad_addr_width(cfg, s) for s in bus.SPADS),
                               name="spad_ptr")
        self.req_word = Signal(range(self.max_words), name="req_word")
        self.rsp_word = Signal(range(self.max_words), name="rsp_word")
        self.row_base = Signal(cfg.mem_addr_width, name="row_base")
        self.rd_live = Signal(name="rd_live")   # STORE: the read port holds the row to write
        self.wdata = Signal(cfg.mem_bus_bits, name="wdata")


def _row_requests(m: Module, cfg: AccelConfig, dma, r: _RowRegs):
    """Request side: one word address per accepted request, row by row; return the signal of
    a row's last request accepted this cycle."""
    req = dma.o_mem_req
    m.d.comb += [
        req.valid.eq(dma.busy & (r.req_left != 0) & (~r.store | r.rd_live)),
        req.p.addr.eq(r.row_base + r.req_word),
        req.p.we.eq(r.store),
        req.p.wdata.eq(r.wdata),
    ]
    accept = req.valid & req.ready
    row_sent = accept & (r.req_word == r.n_words - 1)
    with m.If(accept):
        with m.If(row_sent):
            m.d.sync += [r.req_word.eq(0), r.req_left.eq(r.req_left - 1),
                         r.row_base.eq(r.row_base + r.stride)]
        with m.Else():
            m.d.sync += r.req_word.eq(r.req_word + 1)
    return row_sent


def _row_load_responses(m: Module, cfg: AccelConfig, dma, r: _RowRegs):
    """LOAD response side: shift words in at the top, so a row of ``n`` words ends in the top
    ``n`` words; return the signal of a row written this cycle."""
    width = cfg.mem_bus_bits
    rsp = dma.i_mem_rsp
    m.d.comb += rsp.ready.eq(dma.busy & ~r.store)
    lbuf = Signal(r.max_words * width, name="lbuf")
    lbuf_next = Cat(lbuf[width:], rsp.p.rdata)
    got = rsp.valid & rsp.ready
    row_done = got & (r.rsp_word == r.n_words - 1)
    with m.If(got):
        m.d.sync += lbuf.eq(lbuf_next)
        with m.If(row_done):
            m.d.sync += [r.rsp_word.eq(0), r.spad_ptr.eq(r.spad_ptr + 1),
                         r.spad_left.eq(r.spad_left - 1)]
        with m.Else():
            m.d.sync += r.rsp_word.eq(r.rsp_word + 1)
    for s in bus.SPADS:
        wr = getattr(dma, f"{s}_wr")
        m.d.comb += [wr.addr.eq(r.spad_ptr),
                     wr.data.eq(lbuf_next[(r.max_words - r.words[s]) * width:]),
                     wr.en.eq(row_done & r.sel[s])]
    return row_done


def _row_store_reads(m: Module, cfg: AccelConfig, dma, r: _RowRegs, row_sent):
    """STORE read side: a read port holds its data while en=0, so it is the row buffer; the
    next row is read as the last word of a row is accepted (the first one cycle after the
    command, so that the first request comes 2 cycles after it, as with a row buffer)."""
    width = cfg.mem_bus_bits
    primed = Signal(name="primed")
    m.d.sync += primed.eq(dma.busy & r.store)
    issue_rd = (dma.busy & r.store & (r.spad_left != 0)
                & ((primed & ~r.rd_live) | row_sent))
    for s in bus.SPADS:
        rd = getattr(dma, f"{s}_rd")
        m.d.comb += [rd.addr.eq(r.spad_ptr), rd.en.eq(issue_rd & r.sel[s])]
    for s in bus.SPADS:
        with m.If(r.sel[s]):
            data_ = getattr(dma, f"{s}_rd").data.as_value()
            if r.words[s] == 1:
                m.d.comb += r.wdata.eq(data_)
            else:
                m.d.comb += r.wdata.eq(data_.word_select(
                    r.req_word[:(r.words[s] - 1).bit_length()], width))
    with m.If(issue_rd):
        m.d.sync += [r.spad_ptr.eq(r.spad_ptr + 1), r.spad_left.eq(r.spad_left - 1)]
    m.d.sync += r.rd_live.eq(issue_rd | (r.rd_live & ~row_sent))


class ZeroRowDMA(wiring.Component):
    """Execute LOAD / STORE with ``compress=1`` through the zero-row directory (``hw/isa.py``).

    Only with ``cfg.compress_acts``; the controller has checked the command (LOAD into ACT,
    STORE from OUT, row slots aligned to ``row_words = cfg.zero_row_words``, rows below
    ``cfg.zero_dir_base``). One directory word is held at a time: a run of consecutive rows
    whose bits lie in it reads it once (LOAD, STORE) and writes it back once (STORE).

    LOAD: a request side walks the rows: it reads the directory word of a row that needs a new
    one (after every earlier row has been written), skips a row whose bit is set in one cycle
    and issues a row's ``row_words`` reads back to back otherwise. A response side, one row
    behind, writes an all-``zp`` row for a set bit, else each row as its last word arrives.
    STORE: reads OUT rows one ahead (the read port holds the row); a row whose bytes all equal
    ``zp`` sets its bit in one cycle, another clears it after its ``row_words`` writes. A
    changed directory word is written back before the next is read, the last one at the end.

    Without backpressure ``busy`` lasts ``S + 2*D + 1`` cycles (LOAD with a memory that
    answers in the next cycle) or ``S + 3*D`` (STORE), ``S = Z + (rows - Z) * row_words`` for
    ``Z`` all-zp rows, ``D`` runs of rows in one directory word (``sw.sim.cycles.zero_dir_cycles``;
    ``hw/timing.py``'s ``ZERO_DIR_LOAD_CYCLES`` / ``ZERO_DIR_STORE_CYCLES``).

    Members
    -------
    i_cmd : ``In(stream.Signature(DmaCmd))``; ``ready`` is ``~busy``.
    busy : ``Out(1)``
        From the cycle after a command is accepted until the last ACT row is written (LOAD) or
        the last directory write is accepted (STORE).
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    i_mem_rsp : ``In(stream.Signature(bus.mem_rsp_layout(cfg)))``; ``ready`` only while busy.
    act_wr : ``In(memory.WritePort.Signature(...))``
    out_rd : ``In(memory.ReadPort.Signature(...))``
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"ZeroRowDMA configuration must be an AccelConfig, not {cfg!r}")
        if not cfg.compress_acts:
            raise ValueError("ZeroRowDMA needs a configuration with compress_acts")
        self._cfg = cfg
        ports = {**_spad_ports(cfg, "act"), **_spad_ports(cfg, "out")}
        super().__init__({
            "i_cmd": In(stream.Signature(DmaCmd)),
            "busy": Out(1),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(cfg))),
            "act_wr": ports["act_wr"], "out_rd": ports["out_rd"],
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        r = _ZeroRowRegs(self._cfg)
        m.d.comb += self.i_cmd.ready.eq(~self.busy)
        with m.If(self.i_cmd.valid & self.i_cmd.ready):
            p = self.i_cmd.payload
            m.d.sync += [r.store.eq(p.store), r.zp.eq(p.args.zp), self.busy.eq(1),
                         r.stride.eq(p.args.dram_stride), r.req_left.eq(p.args.rows),
                         r.spad_left.eq(p.args.rows), r.req_addr.eq(p.args.dram_addr),
                         r.rsp_addr.eq(p.args.dram_addr), r.spad_ptr.eq(p.args.spad_addr),
                         r.req_word.eq(0), r.rsp_word.eq(0), r.have.eq(0), r.pending.eq(0)]
        passed = self._request_side(m, r)
        self._store_reads(m, r, passed)
        self._response_side(m, r)
        return m

    def _request_side(self, m, r):
        """Walk the rows: a row needs the directory word of its slot (STORE writes the held word
        back before it reads another one and after its last row); return the signal of a row
        passed this cycle."""
        cfg = self._cfg
        width, rw = cfg.mem_bus_bits, cfg.zero_row_words
        store, zp = r.store, r.zp
        row = self.out_rd.data
        idx = r.req_dir_idx
        at_row = self.busy & (r.req_left != 0)
        need_dir = at_row & (~r.have | (idx != r.held_idx))
        dir_wr = self.busy & store & r.have & (need_dir | (r.req_left == 0))
        dir_rd = need_dir & ~r.pending & ~dir_wr
        step = at_row & ~need_dir & (~store | r.rd_live)
        all_zp = Mux(store, Cat(*(row[j] == zp for j in range(cfg.cols))).all(),
                     r.dir_bit(r.req_addr))
        zero_row = step & all_zp
        data_row = step & ~all_zp
        req = self.o_mem_req
        row_word = row.as_value() if rw == 1 else row.as_value().word_select(r.req_word, width)
        m.d.comb += [
            req.valid.eq(dir_wr | dir_rd | data_row),
            req.p.addr.eq(Mux(data_row, r.req_addr + r.req_word,
                              cfg.zero_dir_base + Mux(dir_wr, r.held_idx, idx))),
            req.p.we.eq(dir_wr | (data_row & store)),
            req.p.wdata.eq(Mux(dir_wr, r.dir_data, row_word)),
        ]
        accept = req.valid & req.ready
        row_sent = data_row & accept & (r.req_word == rw - 1)
        passed = zero_row | row_sent
        with m.If(data_row & accept):
            m.d.sync += r.req_word.eq(Mux(row_sent, 0, r.req_word + 1))
        with m.If(passed):
            m.d.sync += [r.req_left.eq(r.req_left - 1), r.req_addr.eq(r.req_addr + r.stride)]
            with m.If(store):
                m.d.sync += r.dir_bit(r.req_addr).eq(zero_row)
        with m.If(dir_wr & accept):
            m.d.sync += r.have.eq(0)
            with m.If(r.req_left == 0):
                m.d.sync += self.busy.eq(0)         # STORE done
        with m.If(dir_rd & accept):
            m.d.sync += r.pending.eq(1)
        return passed

    def _store_reads(self, m, r, passed):
        """STORE: read the next OUT row as the current one is passed (the first right away)."""
        issue_rd = self.busy & r.store & (r.spad_left != 0) & (~r.rd_live | passed)
        m.d.comb += [self.out_rd.addr.eq(r.spad_ptr), self.out_rd.en.eq(issue_rd)]
        with m.If(issue_rd):
            m.d.sync += [r.spad_ptr.eq(r.spad_ptr + 1), r.spad_left.eq(r.spad_left - 1)]
        m.d.sync += r.rd_live.eq(issue_rd | (r.rd_live & ~passed))

    def _response_side(self, m, r):
        """Take the directory word once every earlier row is written (LOAD) or at once (STORE);
        write LOAD rows in order behind the request side (an all-``zp`` row for a set bit)."""
        cfg = self._cfg
        width, rw = cfg.mem_bus_bits, cfg.zero_row_words
        rsp = self.i_mem_rsp
        behind = ~r.store & (r.spad_left != r.req_left)
        dir_turn = r.pending & ~behind
        rsp_zero = r.dir_bit(r.rsp_addr)
        m.d.comb += rsp.ready.eq(self.busy & (dir_turn | (~r.store & ~rsp_zero)))
        got = rsp.valid & rsp.ready
        with m.If(got & dir_turn):
            m.d.sync += [r.dir_data.eq(rsp.p.rdata), r.held_idx.eq(r.req_dir_idx), r.have.eq(1),
                         r.pending.eq(0)]
        data_got = got & ~dir_turn
        lbuf = Signal(rw * width, name="lbuf")
        lbuf_next = Cat(lbuf[width:], rsp.p.rdata)
        row_done = data_got & (r.rsp_word == rw - 1)
        zero_done = self.busy & behind & rsp_zero
        with m.If(data_got):
            m.d.sync += [lbuf.eq(lbuf_next), r.rsp_word.eq(Mux(row_done, 0, r.rsp_word + 1))]
        written = row_done | zero_done
        m.d.comb += [self.act_wr.addr.eq(r.spad_ptr), self.act_wr.en.eq(written),
                     self.act_wr.data.eq(Mux(zero_done, Cat(*([r.zp] * cfg.rows)), lbuf_next))]
        with m.If(written):
            m.d.sync += [r.spad_ptr.eq(r.spad_ptr + 1), r.spad_left.eq(r.spad_left - 1),
                         r.rsp_addr.eq(r.rsp_addr + r.stride)]
            with m.If(r.spad_left == 1):
                m.d.sync += self.busy.eq(0)         # LOAD done


class _ZeroRowRegs:
    """The registers :class:`ZeroRowDMA`'s sides share: the command, the rows the request side
    has still to pass (``req_left``) and the rows still to write to ACT (LOAD) or to read from
    OUT (STORE) (``spad_left``), the request side's and the response side's row addresses, the
    directory word held (``dir_data``, its index ``held_idx``; valid while ``have``) and a
    directory read in flight (``pending``)."""

    def __init__(self, cfg: AccelConfig):
        aw = cfg.mem_addr_width
        depth = max(cfg.spad_depth("act"), cfg.spad_depth("out"))
        self.slot_shift = exact_log2(cfg.zero_row_words)                # word address -> slot
        self.word_shift = self.slot_shift + exact_log2(cfg.mem_bus_bits)  # -> directory word
        self.store = Signal(name="store")
        self.zp = Signal(isa.DmaArgs.as_shape()["zp"].shape, name="zp")
        self.stride = Signal(aw, name="stride")
        self.req_left = Signal(range(depth + 1), name="req_left")
        self.spad_left = Signal(range(depth + 1), name="spad_left")
        self.req_addr, self.rsp_addr = Signal(aw, name="req_addr"), Signal(aw, name="rsp_addr")
        self.req_word = Signal(range(cfg.zero_row_words), name="req_word")
        self.rsp_word = Signal(range(cfg.zero_row_words), name="rsp_word")
        self.spad_ptr = Signal(max(bus.spad_addr_width(cfg, s) for s in ("act", "out")),
                               name="spad_ptr")
        self.dir_data = Signal(cfg.mem_bus_bits, name="dir_data")
        self.held_idx = Signal(max(1, aw - self.word_shift), name="held_idx")
        self.have, self.pending = Signal(name="have"), Signal(name="pending")
        self.rd_live = Signal(name="rd_live")       # STORE: out_rd holds the request side's row

    @property
    def req_dir_idx(self):
        """The directory word index of the request side's row."""
        return self.req_addr[self.word_shift:]

    def dir_bit(self, addr):
        """The held directory word's bit of the row at word address ``addr``."""
        return self.dir_data.bit_select(addr[self.slot_shift:self.word_shift], 1)
