"""Run compiled programs: ``Device(cfg, backend).run(prog, x) -> (y, report)``.

Backends:

``"golden"``
    NumPy reference (``prog.reference``); the report has MACs but no cycles.
``"isasim"``
    The ISA simulator executes the instruction stream on a NumPy model of device memory and scratchpads;
    counters come from its cycle model.
``"verilator"``
    The generated Verilog of the whole device under Verilator (through cocotb); every figure in the report
    comes from the device's own performance counters (PERF snapshots per layer).
``"fpga"``
    A board running ``hw.fpga_device.FpgaDevice``, driven over its UART host bridge (``sw/runtime/fpga.py``)
    through pyserial: ``port`` is a serial device (``/dev/ttyUSB1``) or a pyserial URL
    (``socket://host:port``), opened at run time. Results and report as for ``"verilator"``.

Failures are Stamen errors (``sw/errors.py``): a fault is a :class:`DeviceError` whose message
gives the reason (for ``BAD_ARG`` on Verilator and the board, the rule the faulting instruction
breaks, worked out by ``sw/faults.py`` as the ISA simulator words it); a run that hits its cycle or
wall-clock limit is a :class:`DeviceTimeoutError` naming the limit; a serial port that cannot be
opened or a link that breaks is a :class:`TransportError`; a fault code the board reports but this
library does not know is a :class:`BoardError`.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw.errors import BoardError, ConfigMismatchError, DeviceError, DeviceTimeoutError
from stamen.sw.faults import explain_fault

__all__ = ["Device", "Report", "LayerReport", "BACKENDS", "ALL_BACKENDS"]

#: Backends that need no hardware (tests and tools may loop over these).
BACKENDS = ("golden", "isasim", "verilator")
#: Every backend, ``"fpga"`` (a board on a serial port) included.
ALL_BACKENDS = (*BACKENDS, "fpga")


@dataclass
class LayerReport:
    """Figures of one layer (or of the whole run, for ``Report.total``).

    ``macs`` counts useful multiply-accumulates (M*K*N; for a convolution output pixels x
    kernel taps x input channels per group x output channels; 0 for pooling and adds);
    ``issued_macs`` counts PE-cycles the array spent on MACs, padding included, ``gated_macs``
    those of them with a gated multiplier and ``skipped_macs`` the MACs a ``zero_skip`` array
    never issued because their activation was zero (the device counters ``macs``,
    ``gated_macs``, ``skipped_macs``; ``issued_macs + skipped_macs`` is the MATMULs' total);
    ``utilization`` is ``macs / (compute_cycles * rows * cols)``; ``dram_bytes`` is the
    device-memory traffic and ``min_dram_bytes`` what it would be if every input, weight and
    output byte moved once.
    """
    name: str
    kind: str = ""
    shape: str = ""
    macs: int = 0
    cycles: int = 0
    compute_cycles: int = 0
    issued_macs: int = 0
    gated_macs: int = 0
    skipped_macs: int = 0
    dram_bytes: int = 0
    min_dram_bytes: int = 0
    stall_cycles: int = 0
    utilization: float = 0.0
    busy_share: float = 0.0


_COLUMNS = ("name", "kind", "shape", "macs", "cycles", "compute_cycles", "utilization",
            "busy_share", "issued_macs", "gated_macs", "skipped_macs", "dram_bytes",
            "min_dram_bytes", "stall_cycles")


@dataclass
class Report:
    """Per-layer and total figures of one run, printable as a table and savable as CSV."""
    backend: str
    cfg: AccelConfig
    layers: list[LayerReport] = field(default_factory=list)
    total: LayerReport = field(default_factory=lambda: LayerReport("total"))
    wall_s: float = 0.0
    sim_wall_s: float = 0.0

    def __getattr__(self, name):
        # report.cycles, report.macs, ... are the totals
        if name in {f.name for f in dataclasses.fields(LayerReport)}:
            return getattr(self.total, name)
        raise AttributeError(name)

    @property
    def sim_cycles_per_s(self) -> float:
        """Simulated device cycles per wall-clock second of the simulation proper."""
        return self.total.cycles / self.sim_wall_s if self.sim_wall_s else 0.0

    def rows(self) -> list[dict]:
        """Return one dict per layer plus the total, with the table's columns."""
        return [{c: getattr(r, c) for c in _COLUMNS} for r in [*self.layers, self.total]]

    def table(self) -> str:
        """Return the report as an aligned text table."""
        def fmt(v):
            return f"{v:.1%}" if isinstance(v, float) else str(v)
        rows = [[fmt(v) for v in r.values()] for r in self.rows()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(_COLUMNS, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        head = (f"backend={self.backend} config={self.cfg.name} "
                f"({self.cfg.rows}x{self.cfg.cols} {self.cfg.dataflow})")
        if self.sim_wall_s:
            head += f" sim={self.sim_cycles_per_s:,.0f} cycles/s"
        return "\n".join([head, *lines])

    def __str__(self) -> str:
        return self.table()

    @classmethod
    def combine(cls, reports: list["Report"]) -> "Report":
        """Return one report whose counts are the sums of ``reports`` (runs of the same program
        on one device), with utilization and busy share recomputed."""
        first = reports[0]
        out = cls(first.backend, first.cfg, wall_s=sum(r.wall_s for r in reports),
                  sim_wall_s=sum(r.sim_wall_s for r in reports))
        summed = [f.name for f in dataclasses.fields(LayerReport)
                  if f.type in ("int", int)]
        def add(rows):
            r = dataclasses.replace(rows[0])
            for name in summed:
                setattr(r, name, sum(getattr(x, name) for x in rows))
            pes = first.cfg.rows * first.cfg.cols
            r.utilization = r.macs / (r.compute_cycles * pes) if r.compute_cycles else 0.0
            r.busy_share = r.compute_cycles / r.cycles if r.cycles else 0.0
            return r
        out.layers = [add(list(rows)) for rows in zip(*(r.layers for r in reports))]
        out.total = add([r.total for r in reports])
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        """Return the report as CSV text, and write it to ``path`` when given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows())
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()


def _layer_report(cfg: AccelConfig, info, counters: dict | None) -> LayerReport:
    r = LayerReport(name=info.name, kind=info.kind,
                    shape=info.desc or f"{info.m}x{info.k}x{info.n}", macs=info.macs,
                    min_dram_bytes=info.min_dram_bytes)
    if counters:
        _fill(cfg, r, counters)
    return r


def _fill(cfg: AccelConfig, r: LayerReport, c: dict) -> None:
    r.cycles = c["cycles"]
    r.compute_cycles = c["compute_cycles"]
    r.issued_macs = c["macs"]
    r.gated_macs = c["gated_macs"]
    r.skipped_macs = c["skipped_macs"]
    r.dram_bytes = c["dram_read_bytes"] + c["dram_write_bytes"]
    r.stall_cycles = c["stall_cycles"]
    pes = cfg.rows * cfg.cols
    r.utilization = r.macs / (r.compute_cycles * pes) if r.compute_cycles else 0.0
    r.busy_share = r.compute_cycles / r.cycles if r.cycles else 0.0


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _deltas(snaps: list[dict]) -> list[dict]:
    return [{k: b[k] - a[k] for k in isa.PERF_COUNTERS} for a, b in zip(snaps, snaps[1:])]


class Device:
    """A Stamen device behind one of :data:`BACKENDS`.

    Parameters
    ----------
    cfg : AccelConfig
        The device configuration; programs compiled for another configuration are refused.
    backend : str
        ``"golden"``, ``"isasim"``, ``"verilator"`` or ``"fpga"``.
    mem_latency : int
        Verilator only: extra device-memory read latency in cycles (0..16).
    mem_stall : int
        Verilator only: memory backpressure, refusing a request with probability ``mem_stall/8``.
    max_cycles : int
        Verilator and FPGA: limit of one run in device cycles (the device's ``cycles``
        counter); beyond it the run fails with a :class:`DeviceTimeoutError` whose ``limit`` is
        ``"max_cycles"``.
    log : callable or None
        Called with progress messages (strings).
    port : str
        FPGA only (required): serial port or pyserial URL of the board's UART.
    baud : int
        FPGA only: UART bit rate.
    timeout : float
        FPGA only: seconds of silence after which a bridge command fails
        (``sw.fpga.BridgeTimeoutError``).
    timeout_s : float or None
        FPGA only: wall-clock limit of one run in seconds, from its start to its halt (upload and
        read-back not included); beyond it the run fails with a :class:`DeviceTimeoutError` whose
        ``limit`` is ``"timeout_s"``. None (the default): ``60 + 30 * timeout``; ``math.inf``: no
        wall-clock limit (``max_cycles`` still applies while the board's cycle counter advances).
    """

    def __init__(self, cfg: AccelConfig, backend: str = "isasim", mem_latency: int = 0,
                 mem_stall: int = 0, max_cycles: int = 10**8, log=None, port: str | None = None,
                 baud: int = 115200, timeout: float = 2.0, timeout_s: float | None = None):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Device config must be an AccelConfig, not {cfg!r}")
        if backend not in ALL_BACKENDS:
            raise ValueError(f"Device backend must be one of {ALL_BACKENDS}, not {backend!r}")
        if backend == "fpga" and not isinstance(port, str):
            raise TypeError(f"Device backend 'fpga' needs port, a serial port or pyserial URL "
                            f"string such as '/dev/ttyUSB1', not {port!r}")
        if timeout_s is None:
            timeout_s = 60 + 30 * timeout if _is_real(timeout) else timeout
        for name, value, kind in (("max_cycles", max_cycles, "integer"),
                                  ("timeout", timeout, "number of seconds"),
                                  ("timeout_s", timeout_s, "number of seconds")):
            ok_type = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                       if kind == "integer" else _is_real(value))
            if not ok_type:
                raise TypeError(f"Device {name} must be a positive {kind}, not {value!r}")
            if not value > 0:
                raise ValueError(f"Device {name} must be a positive {kind}, not {value!r}")
        self.cfg = cfg
        self.backend = backend
        self.mem_latency = mem_latency
        self.mem_stall = mem_stall
        self.max_cycles = max_cycles
        self.log = log
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.timeout_s = timeout_s
        #: FPGA only: the last run's bridge result (bytes moved, phases, polls).
        self.last_bridge_result = None

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
        if self.backend == "verilator":
            outcomes = self._run_verilator(items)
        elif self.backend == "fpga":
            outcomes = self._run_fpga(items)
        else:
            outcomes = [self._run_local(prog, x) for prog, x in items]
        results = []
        for (prog, x), outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):
                if not return_exceptions:
                    raise outcome
                results.append(outcome)
                continue
            mem, totals, sim_wall_s = outcome
            results.append(self._finish(prog, x, mem, totals, sim_wall_s, t0))
        return results

    def _finish(self, prog, x, mem, totals, sim_wall_s, t0):
        report = Report(self.backend, self.cfg, sim_wall_s=sim_wall_s)
        if mem is None:                      # golden
            y = prog.reference(x)
            report.layers = [_layer_report(self.cfg, info, None) for info in prog.layers]
            report.total.macs = sum(r.macs for r in report.layers)
            report.total.min_dram_bytes = sum(r.min_dram_bytes for r in report.layers)
        else:
            y = prog.read_output(mem)
            snaps = prog.read_perf(mem)
            report.layers = [_layer_report(self.cfg, info, c)
                             for info, c in zip(prog.layers, _deltas(snaps))]
            report.total.macs = sum(r.macs for r in report.layers)
            report.total.min_dram_bytes = sum(r.min_dram_bytes for r in report.layers)
            _fill(self.cfg, report.total, totals)
        report.wall_s = time.perf_counter() - t0
        return y, report

    def _run_local(self, prog, x):
        if self.backend == "golden":
            return None, None, 0.0
        from stamen.sw.sim.isasim import IsaSim
        image = prog.memory_image(x)
        t1 = time.perf_counter()
        try:
            totals = IsaSim(self.cfg).run(image, prog.prog_addr)
        except DeviceError as e:
            return e
        return image, totals, time.perf_counter() - t1

    def _run_verilator(self, items) -> list:
        from stamen.verif.device_job import Job, run_jobs
        jobs = [Job(prog.memory_image(x), prog.prog_addr, prog.used_words,
                    prog.result_ranges(), self.mem_latency, self.mem_stall, self.max_cycles)
                for prog, x in items]
        results = run_jobs(self.cfg, jobs, log=self.log)
        return [self._outcome(prog, res, job.read_ranges, "the simulated device", job.image)
                for (prog, _), job, res in zip(items, jobs, results)]

    def _run_fpga(self, items) -> list:
        from stamen.sw.runtime.fpga import BridgeClient, open_port, run_on_bridge
        if self.log:
            self.log(f"opening {self.port} at {self.baud} Bd")
        outcomes = []
        with open_port(self.port, self.baud) as stream:
            client = BridgeClient(stream, self.cfg, timeout=self.timeout)
            for i, (prog, x) in enumerate(items):
                if outcomes and isinstance(outcomes[-1], DeviceTimeoutError):
                    outcomes.append(BoardError(
                        f"not run: the board is still running program {i - 1} of this batch, "
                        f"which did not finish in time; reset the board"))
                    continue
                ranges = prog.result_ranges()
                if self.log:
                    self.log(f"uploading {prog.used_words} words and running on the board")
                image = prog.memory_image(x)
                res = run_on_bridge(client, self.cfg, image, prog.prog_addr,
                                    prog.used_words, ranges, max_cycles=self.max_cycles,
                                    timeout_s=self.timeout_s)
                self.last_bridge_result = res
                outcomes.append(self._outcome(prog, res, ranges, "the board", image))
        return outcomes

    def _timeout_error(self, res, where: str) -> DeviceTimeoutError:
        limit = getattr(res, "limit", None) or "max_cycles"
        cycles = getattr(res, "cycles", None)
        if cycles is None and res.perf:
            cycles = res.perf.get("cycles")
        board = where == "the board"
        counter = f"its cycle counter read {cycles:,}" if cycles is not None else ""
        if limit == "timeout_s":
            msg = (f"{where} did not finish within timeout_s={self.timeout_s:g} s of wall-clock "
                   f"time")
            if cycles is not None:
                below = (f", below max_cycles={self.max_cycles:,}"
                         if cycles <= self.max_cycles else "")
                msg += f" ({counter}{below})"
        else:
            msg = f"{where} did not finish within max_cycles={self.max_cycles:,} device cycles"
            if cycles is not None:
                msg += f" ({counter} after {res.wall_s:.1f} s)"
        if board:
            msg += ("; the board keeps running the program and refuses memory commands until "
                    "it halts: reset it before the next run")
        return DeviceTimeoutError(msg, limit=limit, cycles=cycles)

    def _outcome(self, prog, res, ranges, where: str, image=None):
        """Turn a device run's result (``SimResult`` or ``BridgeResult``) into
        ``(memory image, counters, wall seconds)`` or the exception to raise; ``image`` is the
        memory image the run started from (to explain a fault)."""
        if not res.ran:
            return ConfigMismatchError(
                f"{where} reports config id {res.config_id:#010x}, the program "
                f"needs {prog.config_hash:#010x}; nothing was run")
        if res.timeout:
            return self._timeout_error(res, where)
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
                               detail=explain_fault(self.cfg, code, res.fault_pc, image))
        bb = self.cfg.mem_bus_bytes
        mem = np.zeros(self.cfg.mem_bytes, np.uint8)
        for (start, _), blob in zip(ranges, res.reads):
            mem[start * bb:start * bb + len(blob)] = blob
        return mem, res.perf, res.wall_s

