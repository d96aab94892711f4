"""cocotb testbench that runs one job on the whole simulated device (``SimDevice``) under Verilator.

A job is a ``.npz`` file written by :func:`stamen.verif.device_job.write_job`; the ``STAMEN_JOBS``
environment variable names one or more of them (separated by ``os.pathsep``), run one after the other in
one simulator process (resetting the device and clearing what the previous job left in memory). For each
job the testbench checks the device's configuration ID against
the job's, writes the memory image through the host port, pulses ``start``, then lets the simulator's
clock run until ``status.done`` (no Python per cycle) or the job's cycle limit, and finally reads back
the requested memory ranges, the status, the fault PC and the performance counters into
``<job>.result.npz``. Device faults are results, not test failures: the runtime reports them.
"""
from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer, ValueChange

from stamen.hw import isa
from stamen.verif.device_job import perf_layout, read_job, write_result

CLOCK_NS = 10


async def _host_write(dut, words: dict[int, int]) -> None:
    dut.host_en.value = 1
    dut.host_we.value = 1
    for addr, word in words.items():
        dut.host_addr.value = addr
        dut.host_wdata.value = word
        await RisingEdge(dut.clk)
    dut.host_en.value = 0
    dut.host_we.value = 0
    await RisingEdge(dut.clk)


async def _host_read(dut, start: int, count: int) -> list[int]:
    """Read ``count`` words; an address's data arrives two edges after the address is driven."""
    out = []
    if count == 0:
        return out
    dut.host_en.value = 1
    dut.host_we.value = 0
    dut.host_addr.value = start
    for i in range(count + 1):
        await RisingEdge(dut.clk)
        if i + 1 < count:
            dut.host_addr.value = start + i + 1
        await ReadOnly()
        if i >= 1:
            out.append(dut.host_rdata.value.to_unsigned())
    await RisingEdge(dut.clk)
    dut.host_en.value = 0
    return out


def _status(dut):
    return data.Const(isa.Status, dut.status.value.to_unsigned())


async def _reset(dut) -> None:
    dut.rst.value = 1
    dut.start.value = 0
    dut.host_en.value = 0
    dut.host_we.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _run_one(dut, job_path: str, stale: set[int]) -> set[int]:
    """Run one job; ``stale`` are words an earlier job may have left non-zero. Return this job's."""
    job = read_job(job_path)
    await _reset(dut)
    dut.mem_latency.value = job["mem_latency"]
    dut.mem_stall.value = job["mem_stall"]
    dut.prog_addr.value = job["prog_addr"]
    config_id = dut.config_id.value.to_unsigned()
    result = {"config_id": config_id, "ran": 0, "done": 0, "error": 0, "fault_pc": 0,
              "timeout": 0, "wall_s": 0.0, "perf": np.zeros(len(isa.PERF_COUNTERS), np.uint64)}
    if config_id != job["config_id"]:
        cocotb.log.warning("device config id %#x != program's %#x: not running",
                           config_id, job["config_id"])
        write_result(job_path, result, [])
        return stale

    words = {a: 0 for a in sorted(stale - set(job["words"]))} | job["words"]
    await _host_write(dut, words)

    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    t0 = time.perf_counter()
    limit = Timer(job["max_cycles"] * CLOCK_NS, unit="ns")
    while True:
        fired = await First(ValueChange(dut.status), limit)
        if fired is limit:
            result["timeout"] = 1
            break
        await ReadOnly()
        if _status(dut).done:
            break
        await RisingEdge(dut.clk)
    result["wall_s"] = time.perf_counter() - t0
    await RisingEdge(dut.clk)

    status = _status(dut)
    perf = data.Const(perf_layout(len(dut.perf) // len(isa.PERF_COUNTERS)),
                      dut.perf.value.to_unsigned())
    result.update(ran=1, done=int(status.done), error=int(status.error.value),
                  fault_pc=dut.fault_pc.value.to_unsigned(),
                  perf=np.array([getattr(perf, name) for name in isa.PERF_COUNTERS], np.uint64))
    reads = [await _host_read(dut, start, count) for start, count in job["read_ranges"]]
    write_result(job_path, result, reads)
    # the device may have written anywhere in the program's regions
    return {a for start, count in job["regions"] for a in range(start, start + count)}


@cocotb.test()
async def run_jobs(dut):
    """Run each job named in STAMEN_JOBS (separated by os.pathsep) and save its result."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    stale: set[int] = set()
    for job_path in os.environ["STAMEN_JOBS"].split(os.pathsep):
        stale = await _run_one(dut, job_path, stale)
