"""Benchmarks: measured cycles against SCALE-Sim's closed forms, and the dataflows compared.

Four suites; results go to ``<out>/``. ``gemm`` and ``conv`` run on the small (8x8) and large
(16x16) weight-stationary presets, ``dataflow`` on each dataflow of the 8x8 array,
``sparsity`` on the row-stationary device and the models of ``sw/analysis/eyeriss.py`` and
``sw/analysis/energy.py``:

``gemm``
    For each GEMM ``M x K x N`` the device runs ``(x - zp) @ w`` as one program on the chosen
    backend (``gemm.csv``, ``gemm.json``, ``gemm.png``).
``conv``
    AlexNet conv2-conv5, a 3x3 32->32 convolution on a 16x16 input and ResNet-18's 3x3 layers at
    28x28 and below, each a one-op :class:`~sw.graph.QuantizedGraph` (seeded random int8 weights
    and input) compiled by :func:`~sw.lower.compile_graph` (``conv.csv``, ``conv.json``,
    ``conv.png``). A layer is compared with SCALE-Sim as the GEMM ``T = OH*OW`` (output pixels),
    ``K = KH*KW*Cin``, ``N = Cout``; the compute target is ``compute / SCALE-Sim <= 1.2``.
    The full-size layers need millions of cycles and more than the presets' 1 MiB of device
    memory, so they run on the ISA simulator (whose cycle model equals the RTL's counters for an
    ideal memory) with :data:`BIG_MEM_BYTES` of device memory. With the Verilator backend, a layer
    that fits the preset's own memory and needs at most ``verilator_budget`` cycles runs on
    Verilator instead, and scaled-down layers (:data:`CHECK_LAYERS`) plus every layer run on
    Verilator are also run on the ISA simulator: the ``model_check`` rows record whether the two
    agree on every cycle counter. Each row names the backend that produced its figures.
``dataflow``
    The Eyeriss paper's comparison of dataflows on the same layers, with Stamen's own numbers:
    for each dataflow of :data:`~stamen.hw.params.DATAFLOWS` that :class:`AccelConfig` accepts
    (:func:`dataflow_configs`: ``ws`` = ``small``, ``os`` = ``small-os``, ``rs`` =
    ``small-rs``), the conv suite's layers (:data:`CONV_LAYERS`, one seeded random image
    each, :data:`BIG_MEM_BYTES` of device memory) and the digits LeNet and ResNet of
    :mod:`~stamen.sw.apps.networks` (trained with a fixed seed, quantized by ``stamen.quantize``, run on
    :data:`DATAFLOW_BATCH` held-out images in the preset's own memory) are compiled and run on
    the ISA simulator, whose cycle model equals the RTL counters for every dataflow (ideal
    memory; ``tests/test_vl_conv.py``). Per layer: compute and total cycles, SCALE-Sim's closed
    form of that dataflow (:data:`SCALESIM_FORMS`) and the ratio, utilization, DRAM bytes and
    the energy estimate of :func:`~stamen.sw.analysis.energy.estimate_energy` (access counts from the
    instruction stream and the run's counters times the Eyeriss normalized costs: total, its
    dram / buffer / array / rf / mac split, energy per issued MAC), and cycles and energy
    relative to ``ws`` (``dataflow.csv``, ``dataflow.json``, ``dataflow.png``).
``sparsity``
    Zero skipping, each with zero gating and with zero skipping, on the devices
    (:data:`SKIP_DEVICES`, compiled and run on the ISA simulator, whose cycle model is the
    RTL's; compute cycles): ``rs`` (``small-rs`` / ``small-rs-skip``, which skips every zero
    activation in convolution windows) and ``ws`` (``small`` / ``small-skip``, which skips act
    rows whose every lane is zero), and on the Eyeriss mapping of Eyeriss v1's 12 x 14 PEs
    (``rs-eyeriss``, :data:`RS_ARRAY`: :func:`~stamen.sw.analysis.eyeriss.rs_conv_cycles`, each PE's
    timing exact against ``hw/rs_pe.py``, and :func:`~stamen.sw.analysis.energy.rs_conv_energy`).
    ``sweep`` rows: the layers
    :data:`SPARSITY_LAYERS` on seeded random activations at each density of
    :data:`SPARSITY_DENSITIES` (an activation equals the zero point with probability
    ``1 - density``, the padding is zero points); speedup = dense / skipping cycles, beside the
    target of :data:`SPARSITY_TARGET` at density :data:`SPARSITY_TARGET_DENSITY` (reported, never
    a failure). ``lenet`` rows: the same on the real int8 input of each conv layer of the
    trained, quantized digits LeNet (the golden model's tensors, op by op, padded with the zero
    point) over :data:`SPARSITY_IMAGES` held-out images, with the measured density. ``energy``
    rows: for those layers, the compute cycles and energy of ``ws``, ``os``, ``rs``,
    ``ws+skip`` and ``rs+skip`` (isasim runs and :func:`~stamen.sw.analysis.energy.estimate_energy`) beside
    ``rs-eyeriss`` and ``rs-eyeriss+skip`` on :data:`RS_ARRAY` and on the same 8x8 array
    (``sparsity.csv``, ``sparsity.json``, ``sparsity.png``).

SCALE-Sim 3.0's weight-stationary compute cycles are ``ceil(K/R)*ceil(N/C)*(2R+C+T-2) - 1`` with
``T = M`` rows streamed; its output-stationary ones ``ceil(T/R)*ceil(N/C)*(K+R+C-2) - 1``. Every
output is compared with the golden model bit for bit; a mismatch, a compile or device error, or
a model check that disagrees makes :func:`run_bench` return 1 (after the files are written).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from stamen.hw.params import DATAFLOWS, PRESETS, AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import compile_gemm
from stamen.sw.analysis.energy import (compare_dataflows, comparison_csv, comparison_table,
                                       estimate_energy, implemented_configs, rs_conv_energy)
from stamen.sw.errors import CompileError
from stamen.sw.graph import QOp, QuantizedGraph
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.analysis.eyeriss import RsConvShape, map_conv, rs_conv_cycles
from stamen.sw.runtime.device import Device

__all__ = ["scalesim_ws_cycles", "scalesim_os_cycles", "GEMM_SHAPES", "ConvLayer", "CONV_LAYERS",
           "CHECK_LAYERS", "QUICK_CONV_LAYERS", "layer_seed", "CONV_PRESETS", "COMPUTE_TARGET",
           "BIG_MEM_BYTES", "VERILATOR_BUDGET", "SUITES", "conv_layer_graph", "run_bench", "run_gemm_bench",
           "run_conv_bench", "SCALESIM_FORMS", "DATAFLOW_PRESET", "DATAFLOW_BATCH",
           "DATAFLOW_NETS", "DATAFLOW_FIELDS", "dataflow_configs", "run_dataflow_bench",
           "COMPARISON_BENCH_LAYERS", "print_dataflow_comparison",
           "RS_ARRAY", "SPARSITY_LAYERS", "QUICK_SPARSITY_LAYERS", "SPARSITY_DENSITIES",
           "QUICK_SPARSITY_DENSITIES", "SPARSITY_TARGET", "SPARSITY_TARGET_DENSITY",
           "SPARSITY_IMAGES", "QUICK_SPARSITY_IMAGES", "SPARSITY_FIELDS", "run_sparsity_bench"]

#: (M, K, N) of the benchmark GEMMs.
GEMM_SHAPES = ((64, 64, 64), (128, 256, 64), (256, 64, 256))
BENCH_SEED = 2026
#: The benchmark suites (``run_bench(suite=...)``; ``"all"`` runs every one).
SUITES = ("gemm", "conv", "dataflow", "sparsity")
#: Presets every suite runs on.
CONV_PRESETS = ("small", "large")
#: Upper bound of ``compute_cycles / SCALE-Sim WS cycles`` for a convolution layer.
COMPUTE_TARGET = 1.2
#: Device memory of the ISA-simulator configuration of the full-size layers.
BIG_MEM_BYTES = 16 << 20
#: Default cycle budget of a full-size layer on Verilator (about 1.5 s at 700k cycles/s).
VERILATOR_BUDGET = 1_000_000

_Log = Callable[[str], None]


class ConvLayer(NamedTuple):
    """One benchmark convolution: ``h x w x cin -> cout`` with a square ``k x k`` kernel."""
    name: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int = 1
    pad: int = 0

    @property
    def out_hw(self) -> tuple[int, int]:
        """Return ``(OH, OW)``."""
        return ((self.h + 2 * self.pad - self.k) // self.stride + 1,
                (self.w + 2 * self.pad - self.k) // self.stride + 1)

    @property
    def gemm(self) -> tuple[int, int, int]:
        """Return the layer as a GEMM ``(T, K, N)``: output pixels, ``KH*KW*Cin``, ``Cout``."""
        oh, ow = self.out_hw
        return oh * ow, self.k * self.k * self.cin, self.cout

    def __str__(self) -> str:
        oh, ow = self.out_hw
        return (f"{self.h}x{self.w}x{self.cin}->{oh}x{ow}x{self.cout} "
                f"k{self.k} s{self.stride} p{self.pad}")


#: The full-size layers (issue "Quantized CNNs", Benchmark section).
CONV_LAYERS = (
    ConvLayer("alexnet-conv2", 27, 27, 96, 256, 5, 1, 2),
    ConvLayer("alexnet-conv3", 13, 13, 256, 384, 3, 1, 1),
    ConvLayer("alexnet-conv4", 13, 13, 384, 384, 3, 1, 1),
    ConvLayer("alexnet-conv5", 13, 13, 384, 256, 3, 1, 1),
    ConvLayer("conv3x3-32-16x16", 16, 16, 32, 32, 3, 1, 1),
    ConvLayer("resnet18-layer2", 28, 28, 128, 128, 3, 1, 1),
    ConvLayer("resnet18-layer3", 14, 14, 256, 256, 3, 1, 1),
    ConvLayer("resnet18-layer4", 7, 7, 512, 512, 3, 1, 1),
    ConvLayer("resnet18-layer3.0-s2", 28, 28, 128, 256, 3, 2, 1),
    ConvLayer("resnet18-layer4.0-s2", 14, 14, 256, 512, 3, 2, 1),
)
#: Scaled-down layers run on both the ISA simulator and Verilator (``model_check`` rows).
CHECK_LAYERS = (
    ConvLayer("check-3x3-32-8x8", 8, 8, 32, 32, 3, 1, 1),
    ConvLayer("check-5x5-16-9x9", 9, 9, 16, 16, 5, 1, 2),
    ConvLayer("check-3x3-s2-16-24", 9, 9, 16, 24, 3, 2, 1),
)
#: ``quick`` mode: one small layer.
QUICK_CONV_LAYERS = CHECK_LAYERS[:1]


def scalesim_ws_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 weight-stationary compute cycles of an M x K by K x N GEMM on rows x cols."""
    return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2) - 1


def scalesim_os_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 output-stationary compute cycles of the same GEMM."""
    return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2) - 1


def run_bench(out_dir: Path, backend: str = "verilator", log: _Log = print, quick: bool = False,
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


# -- GEMM suite ------------------------------------------------------------------------------------
def run_gemm_bench(out_dir: Path, backend: str, log: _Log = print,
                   quick: bool = False) -> list[str]:
    """Run every benchmark GEMM on the small and large presets; write ``gemm.*``; return the
    failures (one message per output that is not bit-exact)."""
    shapes = GEMM_SHAPES[:1] if quick else GEMM_SHAPES
    rng = np.random.default_rng(BENCH_SEED)
    rows = []
    for preset in CONV_PRESETS:
        cfg = AccelConfig.preset(preset)
        items, meta = [], []
        for m, k, n in shapes:
            x = rng.integers(-128, 128, (m, k), dtype=np.int8)
            w = rng.integers(-128, 128, (k, n), dtype=np.int8)
            zp = int(rng.integers(-128, 128))
            items.append((compile_gemm(w, cfg, m=m, zp=zp), x))
            meta.append((m, k, n, golden.gemm(x, w, zp)))
        log(f"{preset}: running {len(items)} GEMMs on {backend}")
        results = Device(cfg, backend=backend, log=log).run_many(items)
        for (m, k, n, want), (y, rep) in zip(meta, results):
            exact = bool(np.array_equal(y, want))
            ss = scalesim_ws_cycles(m, k, n, cfg.rows, cfg.cols)
            macs = m * k * n
            rows.append({
                "array": f"{cfg.rows}x{cfg.cols}", "gemm": f"{m}x{k}x{n}", "backend": backend,
                "compute_cycles": rep.compute_cycles, "scalesim_ws_cycles": ss,
                "ratio_vs_scalesim": round(rep.compute_cycles / ss, 4),
                "utilization": round(macs / (rep.compute_cycles * cfg.rows * cfg.cols), 4),
                "scalesim_utilization": round(macs / (ss * cfg.rows * cfg.cols), 4),
                "end_to_end_cycles": rep.cycles,
                "end_to_end_ratio": round(rep.cycles / ss, 4),
                "array_busy_share": round(rep.compute_cycles / rep.cycles, 4),
                "dram_bytes": rep.dram_bytes, "gated_macs": rep.gated_macs,
                "sim_cycles_per_s": round(rep.sim_cycles_per_s), "bit_exact": exact,
            })
            log(f"  {rows[-1]['array']} {rows[-1]['gemm']}: compute {rep.compute_cycles} cycles "
                f"(SCALE-Sim {ss}, ratio {rows[-1]['ratio_vs_scalesim']:.3f}), utilization "
                f"{rows[-1]['utilization']:.1%}, end-to-end {rep.cycles}, "
                f"{rows[-1]['sim_cycles_per_s']:,} sim cycles/s, bit-exact {exact}")
    _write_rows(rows, out_dir / "gemm.csv", out_dir / "gemm.json")
    _plot(rows, out_dir / "gemm.png")
    print(_table(rows, ["array", "gemm", "compute_cycles", "scalesim_ws_cycles",
                        "ratio_vs_scalesim", "utilization", "end_to_end_cycles",
                        "array_busy_share", "sim_cycles_per_s", "bit_exact"]))
    log(f"wrote {out_dir / 'gemm.csv'}, gemm.json and gemm.png")
    return [f"GEMM {r['gemm']} on {r['array']} ({backend}): output is not bit-exact against "
            f"golden" for r in rows if not r["bit_exact"]]


# -- convolution suite -----------------------------------------------------------------------------
#: Columns of ``conv.csv`` (``conv.json`` holds the same rows); ``set`` is ``"layer"`` or
#: ``"model_check"``; ``backend`` and ``mem_bytes`` say where the figures come from; ``wall_s`` is
#: compile + run on isasim and the simulation proper on Verilator; the last four are filled in
#: model_check rows only (the other cycle columns of those rows are Verilator's).
CONV_FIELDS = (
    "set", "layer", "preset", "array", "shape", "gemm_t", "gemm_k", "gemm_n", "macs", "backend",
    "mem_bytes", "compute_cycles", "total_cycles", "scalesim_ws_cycles", "compute_ratio",
    "e2e_ratio", "meets_target", "utilization", "scalesim_utilization", "dram_bytes",
    "min_dram_bytes", "dram_ratio", "bit_exact", "sim_cycles_per_s", "wall_s", "error",
    "isasim_compute_cycles", "isasim_total_cycles", "isasim_bit_exact", "cycles_agree",
)


def conv_layer_graph(layer: ConvLayer, seed: int):
    """Return ``(graph, x)``: ``layer`` as a one-op :class:`~sw.graph.QuantizedGraph` with seeded
    random int8 weights, int32 biases, Q31 multipliers and zero points (ReLU, output zero point
    -128) and a seeded random int8 NHWC input of one image."""
    rng = np.random.default_rng(seed)
    k, cin, cout = layer.k, layer.cin, layer.cout
    oh, ow = layer.out_hw
    fan = k * k * cin
    zp_in = int(rng.integers(-30, 31))
    op = QOp(layer.name, "conv", ["input"], [zp_in], -128, [1.0], 1.0, (oh, ow, cout),
             w=rng.integers(-127, 128, (k, k, cin, cout), dtype=np.int8),
             bias=rng.integers(-2000, 2000, cout).astype(np.int32),
             mult=rng.integers(1 << 30, 1 << 31, cout).astype(np.int32),
             # a shift that keeps the output spread over the int8 range
             shift=np.full(cout, round(np.log2(70 * np.sqrt(fan))), np.int32),
             kernel=(k, k), stride=(layer.stride, layer.stride), padding=(layer.pad, layer.pad),
             relu=True, torch_op="Conv2d")
    graph = QuantizedGraph([op], (layer.h, layer.w, cin), 0.05, zp_in)
    x = rng.integers(-128, 128, (1, layer.h, layer.w, cin), dtype=np.int8)
    return graph, x


@dataclasses.dataclass
class _Case:
    """One layer of the suite: its graph, input and golden output (shared by both presets)."""
    set: str
    layer: ConvLayer
    graph: object
    x: np.ndarray
    want: np.ndarray


def run_conv_bench(out_dir: Path, backend: str, log: _Log = print, quick: bool = False,
                   verilator_budget: int = VERILATOR_BUDGET) -> list[str]:
    """Run the convolution layers (and, on Verilator, the model checks) on the small and large
    presets; write ``conv.*``; return the failures (see the module docstring)."""
    layers = QUICK_CONV_LAYERS if quick else CONV_LAYERS
    checks = () if quick or backend != "verilator" else CHECK_LAYERS
    cases = []
    for s, group in (("layer", layers), ("model_check", checks)):
        for layer in group:
            graph, x = conv_layer_graph(layer, layer_seed(layer))
            cases.append(_Case(s, layer, graph, x, graph.reference(x)))
    rows: list[dict] = []
    for preset in CONV_PRESETS:
        rows += _conv_preset(preset, cases, backend, log, verilator_budget)
    _write_rows(rows, out_dir / "conv.csv", out_dir / "conv.json", CONV_FIELDS)
    _plot_conv([r for r in rows if r["set"] == "layer"], out_dir / "conv.png")
    print(_conv_tables(rows))
    log(f"wrote {out_dir / 'conv.csv'}, conv.json and conv.png")
    return _conv_failures(rows)


def layer_seed(layer: ConvLayer) -> int:
    """Return the seed of ``layer``'s random weights and input in the suites."""
    return BENCH_SEED + sum(layer.name.encode()) + 1000 * layer.k + layer.cin


def _conv_preset(preset: str, cases: list[_Case], backend: str, log: _Log,
                 verilator_budget: int) -> list[dict]:
    """Compile and run every case on one preset: isasim runs one at a time, the Verilator runs
    in one simulator process (each then also on isasim, for its model_check row)."""
    cfg = AccelConfig.preset(preset)
    big = dataclasses.replace(cfg, mem_bytes=BIG_MEM_BYTES,
                              name=f"{preset}-mem{BIG_MEM_BYTES >> 20}M")
    rows, vl = [], []
    n = len(cases)
    for i, case in enumerate(cases, 1):
        tag = f"[{preset} {i}/{n}] {case.layer.name} ({case.layer})"
        # the preset's own memory on Verilator where the layer fits and is cheap enough
        if backend == "verilator":
            try:
                prog = compile_graph(case.graph, cfg)
            except CompileError as e:
                prog = None
                if case.set == "model_check":
                    rows.append(_error_row(case, cfg, "verilator", f"CompileError: {e}"))
                    log(f"{tag}: compile error: {e}")
                    continue
            if prog is not None and (case.set == "model_check"
                                     or prog.est_cycles <= verilator_budget):
                vl.append((case, prog))
                log(f"{tag}: queued for Verilator ({prog.est_cycles:,} cycles estimated)")
                continue
        t0 = time.perf_counter()
        try:
            prog = compile_graph(case.graph, big)
        except CompileError as e:
            rows.append(_error_row(case, big, "isasim", f"CompileError: {e}"))
            log(f"{tag}: compile error: {e}")
            continue
        try:
            y, rep = Device(big, "isasim").run(prog, case.x)
        except Exception as e:                          # a device fault names the layer's row
            rows.append(_error_row(case, big, "isasim", f"{type(e).__name__}: {e}"))
            log(f"{tag}: isasim failed: {e}")
            continue
        rows.append(_conv_row(case, big, "isasim", y, rep, time.perf_counter() - t0))
        log(f"{tag}: {_summary(rows[-1])}")
    if vl:
        log(f"[{preset}] running {len(vl)} layer(s) on Verilator "
            f"({sum(p.est_cycles for _, p in vl):,} cycles estimated)")
        try:
            got = Device(cfg, "verilator", log=log).run_many([(p, c.x) for c, p in vl],
                                                             return_exceptions=True)
        except Exception as e:                          # the build or the simulator failed
            got = [e] * len(vl)
        ref = Device(cfg, "isasim").run_many([(p, c.x) for c, p in vl], return_exceptions=True)
        for (case, _), res, iref in zip(vl, got, ref):
            tag = f"[{preset}] {case.layer.name} ({case.layer})"
            if isinstance(res, Exception):
                rows.append(_error_row(case, cfg, "verilator", f"{type(res).__name__}: {res}"))
                log(f"{tag}: Verilator failed: {res}")
                continue
            row = _conv_row(case, cfg, "verilator", *res, res[1].sim_wall_s)
            if case.set == "layer":
                rows.append(row)
                log(f"{tag}: {_summary(row)}")
                row = dict(row, set="model_check")
            _add_check(row, iref, res[1], case.want)
            rows.append(row)
            log(f"{tag}: model check: Verilator {row['total_cycles']} / {row['compute_cycles']} "
                f"cycles, isasim {row['isasim_total_cycles']} / "
                f"{row['isasim_compute_cycles']}: agree {row['cycles_agree']}")
    # layer rows, then model_check rows, each in the order of ``cases``
    order = {c.layer.name: i for i, c in enumerate(cases)}
    return sorted(rows, key=lambda r: (r["set"] != "layer", order[r["layer"]]))


def _conv_row(case: _Case, cfg: AccelConfig, backend: str, y: np.ndarray, rep,
              wall_s: float) -> dict:
    row = _base_row(case, cfg, backend)
    lay = rep.layers[0]
    ss = row["scalesim_ws_cycles"]
    row.update({
        "compute_cycles": lay.compute_cycles, "total_cycles": rep.total.cycles,
        "compute_ratio": round(lay.compute_cycles / ss, 4),
        "e2e_ratio": round(rep.total.cycles / ss, 4),
        "meets_target": lay.compute_cycles / ss <= COMPUTE_TARGET,
        "utilization": round(lay.utilization, 4),
        "dram_bytes": lay.dram_bytes, "min_dram_bytes": lay.min_dram_bytes,
        "dram_ratio": round(lay.dram_bytes / lay.min_dram_bytes, 3),
        "bit_exact": bool(y.shape == case.want.shape and np.array_equal(y, case.want)),
        "sim_cycles_per_s": round(rep.sim_cycles_per_s), "wall_s": round(wall_s, 2),
    })
    if lay.macs != row["macs"]:
        row["error"] = f"the report counts {lay.macs} MACs, the layer has {row['macs']}"
    return row


def _base_row(case: _Case, cfg: AccelConfig, backend: str) -> dict:
    t, k, n = case.layer.gemm
    ss = scalesim_ws_cycles(t, k, n, cfg.rows, cfg.cols)
    return {f: "" for f in CONV_FIELDS} | {
        "set": case.set, "layer": case.layer.name, "preset": cfg.name.split("-")[0],
        "array": f"{cfg.rows}x{cfg.cols}", "shape": str(case.layer), "gemm_t": t, "gemm_k": k,
        "gemm_n": n, "macs": t * k * n, "backend": backend, "mem_bytes": cfg.mem_bytes,
        "scalesim_ws_cycles": ss,
        "scalesim_utilization": round(t * k * n / (ss * cfg.rows * cfg.cols), 4),
    }


def _error_row(case: _Case, cfg: AccelConfig, backend: str, error: str) -> dict:
    return _base_row(case, cfg, backend) | {"error": error, "bit_exact": False}


def _add_check(row: dict, iref, vrep, want: np.ndarray) -> None:
    """Fill ``row``'s isasim columns from the ISA simulator's run of the same program, and
    ``cycles_agree``: total and per-layer cycles, compute cycles, MACs and DRAM bytes equal."""
    if isinstance(iref, Exception):
        row["error"] = f"isasim: {type(iref).__name__}: {iref}"
        row["cycles_agree"] = False
        return
    y, irep = iref
    lay = irep.layers[0]
    row["isasim_compute_cycles"] = lay.compute_cycles
    row["isasim_total_cycles"] = irep.total.cycles
    row["isasim_bit_exact"] = bool(y.shape == want.shape and np.array_equal(y, want))

    def figures(rep):
        return [(r.cycles, r.compute_cycles, r.issued_macs, r.gated_macs, r.dram_bytes)
                for r in [rep.total, *rep.layers]]
    row["cycles_agree"] = figures(irep) == figures(vrep)


def _summary(r: dict) -> str:
    return (f"{r['backend']}: compute {r['compute_cycles']:,} cycles vs SCALE-Sim "
            f"{r['scalesim_ws_cycles']:,} (ratio {r['compute_ratio']:.3f}), end-to-end "
            f"{r['total_cycles']:,} ({r['e2e_ratio']:.3f}), utilization {r['utilization']:.1%}, "
            f"DRAM {r['dram_ratio']:.2f}x min, bit-exact {r['bit_exact']}, {r['wall_s']} s")


def _conv_failures(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        where = f"conv {r['layer']} on {r['array']} ({r['backend']}, {r['set']})"
        if r["error"]:
            out.append(f"{where}: {r['error']}")
        elif not r["bit_exact"] or r["isasim_bit_exact"] is False:
            out.append(f"{where}: output is not bit-exact against golden (graph.reference)")
        if r["cycles_agree"] is False:
            out.append(f"{where}: Verilator and isasim cycle counters differ (Verilator "
                       f"{r['total_cycles']} / {r['compute_cycles']}, isasim "
                       f"{r['isasim_total_cycles']} / {r['isasim_compute_cycles']})")
    return out


def _conv_tables(rows: list[dict]) -> str:
    layer_cols = ["layer", "array", "backend", "gemm_t", "gemm_k", "gemm_n", "compute_cycles",
                  "total_cycles", "scalesim_ws_cycles", "compute_ratio", "e2e_ratio",
                  "utilization", "dram_ratio", "bit_exact", "error"]
    check_cols = ["layer", "array", "shape", "compute_cycles", "isasim_compute_cycles",
                  "total_cycles", "isasim_total_cycles", "cycles_agree", "bit_exact", "error"]
    layers = [r for r in rows if r["set"] == "layer"]
    checks = [r for r in rows if r["set"] == "model_check"]
    text = [f"convolution layers (compute target <= {COMPUTE_TARGET} x SCALE-Sim WS; "
            f"dram_ratio = DRAM bytes / minimum)", _table(layers, layer_cols)]
    if checks:
        text += ["model check (Verilator vs isasim on the same program; verilator figures "
                 "first)", _table(checks, check_cols)]
    return "\n".join(text)


# -- dataflow suite --------------------------------------------------------------------------------
#: SCALE-Sim 3.0's closed form of each dataflow it models, ``f(T, K, N, rows, cols)`` (it has no
#: row-stationary form: an ``rs`` row leaves the SCALE-Sim columns empty).
SCALESIM_FORMS = {"ws": scalesim_ws_cycles, "os": scalesim_os_cycles}
#: The array of the dataflow suite: this preset, with each implemented dataflow.
DATAFLOW_PRESET = "small"
#: The dataflow the suite's ``*_vs_ws`` columns are relative to.
_REF_DATAFLOW = "ws"
#: Held-out digits images per run of the networks in the dataflow suite.
DATAFLOW_BATCH = 16
#: The digits networks of the dataflow suite: workload name -> :mod:`~stamen.sw.apps.networks` class.
DATAFLOW_NETS = {"digits-lenet": "DigitsLeNet", "digits-resnet": "DigitsResNet"}
#: Columns of ``dataflow.csv`` (``dataflow.json`` holds the same rows). One row per workload,
#: layer and dataflow, and for a network a ``total`` row per dataflow. ``gemm_*`` are the layer's
#: GEMM view (``T`` = batch x output pixels, ``K`` = taps x input channels per group, ``N`` =
#: output channels); ``scalesim_cycles`` is the form of the row's dataflow (empty for layers
#: without a GEMM view, pooling and adds); ``compute_ratio = compute_cycles / scalesim_cycles``.
#: ``*_accesses`` and ``e_*`` are the energy model's access counts and energies (units of one
#: MAC; DRAM accesses are ``dram_bytes``), ``energy`` their sum and ``energy_per_mac`` it per
#: issued MAC. ``*_vs_ws`` divide by the ``ws`` row of the same layer. ``bit_exact`` and
#: ``wall_s`` (compile, run and energy estimate) are those of the whole program.
DATAFLOW_FIELDS = (
    "workload", "layer", "kind", "shape", "dataflow", "config", "array", "backend", "mem_bytes",
    "batch", "gemm_t", "gemm_k", "gemm_n", "macs", "issued_macs", "gated_macs",
    "compute_cycles", "total_cycles", "scalesim_cycles", "compute_ratio", "utilization",
    "dram_bytes", "min_dram_bytes", "buffer_accesses", "array_accesses", "rf_accesses",
    "mac_accesses", "e_dram", "e_buffer", "e_array", "e_rf", "e_mac", "energy",
    "energy_per_mac", "compute_vs_ws", "cycles_vs_ws", "energy_vs_ws", "bit_exact", "wall_s",
    "note", "error",
)
_ENERGY_LEVELS = ("dram", "buffer", "array", "rf", "mac")


def dataflow_configs(preset: str = DATAFLOW_PRESET) -> list[AccelConfig]:
    """Return ``preset`` with each dataflow of :data:`~stamen.hw.params.DATAFLOWS` that
    :class:`AccelConfig` accepts (those whose hardware exists), in that order: ``preset`` itself
    for its own dataflow, the preset ``"<preset>-<dataflow>"`` where one exists with that
    dataflow (``small-os``), else ``preset`` with the dataflow replaced, named so."""
    base = AccelConfig.preset(preset)
    known = {base.dataflow: base}
    for df in DATAFLOWS:
        named = PRESETS.get(f"{preset}-{df}")
        if named is not None:
            known.setdefault(named.dataflow, named)
    out = []
    for df in DATAFLOWS:
        try:
            out.append(known.get(df) or base.replace(dataflow=df, name=f"{preset}-{df}"))
        except ValueError:                              # not implemented (yet)
            continue
    return out


@dataclasses.dataclass
class _Workload:
    """A graph and its input for the dataflow suite; ``big_mem``: run with BIG_MEM_BYTES."""
    name: str
    graph: object
    x: np.ndarray
    want: np.ndarray
    big_mem: bool


def _digits_workloads(log: _Log, nets: dict[str, str] = DATAFLOW_NETS,
                      batch: int = DATAFLOW_BATCH) -> list[_Workload]:
    """Train and quantize each of ``nets`` (workload name -> :mod:`~stamen.sw.apps.networks` class);
    return them with their first ``batch`` held-out images."""
    # torch loads only for the suites that train a network (not for gemm / conv)
    from stamen.sw.apps import networks
    from stamen.sw.frontend.quantize import quantize_model
    data = networks.digits_data()
    out = []
    for name, cls in nets.items():
        t0 = time.perf_counter()
        model = networks.train(getattr(networks, cls)(), data)
        qg = quantize_model(model, data[0])
        x = qg.quantize_input(data[2][:batch].numpy())
        out.append(_Workload(name, qg, x, qg.reference(x), False))
        log(f"{name}: trained {cls} (10 epochs, fixed seed), quantized {len(qg.ops)} ops, "
            f"{len(x)} held-out images ({time.perf_counter() - t0:.1f} s)")
    return out


def run_dataflow_bench(out_dir: Path, log: _Log = print, quick: bool = False) -> list[str]:
    """Run the conv suite's layers and the digits networks (``quick``: one small layer) on each
    of :func:`dataflow_configs` on the ISA simulator; write ``dataflow.*``; return the failures
    (compile or device errors, outputs that are not bit-exact against ``graph.reference``)."""
    configs = dataflow_configs()
    works = []
    layers = QUICK_CONV_LAYERS if quick else CONV_LAYERS
    log(f"dataflow suite: {len(layers)} bench conv layer(s) and their golden outputs")
    for layer in layers:
        graph, x = conv_layer_graph(layer, layer_seed(layer))
        works.append(_Workload(layer.name, graph, x, graph.reference(x), True))
    if not quick:
        works += _digits_workloads(log)
    log(f"dataflow suite: {len(works)} workload(s) on {len(configs)} dataflow(s) "
        f"({', '.join(f'{c.dataflow} = {c.name}' for c in configs)}) on isasim")
    rows: list[dict] = []
    n = len(works) * len(configs)
    for i, (w, cfg) in enumerate(((w, c) for w in works for c in configs), 1):
        rows += _dataflow_run(w, cfg, f"[dataflow {i}/{n}] {w.name} {cfg.dataflow}", log)
    # per workload, its layers in program order, the dataflows of a layer side by side
    pos = {key: i for i, key in enumerate(dict.fromkeys((r["workload"], r["layer"])
                                                         for r in rows))}
    dfs = {c.dataflow: i for i, c in enumerate(configs)}
    rows.sort(key=lambda r: (pos[r["workload"], r["layer"]], dfs[r["dataflow"]]))
    _relative_to_ws(rows)
    _write_rows(rows, out_dir / "dataflow.csv", out_dir / "dataflow.json", DATAFLOW_FIELDS)
    _plot_dataflow(rows, out_dir / "dataflow.png")
    print(_dataflow_tables(rows, configs))
    log(f"wrote {out_dir / 'dataflow.csv'}, dataflow.json and dataflow.png")
    return _row_failures(rows, lambda r: f"dataflow {r['workload']} {r['layer']} on "
                                         f"{r['config']} ({r['backend']})")


def _row_failures(rows: list[dict], where) -> list[str]:
    """Return a failure per row with an error or an output that is not bit-exact (rows without
    a device run have ``bit_exact`` None); ``where(row)`` names the row."""
    out = []
    for r in rows:
        if r["error"]:
            out.append(f"{where(r)}: {r['error']}")
        elif r["bit_exact"] is False:
            out.append(f"{where(r)}: output is not bit-exact against golden (graph.reference)")
    return out


def _dataflow_run(w: _Workload, cfg: AccelConfig, tag: str, log: _Log) -> list[dict]:
    """Compile ``w`` for ``cfg``, run it on isasim, estimate its energy; return its rows."""
    if w.big_mem:
        cfg = cfg.replace(mem_bytes=BIG_MEM_BYTES, name=f"{cfg.name}-mem{BIG_MEM_BYTES >> 20}M")
    base = {f: "" for f in DATAFLOW_FIELDS} | {
        "workload": w.name, "dataflow": cfg.dataflow, "config": cfg.name,
        "array": f"{cfg.rows}x{cfg.cols}", "backend": "isasim", "mem_bytes": cfg.mem_bytes,
        "batch": len(w.x)}
    t0 = time.perf_counter()
    try:
        prog = compile_graph(w.graph, cfg, batch=len(w.x))
        y, rep = Device(cfg, "isasim").run(prog, w.x)
        energy = estimate_energy(prog, rep)
    except Exception as e:                              # name the workload in its row
        log(f"{tag}: failed: {type(e).__name__}: {e}")
        return [base | {"layer": "*", "bit_exact": False, "error": f"{type(e).__name__}: {e}"}]
    wall = round(time.perf_counter() - t0, 2)
    exact = bool(y.shape == w.want.shape and np.array_equal(y, w.want))
    qops = {q.name: q for q in w.graph.ops}
    infos = {li.name: li for li in prog.layers}
    reps = [*rep.layers, rep.total] if len(rep.layers) > 1 else list(rep.layers)
    ers = [*energy.layers, energy.total][:len(reps)]
    rows = []
    for lr, er in zip(reps, ers):
        info = infos.get(lr.name) if lr is not rep.total else None
        row = base | {
            "layer": lr.name, "kind": info.kind if info else "total",
            "shape": lr.shape if info else f"{len(rep.layers)} layers",
            "macs": lr.macs, "issued_macs": lr.issued_macs, "gated_macs": lr.gated_macs,
            "compute_cycles": lr.compute_cycles, "total_cycles": lr.cycles,
            "utilization": round(lr.utilization, 4), "dram_bytes": lr.dram_bytes,
            "min_dram_bytes": lr.min_dram_bytes, "bit_exact": exact, "wall_s": wall}
        notes = []
        if info is not None:
            row.update(gemm_t=info.m, gemm_k=info.k, gemm_n=info.n)
            form = SCALESIM_FORMS.get(cfg.dataflow)
            if info.macs and info.macs == info.m * info.k * info.n and form is not None:
                ss = form(info.m, info.k, info.n, cfg.rows, cfg.cols)
                row.update(scalesim_cycles=ss,
                           compute_ratio=round(lr.compute_cycles / ss, 4))
                q = qops.get(lr.name)
                if q is not None and getattr(q, "groups", 1) > 1:
                    notes.append(f"groups={q.groups}: SCALE-Sim of the GEMM T x K x N with "
                                 f"the layer's MACs")
            elif form is None:
                notes.append(f"SCALE-Sim has no {cfg.dataflow} form")
            else:
                notes.append("no GEMM view (no MACs): no SCALE-Sim form")
        row.update({f"{lv}_accesses": getattr(er, lv) for lv in _ENERGY_LEVELS[1:]})
        row.update({f"e_{lv}": getattr(er, f"e_{lv}") for lv in _ENERGY_LEVELS})
        row.update(energy=er.total, energy_per_mac=round(er.per_mac, 4))
        if er.dram != lr.dram_bytes:
            row["error"] = (f"energy model DRAM bytes {er.dram} are not the run's "
                            f"{lr.dram_bytes}")
        row["note"] = "; ".join(notes)
        rows.append(row)
    last = rows[-1]
    where = "" if last["layer"] == w.name else f"{last['layer']}: "
    log(f"{tag}: {where}compute {last['compute_cycles']:,} / total "
        f"{last['total_cycles']:,} cycles, utilization {last['utilization']:.1%}, energy "
        f"{_fmt_energy(last['energy'])} MAC units ({last['energy_per_mac'] or '-'} per MAC), "
        f"bit-exact {exact}, {wall} s")
    return rows


def _fmt_energy(e) -> str:
    return f"{e / 1e6:,.2f}M" if isinstance(e, float) else "-"


def _relative_to_ws(rows: list[dict]) -> None:
    """Fill the ``*_vs_ws`` columns: each row's figure over the ws row of the same layer."""
    ref = {(r["workload"], r["layer"]): r for r in rows
           if r["dataflow"] == _REF_DATAFLOW and not r["error"]}
    pairs = (("compute_vs_ws", "compute_cycles"), ("cycles_vs_ws", "total_cycles"),
             ("energy_vs_ws", "energy"))
    for r in rows:
        w = ref.get((r["workload"], r["layer"]))
        if w is None or r["error"]:
            continue
        for col, src in pairs:
            if r[src] != "" and w[src]:
                r[col] = round(r[src] / w[src], 4)


def _dataflow_tables(rows: list[dict], configs: list[AccelConfig]) -> str:
    cfg = configs[0]
    show = []
    for r in rows:
        name = (r["layer"] if r["layer"] == r["workload"]
                else f"{r['workload']}/{r['layer']}")
        d = {"layer": name, "df": r["dataflow"],
             "compute": r["compute_cycles"], "total": r["total_cycles"],
             "scalesim": r["scalesim_cycles"], "ratio": r["compute_ratio"],
             "util": f"{r['utilization']:.1%}" if r["utilization"] != "" else "",
             "dram_B": r["dram_bytes"], "energy": _fmt_energy(r["energy"])}
        for lv in _ENERGY_LEVELS:
            e = r[f"e_{lv}"]
            d[f"{lv}%"] = f"{100 * e / r['energy']:.1f}" if r["energy"] else ""
        d.update({"E/MAC": r["energy_per_mac"], "cyc/ws": r["cycles_vs_ws"],
                  "E/ws": r["energy_vs_ws"], "exact": r["bit_exact"], "error": r["error"]})
        show.append(d)
    head = (f"dataflow comparison on the {cfg.rows}x{cfg.cols} array ("
            + ", ".join(f"{c.dataflow} = {c.name}" for c in configs)
            + "), on the ISA simulator (isasim), whose cycle model equals the RTL counters "
            "for both dataflows (ideal memory)\n"
            "ratio = compute cycles / SCALE-Sim closed form of the same dataflow; energy: the "
            "sw/analysis/energy.py model, access counts x Eyeriss normalized costs (DRAM 200, buffer 6, "
            "array 2, RF 1, MAC 1), in millions of MAC units; dram% .. mac% its split; E/MAC "
            "per issued MAC; cyc/ws and E/ws: total cycles and energy relative to ws")
    text = [head, _table(show, list(show[0]) if show else [])]
    # per workload (bench layers summed) and dataflow: cycles and energy against ws
    sums: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["error"] or r["energy"] == "":
            continue
        one = len([x for x in rows if x["workload"] == r["workload"]
                   and x["dataflow"] == r["dataflow"]]) == 1
        if not one and r["kind"] != "total":
            continue
        key = ("bench conv layers" if one else r["workload"], r["dataflow"])
        acc = sums.setdefault(key, [0, 0, 0.0])
        acc[0] += r["compute_cycles"]
        acc[1] += r["total_cycles"]
        acc[2] += r["energy"]
    lines = ["summary (sums over the bench conv layers; network totals):"]
    for (name, df), (comp, tot, e) in sums.items():
        ws = sums.get((name, _REF_DATAFLOW))
        rel = (f" = {comp / ws[0]:.3f} / {tot / ws[1]:.3f} / {e / ws[2]:.3f} x ws"
               if ws and df != _REF_DATAFLOW else "")
        lines.append(f"  {name:20s} {df}: compute {comp:>12,} cycles, total {tot:>12,} cycles, "
                     f"energy {_fmt_energy(e):>10s}{rel}")
    return "\n".join(text + lines)


def _plot_dataflow(rows: list[dict], path: Path) -> None:
    """Grouped bars per layer, one bar per dataflow: compute cycles, total cycles and energy,
    each relative to ws."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    good = [r for r in rows if not r["error"] and r["cycles_vs_ws"] != ""]
    groups = list(dict.fromkeys((r["workload"], r["layer"]) for r in good))
    dfs = list(dict.fromkeys(r["dataflow"] for r in good))
    at = {(r["workload"], r["layer"], r["dataflow"]): r for r in good}
    xs = np.arange(len(groups))
    width = 0.8 / max(1, len(dfs))
    panels = (("compute_vs_ws", "compute cycles / ws"), ("cycles_vs_ws", "total cycles / ws"),
              ("energy_vs_ws", "energy / ws"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(7, 0.55 * len(groups) + 2), 10),
                             sharex=True)
    for ax, (col, label) in zip(axes, panels):
        for j, df in enumerate(dfs):
            vals = [at.get((*g, df), {}).get(col, "") for g in groups]
            ax.bar(xs + (j - (len(dfs) - 1) / 2) * width,
                   [v if v != "" else np.nan for v in vals], width, label=df)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=len(dfs), fontsize=8)
    labels = [lay if lay != "total" and w == lay else f"{w}\n{lay}" for w, lay in groups]
    axes[-1].set_xticks(xs, labels, fontsize=7, rotation=60, ha="right")
    array = good[0]["array"] if good else "?"
    axes[0].set_title(f"Stamen dataflows on the {array} array, relative to weight-stationary (ISA "
                      "simulator = RTL counters; energy: Eyeriss normalized access costs)",
                      fontsize=9, loc="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: Bench convolution layers (by name) that :func:`print_dataflow_comparison` runs.
COMPARISON_BENCH_LAYERS = ("conv3x3-32-16x16", "check-5x5-16-9x9")


def print_dataflow_comparison(configs=None, batch: int = 8, log: _Log = print,
                              csv_path: str | Path | None = None) -> list[dict]:
    """Print (through ``log``) and return :func:`~stamen.sw.analysis.energy.compare_dataflows` rows for
    the digits LeNet (trained 10 epochs, seed 0, run on ``batch`` held-out images) and the bench
    convolutions :data:`COMPARISON_BENCH_LAYERS` (one seeded random image each), for
    ``configs`` (:func:`~stamen.sw.analysis.energy.implemented_configs` when None). Writes them as CSV
    (:func:`~stamen.sw.analysis.energy.comparison_csv`) to ``csv_path`` when given."""
    # torch loads only for the suites that train a network (not for gemm / conv)
    from stamen.sw.frontend.fx_graph import quantize_graph
    from stamen.sw.apps.networks import DigitsLeNet, digits_data, train
    configs = implemented_configs() if configs is None else list(configs)
    data = digits_data(0)
    model = train(DigitsLeNet(), data, epochs=10, seed=0)
    qg = quantize_graph(model, data[0])
    rows = compare_dataflows(qg, configs, batch, x=qg.quantize_input(data[2][:batch]),
                             name="digits-lenet")
    layers = {layer.name: layer for layer in (*CONV_LAYERS, *CHECK_LAYERS)}
    for i, lname in enumerate(COMPARISON_BENCH_LAYERS):
        graph, x = conv_layer_graph(layers[lname], seed=i)
        rows += compare_dataflows(graph, configs, 1, x=x, name=lname)
    log(comparison_table(rows))
    if csv_path is not None:
        comparison_csv(rows, csv_path)
    return rows


# -- sparsity suite --------------------------------------------------------------------------------
#: The row-stationary array of the sparsity suite, ``(rows, cols)``: Eyeriss v1's 12 x 14 PEs with
#: ``RsPEConfig()`` (filter / ifmap / psum spads of 224 / 12 / 24 entries).
RS_ARRAY = (12, 14)
#: The layers of the density sweep, on seeded random activations. Their input is the padded one
#: the array sees (``pad = 0``: the 3x3 layers have 16x16 outputs, the stride-2 one 8x8), so
#: the density applies to every activation: at density 1.0 there is nothing to skip.
SPARSITY_LAYERS = (
    ConvLayer("rs-3x3-16-18x18", 18, 18, 16, 16, 3),
    ConvLayer("rs-3x3-32-18x18", 18, 18, 32, 32, 3),
    ConvLayer("rs-5x5-16-20x20", 20, 20, 16, 16, 5),
    ConvLayer("rs-3x3-s2-32-17x17", 17, 17, 32, 32, 3, 2),
)
#: ``quick`` mode: one small layer.
QUICK_SPARSITY_LAYERS = (ConvLayer("rs-3x3-8-10x10", 10, 10, 8, 8, 3),)
#: Activation densities of the sweep (the share of activations that are not the zero point).
SPARSITY_DENSITIES = tuple(i / 10 for i in range(1, 11))
QUICK_SPARSITY_DENSITIES = (0.1, 0.4, 1.0)
#: The zero-skipping target: speedup >= SPARSITY_TARGET at SPARSITY_TARGET_DENSITY (Cnvlutin
#: reports 1.37x on real networks). Reported beside the measured figure, never a failure.
SPARSITY_TARGET = 1.7
SPARSITY_TARGET_DENSITY = 0.4
#: Cnvlutin's average zero-skipping speedup on real networks (a reference line in the plot).
_CNVLUTIN_SPEEDUP = 1.37
#: Held-out digits images whose real activations the ``lenet`` and ``energy`` rows run.
SPARSITY_IMAGES = 20
QUICK_SPARSITY_IMAGES = 4
#: The zero-skipping devices of the sparsity suite: dataflow -> (zero-gating preset,
#: zero-skipping preset).
SKIP_DEVICES = {"rs": ("small-rs", "small-rs-skip"), "ws": ("small", "small-skip")}
#: Columns of ``sparsity.csv`` (``sparsity.json`` holds the same rows). ``set`` is ``"sweep"``
#: (a layer at one ``density`` of random activations, one image; ``seed`` and ``zp`` of its
#: draw), ``"lenet"`` (a digits LeNet conv layer over ``images`` held-out images, and a
#: ``total`` row over its layers) or ``"energy"`` (one dataflow on one LeNet layer).
#: Sweep and lenet rows come in threes, ``dataflow`` ``rs`` and ``ws`` (the devices of
#: :data:`SKIP_DEVICES`, 8x8, compute cycles on isasim) and ``rs-eyeriss`` (:data:`RS_ARRAY`,
#: the models), with zero gating (``*_dense``) and with zero skipping (``*_skip``):
#: ``*_dense`` / ``*_skip`` cycles, utilization (layer MACs / (PEs x cycles), above 1 when
#: skipping beats one MAC slot per PE-cycle), issued MACs and energy; ``speedup =
#: cycles_dense / cycles_skip``, ``skipped_share`` the skipped MACs over all the PEs' MAC slots,
#: ``energy_ratio = energy_skip / energy_dense``, ``dram_bytes_*`` the DRAM bytes moved (devices:
#: the run's counters, so the ``-skip`` presets' zero-row directory shows; rs-eyeriss: the
#: layer's minimum) and ``dram_ratio`` skip / dense, ``meets_target`` (at the target density
#: only), ``measured_density`` the share of the unpadded input that is not the zero point.
#: Energy rows: ``compute_cycles`` (array cycles: the isasim runs of ws / os / rs and of the
#: skipping presets, ws+skip / rs+skip; the
#: model for rs-eyeriss), ``total_cycles`` (isasim runs only, with the DMA), ``dram_bytes`` and
#: ``e_*`` split, and ``*_vs_ws`` relative to the ws row of the same layer.
SPARSITY_FIELDS = (
    "set", "workload", "layer", "shape", "dataflow", "array", "images", "seed", "zp", "density",
    "measured_density", "macs", "cycles_dense", "cycles_skip", "speedup", "meets_target",
    "utilization_dense", "utilization_skip", "issued_macs_dense", "issued_macs_skip",
    "skipped_macs", "skipped_share", "gated_macs_dense", "energy_dense", "energy_skip",
    "energy_ratio", "dram_bytes_dense", "dram_bytes_skip", "dram_ratio", "compute_cycles", "total_cycles", "issued_macs", "gated_macs", "dram_bytes",
    "e_dram", "e_buffer", "e_array", "e_rf", "e_mac", "energy", "energy_per_mac",
    "compute_vs_ws", "cycles_vs_ws", "energy_vs_ws", "bit_exact", "note", "error",
)
_SKIP_SUMS = ("macs", "cycles_dense", "cycles_skip", "issued_macs_dense", "issued_macs_skip",
              "skipped_macs", "gated_macs_dense", "energy_dense", "energy_skip",
              "dram_bytes_dense", "dram_bytes_skip")


def run_sparsity_bench(out_dir: Path, log: _Log = print, quick: bool = False) -> list[str]:
    """Run the density sweep (``quick``: one small layer at three densities), the digits LeNet's
    real activations and the per-dataflow energies of its layers; write ``sparsity.*``; return
    the failures: the rs cycle and energy models disagreeing on the issued, skipped or gated
    MACs, a ws / os run that failed or is not bit-exact. A speedup below the target is
    reported, not a failure."""
    layers = QUICK_SPARSITY_LAYERS if quick else SPARSITY_LAYERS
    densities = QUICK_SPARSITY_DENSITIES if quick else SPARSITY_DENSITIES
    rows: list[dict] = []
    for layer in layers:
        rows += _sweep_rows(layer, densities, log)
    nets = {"digits-lenet": DATAFLOW_NETS["digits-lenet"]}
    work = _digits_workloads(log, nets, QUICK_SPARSITY_IMAGES if quick else SPARSITY_IMAGES)[0]
    rows += _lenet_rows(work, log)
    _relative_to_ws([r for r in rows if r["set"] == "energy"])
    _write_rows(rows, out_dir / "sparsity.csv", out_dir / "sparsity.json", SPARSITY_FIELDS)
    _plot_sparsity(rows, out_dir / "sparsity.png")
    print(_sparsity_tables(rows))
    for r in rows:
        if r["meets_target"] != "":
            at = {x["density"]: x["speedup"] for x in rows
                  if x["set"] == "sweep" and x["layer"] == r["layer"]
                  and x["dataflow"] == r["dataflow"]}
            log(f"{r['layer']} {r['dataflow']} {r['array']}: zero-skipping speedup "
                f"{r['speedup']:.3f}x at density "
                f"{r['density']} (target >= {SPARSITY_TARGET}x: "
                f"{'met' if r['meets_target'] else 'NOT met'}), {at[min(at)]:.3f}x at density "
                f"{min(at)}")
    log(f"wrote {out_dir / 'sparsity.csv'}, sparsity.json and sparsity.png")
    return _row_failures(rows, lambda r: f"sparsity {r['set']} {r['layer']} "
                                         f"{r['dataflow'] or 'rs'} ({r['array']})")


def _sweep_rows(layer: ConvLayer, densities, log: _Log) -> list[dict]:
    """Return the sweep rows of ``layer``: one seeded draw of activations (uniform over the int8
    values other than the zero point), each kept where a seeded uniform number is below the
    density, so a lower density zeroes a superset of the positions; the padding, if any, is
    zero points. Per density: the devices (:data:`SKIP_DEVICES` on isasim) and the
    Eyeriss-mapping model on :data:`RS_ARRAY`."""
    seed = layer_seed(layer)
    graph, _ = conv_layer_graph(layer, seed)
    rng = np.random.default_rng(seed)
    zp = int(graph.ops[0].zp_in[0])
    v = rng.integers(-128, 127, (layer.cin, layer.h, layer.w))
    acts = (v + (v >= zp)).astype(np.int8)
    keep = rng.random(acts.shape)
    p = layer.pad
    shape = RsConvShape(layer.cin, layer.h + 2 * p, layer.w + 2 * p, layer.cout, layer.k,
                        layer.k, layer.stride)
    mapping = map_conv(shape, *RS_ARRAY)
    log(f"sparsity sweep {layer.name} ({layer}): seed {seed}, zp {zp}, "
        f"{len(mapping.passes)} passes of F = {mapping.filters} filters, mapped utilization "
        f"{mapping.mapped_utilization:.1%} of {RS_ARRAY[0]}x{RS_ARRAY[1]}")
    rows = []
    for d in densities:
        x = np.pad(np.where(keep < d, acts, np.int8(zp)), ((0, 0), (p, p), (p, p)),
                   constant_values=zp)
        base = {f: "" for f in SPARSITY_FIELDS} | {
            "set": "sweep", "workload": "random", "layer": layer.name, "shape": str(layer),
            "seed": seed, "zp": zp, "density": d}
        inner = x[:, p:x.shape[1] - p, p:x.shape[2] - p]
        nhwc = np.ascontiguousarray(inner.transpose(1, 2, 0))[None]
        devices = [_device_skip(graph, nhwc, [layer.name], df)[layer.name] for df in SKIP_DEVICES]
        model, _ = _rs_skip(x[None], mapping, zp, (p, p))
        for row in (*(base | f for f in devices), base | model):
            if d == SPARSITY_TARGET_DENSITY:
                row["meets_target"] = row["speedup"] >= SPARSITY_TARGET
            rows.append(row)
            log(f"  density {d:.1f} (measured {row['measured_density']:.3f}) "
                f"{row['dataflow']} {row['array']}: {row['cycles_dense']:,} -> "
                f"{row['cycles_skip']:,} cycles, speedup {row['speedup']:.3f}x, energy "
                f"x{row['energy_ratio']:.3f}")
    return rows


def _device_skip(graph, x: np.ndarray, layers: list[str], dataflow: str) -> dict:
    """Compile ``graph`` for the zero-gating and the zero-skipping preset of ``dataflow``
    (:data:`SKIP_DEVICES`), run the images ``x`` on isasim (its cycles are the RTL's, ``tests/test_hw_matmul.py``) and
    return the sweep / lenet figures of each of ``layers`` by name (compute cycles: the MATMUL
    engine's busy cycles; energy from :func:`~stamen.sw.analysis.energy.estimate_energy`)."""
    figs = {name: {"dataflow": dataflow, "array": "", "images": len(x), "error": ""}
            for name in layers}
    for preset, tag in zip(SKIP_DEVICES[dataflow], ("dense", "skip")):
        cfg = AccelConfig.preset(preset)
        prog = compile_graph(graph, cfg, batch=len(x))
        y, rep = Device(cfg, "isasim").run(prog, x)
        exact = bool(np.array_equal(y, graph.reference(x)))
        energy = estimate_energy(prog, rep)
        by = {r.name: r for r in rep.layers}
        eby = {r.name: r for r in energy.layers}
        for name in layers:
            lr, f = by[name], figs[name]
            f.update({"array": f"{cfg.rows}x{cfg.cols}", f"cycles_{tag}": lr.compute_cycles,
                      f"issued_macs_{tag}": lr.issued_macs, f"energy_{tag}": eby[name].total,
                      f"dram_bytes_{tag}": lr.dram_bytes,
                      "macs": lr.macs, "bit_exact": exact and f.get("bit_exact", True)})
            if tag == "skip":
                f["skipped_macs"] = lr.skipped_macs
            else:
                f["gated_macs_dense"] = lr.gated_macs
            if not exact:
                f["error"] = f"{preset}: output is not bit-exact against golden"
    inputs = {op.name: (op, xin) for op, xin in _conv_inputs(graph, x)}
    for name in layers:
        f = figs[name]
        op, xin = inputs[name]
        f["measured_density"] = round(float(np.mean(xin != op.zp_in[0])), 4)
        if f["issued_macs_dense"] != f["issued_macs_skip"] + f["skipped_macs"]:
            f["error"] = "dense issued MACs are not the skipping ones plus the skipped ones"
        _skip_ratios(f, cfg.rows * cfg.cols)           # both presets are 8x8
    return figs


def _rs_skip(xs: np.ndarray, mapping, zp: int, pad: tuple[int, int]) -> tuple[dict, dict]:
    """Run the padded int8 images ``xs`` ``(N, C, H, W)`` through the row-stationary cycle and
    energy models with the dense (zero-gated) and the compressed (zero-skipping) stream; return
    the sweep / lenet row figures and the energy rows (their ``cycles`` filled in) by
    ``zero_skip``. A disagreement between the two models goes to the ``error`` figure."""
    shape = mapping.shape
    inner = xs[:, :, pad[0]:shape.in_h - pad[0], pad[1]:shape.in_w - pad[1]]
    figs = {"dataflow": "rs-eyeriss", "array": f"{mapping.rows}x{mapping.cols}",
            "images": len(xs),
            "measured_density": round(float(np.mean(inner != zp)), 4),
            "macs": shape.macs * len(xs)}
    energies, errors = {}, []
    for skip, tag in ((False, "dense"), (True, "skip")):
        runs = [rs_conv_cycles(x, mapping, zp, skip) for x in xs]
        er = rs_conv_energy(xs, mapping, zp, skip, pad=pad)
        er.cycles = sum(r.cycles for r in runs)
        issued = sum(r.issued_macs for r in runs)
        if er.issued_macs != issued:
            errors.append(f"{tag}: the energy model issues {er.issued_macs} MACs, the cycle "
                          f"model {issued}")
        figs.update({f"cycles_{tag}": er.cycles, f"issued_macs_{tag}": issued,
                     f"energy_{tag}": er.total, f"dram_bytes_{tag}": er.dram})
        if skip:
            figs["skipped_macs"] = sum(r.skipped_macs for r in runs)
        energies[skip] = er
    figs["gated_macs_dense"] = energies[False].gated_macs
    if figs["issued_macs_dense"] != figs["issued_macs_skip"] + figs["skipped_macs"]:
        errors.append("dense issued MACs are not the skipping ones plus the skipped ones")
    if figs["gated_macs_dense"] != figs["skipped_macs"]:
        errors.append(f"dense gated MACs {figs['gated_macs_dense']} are not the skipped "
                      f"{figs['skipped_macs']}")
    figs["error"] = "; ".join(errors)
    return _skip_ratios(figs, mapping.rows * mapping.cols), energies


def _skip_ratios(row: dict, pes: int) -> dict:
    """Fill ``row``'s speedup, utilization, skipped share and energy ratio from its sums."""
    dense, skip = row["cycles_dense"], row["cycles_skip"]
    row.update(speedup=round(dense / skip, 4),
               utilization_dense=round(row["macs"] / (pes * dense), 4),
               utilization_skip=round(row["macs"] / (pes * skip), 4),
               skipped_share=round(row["skipped_macs"] / row["issued_macs_dense"], 4),
               energy_ratio=round(row["energy_skip"] / row["energy_dense"], 4),
               dram_ratio=round(row["dram_bytes_skip"] / row["dram_bytes_dense"], 4))
    return row


def _conv_inputs(graph, x: np.ndarray) -> list[tuple[object, np.ndarray]]:
    """Return each conv op of ``graph`` with its int8 NHWC input for the images ``x``, the
    golden model's tensors evaluated op by op (as ``graph.reference``)."""
    vals = {"input": x}
    for op in graph.ops:
        vals[op.name] = op.run(*(vals[t] for t in op.inputs))
    return [(op, vals[op.inputs[0]]) for op in graph.ops if op.kind == "conv"]


def _lenet_rows(w: _Workload, log: _Log) -> list[dict]:
    """Return the lenet rows (each conv layer on :data:`RS_ARRAY`, and their total) and the
    energy rows (ws, os, rs and the skipping presets run on isasim on the dataflow suite's
    8x8 array, rs-eyeriss and rs-eyeriss+skip on
    :data:`RS_ARRAY` and on that array) of the workload ``w``."""
    configs = dataflow_configs()
    rs_arrays = list(dict.fromkeys([RS_ARRAY, (configs[0].rows, configs[0].cols)]))
    convs = _conv_inputs(w.graph, w.x)
    pos = {op.name: i for i, (op, _) in enumerate(convs)}
    lenet, energy = [], []
    skipping = [AccelConfig.preset(SKIP_DEVICES[df][1]) for df in ("ws", "rs")]
    for cfg in [*configs, *skipping]:
        tag = f"{cfg.dataflow}+skip" if cfg.zero_skip else cfg.dataflow
        for r in _dataflow_run(w, cfg, f"[sparsity] {w.name} {tag}", log):
            if r["layer"] in pos or r["error"]:
                energy.append({f: r.get(f, "") for f in SPARSITY_FIELDS}
                              | {"set": "energy", "images": r["batch"], "dataflow": tag})
    devices = [_device_skip(w.graph, w.x, list(pos), df) for df in SKIP_DEVICES]
    for op, x in convs:
        zp, (ph, pw), (sy, sx) = op.zp_in[0], op.padding, op.stride
        if sy != sx:
            raise ValueError(f"{op.name}: the row-stationary model takes one stride, not "
                             f"{op.stride}")
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=zp)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        kh, kw, _, cout = op.w.shape
        shape = RsConvShape(*x.shape[1:], cout, kh, kw, sy, op.groups)
        base = {f: "" for f in SPARSITY_FIELDS} | {
            "workload": w.name, "layer": op.name, "zp": zp,
            "shape": f"{x.shape[2] - 2 * ph}x{x.shape[3] - 2 * pw}x{shape.in_ch}->"
                     f"{shape.out_h}x{shape.out_w}x{cout} k{kh}x{kw} s{sy} p{ph}"}
        for rows, cols in rs_arrays:
            figs, ers = _rs_skip(x, map_conv(shape, rows, cols), zp, (ph, pw))
            if (rows, cols) == RS_ARRAY:
                for f in (*(d[op.name] for d in devices), figs):
                    lenet.append(base | f | {"set": "lenet"})
                    log(f"[sparsity] {w.name} {op.name} {f['dataflow']} {f['array']}: density "
                        f"{f['measured_density']:.3f} over {len(x)} images, "
                        f"{f['cycles_dense']:,} -> {f['cycles_skip']:,} cycles, speedup "
                        f"{f['speedup']:.3f}x")
            for skip, er in ers.items():
                energy.append(base | {
                    "set": "energy", "dataflow": "rs-eyeriss+skip" if skip else "rs-eyeriss",
                    "array": figs["array"], "images": len(x), "macs": er.macs,
                    "compute_cycles": er.cycles, "issued_macs": er.issued_macs,
                    "gated_macs": er.gated_macs, "dram_bytes": er.dram, "energy": er.total,
                    "energy_per_mac": round(er.per_mac, 4), "error": figs["error"],
                    "note": "row-stationary models; DRAM: the layer's minimum"}
                    | {f"e_{lv}": getattr(er, f"e_{lv}") for lv in _ENERGY_LEVELS})
    totals = []
    for df in dict.fromkeys(r["dataflow"] for r in lenet):
        mine = [r for r in lenet if r["dataflow"] == df]
        rows, cols = map(int, mine[0]["array"].split("x"))
        total = {f: "" for f in SPARSITY_FIELDS} | {
            "set": "lenet", "workload": w.name, "layer": "total", "dataflow": df,
            "shape": f"{len(mine)} layers", "array": mine[0]["array"], "images": len(w.x)}
        total.update({k: sum(r[k] for r in mine) for k in _SKIP_SUMS})
        totals.append(_skip_ratios(total, rows * cols))
    energy.sort(key=lambda r: pos.get(r["layer"], -1))     # stable: the dataflows in order
    return lenet + totals + energy


def _sparsity_tables(rows: list[dict]) -> str:
    def skip_view(r):
        return {"layer": r["layer"], "df": r["dataflow"], "array": r["array"],
                "density": r["density"], "measured": r["measured_density"],
                "cyc_dense": r["cycles_dense"], "cyc_skip": r["cycles_skip"],
                "speedup": r["speedup"], "util_dense": r["utilization_dense"],
                "util_skip": r["utilization_skip"], "skipped": r["skipped_share"],
                "E_skip/E_dense": r["energy_ratio"], "DRAM_skip/DRAM_dense": r["dram_ratio"],
                "error": r["error"]}
    sweep = [skip_view(r) for r in rows if r["set"] == "sweep"]
    lenet = [skip_view(r) | {"images": r["images"]} for r in rows if r["set"] == "lenet"]
    energy = []
    for r in (r for r in rows if r["set"] == "energy"):
        d = {"layer": r["layer"], "df": r["dataflow"], "array": r["array"],
             "compute": r["compute_cycles"], "dram_B": r["dram_bytes"],
             "energy": _fmt_energy(r["energy"])}
        for lv in _ENERGY_LEVELS:
            e = r[f"e_{lv}"]
            d[f"{lv}%"] = f"{100 * e / r['energy']:.1f}" if r["energy"] else ""
        energy.append(d | {"E/MAC": r["energy_per_mac"], "cyc/ws": r["compute_vs_ws"],
                           "E/ws": r["energy_vs_ws"], "error": r["error"]})
    array = f"{RS_ARRAY[0]}x{RS_ARRAY[1]}"
    return "\n".join([
        f"zero skipping, dense stream with zero gating vs compressed stream, on seeded random "
        f"activations: rs, ws = the devices (small-rs vs small-rs-skip, small vs small-skip on "
        f"isasim, whose cycles are the RTL's; compute cycles), rs-eyeriss = the Eyeriss mapping on the {array} RsArray "
        f"(sw/analysis/eyeriss.py); target speedup >= {SPARSITY_TARGET} at density "
        f"{SPARSITY_TARGET_DENSITY}", _table(sweep, list(sweep[0]) if sweep else []),
        "the digits LeNet's real int8 conv inputs (held-out images, golden model, padded with "
        "the zero point)", _table(lenet, list(lenet[0]) if lenet else []),
        "energy per LeNet layer and dataflow over the same images: ws / os / rs / ws+skip / "
        "rs+skip "
        "compiled and run on isasim (compute cycles; energy from the program and the run's "
        "counters), rs-eyeriss from the row-stationary models (DRAM: the layer's minimum, where "
        "the others count the program's traffic); energy in millions of MAC units; E/MAC per issued MAC (skipped MACs are not "
        "issued); cyc/ws = compute cycles / ws", _table(energy, list(energy[0]) if energy else [])])


def _plot_sparsity(rows: list[dict], path: Path) -> None:
    """Speedup against density (sweep layers as lines, LeNet layers at their measured density)
    and the LeNet layers' energy per dataflow relative to ws."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(8, 10))
    sweep = [r for r in rows if r["set"] == "sweep"]
    styles = {"rs": ("-", "o"), "ws": (":", "^"), "rs-eyeriss": ("--", "s")}
    colors = {name: f"C{i}" for i, name in enumerate(dict.fromkeys(r["layer"] for r in sweep))}
    for name, df in dict.fromkeys((r["layer"], r["dataflow"]) for r in sweep):
        pts = [r for r in sweep if r["layer"] == name and r["dataflow"] == df]
        line, mark = styles.get(df, ("-.", "x"))
        ax.plot([r["density"] for r in pts], [r["speedup"] for r in pts], line + mark,
                color=colors[name], ms=4, label=f"{name} {df} {pts[0]['array']}")
    lenet = [r for r in rows if r["set"] == "lenet" and r["layer"] != "total"]
    for df in dict.fromkeys(r["dataflow"] for r in lenet):
        pts = [r for r in lenet if r["dataflow"] == df]
        ax.plot([r["measured_density"] for r in pts], [r["speedup"] for r in pts],
                styles.get(df, ("", "x"))[1], color="k", mfc="none" if df != "rs" else "k",
                label=f"digits LeNet layers {df} (real activations)")
        if df == "rs":
            for r in pts:
                ax.annotate(r["layer"], (r["measured_density"], r["speedup"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(_CNVLUTIN_SPEEDUP, color="gray", lw=0.8, ls=":",
               label=f"Cnvlutin {_CNVLUTIN_SPEEDUP}x (real networks)")
    ax.plot([SPARSITY_TARGET_DENSITY], [SPARSITY_TARGET], "r*", ms=14,
            label=f"target {SPARSITY_TARGET}x at {SPARSITY_TARGET_DENSITY:.0%} density")
    ax.set_xlabel("activation density (share != zero point)")
    ax.set_ylabel("cycles dense / zero skipping")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Zero skipping: the devices (rs, ws; isasim) and the Eyeriss mapping "
                 f"(rs-eyeriss {RS_ARRAY[0]}x{RS_ARRAY[1]}, sw/analysis/eyeriss.py)", fontsize=9,
                 loc="left")
    good = [r for r in rows if r["set"] == "energy" and r["energy_vs_ws"] != ""]
    layers = list(dict.fromkeys(r["layer"] for r in good))
    kinds = list(dict.fromkeys((r["dataflow"], r["array"]) for r in good))
    at = {(r["layer"], r["dataflow"], r["array"]): r["energy_vs_ws"] for r in good}
    xs = np.arange(len(layers))
    width = 0.8 / max(1, len(kinds))
    for j, (df, arr) in enumerate(kinds):
        bx.bar(xs + (j - (len(kinds) - 1) / 2) * width,
               [at.get((lay, df, arr), np.nan) for lay in layers], width, label=f"{df} {arr}")
    bx.axhline(1.0, color="k", lw=0.8)
    bx.set_xticks(xs, layers)
    bx.set_ylabel("energy / ws")
    bx.set_ylim(0, 1.5)
    bx.legend(fontsize=7, ncol=4, loc="upper center")
    bx.set_title("digits LeNet energy per layer (Eyeriss normalized access costs)", fontsize=9,
                 loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_rows(rows: list[dict], csv_path: Path, json_path: Path,
                fields: tuple[str, ...] | None = None) -> None:
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    cols = [c for c in cols if c != "error" or any(r.get(c) for r in rows)]
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(x, widths)) for x in cells]
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['gemm']}\n{r['array']}" for r in rows]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    ax.bar(xs - 0.2, [r["ratio_vs_scalesim"] for r in rows], 0.4, label="compute / SCALE-Sim")
    ax.bar(xs + 0.2, [r["end_to_end_ratio"] for r in rows], 0.4, label="end-to-end / SCALE-Sim")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.15, color="r", lw=0.8, ls="--", label="target 1.15")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("cycles relative to SCALE-Sim WS")
    ax.set_title("Stamen weight-stationary GEMM cycles vs SCALE-Sim")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_conv(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rows if r["compute_ratio"] != ""]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(rows) + 2), 4.8))
    if rows:
        ax.bar(xs - 0.2, [r["compute_ratio"] for r in rows], 0.4, label="compute / SCALE-Sim")
        ax.bar(xs + 0.2, [r["e2e_ratio"] for r in rows], 0.4,
               label="end-to-end (with DMA) / SCALE-Sim")
        ax.set_xticks(xs, [f"{r['layer']}\n{r['array']} {r['backend']}" for r in rows],
                      fontsize=7, rotation=60, ha="right")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(COMPUTE_TARGET, color="r", lw=0.8, ls="--",
               label=f"compute target {COMPUTE_TARGET}")
    ax.set_ylabel("cycles relative to SCALE-Sim WS")
    ax.set_title("Stamen convolution layers vs SCALE-Sim weight-stationary (T=OH*OW, "
                 "K=KH*KW*Cin, N=Cout)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
