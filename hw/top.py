"""Accelerator: the scratchpads, the units, the controller and the memory bus."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .controller import Controller
from .dma import DMA
from .matmul import MatmulEngine, acc_read_transparent
from .os_matmul import OsMatmulEngine
from .params import CONFIG_ID_WIDTH, AccelConfig
from .perf import PerfCounters, perf_layout
from .postproc import PostProc
from .rs_matmul import RsMatmulEngine

__all__ = ["Accelerator", "MATMUL_ENGINES"]

#: The MATMUL engine of each dataflow; all have the members of ``engine.MatmulEngineBase``.
MATMUL_ENGINES = {"ws": MatmulEngine, "os": OsMatmulEngine, "rs": RsMatmulEngine}


class Accelerator(wiring.Component):
    """One Stamen device without its memory: scratchpads, DMA, the MATMUL engine of
    ``cfg.dataflow`` (:data:`MATMUL_ENGINES`), PostProc, counters and controller, with one
    device-memory bus port.

    The five scratchpads are ``lib.memory.Memory`` instances with one synchronous read port (data
    the cycle after the address) and one write port each, both muxed by which unit is busy (the
    DMA when none is); every reading unit sees the read port's data. A zero-skipping ``ws``
    engine (``cfg.zero_skip``) also has the ACT spad's second read port (``act_rd1``). The
    memory bus goes to the DMA while it is busy, else to the controller.

    Parameters
    ----------
    cfg : AccelConfig

    Attributes
    ----------
    spad_data : dict of str to ``memory.MemoryData``
        Contents of each scratchpad by name (``bus.SPADS``), for backdoor access in tests.

    Members
    -------
    start : ``In(1)``; prog_addr : ``In(cfg.mem_addr_width)``
    status : ``Out(isa.Status)``; fault_pc : ``Out(cfg.mem_addr_width)``
    config_id : ``Out(CONFIG_ID_WIDTH)``; ``cfg.config_hash``.
    perf : ``Out(perf_layout(cfg))``
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    i_mem_rsp : ``In(stream.Signature(bus.mem_rsp_layout(cfg)))``
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Accelerator configuration must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        self.spad_data = {
            s: memory.MemoryData(shape=bus.spad_row_layout(cfg, s), depth=cfg.spad_depth(s),
                                 init=[])
            for s in bus.SPADS}
        aw = cfg.mem_addr_width
        super().__init__({
            "start": In(1), "prog_addr": In(aw),
            "status": Out(isa.Status), "fault_pc": Out(aw),
            "config_id": Out(CONFIG_ID_WIDTH), "perf": Out(perf_layout(cfg)),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(cfg))),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.dma = dma = DMA(cfg)
        m.submodules.matmul = mm = MATMUL_ENGINES[cfg.dataflow](cfg)
        m.submodules.postproc = pp = PostProc(cfg)
        m.submodules.perf = perf = PerfCounters(cfg)
        m.submodules.ctrl = ctrl = Controller(cfg)

        mems = {}
        for s in bus.SPADS:
            m.submodules[f"{s}_spad"] = mems[s] = memory.Memory(data=self.spad_data[s])
        wr = {s: mems[s].write_port() for s in bus.SPADS}
        # One read port per spad (each read port is a copy of the BRAMs), muxed by which unit is
        # busy; the DMA otherwise. The ACC port is transparent for the ACC write port only when
        # the MatmulEngine's read-modify-write may read the row written in the same cycle
        # (matmul.acc_read_transparent); otherwise no unit ever does, and the read enable is
        # masked by a write to the same address, which changes nothing but lets Yosys prove it.
        readers = {"act": [(mm.busy, mm.act_rd)], "wt": [(mm.busy, mm.wt_rd)],
                   "acc": [(mm.busy, mm.acc_rd), (pp.busy, pp.acc_rd)],
                   "out": [], "param": [(pp.busy, pp.param_rd)]}
        # The other spads are never read and written in the same cycle (their writer, the DMA
        # LOAD, runs alone); masking the read enable with the write enable changes nothing but
        # lets Yosys prove it, so it maps the port to BRAM without collision-emulation logic.
        for s in bus.SPADS:
            transparent = s == "acc" and acc_read_transparent(cfg)
            rd = mems[s].read_port(transparent_for=(wr[s],) if transparent else ())
            units = readers[s] + [(None, getattr(dma, f"{s}_rd"))]
            for _, unit_rd in units:
                m.d.comb += unit_rd.data.eq(rd.data)
            rd_en = Signal(name=f"{s}_rd_en")
            self._mux(m, {"addr": rd.addr, "en": rd_en}, units)
            if transparent:
                m.d.comb += rd.en.eq(rd_en)
            elif s == "acc":
                m.d.comb += rd.en.eq(rd_en & ~(wr[s].en & (wr[s].addr == rd.addr)))
            else:
                m.d.comb += rd.en.eq(rd_en & ~wr[s].en)
        if "act_rd1" in mm.signature.members:
            # The zero-skipping ws engine reads act rows in pairs: a second ACT read port (a copy
            # of the ACT BRAMs), its own, masked like the first.
            rd1 = mems["act"].read_port()
            m.d.comb += [rd1.addr.eq(mm.act_rd1.addr), rd1.en.eq(mm.act_rd1.en & ~wr["act"].en),
                         mm.act_rd1.data.eq(rd1.data)]

        # Write ports: the busy unit drives; the DMA otherwise.
        writers = {"acc": [(mm.busy, mm.acc_wr)], "out": [(pp.busy, pp.out_wr)]}
        for s in bus.SPADS:
            self._mux(m, {f: getattr(wr[s], f) for f in ("addr", "data", "en")},
                      writers.get(s, []) + [(None, getattr(dma, f"{s}_wr"))])

        # Memory bus: the DMA while it is busy, else the controller.
        with m.If(dma.busy):
            self._bus(m, dma)
        with m.Else():
            self._bus(m, ctrl)

        wiring.connect(m, ctrl.o_dma, dma.i_cmd)
        wiring.connect(m, ctrl.o_matmul, mm.i_cmd)
        wiring.connect(m, ctrl.o_loop, mm.i_loop)
        wiring.connect(m, ctrl.o_requant, pp.i_cmd)
        req, rsp = self.o_mem_req, self.i_mem_rsp
        m.d.comb += [
            ctrl.start.eq(self.start), ctrl.prog_addr.eq(self.prog_addr),
            self.status.eq(ctrl.status), self.fault_pc.eq(ctrl.fault_pc),
            self.config_id.eq(cfg.config_hash),
            ctrl.dma_busy.eq(dma.busy), ctrl.matmul_busy.eq(mm.busy),
            ctrl.matmul_fault.eq(mm.fault), mm.loop_clear.eq(ctrl.loop_clear),
            ctrl.requant_busy.eq(pp.busy), ctrl.requant_fault.eq(pp.fault),
            perf.clear.eq(ctrl.perf_clear), perf.active.eq(ctrl.perf_active),
            perf.compute.eq(mm.busy),
            perf.macs_inc.eq(mm.macs_inc), perf.gated_inc.eq(mm.gated_inc),
            perf.skipped_inc.eq(mm.skipped_inc),
            perf.dram_read.eq(dma.busy & rsp.valid & rsp.ready),
            perf.dram_write.eq(dma.busy & req.valid & req.ready & req.p.we),
            perf.stall.eq(req.valid & ~req.ready),
            perf.retired.eq(ctrl.retired),
            ctrl.perf_values.eq(perf.values), self.perf.eq(perf.values),
        ]
        return m

    @staticmethod
    def _mux(m, dests, units):
        """Drive each ``dests[field]`` from ``field`` of the first unit port of ``units`` (a list
        of ``(busy, port)``) whose ``busy`` is high, else of the last entry's port (its ``busy``
        is ignored)."""
        def drive(src):
            m.d.comb += [sig.eq(getattr(src, f)) for f, sig in dests.items()]
        *sel, (_, default) = units
        for n, (busy, src) in enumerate(sel):
            with (m.If if n == 0 else m.Elif)(busy):
                drive(src)
        if sel:
            with m.Else():
                drive(default)
        else:
            drive(default)

    def _bus(self, m, unit):
        """Connect ``unit``'s memory bus port to the device's."""
        req, rsp = self.o_mem_req, self.i_mem_rsp
        m.d.comb += [req.valid.eq(unit.o_mem_req.valid), req.payload.eq(unit.o_mem_req.payload),
                     unit.o_mem_req.ready.eq(req.ready),
                     unit.i_mem_rsp.valid.eq(rsp.valid), unit.i_mem_rsp.payload.eq(rsp.payload),
                     rsp.ready.eq(unit.i_mem_rsp.ready)]
