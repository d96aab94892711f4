# amaranth: UnusedElaboratable=no
"""UartRx / UartTx in the Amaranth simulator: loopback at several divisors, framing errors,
glitches, and parameter validation."""
import numpy as np
import pytest
from amaranth import *

from stamen.hw.uart import MIN_DIVISOR, UartRx, UartTx, uart_divisor
from stamen.verif import amsim

BAUD = 1000


class _Loopback(Elaboratable):
    def __init__(self, divisor):
        self.tx = UartTx(divisor * BAUD, BAUD)
        self.rx = UartRx(divisor * BAUD, BAUD)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [MIN_DIVISOR, 5, 16])
def test_loopback(divisor):
    seed = 100 + divisor
    sent = [0x00, 0xFF, 0x55, 0xAA, *np.random.default_rng(seed).integers(0, 256, 12).tolist()]
    dut = _Loopback(divisor)
    got = []

    async def producer(ctx):
        for b in sent:
            await amsim.put(ctx, dut.tx.i_data, b, timeout=20 * divisor)

    async def consumer(ctx):
        for _ in sent:
            p = await amsim.get(ctx, dut.rx.o_data, timeout=30 * divisor)
            got.append((p.data, p.framing_error))

    amsim.run(dut, producer, consumer)
    assert got == [(b, 0) for b in sent], f"seed={seed} divisor={divisor}"


async def _drive_bits(ctx, line, bits, divisor):
    for bit in bits:
        ctx.set(line, bit)
        for _ in range(divisor):
            await ctx.tick()


def _char(byte, stop=1):
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


@pytest.mark.parametrize("divisor", [MIN_DIVISOR, 16])
def test_framing_error_then_recovery(divisor):
    dut = UartRx(divisor * BAUD, BAUD)
    got = []

    async def line(ctx):
        await _drive_bits(ctx, dut.rx, [1, 1] + _char(0x3C, stop=0) + [0] * 12, divisor)
        # a glitch shorter than half a bit is not a start bit
        ctx.set(dut.rx, 0)
        for _ in range(max(1, divisor // 2 - 2)):
            await ctx.tick()
        await _drive_bits(ctx, dut.rx, [1] * 3 + _char(0xC3) + [1], divisor)

    async def consumer(ctx):
        for _ in range(2):
            p = await amsim.get(ctx, dut.o_data, timeout=60 * divisor)
            got.append((p.data, p.framing_error))
        for _ in range(10 * divisor):       # nothing else arrives (the glitch is ignored)
            assert not ctx.get(dut.o_data.valid)
            await ctx.tick()

    amsim.run(dut, line, consumer)
    assert got == [(0x3C, 1), (0xC3, 0)]


def test_tx_bit_timing():
    divisor = 6
    dut = UartTx(divisor * BAUD, BAUD)
    seen = []

    async def tb(ctx):
        await amsim.put(ctx, dut.i_data, 0xA6)
        for _ in range(10 * divisor + 4):
            seen.append(ctx.get(dut.tx))
            await ctx.tick()

    amsim.run(dut, tb)
    assert seen[:10 * divisor] == [b for b in _char(0xA6) for _ in range(divisor)]
    assert all(seen[10 * divisor:])


@pytest.mark.parametrize("clk, baud, exc, text", [
    (3000, 1000, ValueError, "at least 4"),
    (4500, 1000, ValueError, "baud rate error"),
    (0, 1000, TypeError, "positive number"),
    (1000, "fast", TypeError, "positive number"),
])
def test_bad_parameters(clk, baud, exc, text):
    with pytest.raises(exc, match=text):
        UartRx(clk, baud)
    with pytest.raises(exc, match=text):
        UartTx(clk, baud)


def test_divisor():
    assert uart_divisor(12_000_000, 115200) == 104
    assert uart_divisor(1_600_000, 100_000) == 16


@pytest.mark.parametrize("depth", [2, 5, 8])
def test_rx_fifo_order_capacity_and_backpressure(depth):
    """RxFifo keeps order, holds depth + 1 bytes, and survives random valid / ready."""
    from stamen.hw.fpga_device import RxFifo
    seed = 200 + depth
    rng = np.random.default_rng(seed)
    dut = RxFifo(depth)
    sent = [{"data": int(b), "framing_error": int(b) & 1} for b in rng.integers(0, 256, 60)]
    got = []

    async def testbench(ctx):
        # Fill without reading: exactly depth + 1 bytes are taken.
        taken = 0
        ctx.set(dut.i_data.valid, 1)
        for _ in range(3 * depth + 6):
            ctx.set(dut.i_data.payload, sent[taken])
            if ctx.get(dut.i_data.ready):
                taken += 1
            await ctx.tick()
        ctx.set(dut.i_data.valid, 0)
        assert taken == depth + 1, f"seed={seed} took {taken}"
        # Then random valid / ready on both sides until everything is through.
        cycles = 0
        while len(got) < len(sent):
            cycles += 1
            if cycles > 2000:
                raise TimeoutError(f"seed={seed}: {len(got)} of {len(sent)} bytes")
            push = taken < len(sent) and rng.random() < 0.6
            ctx.set(dut.i_data.valid, int(push))
            if push:
                ctx.set(dut.i_data.payload, sent[taken])
            ctx.set(dut.o_data.ready, int(rng.random() < 0.5))
            if push and ctx.get(dut.i_data.ready):
                taken += 1
            if ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.ready):
                p = ctx.get(dut.o_data.payload)
                got.append({"data": p.data, "framing_error": p.framing_error})
            await ctx.tick()

    amsim.run(dut, testbench)
    assert got == sent, f"seed={seed}"


def test_rx_fifo_depth_is_checked():
    from stamen.hw.fpga_device import RxFifo
    with pytest.raises(ValueError, match="RxFifo depth must be an integer of at least 2"):
        RxFifo(1)
