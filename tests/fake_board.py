"""An in-process stand-in for a board behind the UART host bridge, for host-side tests.

:class:`FakeBoard` speaks ``hw/bridge.py``'s framed protocol on ``write(data)`` / ``read(n)`` (the
byte-stream interface ``sw.fpga.BridgeClient`` uses), keeps a device memory and the CSRs, and runs
a started program on the ISA simulator, so a run ends exactly as on the device: a result, or a
fault code with the faulting pc. Knobs make it misbehave as a real board can: never finish (with a
cycle counter that advances or is stuck), report a fault code this host does not know, or lose
the link after a number of frames (pyserial's ``SerialException``, as for an unplugged board).
"""
from __future__ import annotations

import numpy as np
import serial

from stamen.hw import isa
from stamen.hw.bridge import (CSR_BYTES, CSRS, HEADER_BYTES, REPLY_SYNC, REQ_SYNC, Cmd, Reply, crc8,
                              request_payload_bytes)
from stamen.hw.params import AccelConfig
from stamen.sw.errors import DeviceError
from stamen.sw.sim.isasim import IsaSim

__all__ = ["FakeBoard"]


class FakeBoard:
    """A board running ``cfg`` behind the bridge protocol.

    Parameters
    ----------
    cfg : AccelConfig
        The configuration the board implements.
    config_id : int or None
        The ID its CONFIG_ID CSR reports (default ``cfg.config_hash``).
    hang : bool
        A started program never finishes: ``busy`` stays set.
    cycles_per_poll : int
        With ``hang``: how far the cycle counter advances per STATUS poll (0: a stuck counter).
    fault_code : int or None
        Report this raw fault code (and ``fault_pc``) after any run instead of the real outcome.
    disconnect_after : int or None
        Frames answered before the link breaks: then every write, and every read with no reply
        bytes left, raises ``serial.SerialException``.
    port : str
        What ``stream.port`` reports (pyserial streams carry their port name).
    """

    def __init__(self, cfg: AccelConfig, config_id: int | None = None, hang: bool = False,
                 cycles_per_poll: int = 0, fault_code: int | None = None, fault_pc: int = 0,
                 disconnect_after: int | None = None, port: str = "fake://board"):
        self.cfg = cfg
        self.mem = np.zeros(cfg.mem_bytes, np.uint8)
        self.config_id = cfg.config_hash if config_id is None else config_id
        self.hang, self.cycles_per_poll = hang, cycles_per_poll
        self.fault_code, self.fault_pc_override = fault_code, fault_pc
        self.disconnect_after = disconnect_after
        self.port = port
        self.frames = 0
        self.busy = self.done = False
        self.error = self.fault_pc = self.prog_addr = 0
        self.perf = dict.fromkeys(isa.PERF_COUNTERS, 0)
        self._in = bytearray()
        self._out = bytearray()
        self.closed = False

    # -- stream interface ---------------------------------------------------------------------
    def _check_link(self):
        if self.disconnect_after is not None and self.frames >= self.disconnect_after:
            raise serial.SerialException("device reports readiness to read but returned no data "
                                         "(device disconnected or multiple access on port?)")

    def write(self, data: bytes) -> int:
        self._check_link()
        self._in += data
        self._parse()
        return len(data)

    def read(self, n: int) -> bytes:
        if not self._out:
            self._check_link()
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- protocol -----------------------------------------------------------------------------
    def _reply(self, status: Reply, payload: bytes = b"") -> None:
        body = bytes([status.value]) + payload
        self._out += bytes([REPLY_SYNC]) + body + bytes([crc8(body)])
        self.frames += 1

    def _parse(self) -> None:
        while len(self._in) >= 1 + HEADER_BYTES:
            assert self._in[0] == REQ_SYNC, "the host sent a byte other than SYNC between frames"
            head = bytes(self._in[1:1 + HEADER_BYTES])
            assert crc8(head[:-1]) == head[-1], "header CRC"
            cmd = Cmd(head[0])
            addr = int.from_bytes(head[1:5], "little")
            count = int.from_bytes(head[5:7], "little")
            n = request_payload_bytes(cmd, count, self.cfg)
            size = 1 + HEADER_BYTES + (n + 1 if n else 0)
            if len(self._in) < size:
                return
            payload = bytes(self._in[1 + HEADER_BYTES:1 + HEADER_BYTES + n])
            del self._in[:size]
            self._execute(cmd, addr, count, payload)

    def _status_bits(self) -> int:
        layout = isa.Status.as_shape()
        return ((int(self.busy) << layout["busy"].offset)
                | (int(self.done) << layout["done"].offset)
                | (self.error << layout["error"].offset))

    def _csr(self, index: int) -> int:
        name = CSRS[index]
        if name == "config_id":
            return self.config_id
        if name == "status":
            return self._status_bits()
        if name == "fault_pc":
            return self.fault_pc
        if name == "prog_addr":
            return self.prog_addr
        return self.perf[name[len("perf_"):]]

    def _execute(self, cmd: Cmd, addr: int, count: int, payload: bytes) -> None:
        bb = self.cfg.mem_bus_bytes
        if cmd == Cmd.READ_MEM:
            if self.busy:
                return self._reply(Reply.BUSY)
            return self._reply(Reply.OK, self.mem[addr * bb:(addr + count) * bb].tobytes())
        if cmd == Cmd.WRITE_MEM:
            if self.busy:
                return self._reply(Reply.BUSY)
            self.mem[addr * bb:(addr + count) * bb] = np.frombuffer(payload, np.uint8)
            return self._reply(Reply.OK)
        if cmd == Cmd.READ_CSR:
            return self._reply(Reply.OK, b"".join(self._csr(i).to_bytes(CSR_BYTES, "little")
                                                  for i in range(addr, addr + count)))
        if cmd == Cmd.WRITE_CSR:
            self.prog_addr = int.from_bytes(payload[:CSR_BYTES], "little")
            return self._reply(Reply.OK)
        if cmd == Cmd.START:
            if self.busy:
                return self._reply(Reply.BUSY)
            self._start(addr)
            return self._reply(Reply.OK)
        if cmd == Cmd.STATUS:
            if self.hang:
                self.perf["cycles"] += self.cycles_per_poll
            return self._reply(Reply.OK, self._status_bits().to_bytes(CSR_BYTES, "little")
                               + self.fault_pc.to_bytes(CSR_BYTES, "little"))
        raise AssertionError(f"unexpected command {cmd}")

    def _start(self, prog_addr: int) -> None:
        self.prog_addr = prog_addr
        self.perf = dict.fromkeys(isa.PERF_COUNTERS, 0)
        if self.hang:
            self.busy, self.done = True, False
            return
        self.busy, self.done, self.error, self.fault_pc = False, True, 0, 0
        try:
            self.perf = IsaSim(self.cfg).run(self.mem, prog_addr)
        except DeviceError as e:
            self.perf = dict(e.counters)
            self.error, self.fault_pc = e.code.value, e.pc
        if self.fault_code is not None:
            self.error, self.fault_pc = self.fault_code, self.fault_pc_override
