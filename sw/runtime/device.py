"""Run compiled programs: ``Device(cfg, backend).run(prog, x) -> (y, report)``.

A backend is one module (``backend_golden``, ``backend_isasim``, ``backend_verilator``,
``backend_fpga``) whose class takes the configuration, ``log`` and its own options and runs a
list of ``(prog, x)``. Failures are Stamen errors (``sw/errors.py``): a fault is a
:class:`DeviceError` naming its reason, a run past a limit a :class:`DeviceTimeoutError`, a broken
serial link a :class:`TransportError`, a fault code the board reports but this library does not
know a :class:`BoardError`.
"""
from __future__ import annotations

import importlib
import inspect
import time

import numpy as np

from stamen.hw.params import AccelConfig

from ..errors import ConfigMismatchError
from .report import LayerReport, Report, make_report

__all__ = ["Device", "Report", "LayerReport", "BACKENDS", "ALL_BACKENDS", "backend_class"]

#: Backends that need no hardware (tests and tools may loop over these).
BACKENDS = ("golden", "isasim", "verilator")
#: Every backend, ``"fpga"`` (a board on a serial port) included.
ALL_BACKENDS = (*BACKENDS, "fpga")
_BACKEND_CLASSES = {"golden": ("backend_golden", "GoldenBackend"),
                    "isasim": ("backend_isasim", "IsaSimBackend"),
                    "verilator": ("backend_verilator", "VerilatorBackend"),
                    "fpga": ("backend_fpga", "FpgaBackend")}


def backend_class(name: str) -> type:
    """Return the class of backend ``name`` (imported on first use: the Verilator and FPGA
    backends bring cocotb and pyserial)."""
    if name not in ALL_BACKENDS:
        raise ValueError(f"Device backend must be one of {ALL_BACKENDS}, not {name!r}")
    module, cls = _BACKEND_CLASSES[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


class Device:
    """A Stamen device behind one of :data:`ALL_BACKENDS`.

    Parameters
    ----------
    cfg : AccelConfig
        The device configuration; programs compiled for another configuration are refused.
    backend : str
        ``"golden"``, ``"isasim"``, ``"verilator"`` or ``"fpga"``.
    log : callable or None
        Called with progress messages (strings).
    **options
        The backend's own options, documented on its class (``backend_class(name)``):
        ``"verilator"`` takes ``mem_latency``, ``mem_stall`` and ``max_cycles``; ``"fpga"``
        takes ``port`` (required), ``baud``, ``timeout``, ``timeout_s`` and ``max_cycles``;
        ``"golden"`` and ``"isasim"`` take none. An option the backend does not take is a
        ``TypeError`` naming it.

    ``runner`` is the backend object (``runner.last_bridge_result`` on ``"fpga"``: the last
    run's bytes moved, phases and polls).
    """

    def __init__(self, cfg: AccelConfig, backend: str = "isasim", log=None, **options):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Device config must be an AccelConfig, not {cfg!r}")
        cls = backend_class(backend)
        takes = [n for n in inspect.signature(cls).parameters if n not in ("cfg", "log")]
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise TypeError(f"Device backend {backend!r} takes "
                            f"{'the options ' + ', '.join(takes) if takes else 'no options'}, "
                            f"not {', '.join(unknown)}")
        self.cfg = cfg
        self.backend = backend
        self.log = log
        self.runner = cls(cfg, log=log, **options)

    def check(self, prog) -> None:
        """Refuse a program compiled for another configuration.

        Raises
        ------
        ConfigMismatchError
            When ``prog.config_hash`` differs from this device's configuration hash.
        """
        if prog.config_hash != self.cfg.config_hash:
            raise ConfigMismatchError(
                f"program was compiled for config {prog.cfg.name!r} (hash {prog.config_hash:#010x},"
                f" {prog.cfg.rows}x{prog.cfg.cols}) but this device is {self.cfg.name!r} (hash "
                f"{self.cfg.config_hash:#010x}, {self.cfg.rows}x{self.cfg.cols}); recompile it")

    def run(self, prog, x: np.ndarray):
        """Run ``prog`` on input ``x``; return ``(y, report)``.

        Raises
        ------
        ConfigMismatchError
            A program for another configuration (before anything runs).
        DeviceError
            The device halted with a fault; the message names the fault and its reason.
        DeviceTimeoutError
            The device did not finish within ``max_cycles`` (or, on a board, ``timeout_s``);
            ``limit`` names which. A ``TimeoutError``.
        TransportError
            FPGA: the serial port cannot be opened, or the link broke during the run.
        BoardError
            FPGA: the board reported a fault code this library does not know.
        """
        result = self.run_many([(prog, x)], return_exceptions=True)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def run_batched(self, prog, x: np.ndarray):
        """Run ``prog`` over any number of inputs: ``x`` is split into runs of the program's batch
        (``prog.input_shape[0]``; the last run is padded with copies of its first input, whose
        outputs are dropped), all runs go to one :meth:`run_many`, and the outputs are
        concatenated. Returns ``(y, report)`` with the per-layer figures summed over the runs.

        Raises
        ------
        ValueError
            When ``x`` is not a batch of the program's input shape.
        ConfigMismatchError, DeviceError, DeviceTimeoutError, TransportError, BoardError
            As :meth:`run`.
        """
        x = np.asarray(x)
        per = prog.input_shape[0]
        if x.ndim != len(prog.input_shape) or x.shape[1:] != tuple(prog.input_shape[1:]) \
                or len(x) == 0:
            raise ValueError(f"Inputs must have shape (N, {', '.join(map(str, prog.input_shape[1:]))})"
                             f" with N >= 1, not {x.shape}")
        items = []
        for i in range(0, len(x), per):
            part = x[i:i + per]
            if len(part) < per:
                part = np.concatenate([part, np.repeat(part[:1], per - len(part), axis=0)])
            items.append((prog, part))
        results = self.run_many(items)
        y = np.concatenate([r[0] for r in results])[:len(x)]
        return y, Report.combine([r[1] for r in results])

    def run_many(self, items, return_exceptions: bool = False) -> list:
        """Run several ``(prog, x)`` pairs (one simulator process on Verilator); return their results.

        Each result is ``(y, report)``; with ``return_exceptions`` a failed run gives its exception in
        its place instead of raising.
        """
        items = list(items)
        for prog, _ in items:
            self.check(prog)
        t0 = time.perf_counter()
        outcomes = self.runner.run(items)
        results = []
        for (prog, x), outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):
                if not return_exceptions:
                    raise outcome
                results.append(outcome)
                continue
            mem, totals, sim_wall_s = outcome
            y = prog.reference(x) if mem is None else prog.read_output(mem)
            report = make_report(self.backend, self.cfg, prog, mem, totals, sim_wall_s)
            report.wall_s = time.perf_counter() - t0
            results.append((y, report))
        return results

