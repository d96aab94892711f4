"""The convolution suite: AlexNet conv2-conv5, a 3x3 32->32 convolution and ResNet-18's 3x3
layers, each a one-op graph compiled and run on the small and large weight-stationary presets,
against SCALE-Sim's weight-stationary closed form of the layer's GEMM view (``conv.csv``,
``conv.json``, ``conv.png``; ``docs/bench.md``). Full-size layers run on the ISA simulator with
:data:`~stamen.sw.apps.bench.common.BIG_MEM_BYTES` of memory unless they fit a Verilator run;
``model_check`` rows compare Verilator's cycle counters with the ISA simulator's.

A row fails the suite when it has an error (compile or device), an output that is not bit-exact
against ``graph.reference``, or a model check whose Verilator and isasim counters differ.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from stamen.hw.params import AccelConfig
from stamen.sw.errors import CompileError
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.runtime.device import Device
from stamen.sw.apps.bench.common import (BIG_MEM_BYTES, CONV_PRESETS, VERILATOR_BUDGET,
                                         ConvLayer, Log, conv_layer_graph, layer_seed,
                                         scalesim_ws_cycles, table, write_rows)

__all__ = ["COMPUTE_TARGET", "CONV_LAYERS", "CHECK_LAYERS", "QUICK_CONV_LAYERS", "CONV_FIELDS",
           "run_conv_bench"]

#: Upper bound of ``compute_cycles / SCALE-Sim WS cycles`` for a convolution layer.
COMPUTE_TARGET = 1.2
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


@dataclasses.dataclass
class _Case:
    """One layer of the suite: its graph, input and golden output (shared by both presets)."""
    set: str
    layer: ConvLayer
    graph: object
    x: np.ndarray
    want: np.ndarray


def run_conv_bench(out_dir: Path, backend: str, log: Log = print, quick: bool = False,
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
    write_rows(rows, out_dir / "conv.csv", out_dir / "conv.json", CONV_FIELDS)
    _plot_conv([r for r in rows if r["set"] == "layer"], out_dir / "conv.png")
    print(_conv_tables(rows))
    log(f"wrote {out_dir / 'conv.csv'}, conv.json and conv.png")
    return _conv_failures(rows)


def _conv_preset(preset: str, cases: list[_Case], backend: str, log: Log,
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
            f"dram_ratio = DRAM bytes / minimum)", table(layers, layer_cols)]
    if checks:
        text += ["model check (Verilator vs isasim on the same program; verilator figures "
                 "first)", table(checks, check_cols)]
    return "\n".join(text)


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
