"""Helpers for Amaranth-simulator testbenches: stream put/get with cycle limits, and a runner."""
from __future__ import annotations

from amaranth.sim import Simulator

__all__ = ["put", "get", "wait_until", "run"]


async def put(ctx, stream, payload, timeout: int = 1000) -> None:
    """Send one ``payload`` on ``stream`` (driving valid/payload), waiting up to ``timeout`` cycles.

    Raises
    ------
    TimeoutError
        When the consumer is not ready within ``timeout`` cycles.
    """
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    for _ in range(timeout):
        if ctx.get(stream.ready):
            await ctx.tick()
            ctx.set(stream.valid, 0)
            return
        await ctx.tick()
    ctx.set(stream.valid, 0)
    raise TimeoutError(f"stream not ready within {timeout} cycles")


async def get(ctx, stream, timeout: int = 1000):
    """Receive one payload from ``stream`` (driving ready), waiting up to ``timeout`` cycles.

    Raises
    ------
    TimeoutError
        When no payload arrives within ``timeout`` cycles.
    """
    ctx.set(stream.ready, 1)
    for _ in range(timeout):
        if ctx.get(stream.valid):
            payload = ctx.get(stream.payload)
            await ctx.tick()
            ctx.set(stream.ready, 0)
            return payload
        await ctx.tick()
    ctx.set(stream.ready, 0)
    raise TimeoutError(f"no payload within {timeout} cycles")


async def wait_until(ctx, signal, timeout: int = 1000, value: int = 1) -> int:
    """Tick until ``signal == value``; return the cycles waited.

    Raises
    ------
    TimeoutError
        When the condition does not hold within ``timeout`` cycles.
    """
    for n in range(timeout):
        if ctx.get(signal) == value:
            return n
        await ctx.tick()
    raise TimeoutError(f"{signal!r} did not become {value} within {timeout} cycles")


def run(dut, *testbenches, background=(), vcd: str | None = None) -> None:
    """Simulate ``dut`` with a 1 MHz clock until every testbench returns.

    ``background`` testbenches (device models) run alongside and do not keep the simulation alive.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
