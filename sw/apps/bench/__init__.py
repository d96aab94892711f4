"""Benchmarks (``stamen bench``): measured cycles against SCALE-Sim's closed forms, and the
dataflows compared. Four suites, one module each: ``gemm`` and ``conv`` (the weight-stationary
presets against SCALE-Sim), ``dataflow`` (ws / os / rs: cycles and energy) and ``sparsity``
(zero skipping); ``common`` holds what they share. Each suite writes ``<suite>.csv``,
``<suite>.json`` and ``<suite>.png`` to the output folder (``build/bench/`` from the CLI).
``docs/bench.md`` explains what each suite measures and compares.

The suites load when :func:`run_bench` runs, so importing this package (``stamen --help``) stays
light.
"""
from __future__ import annotations

import time
from pathlib import Path

from stamen.sw.apps.bench.common import VERILATOR_BUDGET, Log

__all__ = ["SUITES", "VERILATOR_BUDGET", "run_bench"]

#: The benchmark suites (``run_bench(suite=...)``; ``"all"`` runs every one).
SUITES = ("gemm", "conv", "dataflow", "sparsity")


def run_bench(out_dir: Path, backend: str = "verilator", log: Log = print, quick: bool = False,
              suite: str = "all", verilator_budget: int = VERILATOR_BUDGET) -> int:
    """Run the ``suite`` (one of :data:`SUITES` or ``"all"``) benchmarks; return 0 when every
    output is bit-exact, every layer compiled and ran and every model check agreed, else 1. The
    dataflow and sparsity suites always run on the ISA simulator (and the row-stationary
    models), whatever ``backend``.

    Raises
    ------
    ValueError
        An unknown ``suite`` or ``backend``, or a negative ``verilator_budget``.
    """
    if suite not in (*SUITES, "all"):
        raise ValueError(f"Benchmark suite must be one of {(*SUITES, 'all')}, not {suite!r}")
    if backend not in ("verilator", "isasim"):
        raise ValueError(f"Benchmark backend must be 'verilator' or 'isasim', not {backend!r}")
    if verilator_budget < 0:
        raise ValueError(f"Verilator cycle budget must be >= 0, not {verilator_budget!r}")
    # the suites load here, not when the package is imported
    from stamen.sw.apps.bench.conv import run_conv_bench
    from stamen.sw.apps.bench.dataflow import run_dataflow_bench
    from stamen.sw.apps.bench.gemm import run_gemm_bench
    from stamen.sw.apps.bench.sparsity import run_sparsity_bench
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    failures = []
    if suite in ("gemm", "all"):
        t1 = time.perf_counter()
        failures += run_gemm_bench(out_dir, backend, log, quick)
        log(f"GEMM benchmark: {time.perf_counter() - t1:.1f} s wall")
    if suite in ("conv", "all"):
        t1 = time.perf_counter()
        failures += run_conv_bench(out_dir, backend, log, quick, verilator_budget)
        log(f"convolution benchmark: {time.perf_counter() - t1:.1f} s wall")
    if suite in ("dataflow", "all"):
        t1 = time.perf_counter()
        failures += run_dataflow_bench(out_dir, log, quick)
        log(f"dataflow benchmark: {time.perf_counter() - t1:.1f} s wall")
    if suite in ("sparsity", "all"):
        t1 = time.perf_counter()
        failures += run_sparsity_bench(out_dir, log, quick)
        log(f"sparsity benchmark: {time.perf_counter() - t1:.1f} s wall")
    log(f"benchmarks done in {time.perf_counter() - t0:.1f} s wall")
    for f in failures:
        log(f"FAILED: {f}")
    return 1 if failures else 0
