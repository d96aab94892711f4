"""Exceptions the host library raises."""
from __future__ import annotations

__all__ = ["StamenError", "CompileError", "ConfigMismatchError", "DeviceError"]


class StamenError(Exception):
    """Base class of Stamen's own errors."""


class CompileError(StamenError, ValueError):
    """A model or layer cannot be compiled for a configuration; the message names the layer and rule."""


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
