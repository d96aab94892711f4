"""SimDevice: the simulation top (Accelerator + device memory model + host port). Sim only."""
from amaranth import *
from amaranth.lib import fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .bus import mem_req_layout, mem_rsp_layout
from .params import CONFIG_ID_WIDTH, AccelConfig
from .perf import perf_layout
from .top import Accelerator

__all__ = ["SimDevice", "MemoryModel"]

#: Bits of the memory model's cycle counter (response due times); far above any latency.
_TIME_WIDTH = 16
#: The 16-bit Fibonacci LFSR (x^16 + x^14 + x^13 + x^11 + 1): feedback taps, seed.
_LFSR_TAPS = (0, 2, 3, 5)
_LFSR_SEED = 0xACE1


class MemoryModel(wiring.Component):
    """Device memory behind the bus of ``hw/bus.py``, with latency, backpressure and a host port.

    A read accepted in cycle ``t`` is answered in cycle ``t + 1 + mem_latency`` at the earliest,
    in order. Each cycle, with probability ``mem_stall / 8`` (LFSR-driven), the model refuses
    requests, and independently withholds a response it has not offered yet (an offered response
    stays valid until taken). Up to ``max_latency + 4`` reads may be
    outstanding. The host port has priority over the bus for writes; use it only while the bus
    is idle. ``host_rdata`` is valid the cycle after ``host_en``.

    Members
    -------
    i_mem_req, o_mem_rsp : the bus, seen from the memory.
    host_en, host_we : ``In(1)``; host_addr : ``In(mem_addr_width)``
    host_wdata : ``In(mem_bus_bits)``; host_rdata : ``Out(mem_bus_bits)``
    mem_latency : ``In(range(max_latency + 1))``; mem_stall : ``In(3)``
    """

    def __init__(self, cfg: AccelConfig, data: memory.MemoryData, max_latency: int):
        self._cfg = cfg
        self._data = data
        self._max_latency = max_latency
        super().__init__({
            "i_mem_req": In(stream.Signature(mem_req_layout(cfg))),
            "o_mem_rsp": Out(stream.Signature(mem_rsp_layout(cfg))),
            "host_en": In(1), "host_we": In(1), "host_addr": In(cfg.mem_addr_width),
            "host_wdata": In(cfg.mem_bus_bits), "host_rdata": Out(cfg.mem_bus_bits),
            "mem_latency": In(range(max_latency + 1)), "mem_stall": In(3),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._cfg.mem_bus_bits
        m.submodules.mem = mem = memory.Memory(data=self._data)
        m.submodules.queue = queue = fifo.SyncFIFO(width=width + _TIME_WIDTH,
                                                   depth=self._max_latency + 4)
        rd = mem.read_port(domain="comb")
        host_rd = mem.read_port()
        wp = mem.write_port()

        lfsr = Signal(16, init=_LFSR_SEED)
        feedback = lfsr[_LFSR_TAPS[0]]
        for tap in _LFSR_TAPS[1:]:
            feedback = feedback ^ lfsr[tap]
        m.d.sync += lfsr.eq(Cat(lfsr[1:], feedback))
        stall_req = lfsr[0:3] < self.mem_stall
        stall_rsp = lfsr[8:11] < self.mem_stall
        now = Signal(_TIME_WIDTH)
        m.d.sync += now.eq(now + 1)

        req, rsp = self.i_mem_req, self.o_mem_rsp
        m.d.comb += req.ready.eq(~stall_req & queue.w_rdy)
        accepted = req.valid & req.ready
        m.d.comb += [
            rd.addr.eq(req.p.addr),
            wp.addr.eq(Mux(self.host_en, self.host_addr, req.p.addr)),
            wp.data.eq(Mux(self.host_en, self.host_wdata, req.p.wdata)),
            wp.en.eq(Mux(self.host_en, self.host_we, accepted & req.p.we)),
            host_rd.addr.eq(self.host_addr), host_rd.en.eq(self.host_en),
            self.host_rdata.eq(host_rd.data),
            queue.w_en.eq(accepted & ~req.p.we),
            queue.w_data.eq(Cat(rd.data, now + self.mem_latency + 1)),
        ]
        age = Signal(_TIME_WIDTH)
        m.d.comb += age.eq(now - queue.r_data[width:])
        held = Signal()                 # a response offered last cycle stays offered until taken
        m.d.sync += held.eq(rsp.valid & ~rsp.ready)
        m.d.comb += [
            rsp.valid.eq(queue.r_rdy & ~age[-1] & (~stall_rsp | held)),
            rsp.p.rdata.eq(queue.r_data[:width]),
            queue.r_en.eq(rsp.valid & rsp.ready),
        ]
        return m


class SimDevice(wiring.Component):
    """Simulation top: an :class:`Accelerator` with device memory (a :class:`MemoryModel`).

    Parameters
    ----------
    cfg : AccelConfig
    max_latency : int
        Largest extra read latency ``mem_latency`` can select.

    Attributes
    ----------
    accel : Accelerator
        The device (``accel.spad_data`` for backdoor access to the scratchpads).
    mem_data : ``memory.MemoryData``
        Device memory, ``cfg.mem_words`` words of ``cfg.mem_bus_bits``.

    Members
    -------
    start : ``In(1)``; prog_addr : ``In(cfg.mem_addr_width)``
    status : ``Out(isa.Status)``; config_id : ``Out(32)``; perf : ``Out(perf_layout(cfg))``
    fault_pc : ``Out(cfg.mem_addr_width)``
    host_en, host_we : ``In(1)``; host_addr : ``In(cfg.mem_addr_width)``
    host_wdata : ``In(cfg.mem_bus_bits)``; host_rdata : ``Out(cfg.mem_bus_bits)``
        Host access to device memory while the device is not busy; read data two cycles after.
    mem_latency : ``In(range(max_latency + 1))``; mem_stall : ``In(3)``
        See :class:`MemoryModel`.

    The ``sync`` domain's reset (port ``rst``) resets the device and memory model one cycle after it
    is driven; device memory contents are kept. Every input is registered once before use (so each
    takes effect one cycle after it is driven):
    with no combinational path from a port, Verilator evaluates the logic once per clock edge.
    """

    def __init__(self, cfg: AccelConfig, max_latency: int = 16):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"SimDevice configuration must be an AccelConfig, not {cfg!r}")
        if not isinstance(max_latency, int) or isinstance(max_latency, bool) or max_latency < 0:
            raise TypeError(f"SimDevice max_latency must be a non-negative integer, "
                            f"not {max_latency!r}")
        self._cfg = cfg
        self._max_latency = max_latency
        self.mem_data = memory.MemoryData(shape=cfg.mem_bus_bits, depth=cfg.mem_words, init=[])
        self.accel = Accelerator(cfg)
        aw = cfg.mem_addr_width
        super().__init__({
            "start": In(1), "prog_addr": In(aw),
            "status": Out(isa.Status), "config_id": Out(CONFIG_ID_WIDTH),
            "perf": Out(perf_layout(cfg)), "fault_pc": Out(aw),
            "host_en": In(1), "host_we": In(1), "host_addr": In(aw),
            "host_wdata": In(cfg.mem_bus_bits), "host_rdata": Out(cfg.mem_bus_bits),
            "mem_latency": In(range(max_latency + 1)), "mem_stall": In(3),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def max_latency(self) -> int:
        return self._max_latency

    def elaborate(self, platform):
        m = Module()
        # The device runs in domain "core": the clock of "sync" and a registered copy of its reset.
        # A reset straight from a port would make every flop's next-state logic depend on a
        # top-level input, which Verilator re-evaluates on every input change.
        m.domains.core = ClockDomain("core")
        core_rst = Signal(reset_less=True)
        m.d.sync += core_rst.eq(ResetSignal("sync"))
        m.d.comb += [ClockSignal("core").eq(ClockSignal("sync")), ResetSignal("core").eq(core_rst)]
        m.submodules.accel = accel = DomainRenamer("core")(self.accel)
        m.submodules.memory = mm = DomainRenamer("core")(
            MemoryModel(self._cfg, self.mem_data, self._max_latency))
        wiring.connect(m, accel.o_mem_req, mm.i_mem_req)
        wiring.connect(m, mm.o_mem_rsp, accel.i_mem_rsp)
        m.d.comb += [
            self.status.eq(accel.status), self.config_id.eq(accel.config_id),
            self.perf.eq(accel.perf), self.fault_pc.eq(accel.fault_pc),
            self.host_rdata.eq(mm.host_rdata),
        ]
        # Every input is registered: no logic depends combinationally on a top-level port, so
        # Verilator settles the design once per clock edge instead of on every input change.
        for name, sink in [("start", accel), ("prog_addr", accel), ("host_en", mm), ("host_we", mm),
                           ("host_addr", mm), ("host_wdata", mm), ("mem_latency", mm),
                           ("mem_stall", mm)]:
            port = getattr(self, name)
            s_port = Signal.like(port, name=f"s_{name}")
            m.d.core += s_port.eq(port)
            m.d.comb += getattr(sink, name).eq(s_port)
        return m
