"""The ``"verilator"`` backend: the device's generated Verilog under Verilator, through the cocotb
harness of ``verif/device_job.py``; every figure comes from the device's own counters."""
from __future__ import annotations

from stamen.verif import device_job

from .common import check_option, run_outcome

__all__ = ["VerilatorBackend"]


class VerilatorBackend:
    """Options: ``mem_latency`` (extra memory read latency, ``0..device_job.MAX_LATENCY`` cycles),
    ``mem_stall`` (a memory request refused with probability ``mem_stall/8``) and
    ``max_cycles`` (a run beyond it fails with a ``DeviceTimeoutError``)."""
    name = "verilator"

    def __init__(self, cfg, log=None, mem_latency: int = 0, mem_stall: int = 0,
                 max_cycles: int = 10**8):
        check_option("max_cycles", max_cycles, "integer")     # the memory options: by run_jobs
        self.cfg, self.log = cfg, log
        self.mem_latency, self.mem_stall, self.max_cycles = mem_latency, mem_stall, max_cycles

    def run(self, items: list) -> list:
        """Run every ``(prog, x)`` in one simulator process; return their outcomes
        (:func:`~stamen.sw.runtime.common.run_outcome`)."""
        jobs = [device_job.Job(prog.memory_image(x), prog.prog_addr, prog.used_words,
                               prog.result_ranges(), self.mem_latency, self.mem_stall,
                               self.max_cycles)
                for prog, x in items]
        results = device_job.run_jobs(self.cfg, jobs, log=self.log)
        return [run_outcome(self.cfg, prog, res, job.read_ranges, "the simulated device",
                            job.image, self.max_cycles)
                for (prog, _), job, res in zip(items, jobs, results)]
