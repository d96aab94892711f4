"""UART host bridge: a framed command protocol to device memory, the CSRs, start and status.

This module is the single source of the protocol; the host (``sw/runtime/fpga.py``) and the testbenches
import its constants and frame helpers.

Request (host to device)::

    SYNC 0xA5 | CMD | ADDR (4 bytes LE) | COUNT (2 bytes LE) | HCRC | payload ... | PCRC

``HCRC`` is :func:`crc8` of ``CMD ADDR COUNT``; ``payload`` and ``PCRC`` (:func:`crc8` of the payload)
are present only for ``WRITE_MEM`` (``COUNT`` memory words of ``cfg.mem_bus_bytes`` bytes, little
endian) and ``WRITE_CSR`` (``COUNT`` CSR values of :data:`CSR_BYTES` bytes, little endian).

Reply (device to host)::

    SYNC 0x5A | STATUS | payload ... | CRC

``CRC`` is :func:`crc8` of ``STATUS`` and the payload. Only ``STATUS == Reply.OK`` replies have a
payload: ``READ_MEM`` ``COUNT`` words, ``READ_CSR`` ``COUNT`` CSR values, ``STATUS`` two CSR values
(status, fault_pc). CRC-8 is polynomial 0x07, initial value 0, no reflection, no final XOR.

Commands (:class:`Cmd`): ``READ_MEM`` / ``WRITE_MEM`` (``ADDR`` a word address, ``COUNT`` >= 1 words,
``ADDR + COUNT <= cfg.mem_words``), ``READ_CSR`` / ``WRITE_CSR`` (``ADDR`` a CSR index of
:data:`CSRS`, ``COUNT`` >= 1; only ``prog_addr`` is writable, one at a time, with a value below
``cfg.mem_words``), ``START`` (``ADDR`` the program's word address; sets ``prog_addr`` and starts the
accelerator), ``STATUS`` (``ADDR`` and ``COUNT`` ignored). Memory commands and ``START`` are refused
with ``BUSY`` while the accelerator runs; CSR reads and ``STATUS`` always work.

Errors (:class:`Reply`) and when their reply is sent (every error gets exactly one reply; the
bridge never hangs and is ready for the next frame after it):

* after the frame (its length is known): ``RANGE`` / ``BUSY`` of a read, ``START`` or ``STATUS``;
  ``BAD_CHECKSUM`` of a payload; ``RANGE`` of a ``WRITE_CSR`` value;
* after the line has been quiet for the inter-byte timeout (the rest of the frame is dropped):
  ``BAD_CHECKSUM`` of a header, ``UNKNOWN_CMD``, ``RANGE`` / ``BUSY`` of a write, ``FRAMING`` (a
  UART stop bit was low), ``BAD_SYNC`` (a byte other than SYNC between frames);
* ``TIMEOUT``: a frame stopped for the inter-byte timeout; the partial frame is dropped.

A ``WRITE_MEM`` writes each word as it arrives (the header was verified, so only the addressed words
change); if its payload checksum then fails, those words hold unknown data and the host repeats it.
"""
from enum import IntEnum

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .controller import sum_exceeds
from .params import CONFIG_ID_WIDTH, AccelConfig
from .perf import perf_layout
from .uart import RxByte

__all__ = ["REQ_SYNC", "REPLY_SYNC", "CRC_POLY", "CSR_BYTES", "HEADER_BYTES", "Cmd", "Reply",
           "CSRS", "Csr", "WRITABLE_CSRS", "crc8", "encode_request", "decode_reply",
           "request_payload_bytes",
           "reply_payload_bytes", "Header", "TxFramer", "HostBridge"]

#: First byte of a request.
REQ_SYNC = 0xA5
#: First byte of a reply.
REPLY_SYNC = 0x5A
#: CRC-8 polynomial (x^8 + x^2 + x + 1), initial value 0.
CRC_POLY = 0x07
#: Bytes of one CSR value on the wire.
CSR_BYTES = 8
#: Bytes of a request header after SYNC: CMD, ADDR, COUNT, HCRC.
HEADER_BYTES = 8


class Cmd(enum.Enum, shape=8):
    """Request command codes."""
    READ_MEM = 0x01
    WRITE_MEM = 0x02
    READ_CSR = 0x03
    WRITE_CSR = 0x04
    START = 0x05
    STATUS = 0x06


class Reply(enum.Enum, shape=8):
    """Reply status codes."""
    OK = 0x00
    BAD_CHECKSUM = 0x01
    UNKNOWN_CMD = 0x02
    RANGE = 0x03
    FRAMING = 0x04
    BUSY = 0x05
    TIMEOUT = 0x06
    BAD_SYNC = 0x07


#: CSR names by index: identity, status (the raw ``isa.Status`` bits), fault PC, program address,
#: then one per performance counter (``perf_<name>``, ``isa.PERF_COUNTERS`` order).
CSRS = ("config_id", "status", "fault_pc", "prog_addr", *(f"perf_{n}" for n in isa.PERF_COUNTERS))
#: CSR indices by upper-case name (``Csr.CONFIG_ID``, ``Csr.PERF_CYCLES``, ...).
Csr = IntEnum("Csr", {name.upper(): i for i, name in enumerate(CSRS)})
#: The CSRs ``WRITE_CSR`` accepts.
WRITABLE_CSRS = (Csr.PROG_ADDR,)

#: Request header after SYNC, in wire order.
Header = data.StructLayout({"cmd": 8, "addr": 32, "count": 16, "hcrc": 8})


def crc8(payload: bytes, crc: int = 0) -> int:
    """Return the CRC-8 (polynomial :data:`CRC_POLY`) of ``payload``, continuing from ``crc``."""
    for b in payload:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc8_step(crc, byte):
    """Return the hardware expression of :func:`crc8` of one ``byte`` continuing from ``crc``.

    The CRC is linear in ``crc ^ byte``: each output bit is the XOR of the input bits whose
    one-hot CRC has that bit set (a flat XOR per bit instead of eight nested shift steps).
    """
    x = crc ^ byte
    columns = [crc8(bytes([1 << i])) for i in range(8)]
    bits = []
    for j in range(8):
        terms = [x[i] for i in range(8) if columns[i] >> j & 1]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc ^ t
        bits.append(acc)
    return Cat(*bits)


def request_payload_bytes(cmd: Cmd, count: int, cfg: AccelConfig) -> int:
    """Return the payload bytes a request of ``cmd`` with ``count`` carries."""
    cmd = Cmd(cmd)
    if cmd == Cmd.WRITE_MEM:
        return count * cfg.mem_bus_bytes
    if cmd == Cmd.WRITE_CSR:
        return count * CSR_BYTES
    return 0


def reply_payload_bytes(cmd: Cmd, count: int, cfg: AccelConfig) -> int:
    """Return the payload bytes of an ``OK`` reply to ``cmd`` with ``count``."""
    cmd = Cmd(cmd)
    if cmd == Cmd.READ_MEM:
        return count * cfg.mem_bus_bytes
    if cmd == Cmd.READ_CSR:
        return count * CSR_BYTES
    if cmd == Cmd.STATUS:
        return 2 * CSR_BYTES
    return 0


def encode_request(cmd, addr: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
    """Return the bytes of one request frame (``cmd`` may be any byte, to test refusals)."""
    cmd = cmd.value if isinstance(cmd, Cmd) else int(cmd)
    if not 0 <= addr < 1 << 32:
        raise ValueError(f"Request address must fit in 32 bits, not {addr!r}")
    if not 0 <= count < 1 << 16:
        raise ValueError(f"Request count must fit in 16 bits, not {count!r}")
    head = bytes([cmd]) + addr.to_bytes(4, "little") + count.to_bytes(2, "little")
    frame = bytes([REQ_SYNC]) + head + bytes([crc8(head)])
    if payload:
        frame += bytes(payload) + bytes([crc8(payload)])
    return frame


def decode_reply(raw: bytes) -> tuple[Reply, bytes]:
    """Return ``(status, payload)`` of one whole reply frame.

    Raises
    ------
    ValueError
        When the frame is too short, does not start with :data:`REPLY_SYNC`, has an unknown status,
        a payload on an error reply, or a bad CRC.
    """
    raw = bytes(raw)
    if len(raw) < 3 or raw[0] != REPLY_SYNC:
        raise ValueError(f"Reply must start with {REPLY_SYNC:#04x} and hold at least 3 bytes, "
                         f"not {raw.hex()!r}")
    if crc8(raw[1:-1]) != raw[-1]:
        raise ValueError(f"Reply CRC must be {crc8(raw[1:-1]):#04x}, not {raw[-1]:#04x}")
    try:
        status = Reply(raw[1])
    except ValueError:
        raise ValueError(f"Reply status must be one of {[r.name for r in Reply]}, "
                         f"not {raw[1]:#04x}") from None
    if status != Reply.OK and len(raw) != 3:
        raise ValueError(f"Error reply {status.name} must carry no payload, not {raw.hex()!r}")
    return status, raw[2:-1]


class TxFramer(wiring.Component):
    """Wrap each reply in ``REPLY_SYNC`` and its CRC.

    A reply is a run of ``i_beat`` beats ending with ``last``; the framer sends ``REPLY_SYNC``
    before the first beat's byte and :func:`crc8` of the beats' bytes after the last one.

    Members
    -------
    i_beat : ``In(stream.Signature(StructLayout({"data": 8, "last": 1})))``
    o_data : ``Out(stream.Signature(8))``
    """
    i_beat: In(stream.Signature(data.StructLayout({"data": 8, "last": 1})))
    o_data: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_beat, self.o_data
        crc = Signal(8)
        with m.FSM():
            with m.State("SYNC"):
                m.d.comb += [o.valid.eq(i.valid), o.payload.eq(REPLY_SYNC)]
                with m.If(o.valid & o.ready):
                    m.d.sync += crc.eq(0)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [o.valid.eq(i.valid), o.payload.eq(i.p.data), i.ready.eq(o.ready)]
                with m.If(i.valid & i.ready):
                    m.d.sync += crc.eq(_crc8_step(crc, i.p.data))
                    with m.If(i.p.last):
                        m.next = "CRC"
            with m.State("CRC"):
                m.d.comb += [o.valid.eq(1), o.payload.eq(crc)]
                with m.If(o.ready):
                    m.next = "SYNC"
        return m


class _BridgeRegs:
    """The registers :class:`HostBridge`'s states share. The header goes straight into the
    registers that use it: the command (``kind``, decoded: 0 for an unknown one, else 1 + its
    index in Cmd), the address's low bits (``addr_high``: a bit above them is set) and the count.
    ``shift`` holds a memory word or the significant bytes of a CSR (the widest CSR value); a
    WRITE_CSR's further bytes only record whether they are non-zero (``csr_high``)."""

    def __init__(self, cfg: AccelConfig, csr_values: list, timeout: int):
        csr_bytes = min(CSR_BYTES, -(-max(len(v) for v in csr_values) // 8))
        self.width = max(8 * csr_bytes, cfg.mem_bus_bits)
        self.csr_high = Signal(name="csr_high")
        self.kind = Signal(range(len(Cmd) + 1), name="kind")
        self.addr_high = Signal(name="addr_high")
        self.crc = Signal(8, name="crc")
        self.code = Signal(Reply, name="code")          # the reply status to send
        self.more = Signal(name="more")                 # the reply has a payload after the status
        self.is_csr = Signal(name="is_csr")             # the payload items are CSRs, not words
        # Holds only checked addresses: a word address (< mem_words) or a CSR index.
        self.addr = Signal(max(cfg.mem_addr_width, (len(CSRS) - 1).bit_length()), name="addr")
        self.count = Signal(16, name="count")
        # item being sent (from bit 0) or received (at the top)
        self.shift = Signal(self.width, name="shift")
        self.idx = Signal(range(max(HEADER_BYTES, self.width // 8)), name="idx")
        self.last_idx = Mux(self.is_csr, CSR_BYTES - 1, cfg.mem_bus_bytes - 1)
        self.timer = Signal(range(timeout + 1), name="timer")
        self.expired = self.timer == timeout
        self.waiting = Signal(name="waiting")           # inside a frame: a quiet line times out


class HostBridge(wiring.Component):
    """Execute the framed commands of this module's protocol, received byte by byte.

    Bytes arrive on ``i_rx`` (from :class:`hw.uart.UartRx`, best through a FIFO: the bridge does not
    take bytes while it sends a reply) and replies leave on ``o_tx``. Device memory is reached
    through the bus of ``hw/bus.py`` (one request at a time); the owner must give the bridge the bus
    while ``status.busy`` is 0 (the bridge uses it only then). ``start`` is a one-cycle pulse, with
    ``prog_addr`` already holding the program address.

    Parameters
    ----------
    cfg : AccelConfig
    timeout_cycles : int
        Inter-byte timeout: a frame that stops for this many cycles is dropped (``TIMEOUT``), and
        an error reply waits until the line has been quiet this long.

    Members
    -------
    i_rx : ``In(stream.Signature(uart.RxByte))``; o_tx : ``Out(stream.Signature(8))``
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    i_mem_rsp : ``In(stream.Signature(bus.mem_rsp_layout(cfg)))``
    status : ``In(isa.Status)``; fault_pc : ``In(cfg.mem_addr_width)``
    config_id : ``In(CONFIG_ID_WIDTH)``; perf : ``In(perf_layout(cfg))``
    prog_addr : ``Out(cfg.mem_addr_width)``; start : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig, timeout_cycles: int):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"HostBridge configuration must be an AccelConfig, not {cfg!r}")
        if (not isinstance(timeout_cycles, int) or isinstance(timeout_cycles, bool)
                or timeout_cycles < 1):
            raise TypeError(f"HostBridge timeout_cycles must be a positive integer, "
                            f"not {timeout_cycles!r}")
        self._cfg = cfg
        self._timeout = timeout_cycles
        aw = cfg.mem_addr_width
        super().__init__({
            "i_rx": In(stream.Signature(RxByte)), "o_tx": Out(stream.Signature(8)),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(cfg))),
            "status": In(isa.Status), "fault_pc": In(aw), "config_id": In(CONFIG_ID_WIDTH),
            "perf": In(perf_layout(cfg)), "prog_addr": Out(aw), "start": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    @property
    def timeout_cycles(self) -> int:
        return self._timeout

    def _csr_values(self):
        return [self.config_id, self.status.as_value(), self.fault_pc, self.prog_addr,
                *(self.perf[n] for n in isa.PERF_COUNTERS)]

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.framer = framer = TxFramer()
        wiring.connect(m, framer.o_data, wiring.flipped(self.o_tx))
        r = _BridgeRegs(cfg, self._csr_values(), self._timeout)
        rx, req = self.i_rx, self.o_mem_req
        r.beat = framer.i_beat
        r.got = rx.valid & rx.ready
        r.byte, r.ferr = rx.p.data, rx.p.framing_error
        r.crc_next = _crc8_step(r.crc, r.byte)
        with m.If(r.got):
            m.d.sync += r.crc.eq(r.crc_next)
        with m.If(~r.waiting | r.got):
            m.d.sync += r.timer.eq(0)
        with m.Elif(~r.expired):
            m.d.sync += r.timer.eq(r.timer + 1)
        m.d.sync += self.start.eq(0)
        m.d.comb += [req.p.addr.eq(r.addr), req.p.wdata.eq(r.shift[r.width - cfg.mem_bus_bits:])]
        with m.FSM():
            self._receive_states(m, r)
            self._send_states(m, r)
        return m

    @staticmethod
    def _reply(m, r, status, has_payload=False):
        """Go to the reply of ``status`` (with a payload after it: ``has_payload``)."""
        m.d.sync += [r.code.eq(status), r.more.eq(has_payload)]
        m.next = "REPLY"

    @staticmethod
    def _drain(m, r, status):
        """Drop the rest of the frame, then reply ``status`` once the line is quiet."""
        m.d.sync += r.code.eq(status)
        m.next = "DRAIN"

    def _receive_states(self, m, r):
        """The states that take a request: sync, header, its check, a write's payload and
        checksum, and the drain of a refused frame."""
        cfg = self._cfg
        rx, req = self.i_rx, self.o_mem_req
        got, byte, ferr = r.got, r.byte, r.ferr

        def reply(status, has_payload=False):
            self._reply(m, r, status, has_payload)

        def drain(status):
            self._drain(m, r, status)

        with m.State("IDLE"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [r.crc.eq(0), r.idx.eq(0), r.csr_high.eq(0), r.addr_high.eq(0)]
            with m.If(got):
                with m.If(ferr):
                    drain(Reply.FRAMING)
                with m.Elif(byte == REQ_SYNC):
                    m.next = "HEADER"
                with m.Else():
                    drain(Reply.BAD_SYNC)
        with m.State("HEADER"):
            m.d.comb += [rx.ready.eq(1), r.waiting.eq(1)]
            with m.If(got):
                m.d.sync += r.idx.eq(r.idx + 1)
                self._header_byte(m, r.idx, byte, r.kind, r.addr, r.addr_high, r.count)
                with m.If(ferr):
                    drain(Reply.FRAMING)
                with m.Elif(r.idx == HEADER_BYTES - 1):
                    m.d.sync += r.idx.eq(0)
                    with m.If(r.crc_next == 0):
                        m.next = "CHECK"
                    with m.Else():
                        drain(Reply.BAD_CHECKSUM)
            with m.Elif(r.expired):
                reply(Reply.TIMEOUT)
        with m.State("CHECK"):
            self._check(m, r.kind, r.addr, r.addr_high, r.count, r.is_csr, reply, drain)
        with m.State("WDATA"):
            m.d.comb += [rx.ready.eq(1), r.waiting.eq(1)]
            with m.If(got):
                m.d.sync += r.idx.eq(r.idx + 1)
                with m.If(~r.is_csr | (r.idx < r.width // 8)):
                    m.d.sync += r.shift.eq(Cat(r.shift[8:], byte))
                with m.Elif(byte != 0):
                    m.d.sync += r.csr_high.eq(1)
                with m.If(ferr):
                    drain(Reply.FRAMING)
                with m.Elif(r.idx == r.last_idx):
                    m.d.sync += r.idx.eq(0)
                    with m.If(r.is_csr):
                        m.next = "WCRC"
                    with m.Else():
                        m.next = "WBUS"
            with m.Elif(r.expired):
                reply(Reply.TIMEOUT)
        with m.State("WBUS"):
            m.d.comb += [req.valid.eq(1), req.p.we.eq(1)]
            with m.If(req.ready):
                m.d.sync += [r.addr.eq(r.addr + 1), r.count.eq(r.count - 1)]
                with m.If(r.count == 1):
                    m.next = "WCRC"
                with m.Else():
                    m.next = "WDATA"
        with m.State("WCRC"):
            m.d.comb += [rx.ready.eq(1), r.waiting.eq(1)]
            value = r.shift[r.width - 8 * min(CSR_BYTES, r.width // 8):]
            with m.If(got):
                with m.If(ferr):
                    drain(Reply.FRAMING)
                with m.Elif(r.crc_next != 0):
                    reply(Reply.BAD_CHECKSUM)
                with m.Elif(r.is_csr & (r.csr_high | (value >= cfg.mem_words))):
                    reply(Reply.RANGE)
                with m.Else():
                    with m.If(r.is_csr):
                        m.d.sync += self.prog_addr.eq(value)
                    reply(Reply.OK)
            with m.Elif(r.expired):
                reply(Reply.TIMEOUT)
        with m.State("DRAIN"):
            m.d.comb += [rx.ready.eq(1), r.waiting.eq(1)]
            with m.If(r.expired):
                reply(r.code)

    def _send_states(self, m, r):
        """The states that send a reply: its status beat, then the CSR values or memory words
        of its payload, a byte at a time (the framer adds SYNC and the CRC)."""
        req, rsp, beat = self.o_mem_req, self.i_mem_rsp, r.beat
        with m.State("REPLY"):
            m.d.comb += [beat.valid.eq(1), beat.p.data.eq(r.code), beat.p.last.eq(~r.more)]
            with m.If(beat.ready):
                m.d.sync += r.more.eq(0)
                with m.If(~r.more):
                    m.next = "IDLE"
                with m.Elif(r.is_csr):
                    m.next = "LOAD_CSR"
                with m.Else():
                    m.next = "READ_REQ"
        with m.State("LOAD_CSR"):
            # The index was checked (< len(CSRS)): its low bits select.
            values = self._csr_values()
            with m.Switch(r.addr[:(len(values) - 1).bit_length()]):
                for i, value in enumerate(values):
                    with m.Case(i):
                        m.d.sync += r.shift.eq(value)
            m.next = "SEND"
        with m.State("READ_REQ"):
            m.d.comb += req.valid.eq(1)
            with m.If(req.ready):
                m.next = "READ_RSP"
        with m.State("READ_RSP"):
            m.d.comb += rsp.ready.eq(1)
            with m.If(rsp.valid):
                m.d.sync += r.shift.eq(rsp.p.rdata)
                m.next = "SEND"
        with m.State("SEND"):
            m.d.comb += [beat.valid.eq(1), beat.p.data.eq(r.shift[:8]),
                         beat.p.last.eq((r.count == 1) & (r.idx == r.last_idx))]
            with m.If(beat.ready):
                m.d.sync += [r.shift.eq(r.shift >> 8), r.idx.eq(r.idx + 1)]
                with m.If(r.idx == r.last_idx):
                    m.d.sync += [r.idx.eq(0), r.addr.eq(r.addr + 1), r.count.eq(r.count - 1)]
                    with m.If(r.count == 1):
                        m.next = "IDLE"
                    with m.Elif(r.is_csr):
                        m.next = "LOAD_CSR"
                    with m.Else():
                        m.next = "READ_REQ"

    @staticmethod
    def _header_byte(m, idx, byte, kind, addr, addr_high, count):
        """Store header byte ``idx`` (``Header`` order: CMD, ADDR, COUNT, HCRC) where it is used."""
        fields = Header                  # a StructLayout: fields[name].offset / .width in bits
        with m.Switch(idx):
            with m.Case(fields["cmd"].offset // 8):
                m.d.sync += kind.eq(0)
                for i, cmd in enumerate(Cmd):
                    with m.If(byte == cmd.value):
                        m.d.sync += kind.eq(1 + i)
            for k in range(fields["addr"].width // 8):
                with m.Case(fields["addr"].offset // 8 + k):
                    low = min(8, max(0, len(addr) - 8 * k))
                    if low:
                        m.d.sync += addr[8 * k:8 * k + low].eq(byte[:low])
                    if low < 8:
                        with m.If(byte[low:].any()):
                            m.d.sync += addr_high.eq(1)
            for k in range(fields["count"].width // 8):
                with m.Case(fields["count"].offset // 8 + k):
                    m.d.sync += count[8 * k:8 * k + 8].eq(byte)

    def _check(self, m, kind, addr, addr_high, count, is_csr, reply, drain):
        """Decode a verified header: refuse it, or set up its transfer."""
        cfg = self._cfg
        busy = self.status.busy
        mem_ok = (count != 0) & ~addr_high & ~sum_exceeds(cfg.mem_words, addr, count)
        csr_ok = (count != 0) & ~addr_high & ~sum_exceeds(len(CSRS), addr, count)
        m.d.sync += is_csr.eq(0)
        code = {cmd: 1 + i for i, cmd in enumerate(Cmd)}
        with m.Switch(kind):
            with m.Case(code[Cmd.READ_MEM]):
                with m.If(~mem_ok):
                    reply(Reply.RANGE)
                with m.Elif(busy):
                    reply(Reply.BUSY)
                with m.Else():
                    reply(Reply.OK, has_payload=True)
            with m.Case(code[Cmd.WRITE_MEM]):
                with m.If(~mem_ok):
                    drain(Reply.RANGE)
                with m.Elif(busy):
                    drain(Reply.BUSY)
                with m.Else():
                    m.next = "WDATA"
            with m.Case(code[Cmd.READ_CSR]):
                m.d.sync += is_csr.eq(1)
                with m.If(~csr_ok):
                    reply(Reply.RANGE)
                with m.Else():
                    reply(Reply.OK, has_payload=True)
            with m.Case(code[Cmd.WRITE_CSR]):
                m.d.sync += is_csr.eq(1)
                with m.If((addr != Csr.PROG_ADDR) | addr_high | (count != 1)):
                    drain(Reply.RANGE)
                with m.Else():
                    m.next = "WDATA"
            with m.Case(code[Cmd.START]):
                with m.If(addr_high | (addr >= cfg.mem_words)):
                    reply(Reply.RANGE)
                with m.Elif(busy):
                    reply(Reply.BUSY)
                with m.Else():
                    m.d.sync += [self.prog_addr.eq(addr), self.start.eq(1)]
                    reply(Reply.OK)
            with m.Case(code[Cmd.STATUS]):
                m.d.sync += [is_csr.eq(1), addr.eq(Csr.STATUS), count.eq(2)]
                reply(Reply.OK, has_payload=True)
            with m.Default():
                drain(Reply.UNKNOWN_CMD)
