"""The dataflow suite: the conv suite's layers and the digits LeNet and ResNet on each dataflow
of the 8x8 array (:func:`dataflow_configs`), on the ISA simulator: cycles against SCALE-Sim's
form of that dataflow, utilization, DRAM bytes and the energy estimate, relative to ``ws``
(``dataflow.csv``, ``dataflow.json``, ``dataflow.png``; ``docs/bench.md``); and
:func:`print_dataflow_comparison`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from stamen.hw.params import DATAFLOWS, PRESETS, AccelConfig
from stamen.sw.analysis.energy import (compare_dataflows, comparison_csv, comparison_table,
                                       estimate_energy, implemented_configs)
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.runtime.device import Device
from stamen.sw.apps.bench.common import (BIG_MEM_BYTES, ENERGY_LEVELS, SCALESIM_FORMS, Log,
                                         conv_layer_graph, fmt_energy, layer_seed,
                                         row_failures, table, write_rows)
from stamen.sw.apps.bench.conv import CHECK_LAYERS, CONV_LAYERS, QUICK_CONV_LAYERS

__all__ = ["DATAFLOW_PRESET", "DATAFLOW_BATCH", "DATAFLOW_NETS", "DATAFLOW_FIELDS",
           "dataflow_configs", "Workload", "digits_workloads", "run_dataflow_bench",
           "dataflow_run", "relative_to_ws", "COMPARISON_BENCH_LAYERS",
           "print_dataflow_comparison"]

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
class Workload:
    """A graph and its input for the dataflow suite; ``big_mem``: run with BIG_MEM_BYTES."""
    name: str
    graph: object
    x: np.ndarray
    want: np.ndarray
    big_mem: bool


def digits_workloads(log: Log, nets: dict[str, str] = DATAFLOW_NETS,
                     batch: int = DATAFLOW_BATCH) -> list[Workload]:
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
        out.append(Workload(name, qg, x, qg.reference(x), False))
        log(f"{name}: trained {cls} (10 epochs, fixed seed), quantized {len(qg.ops)} ops, "
            f"{len(x)} held-out images ({time.perf_counter() - t0:.1f} s)")
    return out


def run_dataflow_bench(out_dir: Path, log: Log = print, quick: bool = False) -> list[str]:
    """Run the conv suite's layers and the digits networks (``quick``: one small layer) on each
    of :func:`dataflow_configs` on the ISA simulator; write ``dataflow.*``; return the failures
    (compile or device errors, outputs that are not bit-exact against ``graph.reference``)."""
    configs = dataflow_configs()
    works = []
    layers = QUICK_CONV_LAYERS if quick else CONV_LAYERS
    log(f"dataflow suite: {len(layers)} bench conv layer(s) and their golden outputs")
    for layer in layers:
        graph, x = conv_layer_graph(layer, layer_seed(layer))
        works.append(Workload(layer.name, graph, x, graph.reference(x), True))
    if not quick:
        works += digits_workloads(log)
    log(f"dataflow suite: {len(works)} workload(s) on {len(configs)} dataflow(s) "
        f"({', '.join(f'{c.dataflow} = {c.name}' for c in configs)}) on isasim")
    rows: list[dict] = []
    n = len(works) * len(configs)
    for i, (w, cfg) in enumerate(((w, c) for w in works for c in configs), 1):
        rows += dataflow_run(w, cfg, f"[dataflow {i}/{n}] {w.name} {cfg.dataflow}", log)
    # per workload, its layers in program order, the dataflows of a layer side by side
    pos = {key: i for i, key in enumerate(dict.fromkeys((r["workload"], r["layer"])
                                                         for r in rows))}
    dfs = {c.dataflow: i for i, c in enumerate(configs)}
    rows.sort(key=lambda r: (pos[r["workload"], r["layer"]], dfs[r["dataflow"]]))
    relative_to_ws(rows)
    write_rows(rows, out_dir / "dataflow.csv", out_dir / "dataflow.json", DATAFLOW_FIELDS)
    _plot_dataflow(rows, out_dir / "dataflow.png")
    print(_dataflow_tables(rows, configs))
    log(f"wrote {out_dir / 'dataflow.csv'}, dataflow.json and dataflow.png")
    return row_failures(rows, lambda r: f"dataflow {r['workload']} {r['layer']} on "
                                        f"{r['config']} ({r['backend']})")


def dataflow_run(w: Workload, cfg: AccelConfig, tag: str, log: Log) -> list[dict]:
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
        row.update({f"{lv}_accesses": getattr(er, lv) for lv in ENERGY_LEVELS[1:]})
        row.update({f"e_{lv}": getattr(er, f"e_{lv}") for lv in ENERGY_LEVELS})
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
        f"{fmt_energy(last['energy'])} MAC units ({last['energy_per_mac'] or '-'} per MAC), "
        f"bit-exact {exact}, {wall} s")
    return rows


def relative_to_ws(rows: list[dict]) -> None:
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
             "dram_B": r["dram_bytes"], "energy": fmt_energy(r["energy"])}
        for lv in ENERGY_LEVELS:
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
    text = [head, table(show, list(show[0]) if show else [])]
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
                     f"energy {fmt_energy(e):>10s}{rel}")
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


def print_dataflow_comparison(configs=None, batch: int = 8, log: Log = print,
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
