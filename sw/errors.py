"""Exceptions the host library raises."""
from __future__ import annotations

__all__ = ["StamenError", "CompileError", "QuantizeError", "ConfigMismatchError", "DeviceError",
           "DeviceTimeoutError", "TransportError", "BoardError"]


class StamenError(Exception):
    """Base class of Stamen's own errors."""


class CompileError(StamenError, ValueError):
    """A model or layer cannot be compiled for a configuration; the message names the layer and rule."""


class QuantizeError(CompileError):
    """A model, its weights or its calibration data cannot be quantized faithfully (a NaN or inf,
    empty calibration, a bias beyond int32, an unsupported op); the message names the tensor or
    layer and the rule. A :class:`CompileError`, so ``except CompileError`` still catches it."""


class ConfigMismatchError(StamenError, ValueError):
    """A program compiled for one configuration was given to a device of another."""


class DeviceError(StamenError, RuntimeError):
    """The device halted with a fault.

    Parameters
    ----------
    code : hw.isa.ErrorCode
        The fault code from the status CSR.
    pc : int or None
        Word address of the faulting instruction, when known.
    detail : str
        A human-readable explanation.
    """

    def __init__(self, code, pc: int | None = None, detail: str = ""):
        self.code = code
        self.pc = pc
        name = getattr(code, "name", str(code))
        where = f" at instruction word {pc:#x}" if pc is not None else ""
        super().__init__(f"device fault {name}{where}" + (f": {detail}" if detail else ""))


class DeviceTimeoutError(StamenError, TimeoutError):
    """A run did not finish within one of its limits; the message names which.

    Parameters
    ----------
    message : str
        What happened.
    limit : str
        The limit that ended the wait: ``"max_cycles"`` (device cycles) or ``"timeout_s"``
        (wall-clock seconds).
    cycles : int or None
        The device's cycle counter when the host gave up, when known.
    """

    def __init__(self, message: str, limit: str, cycles: int | None = None):
        self.limit = limit
        self.cycles = cycles
        super().__init__(message)


class TransportError(StamenError, OSError):
    """The link to a board failed: its port could not be opened, or it broke during a run."""


class BoardError(StamenError, RuntimeError):
    """A board answered with something this host library does not know (for example a fault code
    outside ``hw.isa.ErrorCode``: a bitstream built from another version of Stamen)."""
