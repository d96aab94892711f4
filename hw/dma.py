"""DMA: executes LOAD and STORE between device memory and the scratchpads."""
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .params import AccelConfig

__all__ = ["DmaCmd", "DMA"]

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
    memory that answers in the next cycle) or plus 2 (STORE).

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
        members = {
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
        cfg = self._cfg
        width = cfg.mem_bus_bits
        words = {s: cfg.spad_row_words(s) for s in bus.SPADS}
        max_words = max(words.values())
        depth = max(cfg.spad_depth(s) for s in bus.SPADS)

        # Command state: only what the transfer needs (the controller has range-checked it, so
        # rows <= depth and every spad row and memory word is in range).
        store = Signal()
        sel = {s: Signal(name=f"sel_{s}") for s in bus.SPADS}       # the spad, one-hot
        n_words = Signal(range(max_words + 1))
        stride = Signal(cfg.mem_addr_width)
        # Rows still to request (req_left) and to write (LOAD) or to read (STORE) (spad_left);
        # spad_ptr: the scratchpad row being written (LOAD) or the next to read (STORE).
        req_left, spad_left = (Signal(range(depth + 1), name=n) for n in ("req_left", "spad_left"))
        spad_ptr = Signal(max(bus.spad_addr_width(cfg, s) for s in bus.SPADS))
        req_word, rsp_word = Signal(range(max_words)), Signal(range(max_words))
        row_base = Signal(cfg.mem_addr_width)

        m.d.comb += self.i_cmd.ready.eq(~self.busy)
        with m.If(self.i_cmd.valid & self.i_cmd.ready):
            p = self.i_cmd.payload
            m.d.sync += [store.eq(p.store), self.busy.eq(1), row_base.eq(p.args.dram_addr),
                         stride.eq(p.args.dram_stride), req_left.eq(p.args.rows),
                         spad_left.eq(p.args.rows), spad_ptr.eq(p.args.spad_addr),
                         req_word.eq(0), rsp_word.eq(0)]
            for i, s in enumerate(bus.SPADS):
                m.d.sync += sel[s].eq(p.args.spad == isa.Spad(i))
            with m.Switch(p.args.spad):
                for i, s in enumerate(bus.SPADS):
                    with m.Case(isa.Spad(i)):
                        m.d.sync += n_words.eq(words[s])

        # Request side: one word address per accepted request, row by row.
        req = self.o_mem_req
        rd_live = Signal()                          # STORE: the read port holds the row to write
        wdata = Signal(width)
        m.d.comb += [
            req.valid.eq(self.busy & (req_left != 0) & (~store | rd_live)),
            req.p.addr.eq(row_base + req_word),
            req.p.we.eq(store),
            req.p.wdata.eq(wdata),
        ]
        accept = req.valid & req.ready
        row_sent = accept & (req_word == n_words - 1)
        with m.If(accept):
            with m.If(row_sent):
                m.d.sync += [req_word.eq(0), req_left.eq(req_left - 1),
                             row_base.eq(row_base + stride)]
            with m.Else():
                m.d.sync += req_word.eq(req_word + 1)

        # LOAD response side: shift words in at the top; a row of n words ends in the top n words.
        rsp = self.i_mem_rsp
        m.d.comb += rsp.ready.eq(self.busy & ~store)
        lbuf = Signal(max_words * width)
        lbuf_next = Cat(lbuf[width:], rsp.p.rdata)
        got = rsp.valid & rsp.ready
        row_done = got & (rsp_word == n_words - 1)
        with m.If(got):
            m.d.sync += lbuf.eq(lbuf_next)
            with m.If(row_done):
                m.d.sync += [rsp_word.eq(0), spad_ptr.eq(spad_ptr + 1),
                             spad_left.eq(spad_left - 1)]
            with m.Else():
                m.d.sync += rsp_word.eq(rsp_word + 1)
        for s in bus.SPADS:
            wr = getattr(self, f"{s}_wr")
            m.d.comb += [wr.addr.eq(spad_ptr),
                         wr.data.eq(lbuf_next[(max_words - words[s]) * width:]),
                         wr.en.eq(row_done & sel[s])]

        # STORE read side: a read port holds its data while en=0, so it is the row buffer; the
        # next row is read as the last word of a row is accepted (the first one cycle after the
        # command, so that the first request comes 2 cycles after it, as with a row buffer).
        primed = Signal()
        m.d.sync += primed.eq(self.busy & store)
        issue_rd = (self.busy & store & (spad_left != 0) & ((primed & ~rd_live) | row_sent))
        for s in bus.SPADS:
            rd = getattr(self, f"{s}_rd")
            m.d.comb += [rd.addr.eq(spad_ptr), rd.en.eq(issue_rd & sel[s])]
        for s in bus.SPADS:
            with m.If(sel[s]):
                data_ = getattr(self, f"{s}_rd").data.as_value()
                if words[s] == 1:
                    m.d.comb += wdata.eq(data_)
                else:
                    m.d.comb += wdata.eq(data_.word_select(
                        req_word[:(words[s] - 1).bit_length()], width))
        with m.If(issue_rd):
            m.d.sync += [spad_ptr.eq(spad_ptr + 1), spad_left.eq(spad_left - 1)]
        m.d.sync += rd_live.eq(issue_rd | (rd_live & ~row_sent))

        # Finish with the last memory write accepted (STORE) or the last row written (LOAD).
        with m.If(Mux(store, row_sent & (req_left == 1), row_done & (spad_left == 1))):
            m.d.sync += self.busy.eq(0)
        return m
