"""What one run of a memory image on a device returned (Verilator harness or FPGA bridge)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """One device run: ``ran`` is False when the device's config ID did not match (nothing was
    written); ``done``, ``error`` and ``fault_pc`` are its status at the end; ``timeout`` is set
    when a limit ended the wait, ``limit`` naming it (``"max_cycles"`` or ``"timeout_s"``) and
    ``cycles`` holding the cycle counter then; ``perf`` the performance counters by name;
    ``reads`` the memory ranges read back (uint8 arrays); ``wall_s`` the run's seconds and
    ``total_s`` those of the whole exchange."""
    done: bool
    error: int
    fault_pc: int
    timeout: bool
    config_id: int
    ran: bool
    perf: dict
    reads: list
    wall_s: float
    total_s: float
    limit: str | None = None
    cycles: int | None = None
