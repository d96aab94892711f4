# amaranth: UnusedElaboratable=no
"""HostBridge in the Amaranth simulator, byte by byte: every command, back-to-back frames, and
every refusal (bad checksum, unknown command, out of range, busy, framing error, bad sync, a
truncated frame); after each refusal the bridge must still serve the next frame."""
import numpy as np
import pytest
from amaranth import *
from amaranth.lib import memory

from stamen.hw import isa
from stamen.hw.bridge import (CSR_BYTES, CSRS, Cmd, Csr, HostBridge, Reply, decode_reply,
                              encode_request, reply_payload_bytes)
from stamen.hw.fpga_device import MemoryPort
from stamen.hw.params import AccelConfig
from stamen.verif import amsim

CFG = AccelConfig.preset("tiny").replace(mem_bytes=512)
BB = CFG.mem_bus_bytes
TIMEOUT = 64
#: Cycles a testbench waits for any one byte.
BYTE_WAIT = 4 * TIMEOUT


class _Harness(Elaboratable):
    """The bridge with a device memory; the CSR inputs are driven by the testbench."""

    def __init__(self):
        self.mem_data = memory.MemoryData(shape=CFG.mem_bus_bits, depth=CFG.mem_words, init=[])
        self.bridge = HostBridge(CFG, TIMEOUT)
        self.starts = Signal(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = b = self.bridge
        m.submodules.mem = mem = MemoryPort(CFG, self.mem_data)
        m.d.comb += [mem.i_mem_req.valid.eq(b.o_mem_req.valid),
                     mem.i_mem_req.payload.eq(b.o_mem_req.payload),
                     b.o_mem_req.ready.eq(mem.i_mem_req.ready),
                     b.i_mem_rsp.valid.eq(mem.o_mem_rsp.valid),
                     b.i_mem_rsp.payload.eq(mem.o_mem_rsp.payload),
                     mem.o_mem_rsp.ready.eq(b.i_mem_rsp.ready)]
        with m.If(b.start):
            m.d.sync += self.starts.eq(self.starts + 1)
        return m


async def _send(ctx, dut, frame: bytes, ferr_at: int | None = None):
    for i, b in enumerate(frame):
        await amsim.put(ctx, dut.bridge.i_rx, {"data": b, "framing_error": int(i == ferr_at)},
                        timeout=BYTE_WAIT * 64)


async def _reply(ctx, dut) -> tuple[Reply, bytes]:
    """Receive one reply frame (its length is read from the status; payload when OK)."""
    raw = bytes([await amsim.get(ctx, dut.bridge.o_tx, timeout=BYTE_WAIT) for _ in range(2)])
    if raw[1] == Reply.OK.value:
        # read until the frame's CRC closes it: ask the test for the length instead
        raise AssertionError("use _reply_n for OK replies")
    raw += bytes([await amsim.get(ctx, dut.bridge.o_tx, timeout=BYTE_WAIT)])
    return decode_reply(raw)


async def _reply_n(ctx, dut, payload_len: int) -> tuple[Reply, bytes]:
    """Receive one reply: an OK reply of ``payload_len`` payload bytes, or an error reply."""
    raw = bytes([await amsim.get(ctx, dut.bridge.o_tx, timeout=BYTE_WAIT) for _ in range(2)])
    n = payload_len + 1 if raw[1] == Reply.OK.value else 1
    raw += bytes([await amsim.get(ctx, dut.bridge.o_tx, timeout=BYTE_WAIT) for _ in range(n)])
    return decode_reply(raw)


async def _call(ctx, dut, cmd, addr=0, count=0, payload=b""):
    """Send one request and return its reply ``(status, payload)``."""
    await _send(ctx, dut, encode_request(cmd, addr, count, payload))
    n = reply_payload_bytes(cmd, count, CFG) if cmd in list(Cmd) else 0
    return await _reply_n(ctx, dut, n)


def _words(rng, n) -> bytes:
    return rng.integers(0, 256, n * BB, dtype=np.uint8).tobytes()


async def _still_works(ctx, dut, rng):
    """A write and a read-back must succeed (the bridge recovered)."""
    data = _words(rng, 3)
    assert await _call(ctx, dut, Cmd.WRITE_MEM, 7, 3, data) == (Reply.OK, b"")
    assert await _call(ctx, dut, Cmd.READ_MEM, 7, 3) == (Reply.OK, data)


def _run(*testbenches):
    dut = _Harness()

    def bind(tb):
        async def bound(ctx):
            await tb(ctx, dut)
        return bound
    amsim.run(dut, *map(bind, testbenches))


def test_memory_read_write():
    rng = np.random.default_rng(1)

    async def tb(ctx, dut):
        data = _words(rng, CFG.mem_words)
        assert await _call(ctx, dut, Cmd.WRITE_MEM, 0, CFG.mem_words, data) == (Reply.OK, b"")
        for i in (0, 1, CFG.mem_words - 1):
            assert ctx.get(dut.mem_data[i]) == int.from_bytes(data[i * BB:(i + 1) * BB], "little")
        assert await _call(ctx, dut, Cmd.READ_MEM, 0, CFG.mem_words) == (Reply.OK, data)
        assert await _call(ctx, dut, Cmd.READ_MEM, CFG.mem_words - 1, 1) == \
            (Reply.OK, data[-BB:])
    _run(tb)


def test_csrs_start_status():
    mask = (1 << CFG.counter_bits) - 1          # the counters are zero-extended to 8 bytes
    perf = {n: (i + 1) * 0x0101_0101_0101 & mask for i, n in enumerate(isa.PERF_COUNTERS)}

    async def tb(ctx, dut):
        b = dut.bridge
        ctx.set(b.config_id, CFG.config_hash)
        ctx.set(b.fault_pc, 0x55)
        ctx.set(b.status, {"busy": 0, "done": 1, "error": isa.ErrorCode.SPAD_RANGE})
        ctx.set(b.perf, perf)
        status, raw = await _call(ctx, dut, Cmd.READ_CSR, 0, len(CSRS))
        assert status == Reply.OK
        values = [int.from_bytes(raw[i:i + CSR_BYTES], "little")
                  for i in range(0, len(raw), CSR_BYTES)]
        want_status = 0b10 | (isa.ErrorCode.SPAD_RANGE.value << 2)
        assert values == [CFG.config_hash, want_status, 0x55, 0, *perf.values()]
        # prog_addr is writable (and range-checked); others are not
        assert await _call(ctx, dut, Cmd.WRITE_CSR, Csr.PROG_ADDR, 1,
                           (17).to_bytes(CSR_BYTES, "little")) == (Reply.OK, b"")
        assert ctx.get(b.prog_addr) == 17
        assert await _call(ctx, dut, Cmd.WRITE_CSR, Csr.PROG_ADDR, 1,
                           CFG.mem_words.to_bytes(CSR_BYTES, "little")) == (Reply.RANGE, b"")
        for high in (16, 32, 40, 56, 63):       # any high bit is out of range
            assert await _call(ctx, dut, Cmd.WRITE_CSR, Csr.PROG_ADDR, 1,
                               (5 | 1 << high).to_bytes(CSR_BYTES, "little")) == \
                (Reply.RANGE, b""), high
        assert await _call(ctx, dut, Cmd.WRITE_CSR, Csr.CONFIG_ID, 1,
                           bytes(CSR_BYTES)) == (Reply.RANGE, b"")
        assert await _call(ctx, dut, Cmd.READ_CSR, Csr.PROG_ADDR, 1) == \
            (Reply.OK, (17).to_bytes(CSR_BYTES, "little"))
        # START sets prog_addr and pulses start once
        assert await _call(ctx, dut, Cmd.START, 40) == (Reply.OK, b"")
        assert ctx.get(b.prog_addr) == 40 and ctx.get(dut.starts) == 1
        assert await _call(ctx, dut, Cmd.START, CFG.mem_words) == (Reply.RANGE, b"")
        assert await _call(ctx, dut, Cmd.STATUS) == \
            (Reply.OK, want_status.to_bytes(8, "little") + (0x55).to_bytes(8, "little"))
        # while the accelerator runs: memory and START are refused, CSRs still answer
        ctx.set(b.status, {"busy": 1, "done": 0, "error": isa.ErrorCode.NONE})
        assert await _call(ctx, dut, Cmd.READ_MEM, 0, 1) == (Reply.BUSY, b"")
        assert await _call(ctx, dut, Cmd.WRITE_MEM, 0, 2, bytes(2 * BB)) == (Reply.BUSY, b"")
        assert await _call(ctx, dut, Cmd.START, 0) == (Reply.BUSY, b"")
        assert ctx.get(dut.starts) == 1
        assert await _call(ctx, dut, Cmd.STATUS) == \
            (Reply.OK, (1).to_bytes(8, "little") + (0x55).to_bytes(8, "little"))
        ctx.set(b.status, {"busy": 0, "done": 1, "error": isa.ErrorCode.NONE})
        await _still_works(ctx, dut, np.random.default_rng(2))
    _run(tb)


def test_back_to_back_frames():
    rng = np.random.default_rng(3)
    a, b = _words(rng, 5), _words(rng, 4)
    frames = [encode_request(Cmd.WRITE_MEM, 10, 5, a), encode_request(Cmd.READ_MEM, 10, 5),
              encode_request(Cmd.WRITE_MEM, 12, 4, b),
              encode_request(Cmd.READ_CSR, Csr.PROG_ADDR, 1),
              encode_request(Cmd.READ_MEM, 10, 6), encode_request(Cmd.READ_MEM, 10, 1)]
    want = [(Reply.OK, b""), (Reply.OK, a), (Reply.OK, b""), (Reply.OK, bytes(CSR_BYTES)),
            (Reply.OK, a[:2 * BB] + b), (Reply.OK, a[:BB])]
    lengths = [0, 5 * BB, 0, CSR_BYTES, 6 * BB, BB]
    got = []

    async def sender(ctx, dut):
        await _send(ctx, dut, b"".join(frames))      # no waiting between frames

    async def receiver(ctx, dut):
        for n in lengths:
            got.append(await _reply_n(ctx, dut, n))
    _run(sender, receiver)
    assert got == want


@pytest.mark.parametrize("where", ["header", "payload", "sync"])
def test_corrupted_frame(where):
    rng = np.random.default_rng(4)
    frame = bytearray(encode_request(Cmd.WRITE_MEM, 3, 2, _words(rng, 2)))
    pos = {"header": 2, "payload": 10, "sync": 0}[where]
    frame[pos] ^= 0x10
    want = Reply.BAD_SYNC if where == "sync" else Reply.BAD_CHECKSUM

    async def tb(ctx, dut):
        await _send(ctx, dut, bytes(frame))
        assert await _reply(ctx, dut) == (want, b"")
        await _still_works(ctx, dut, rng)
    _run(tb)


@pytest.mark.parametrize("cmd", [0x00, 0x07, 0xFF])
def test_unknown_command(cmd):
    async def tb(ctx, dut):
        await _send(ctx, dut, encode_request(cmd, 0, 4, b"\x01\x02\x03"))
        assert await _reply(ctx, dut) == (Reply.UNKNOWN_CMD, b"")
        await _still_works(ctx, dut, np.random.default_rng(5))
    _run(tb)


@pytest.mark.parametrize("cmd, addr, count", [
    (Cmd.READ_MEM, CFG.mem_words - 2, 3), (Cmd.READ_MEM, CFG.mem_words, 1),
    (Cmd.READ_MEM, 0, 0), (Cmd.READ_MEM, 0xFFFF_FFFF, 0xFFFF),
    (Cmd.READ_CSR, len(CSRS) - 1, 2), (Cmd.READ_CSR, 0, 0),
    (Cmd.WRITE_MEM, CFG.mem_words - 1, 2),
], ids=str)
def test_out_of_range(cmd, addr, count):
    payload = bytes(count * BB) if cmd == Cmd.WRITE_MEM else b""

    async def tb(ctx, dut):
        await _send(ctx, dut, encode_request(cmd, addr, count, payload))
        assert await _reply(ctx, dut) == (Reply.RANGE, b"")
        await _still_works(ctx, dut, np.random.default_rng(6))
    _run(tb)


@pytest.mark.parametrize("cut", [1, 4, 11])
def test_truncated_frame_times_out(cut):
    frame = encode_request(Cmd.WRITE_MEM, 0, 4, bytes(range(4 * BB)))[:cut]

    async def tb(ctx, dut):
        await _send(ctx, dut, frame)
        assert await _reply(ctx, dut) == (Reply.TIMEOUT, b"")
        await _still_works(ctx, dut, np.random.default_rng(7))
    _run(tb)


def test_framing_error():
    async def tb(ctx, dut):
        await _send(ctx, dut, encode_request(Cmd.READ_MEM, 0, 2), ferr_at=3)
        assert await _reply(ctx, dut) == (Reply.FRAMING, b"")
        await _still_works(ctx, dut, np.random.default_rng(8))
    _run(tb)


def test_bad_timeout_parameter():
    with pytest.raises(TypeError, match="timeout_cycles must be a positive integer"):
        HostBridge(CFG, 0)


class _FakeStream:
    """A byte stream that answers every write with canned reply bytes."""

    def __init__(self, reply: bytes):
        self.reply, self.written, self._out = reply, b"", b""

    def write(self, data):
        self.written += data
        self._out += self.reply

    def read(self, n):
        out, self._out = self._out[:n], self._out[n:]
        return out


def _reply_bytes(status: Reply, payload: bytes = b"") -> bytes:
    from stamen.hw.bridge import REPLY_SYNC, crc8
    body = bytes([status.value]) + payload
    return bytes([REPLY_SYNC]) + body + bytes([crc8(body)])


def test_client_reports_errors_and_timeouts():
    from stamen.sw.runtime.fpga import (BridgeClient, BridgeError, BridgeProtocolError,
                                BridgeTimeoutError)
    ok = BridgeClient(_FakeStream(_reply_bytes(Reply.OK, (7).to_bytes(8, "little"))), CFG)
    assert ok.config_id() == 7
    assert ok.stream.written == encode_request(Cmd.READ_CSR, Csr.CONFIG_ID, 1)
    with pytest.raises(BridgeError, match="READ_MEM failed: RANGE") as e:
        BridgeClient(_FakeStream(_reply_bytes(Reply.RANGE)), CFG).read_mem(0, 1)
    assert e.value.cmd == Cmd.READ_MEM and e.value.status == Reply.RANGE
    bad_crc = bytearray(_reply_bytes(Reply.OK))
    bad_crc[-1] ^= 1
    with pytest.raises(BridgeProtocolError, match="START failed.*CRC"):
        BridgeClient(_FakeStream(bytes(bad_crc)), CFG).start(0)
    with pytest.raises(BridgeTimeoutError, match="STATUS failed: no valid reply"):
        BridgeClient(_FakeStream(b""), CFG, timeout=0.05).status()


def test_run_on_bridge_uploads_the_program_region_and_the_zero_row_directory():
    """The board keeps its memory between runs: the upload is the program's region and, with
    ``compress_acts``, the whole zero-row directory, so no bit a previous program set stays."""
    from stamen.sw.runtime.fpga import run_on_bridge

    class Started(Exception):
        pass

    class Client:                       # records the uploads, stops at START
        bytes_sent = bytes_received = 0

        def __init__(self, cfg):
            self.cfg, self.writes = cfg, []

        def config_id(self):
            return self.cfg.config_hash

        def write_mem(self, addr, data):
            self.writes.append((addr, len(data)))

        def start(self, addr):
            raise Started

    for cfg in (AccelConfig.preset("small"), AccelConfig.preset("small-skip")):
        bb, used = cfg.mem_bus_bytes, 100
        client = Client(cfg)
        with pytest.raises(Started):
            run_on_bridge(client, cfg, np.zeros(cfg.mem_bytes, np.uint8), 0, used, [])
        want = [(0, used * bb)]
        if cfg.compress_acts:
            want.append((cfg.zero_dir_base, cfg.zero_dir_words * bb))
        assert client.writes == want, cfg.name


def test_frame_helpers():
    from stamen.hw.bridge import crc8
    frame = encode_request(Cmd.WRITE_MEM, 0x01020304, 2, b"\x10\x20\x30\x40")
    assert frame[:8] == bytes([0xA5, 0x02, 0x04, 0x03, 0x02, 0x01, 0x02, 0x00])
    assert crc8(frame[1:9]) == 0 and crc8(frame[9:]) == 0     # each CRC closes its part
    assert crc8(b"123456789") == 0xF4                         # CRC-8/SMBUS check value
    with pytest.raises(ValueError, match="Reply CRC"):
        decode_reply(_reply_bytes(Reply.OK)[:-1] + b"\x01")
