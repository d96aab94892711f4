"""Accelerator: the scratchpads, the units, the controller and the memory bus."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .controller import Controller
from .dma import DMA
from .matmul import MatmulEngine
from .params import CONFIG_ID_WIDTH, AccelConfig
from .perf import PerfCounters, perf_layout
from .postproc import PostProc

__all__ = ["Accelerator"]


class Accelerator(wiring.Component):
    """One Stamen device without its memory: scratchpads, DMA, MatmulEngine, PostProc, counters
    and controller, with one device-memory bus port.

    The five scratchpads are ``lib.memory.Memory`` instances with synchronous read ports (data the
    cycle after the address) and one write port each, muxed by which unit is busy. The memory bus
    goes to the DMA while it is busy, else to the controller.

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
    perf : ``Out(perf_layout())``
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
            "config_id": Out(CONFIG_ID_WIDTH), "perf": Out(perf_layout()),
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
        m.submodules.matmul = mm = MatmulEngine(cfg)
        m.submodules.postproc = pp = PostProc(cfg)
        m.submodules.perf = perf = PerfCounters(cfg)
        m.submodules.ctrl = ctrl = Controller(cfg)

        mems = {}
        for s in bus.SPADS:
            m.submodules[f"{s}_spad"] = mems[s] = memory.Memory(data=self.spad_data[s])
        wr = {s: mems[s].write_port() for s in bus.SPADS}
        for s in bus.SPADS:
            wiring.connect(m, mems[s].read_port(), getattr(dma, f"{s}_rd"))
        wiring.connect(m, mems["act"].read_port(), mm.act_rd)
        wiring.connect(m, mems["wt"].read_port(), mm.wt_rd)
        wiring.connect(m, mems["acc"].read_port(transparent_for=(wr["acc"],)), mm.acc_rd)
        wiring.connect(m, mems["acc"].read_port(), pp.acc_rd)
        wiring.connect(m, mems["param"].read_port(), pp.param_rd)

        # Write ports: the busy unit drives; the DMA otherwise.
        writers = {"acc": (mm.busy, mm.acc_wr), "out": (pp.busy, pp.out_wr)}
        for s in bus.SPADS:
            dma_wr = getattr(dma, f"{s}_wr")
            if s in writers:
                busy, unit_wr = writers[s]
                with m.If(busy):
                    self._drive(m, wr[s], unit_wr)
                with m.Else():
                    self._drive(m, wr[s], dma_wr)
            else:
                self._drive(m, wr[s], dma_wr)

        # Memory bus: the DMA while it is busy, else the controller.
        with m.If(dma.busy):
            self._bus(m, dma)
        with m.Else():
            self._bus(m, ctrl)

        wiring.connect(m, ctrl.o_dma, dma.i_cmd)
        wiring.connect(m, ctrl.o_matmul, mm.i_cmd)
        wiring.connect(m, ctrl.o_requant, pp.i_cmd)
        req, rsp = self.o_mem_req, self.i_mem_rsp
        m.d.comb += [
            ctrl.start.eq(self.start), ctrl.prog_addr.eq(self.prog_addr),
            self.status.eq(ctrl.status), self.fault_pc.eq(ctrl.fault_pc),
            self.config_id.eq(cfg.config_hash),
            ctrl.dma_busy.eq(dma.busy), ctrl.matmul_busy.eq(mm.busy),
            ctrl.requant_busy.eq(pp.busy), ctrl.requant_fault.eq(pp.fault),
            perf.clear.eq(ctrl.perf_clear), perf.active.eq(ctrl.perf_active),
            perf.compute.eq(mm.busy),
            perf.macs_inc.eq(mm.macs_inc), perf.gated_inc.eq(mm.gated_inc),
            perf.dram_read.eq(dma.busy & rsp.valid & rsp.ready),
            perf.dram_write.eq(dma.busy & req.valid & req.ready & req.p.we),
            perf.stall.eq(req.valid & ~req.ready),
            perf.retired.eq(ctrl.retired),
            ctrl.perf_values.eq(perf.values), self.perf.eq(perf.values),
        ]
        return m

    @staticmethod
    def _drive(m, port, src):
        """Drive write ``port`` from a unit's write port ``src``."""
        m.d.comb += [port.addr.eq(src.addr), port.data.eq(src.data), port.en.eq(src.en)]

    def _bus(self, m, unit):
        """Connect ``unit``'s memory bus port to the device's."""
        req, rsp = self.o_mem_req, self.i_mem_rsp
        m.d.comb += [req.valid.eq(unit.o_mem_req.valid), req.payload.eq(unit.o_mem_req.payload),
                     unit.o_mem_req.ready.eq(req.ready),
                     unit.i_mem_rsp.valid.eq(rsp.valid), unit.i_mem_rsp.payload.eq(rsp.payload),
                     rsp.ready.eq(unit.i_mem_rsp.ready)]
