"""Host side of the UART host bridge (``hw/bridge.py``): a protocol client and a job runner.

:class:`BridgeClient` speaks the bridge's framed protocol over any byte stream with ``read(n)`` and
``write(data)`` (a pyserial ``Serial``, ``serial.serial_for_url("socket://host:port")``, a pty or
socket wrapper). :func:`run_on_bridge` runs one memory image on the device and returns the same
fields as the Verilator backend's result, so ``stamen.Device(cfg, backend="fpga", port=...)``
shares its result handling.

Failures are Stamen errors that say what happened: a port that cannot be opened and a link that
breaks during a run raise :class:`~sw.errors.TransportError`; a command the bridge refuses or does
not answer raises :class:`BridgeError`; the limits of a run (``max_cycles`` device cycles,
``timeout_s`` wall-clock seconds) are reported in :class:`BridgeResult` with the one that hit.
"""
from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field

import numpy as np

from stamen.hw import isa
from stamen.hw.bridge import (CSR_BYTES, REPLY_SYNC, Cmd, Csr, Reply, decode_reply,
                              encode_request, reply_payload_bytes)
from stamen.hw.params import AccelConfig
from stamen.sw.errors import StamenError, TransportError
from stamen.sw.run_result import RunResult

__all__ = ["BridgeError", "BridgeTimeoutError", "BridgeProtocolError", "BridgeClient",
           "BridgeResult", "BoardStatus", "run_on_bridge", "open_port", "probe_board",
           "DEFAULT_TIMEOUT_S"]

#: Largest memory transfer per frame, in words (the protocol allows 65535).
DEFAULT_CHUNK_WORDS = 1024
#: Default wall-clock limit of one run on the board, in seconds (:func:`run_on_bridge`).
DEFAULT_TIMEOUT_S = 60.0


class BridgeError(StamenError, RuntimeError):
    """The bridge refused a command.

    Attributes
    ----------
    cmd : Cmd
    status : Reply or None
    """

    def __init__(self, cmd: Cmd, status: Reply | None, detail: str = ""):
        self.cmd = cmd
        self.status = status
        name = status.name if status is not None else "no valid reply"
        super().__init__(f"bridge command {cmd.name} failed: {name}" +
                         (f" ({detail})" if detail else ""))


class BridgeTimeoutError(BridgeError, TimeoutError):
    """The bridge sent no (complete) reply in time."""


class BridgeProtocolError(BridgeError):
    """A reply was malformed (bad sync byte, CRC or length)."""


@dataclass(frozen=True)
class BoardStatus:
    """The board's status CSR, decoded without trusting its fault code: ``error`` is the raw
    code (an ``hw.isa.ErrorCode`` value on a board built from this Stamen; any other number is
    reported, never decoded)."""
    busy: bool
    done: bool
    error: int

    @classmethod
    def from_bits(cls, raw: int) -> "BoardStatus":
        """Decode the status CSR value ``raw`` by the layout of ``hw.isa.Status``."""
        layout = isa.Status.as_shape()
        def get(name):
            f = layout[name]
            return (raw >> f.offset) & ((1 << f.width) - 1)
        return cls(busy=bool(get("busy")), done=bool(get("done")), error=get("error"))


@dataclass
class BridgeResult(RunResult):
    """A :class:`~stamen.sw.run_result.RunResult` plus what the exchange with the bridge cost:
    bytes each way, status polls and the seconds of each phase (upload, run, read-back)."""
    bytes_sent: int = 0
    bytes_received: int = 0
    polls: int = 0
    phases: dict = field(default_factory=dict)


class BridgeClient:
    """Speak the bridge protocol over ``stream``.

    Parameters
    ----------
    stream
        Any object with ``read(n) -> bytes`` (may return fewer bytes, or none, after its own short
        timeout) and ``write(data)``.
    cfg : AccelConfig
        The device's configuration (for the memory word size and range checks).
    timeout : float
        Seconds without any reply byte after which a command fails with
        :class:`BridgeTimeoutError` (must exceed the bridge's inter-byte timeout).
    chunk_words : int
        Largest memory transfer per frame.

    Attributes
    ----------
    bytes_sent, bytes_received : int
        Totals over the client's life.

    Raises
    ------
    TransportError
        From any command, when reading or writing ``stream`` fails (a pyserial
        ``SerialException`` or another ``OSError``: the board was unplugged, the socket closed).
    """

    def __init__(self, stream, cfg: AccelConfig, timeout: float = 2.0,
                 chunk_words: int = DEFAULT_CHUNK_WORDS):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"BridgeClient config must be an AccelConfig, not {cfg!r}")
        if not 1 <= chunk_words <= 0xFFFF:
            raise ValueError(f"BridgeClient chunk_words must be in 1..65535, not {chunk_words!r}")
        self.stream = stream
        self.cfg = cfg
        self.timeout = timeout
        self.chunk_words = chunk_words
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- framing ------------------------------------------------------------------------------
    def _lost(self, cmd: Cmd, e: OSError) -> TransportError:
        port = getattr(self.stream, "port", None)
        where = f" on {port}" if isinstance(port, str) else ""
        return TransportError(f"lost the link to the board{where} during {cmd.name}: {e} "
                              f"({type(e).__name__})")

    def _read_exact(self, n: int, cmd: Cmd) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(buf) < n:
            try:
                chunk = self.stream.read(n - len(buf))
            except OSError as e:                # serial.SerialException is an OSError
                raise self._lost(cmd, e) from e
            if chunk:
                buf += chunk
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise BridgeTimeoutError(cmd, None, f"{len(buf)} of {n} reply bytes within "
                                                    f"{self.timeout} s")
        self.bytes_received += n
        return bytes(buf)

    def transact(self, cmd: Cmd, addr: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
        """Send one request and return the payload of its ``OK`` reply.

        Raises
        ------
        BridgeError
            The bridge answered with an error status (``err.status`` names it).
        BridgeTimeoutError
            No complete reply within :attr:`timeout` of silence.
        BridgeProtocolError
            A malformed reply.
        TransportError
            Reading or writing the stream failed.
        """
        frame = encode_request(cmd, addr, count, payload)
        try:
            self.stream.write(frame)
        except OSError as e:
            raise self._lost(cmd, e) from e
        self.bytes_sent += len(frame)
        head = self._read_exact(2, cmd)
        if head[0] != REPLY_SYNC:
            raise BridgeProtocolError(cmd, None, f"reply starts with {head[0]:#04x}, "
                                                 f"not {REPLY_SYNC:#04x}")
        n = reply_payload_bytes(cmd, count, self.cfg) + 1 if head[1] == Reply.OK.value else 1
        raw = head + self._read_exact(n, cmd)
        try:
            status, data = decode_reply(raw)
        except ValueError as e:
            raise BridgeProtocolError(cmd, None, str(e)) from None
        if status != Reply.OK:
            raise BridgeError(cmd, status, f"addr={addr:#x} count={count}")
        return data

    # -- commands -----------------------------------------------------------------------------
    def read_mem(self, addr: int, count: int) -> bytes:
        """Return ``count`` device-memory words from word ``addr`` (little-endian bytes)."""
        out = bytearray()
        for a in range(addr, addr + count, self.chunk_words):
            n = min(self.chunk_words, addr + count - a)
            out += self.transact(Cmd.READ_MEM, a, n)
        return bytes(out)

    def write_mem(self, addr: int, data: bytes) -> None:
        """Write ``data`` (a whole number of words) to device memory from word ``addr``."""
        bb = self.cfg.mem_bus_bytes
        if len(data) % bb:
            raise ValueError(f"Device memory writes must be whole {bb}-byte words, "
                             f"not {len(data)} bytes")
        count = len(data) // bb
        for a in range(addr, addr + count, self.chunk_words):
            n = min(self.chunk_words, addr + count - a)
            off = (a - addr) * bb
            self.transact(Cmd.WRITE_MEM, a, n, bytes(data[off:off + n * bb]))

    def read_csrs(self, index: int, count: int = 1) -> list[int]:
        """Return ``count`` CSR values from index ``index`` (see ``hw.bridge.CSRS``)."""
        raw = self.transact(Cmd.READ_CSR, int(index), count)
        return [int.from_bytes(raw[i:i + CSR_BYTES], "little") for i in range(0, len(raw),
                                                                              CSR_BYTES)]

    def write_csr(self, index: int, value: int) -> None:
        """Write one CSR (only ``Csr.PROG_ADDR`` is writable)."""
        self.transact(Cmd.WRITE_CSR, int(index), 1, int(value).to_bytes(CSR_BYTES, "little"))

    def config_id(self) -> int:
        """Return the device's configuration hash."""
        return self.read_csrs(Csr.CONFIG_ID)[0]

    def start(self, prog_addr: int) -> None:
        """Start the program at word ``prog_addr``."""
        self.transact(Cmd.START, prog_addr)

    def status(self) -> tuple[BoardStatus, int]:
        """Return ``(status, fault_pc)``: the decoded status CSR and the fault PC."""
        raw = self.transact(Cmd.STATUS)
        status = BoardStatus.from_bits(int.from_bytes(raw[:CSR_BYTES], "little"))
        return status, int.from_bytes(raw[CSR_BYTES:], "little")

    def cycles(self) -> int:
        """Return the device's ``cycles`` performance counter."""
        return self.read_csrs(Csr[f"PERF_{isa.PERF_COUNTERS[0].upper()}"])[0]

    def perf(self) -> dict[str, int]:
        """Return the performance counters by name (``isa.PERF_COUNTERS``)."""
        first = Csr[f"PERF_{isa.PERF_COUNTERS[0].upper()}"]
        return dict(zip(isa.PERF_COUNTERS, self.read_csrs(first, len(isa.PERF_COUNTERS))))


def run_on_bridge(client: BridgeClient, cfg: AccelConfig, image: np.ndarray, prog_addr: int,
                  used_words: int, read_ranges: list[tuple[int, int]],
                  max_cycles: int | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                  poll_interval_s: float = 0.0) -> BridgeResult:
    """Run one memory image on the device behind ``client``.

    Checks the device's configuration ID first (on a mismatch nothing is written and the result
    has ``ran=False``), uploads ``image[:used_words]`` (all of it: the device memory keeps the
    previous run's contents) and, with ``cfg.compress_acts``, the image's zero-row directory (so
    no bit a previous program set survives), starts at ``prog_addr``, polls ``STATUS`` until ``done``, then reads
    the counters and ``read_ranges`` (``(start word, words)`` pairs). The run times out
    (``timeout=True``, nothing read back) when the device's ``cycles`` counter passes
    ``max_cycles`` (``limit="max_cycles"``) or when ``timeout_s`` seconds of wall-clock time have
    passed since the start (``limit="timeout_s"``; None: no wall-clock limit); ``cycles`` then
    holds the counter. The device keeps running then, and refuses memory commands until it
    halts. A fault code the host does not know is returned as it is, in ``error``.

    Raises
    ------
    BridgeError
        A command failed (for example ``BUSY``: an earlier run is still going).
    TransportError
        The link to the board broke.
    """
    t0 = time.perf_counter()
    sent0, recv0 = client.bytes_sent, client.bytes_received
    bb = cfg.mem_bus_bytes
    config_id = client.config_id()
    result = BridgeResult(done=False, error=0, fault_pc=0, timeout=False, config_id=config_id,
                          ran=False, perf={n: 0 for n in isa.PERF_COUNTERS}, reads=[],
                          wall_s=0.0, total_s=0.0)
    if config_id != cfg.config_hash:
        result.total_s = time.perf_counter() - t0
        return result
    image = np.asarray(image, np.uint8)
    client.write_mem(0, image[:used_words * bb].tobytes())
    if cfg.compress_acts:
        client.write_mem(cfg.zero_dir_base, image[cfg.zero_dir_base * bb:].tobytes())
    t1 = time.perf_counter()
    result.phases["upload_s"] = t1 - t0
    client.start(prog_addr)
    t_start = time.perf_counter()
    result.ran = True
    while True:
        status, fault_pc = client.status()
        result.polls += 1
        if status.done and not status.busy:
            break
        if max_cycles is not None:
            cycles = client.cycles()
            if cycles > max_cycles:
                result.timeout, result.limit, result.cycles = True, "max_cycles", cycles
                break
        if timeout_s is not None and time.perf_counter() - t_start > timeout_s:
            result.timeout, result.limit, result.cycles = True, "timeout_s", client.cycles()
            break
        if poll_interval_s:
            time.sleep(poll_interval_s)
    result.wall_s = time.perf_counter() - t_start
    result.phases["run_s"] = result.wall_s
    result.done = status.done
    result.error = status.error
    result.fault_pc = fault_pc
    t2 = time.perf_counter()
    if not result.timeout:
        result.perf = client.perf()
        result.reads = [np.frombuffer(client.read_mem(start, count), np.uint8)
                        for start, count in read_ranges]
    result.phases["readback_s"] = time.perf_counter() - t2
    result.bytes_sent = client.bytes_sent - sent0
    result.bytes_received = client.bytes_received - recv0
    result.total_s = time.perf_counter() - t0
    return result


def open_port(port: str, baud: int, read_timeout: float = 0.05):
    """Open ``port`` with pyserial: a device path (``/dev/ttyUSB1``, ``COM3``) or a pyserial URL
    (``socket://host:port``, ``loop://``).

    Raises
    ------
    TransportError
        When the port does not exist, is refused or busy, or the URL is not one pyserial knows.
    """
    try:
        import serial
    except ImportError as e:               # pragma: no cover - pyserial is a dependency
        raise ImportError("the fpga backend needs pyserial: `pip install pyserial`") from e
    if not isinstance(port, str) or not port:
        raise TypeError(f"Serial port must be a device path or pyserial URL string, not {port!r}")
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=read_timeout)
    except (OSError, ValueError) as e:     # serial.SerialException is an OSError
        raise TransportError(f"cannot open the board's serial port {port!r} at {baud} Bd: "
                             f"{_reason(e)}") from e


def _reason(e: Exception) -> str:
    """Return pyserial's reason without its repeated errno prefixes, or the message."""
    inner = e.__context__ if isinstance(getattr(e, "__context__", None), OSError) else None
    if isinstance(inner, OSError) and inner.strerror:
        if inner.errno == errno.EACCES:
            return f"{inner.strerror} (on Linux, is your user in the dialout group?)"
        return inner.strerror
    return str(e) or type(e).__name__


def probe_board(port: str, baud: int, cfg: AccelConfig, timeout: float = 2.0) -> int:
    """Open ``port``, read the board's configuration ID and close it again; return the ID.

    ``cfg`` gives the bridge's word size (the ID read does not depend on it).

    Raises
    ------
    TransportError
        The port cannot be opened, or the link breaks.
    BridgeError
        No (valid) reply within ``timeout`` seconds: no Stamen board answers on ``port``.
    """
    with open_port(port, baud) as stream:
        return BridgeClient(stream, cfg, timeout=timeout).config_id()
