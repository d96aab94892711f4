"""cocotb testbenches for ``FpgaDevice`` (Accelerator + memory + UART host bridge) under Verilator.

The device is driven only through its UART pins by :class:`UartModel`, a bit-level 8N1 model
(coroutines drive ``rx`` and sample ``tx`` in the middle of each bit; Python runs per bit, not per
clock cycle). Environment: ``STAMEN_UART_DIVISOR`` (clock cycles per bit), ``STAMEN_BRIDGE_TIMEOUT``
(the bridge's inter-byte timeout in cycles), ``STAMEN_CONFIG`` (the ``AccelConfig`` as JSON).

``bridge_scenarios`` runs the bridge unit scenarios against the real Verilog. ``host_link`` listens
on TCP port ``STAMEN_BRIDGE_PORT`` (writing ``STAMEN_BRIDGE_READY`` once it listens) and relays bytes
between each accepted connection and the UART pins, so the host's real protocol code
(``pyserial`` ``socket://`` URL) talks to the simulated board; it serves ``STAMEN_BRIDGE_SESSIONS``
connections, then writes byte and time figures to ``STAMEN_BRIDGE_STATS`` (JSON).
"""
from __future__ import annotations

import json
import os
import select
import socket
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout
from cocotb.utils import get_sim_time

from stamen.hw.bridge import (CSR_BYTES, CSRS, REQ_SYNC, Cmd, Csr, Reply, decode_reply,
                              encode_request)
from stamen.hw.params import AccelConfig

CLOCK_NS = 10
#: Cycles the relay lets the simulation run when the host has nothing to send.
IDLE_CYCLES = 1000
#: Wall-clock seconds the relay waits for the host to connect.
CONNECT_WAIT_S = 300


class UartModel:
    """Bit-level 8N1 UART at the device's ``rx`` / ``tx`` pins."""

    def __init__(self, dut, divisor: int):
        self.dut = dut
        self.bit_ns = divisor * CLOCK_NS
        self.received: Queue[int] = Queue()
        self.tx_count = 0
        self.framing_errors = 0
        self.on_byte = None
        dut.rx.value = 1
        self._monitor = cocotb.start_soon(self._watch_tx())

    async def send(self, data: bytes, bad_stop_at: int | None = None) -> None:
        """Drive ``data`` onto ``rx`` back to back; byte ``bad_stop_at`` gets a low stop bit."""
        for i, byte in enumerate(data):
            bits = [0, *((byte >> k) & 1 for k in range(8)), int(i != bad_stop_at)]
            for bit in bits:
                self.dut.rx.value = bit
                await Timer(self.bit_ns, unit="ns")
        self.dut.rx.value = 1

    async def idle(self, bits: int) -> None:
        """Keep ``rx`` high for ``bits`` bit times."""
        self.dut.rx.value = 1
        await Timer(bits * self.bit_ns, unit="ns")

    async def _watch_tx(self) -> None:
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, unit="ns")
            if int(self.dut.tx.value) != 0:
                continue                                  # not a start bit
            byte = 0
            for k in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.dut.tx.value) << k
            await Timer(self.bit_ns, unit="ns")
            if int(self.dut.tx.value) != 1:
                self.framing_errors += 1
            self.tx_count += 1
            if self.on_byte is not None:
                self.on_byte(byte)
            else:
                self.received.put_nowait(byte)

    async def recv(self, n: int, timeout_bits: int) -> bytes:
        """Return the next ``n`` bytes from ``tx``, each within ``timeout_bits`` bit times."""
        out = bytearray()
        for _ in range(n):
            out.append(await with_timeout(self.received.get(), timeout_bits * self.bit_ns, "ns"))
        return bytes(out)


def _env():
    divisor = int(os.environ["STAMEN_UART_DIVISOR"])
    timeout = int(os.environ["STAMEN_BRIDGE_TIMEOUT"])
    cfg = AccelConfig.from_dict(json.loads(os.environ["STAMEN_CONFIG"]))
    return divisor, timeout, cfg


async def _reset(dut) -> None:
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.rx.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


class _Host:
    """Frames and replies over a :class:`UartModel`."""

    def __init__(self, uart: UartModel, cfg: AccelConfig, timeout_cycles: int, divisor: int):
        self.uart = uart
        self.cfg = cfg
        # a reply waits for at most the inter-byte timeout plus a whole read's bytes
        self.wait_bits = timeout_cycles // divisor + 200

    async def reply(self, payload_len: int = 0) -> tuple[Reply, bytes]:
        head = await self.uart.recv(2, self.wait_bits)
        n = payload_len + 1 if head[1] == Reply.OK.value else 1
        return decode_reply(head + await self.uart.recv(n, self.wait_bits))

    async def call(self, cmd, addr=0, count=0, payload=b"", reply_len=None):
        await self.uart.send(encode_request(cmd, addr, count, payload))
        if reply_len is None:
            bb = self.cfg.mem_bus_bytes
            reply_len = {Cmd.READ_MEM: count * bb, Cmd.READ_CSR: count * CSR_BYTES,
                         Cmd.STATUS: 2 * CSR_BYTES}.get(cmd, 0)
        return await self.reply(reply_len)

    async def still_works(self, rng) -> None:
        data = rng.integers(0, 256, 3 * self.cfg.mem_bus_bytes, dtype=np.uint8).tobytes()
        assert await self.call(Cmd.WRITE_MEM, 5, 3, data) == (Reply.OK, b"")
        assert await self.call(Cmd.READ_MEM, 5, 3) == (Reply.OK, data)


@cocotb.test()
async def bridge_scenarios(dut):
    """Every command, back-to-back frames and each refusal, over the UART pins."""
    divisor, timeout, cfg = _env()
    await _reset(dut)
    uart = UartModel(dut, divisor)
    host = _Host(uart, cfg, timeout, divisor)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    bb, words = cfg.mem_bus_bytes, cfg.mem_words

    status, raw = await host.call(Cmd.READ_CSR, Csr.CONFIG_ID, 1)
    assert (status, int.from_bytes(raw, "little")) == (Reply.OK, cfg.config_hash)
    # memory, at both ends
    data = rng.integers(0, 256, 16 * bb, dtype=np.uint8).tobytes()
    for addr in (0, words - 16):
        assert await host.call(Cmd.WRITE_MEM, addr, 16, data) == (Reply.OK, b"")
        assert await host.call(Cmd.READ_MEM, addr, 16) == (Reply.OK, data)
    # CSRs: all readable, prog_addr writable
    status, raw = await host.call(Cmd.READ_CSR, 0, len(CSRS))
    assert status == Reply.OK and len(raw) == len(CSRS) * CSR_BYTES
    assert await host.call(Cmd.WRITE_CSR, Csr.PROG_ADDR, 1, (9).to_bytes(8, "little")) == \
        (Reply.OK, b"")
    assert await host.call(Cmd.READ_CSR, Csr.PROG_ADDR, 1) == (Reply.OK, (9).to_bytes(8, "little"))
    assert (await host.call(Cmd.STATUS))[0] == Reply.OK

    # back-to-back frames, sent without waiting for replies
    a = rng.integers(0, 256, 4 * bb, dtype=np.uint8).tobytes()
    frames = (encode_request(Cmd.WRITE_MEM, 100, 4, a) + encode_request(Cmd.READ_MEM, 100, 4)
              + encode_request(Cmd.READ_CSR, Csr.CONFIG_ID, 1)
              + encode_request(Cmd.READ_MEM, 101, 1))
    await uart.send(frames)
    assert await host.reply() == (Reply.OK, b"")
    assert await host.reply(4 * bb) == (Reply.OK, a)
    assert await host.reply(CSR_BYTES) == (Reply.OK, cfg.config_hash.to_bytes(8, "little"))
    assert await host.reply(bb) == (Reply.OK, a[bb:2 * bb])

    # a corrupted frame (header, then payload): BAD_CHECKSUM, and the bridge keeps working
    bad = bytearray(encode_request(Cmd.WRITE_MEM, 3, 2, bytes(range(2 * bb))))
    bad[3] ^= 0x40
    await uart.send(bytes(bad))
    assert await host.reply() == (Reply.BAD_CHECKSUM, b"")
    await host.still_works(rng)
    bad = bytearray(encode_request(Cmd.WRITE_MEM, 3, 2, bytes(range(2 * bb))))
    bad[-2] ^= 0x01
    await uart.send(bytes(bad))
    assert await host.reply() == (Reply.BAD_CHECKSUM, b"")
    await host.still_works(rng)
    # an unknown command
    await uart.send(encode_request(0x7E, 0, 1))
    assert await host.reply() == (Reply.UNKNOWN_CMD, b"")
    await host.still_works(rng)
    # reads out of range
    for cmd, addr, count in ((Cmd.READ_MEM, words - 1, 2), (Cmd.READ_MEM, words, 1),
                             (Cmd.READ_CSR, len(CSRS), 1), (Cmd.START, words, 0)):
        assert await host.call(cmd, addr, count) == (Reply.RANGE, b""), (cmd, addr, count)
    await host.still_works(rng)
    # a UART framing error inside a frame
    await uart.send(encode_request(Cmd.READ_MEM, 0, 1), bad_stop_at=4)
    assert await host.reply() == (Reply.FRAMING, b"")
    await host.still_works(rng)
    # a byte that is not SYNC between frames
    await uart.send(bytes([REQ_SYNC ^ 0xFF]))
    assert await host.reply() == (Reply.BAD_SYNC, b"")
    # a truncated frame: dropped after the inter-byte timeout
    await uart.send(encode_request(Cmd.WRITE_MEM, 0, 4, bytes(4 * bb))[:12])
    assert await host.reply() == (Reply.TIMEOUT, b"")
    await host.still_works(rng)
    assert uart.framing_errors == 0


@cocotb.test()
async def host_link(dut):
    """Relay TCP connections to the UART pins: the host's real protocol code drives the board."""
    divisor, _, cfg = _env()
    port = int(os.environ["STAMEN_BRIDGE_PORT"])
    sessions = int(os.environ.get("STAMEN_BRIDGE_SESSIONS", "1"))
    await _reset(dut)
    uart = UartModel(dut, divisor)
    stats = {"sessions": [], "divisor": divisor, "clock_ns": CLOCK_NS}
    with socket.create_server(("127.0.0.1", port)) as server:
        server.setblocking(False)
        Path(os.environ["STAMEN_BRIDGE_READY"]).write_text(str(port))
        for _ in range(sessions):
            deadline = time.monotonic() + CONNECT_WAIT_S
            while True:
                try:
                    conn, _ = server.accept()
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no host connected within {CONNECT_WAIT_S} s")
                    time.sleep(0.005)
            conn.setblocking(True)
            stats["sessions"].append(await _relay(conn, uart))
    Path(os.environ["STAMEN_BRIDGE_STATS"]).write_text(json.dumps(stats, indent=2))
    assert uart.framing_errors == 0


async def _relay(conn: socket.socket, uart: UartModel) -> dict:
    """Relay one connection until the host closes it; return its figures."""
    t0, sim0 = time.perf_counter(), get_sim_time("ns")
    to_device = 0
    from_device = uart.tx_count

    def forward(byte: int) -> None:
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            pass                                # the host has gone; the loop ends below
    uart.on_byte = forward
    last_tx = uart.tx_count
    with conn:
        while True:
            # wait in real time only when the device is quiet (the host is thinking)
            wait = 0.0 if uart.tx_count != last_tx else 0.001
            last_tx = uart.tx_count
            readable, _, _ = select.select([conn], [], [], wait)
            if readable:
                data = conn.recv(1 << 16)
                if not data:
                    break
                to_device += len(data)
                await uart.send(data)
            else:
                await Timer(IDLE_CYCLES * CLOCK_NS, unit="ns")
    uart.on_byte = None
    return {"bytes_to_device": to_device, "bytes_from_device": uart.tx_count - from_device,
            "wall_s": time.perf_counter() - t0,
            "sim_cycles": int((get_sim_time("ns") - sim0) // CLOCK_NS)}
