"""What the device backends share: turning a run's result into its memory or the error to raise,
and checking their options."""
from __future__ import annotations

import numbers

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..errors import BoardError, ConfigMismatchError, DeviceError, DeviceTimeoutError
from ..faults import explain_fault

__all__ = ["check_option", "is_real", "run_outcome"]


def is_real(value) -> bool:
    """Return whether ``value`` is a real number (``bool`` excluded)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_option(name: str, value, kind: str) -> None:
    """Refuse a device option that is not a positive ``kind`` (``"integer"`` or ``"number of
    seconds"``) with a ``TypeError`` or ``ValueError`` naming it."""
    ok_type = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
               if kind == "integer" else is_real(value))
    if not ok_type:
        raise TypeError(f"Device {name} must be a positive {kind}, not {value!r}")
    if not value > 0:
        raise ValueError(f"Device {name} must be a positive {kind}, not {value!r}")


def _timeout_error(res, where: str, max_cycles: int, timeout_s: float | None,
                   board: bool) -> DeviceTimeoutError:
    limit = res.limit or "max_cycles"
    cycles = res.cycles
    if cycles is None and res.perf:
        cycles = res.perf.get("cycles")
    counter = f"its cycle counter read {cycles:,}" if cycles is not None else ""
    if limit == "timeout_s":
        msg = f"{where} did not finish within timeout_s={timeout_s:g} s of wall-clock time"
        if cycles is not None:
            below = f", below max_cycles={max_cycles:,}" if cycles <= max_cycles else ""
            msg += f" ({counter}{below})"
    else:
        msg = f"{where} did not finish within max_cycles={max_cycles:,} device cycles"
        if cycles is not None:
            msg += f" ({counter} after {res.wall_s:.1f} s)"
    if board:
        msg += ("; the board keeps running the program and refuses memory commands until "
                "it halts: reset it before the next run")
    return DeviceTimeoutError(msg, limit=limit, cycles=cycles)


def run_outcome(cfg: AccelConfig, prog, res, ranges, where: str, image, max_cycles: int,
                timeout_s: float | None = None, board: bool = False):
    """Turn a device run's :class:`~stamen.sw.run_result.RunResult` into ``(memory image,
    counters, wall seconds)`` or the exception to raise. ``ranges`` are the ``(start word,
    words)`` pairs read back, ``image`` the memory image the run started from (to explain a
    fault), ``where`` names the device in messages (``board``: it is a board, which keeps
    running after a timeout)."""
    if not res.ran:
        return ConfigMismatchError(
            f"{where} reports config id {res.config_id:#010x}, the program "
            f"needs {prog.config_hash:#010x}; nothing was run")
    if res.timeout:
        return _timeout_error(res, where, max_cycles, timeout_s, board)
    if res.error:
        try:
            code = isa.ErrorCode(res.error)
        except ValueError:
            known = ", ".join(f"{c.value} {c.name}" for c in isa.ErrorCode)
            return BoardError(
                f"{where} halted with fault code {res.error} at instruction word "
                f"{res.fault_pc:#x}, which is not a Stamen fault code (known: {known}); "
                f"was its bitstream built from another version of Stamen?")
        return DeviceError(code, pc=res.fault_pc,
                           detail=explain_fault(cfg, code, res.fault_pc, image))
    bb = cfg.mem_bus_bytes
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    for (start, _), blob in zip(ranges, res.reads):
        mem[start * bb:start * bb + len(blob)] = blob
    return mem, res.perf, res.wall_s
