"""FpgaDevice: the platform-free board core (Accelerator + device memory + UART host bridge)."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .bridge import HostBridge
from .params import AccelConfig
from .top import Accelerator
from .uart import RxByte, UartRx, UartTx, uart_divisor

__all__ = ["MemoryPortBase", "MemoryPort", "RxFifo", "FpgaDevice"]

#: Shortest inter-byte timeout, in character times (10 bits each).
_MIN_TIMEOUT_CHARS = 4


class MemoryPortBase(wiring.Component):
    """The contract every device memory of the board core keeps; subclasses add the storage.

    A read accepted in cycle ``t`` is answered in cycle ``t + 1`` and the response is held until
    taken; a new request is accepted when no response is waiting or it is taken in the same cycle
    (one read per cycle when the requester is always ready). Writes give no response. ``flush``
    drops a waiting response (for a change of requester).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i_mem_req : ``In(stream.Signature(bus.mem_req_layout(cfg)))``
    o_mem_rsp : ``Out(stream.Signature(bus.mem_rsp_layout(cfg)))``
    flush : ``In(1)``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = cfg
        super().__init__({
            "i_mem_req": In(stream.Signature(bus.mem_req_layout(cfg))),
            "o_mem_rsp": Out(stream.Signature(bus.mem_rsp_layout(cfg))),
            "flush": In(1),
        })

    def handshake(self, m: Module):
        """Drive ``ready`` and the response's ``valid``; return ``(take_read, take_write)``, the
        cycles in which the storage must start a read or perform a write."""
        req, rsp = self.i_mem_req, self.o_mem_rsp
        m.d.comb += req.ready.eq(~rsp.valid | rsp.ready)
        take = req.valid & req.ready
        take_read, take_write = take & ~req.p.we, take & req.p.we
        with m.If(take_read):
            m.d.sync += rsp.valid.eq(1)
        with m.Elif(rsp.ready | self.flush):
            m.d.sync += rsp.valid.eq(0)
        return take_read, take_write


class MemoryPort(MemoryPortBase):
    """Device memory in one ``lib.memory.Memory`` (one read port, one write port), with
    :class:`MemoryPortBase`'s contract.

    Parameters
    ----------
    cfg : AccelConfig
    mem_data : ``memory.MemoryData``
        ``cfg.mem_words`` words of ``cfg.mem_bus_bits``.
    """

    def __init__(self, cfg: AccelConfig, mem_data: memory.MemoryData):
        self._data = mem_data
        super().__init__(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(data=self._data)
        rd, wr = mem.read_port(), mem.write_port()
        req = self.i_mem_req
        take_read, take_write = self.handshake(m)
        m.d.comb += [rd.addr.eq(req.p.addr), rd.en.eq(take_read),
                     wr.addr.eq(req.p.addr), wr.data.eq(req.p.wdata), wr.en.eq(take_write),
                     self.o_mem_rsp.p.rdata.eq(rd.data)]
        return m


class RxFifo(wiring.Component):
    """A first-in first-out queue of received bytes in one block RAM.

    Holds up to ``depth + 1`` bytes (``depth`` in the memory, one on its read port). A byte
    offered on ``i_data`` is taken while the memory is not full; ``o_data`` offers the oldest
    byte from the cycle after the read that brought it to the read port (two cycles after an
    empty queue takes a byte) and holds it until taken. The memory is never read at the address
    being written (it is read only while it holds a byte, and written only while it is not
    full), so ``stamen.sw.apps.bitstream.collision_free_script`` marks its read port collision-free.

    Parameters
    ----------
    depth : int
        Bytes the memory holds, at least 2.

    Members
    -------
    i_data : ``In(stream.Signature(uart.RxByte))``
    o_data : ``Out(stream.Signature(uart.RxByte))``
    """

    def __init__(self, depth: int):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
            raise ValueError(f"RxFifo depth must be an integer of at least 2, not {depth!r}")
        self._depth = depth
        super().__init__({"i_data": In(stream.Signature(RxByte)),
                          "o_data": Out(stream.Signature(RxByte))})

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.storage = mem = memory.Memory(shape=RxByte, depth=depth, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        w_ptr, r_ptr = Signal(range(depth)), Signal(range(depth))
        level = Signal(range(depth + 1))                 # bytes in the memory
        i, o = self.i_data, self.o_data
        m.d.comb += i.ready.eq(level != depth)
        put = i.valid & i.ready
        get = (level != 0) & (~o.valid | o.ready)        # the next byte to the read port
        m.d.comb += [wr.addr.eq(w_ptr), wr.data.eq(i.payload), wr.en.eq(put),
                     rd.addr.eq(r_ptr), rd.en.eq(get), o.payload.eq(rd.data)]
        with m.If(put):
            m.d.sync += w_ptr.eq(Mux(w_ptr == depth - 1, 0, w_ptr + 1))
        with m.If(get):
            m.d.sync += [r_ptr.eq(Mux(r_ptr == depth - 1, 0, r_ptr + 1)), o.valid.eq(1)]
        with m.Elif(o.ready):
            m.d.sync += o.valid.eq(0)
        m.d.sync += level.eq(level + put - get)
        return m


class FpgaDevice(wiring.Component):
    """A Stamen device with its memory and a UART host bridge, for any board.

    The accelerator and the :class:`hw.bridge.HostBridge` share one device memory
    (:class:`MemoryPort`): the accelerator owns the bus while ``status.busy``, the bridge otherwise
    (it refuses memory commands while the accelerator runs). Received bytes pass through a FIFO
    (:class:`RxFifo`, ``rx_fifo_depth + 1`` bytes), so a host may send the next frame while a
    reply is going out.
    Everything runs in the ``sync`` domain; the board top supplies the clock, reset and pins.

    Parameters
    ----------
    cfg : AccelConfig
    clk_freq : int or float
        ``sync`` clock frequency in Hz.
    baud : int or float
        UART bit rate (8N1).
    timeout_s : float
        The bridge's inter-byte timeout in seconds (at least four character times).
    rx_fifo_depth : int
        Bytes of receive buffering.
    memory_port : wiring.Component or None
        The device memory: a :class:`MemoryPortBase` subclass. None (the
        default) builds a :class:`MemoryPort` over ``mem_data``; boards pass a vendor memory (e.g.
        ``hw.board.Ice40SpramPort``).

    Attributes
    ----------
    accel : Accelerator
    mem_data : ``memory.MemoryData``
        Device memory, for backdoor access in tests (unused when ``memory_port`` is given).
    divisor : int
        Clock cycles per UART bit.
    timeout_cycles : int

    Members
    -------
    rx : ``In(1, init=1)``; tx : ``Out(1, init=1)``; the UART lines (idle high).
    leds : ``Out(3)``; bit 0 busy, bit 1 done, bit 2 error (the last run faulted).
    """

    def __init__(self, cfg: AccelConfig, clk_freq, baud, timeout_s: float = 0.02,
                 rx_fifo_depth: int = 32, memory_port=None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"FpgaDevice configuration must be an AccelConfig, not {cfg!r}")
        self._divisor = uart_divisor(clk_freq, baud)
        if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool):
            raise TypeError(f"FpgaDevice timeout_s must be a number, not {timeout_s!r}")
        self._timeout = round(clk_freq * timeout_s)
        if self._timeout < _MIN_TIMEOUT_CHARS * 10 * self._divisor:
            raise ValueError(f"FpgaDevice timeout_s must be at least {_MIN_TIMEOUT_CHARS} "
                             f"character times ({_MIN_TIMEOUT_CHARS * 10 / baud!r} s), "
                             f"not {timeout_s!r}")
        if (not isinstance(rx_fifo_depth, int) or isinstance(rx_fifo_depth, bool)
                or rx_fifo_depth < 2):
            raise ValueError(f"FpgaDevice rx_fifo_depth must be an integer of at least 2, "
                             f"not {rx_fifo_depth!r}")
        self._cfg = cfg
        self._clk_freq = clk_freq
        self._baud = baud
        self._fifo_depth = rx_fifo_depth
        self.mem_data = memory.MemoryData(shape=cfg.mem_bus_bits, depth=cfg.mem_words, init=[])
        self._memory_port = memory_port
        self.accel = Accelerator(cfg)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "leds": Out(3)})

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout_cycles(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.accel = accel = self.accel
        m.submodules.memory = mem = (MemoryPort(cfg, self.mem_data) if self._memory_port is None
                                     else self._memory_port)
        m.submodules.uart_rx = urx = UartRx(self._clk_freq, self._baud)
        m.submodules.uart_tx = utx = UartTx(self._clk_freq, self._baud)
        m.submodules.rx_fifo = rxq = RxFifo(self._fifo_depth)
        m.submodules.bridge = bridge = HostBridge(cfg, self._timeout)

        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_data, rxq.i_data)
        wiring.connect(m, rxq.o_data, bridge.i_rx)
        wiring.connect(m, bridge.o_tx, utx.i_data)

        status = accel.status
        m.d.comb += [
            bridge.status.eq(status), bridge.fault_pc.eq(accel.fault_pc),
            bridge.config_id.eq(accel.config_id), bridge.perf.eq(accel.perf),
            accel.start.eq(bridge.start), accel.prog_addr.eq(bridge.prog_addr),
            self.leds.eq(Cat(status.busy, status.done, status.error != isa.ErrorCode.NONE)),
        ]

        # Memory bus: the accelerator while it runs, the bridge otherwise.
        was_busy = Signal()
        m.d.sync += was_busy.eq(status.busy)
        m.d.comb += mem.flush.eq(was_busy & ~status.busy)
        with m.If(status.busy):
            self._bus(m, accel, mem)
        with m.Else():
            self._bus(m, bridge, mem)
        return m

    @staticmethod
    def _bus(m, requester, mem):
        """Connect ``requester``'s memory bus port to the memory."""
        req, rsp = mem.i_mem_req, mem.o_mem_rsp
        m.d.comb += [req.valid.eq(requester.o_mem_req.valid),
                     req.payload.eq(requester.o_mem_req.payload),
                     requester.o_mem_req.ready.eq(req.ready),
                     requester.i_mem_rsp.valid.eq(rsp.valid),
                     requester.i_mem_rsp.payload.eq(rsp.payload),
                     rsp.ready.eq(requester.i_mem_rsp.ready)]
