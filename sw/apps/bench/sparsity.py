"""The sparsity suite: zero gating against zero skipping on the devices (``rs``, ``ws``; ISA
simulator) and on the Eyeriss mapping of :data:`RS_ARRAY` (``rs-eyeriss``): a density sweep on
random activations, the digits LeNet's real activations and its layers' energy per dataflow
(``sparsity.csv``, ``sparsity.json``, ``sparsity.png``; ``docs/bench.md``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stamen.hw.params import AccelConfig
from stamen.sw.analysis.energy import estimate_energy, rs_conv_energy
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.analysis.eyeriss import RsConvShape, map_conv, rs_conv_cycles
from stamen.sw.runtime.device import Device
from stamen.sw.apps.bench.common import (ENERGY_LEVELS, ConvLayer, Log, conv_layer_graph,
                                         fmt_energy, layer_seed, row_failures, table,
                                         write_rows)
from stamen.sw.apps.bench.dataflow import (DATAFLOW_NETS, Workload, dataflow_configs,
                                           dataflow_run, digits_workloads, relative_to_ws)

__all__ = ["RS_ARRAY", "SPARSITY_LAYERS", "QUICK_SPARSITY_LAYERS", "SPARSITY_DENSITIES",
           "QUICK_SPARSITY_DENSITIES", "SPARSITY_TARGET", "SPARSITY_TARGET_DENSITY",
           "SPARSITY_IMAGES", "QUICK_SPARSITY_IMAGES", "SKIP_DEVICES", "SPARSITY_FIELDS",
           "run_sparsity_bench"]

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


def run_sparsity_bench(out_dir: Path, log: Log = print, quick: bool = False) -> list[str]:
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
    work = digits_workloads(log, nets, QUICK_SPARSITY_IMAGES if quick else SPARSITY_IMAGES)[0]
    rows += _lenet_rows(work, log)
    relative_to_ws([r for r in rows if r["set"] == "energy"])
    write_rows(rows, out_dir / "sparsity.csv", out_dir / "sparsity.json", SPARSITY_FIELDS)
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
    return row_failures(rows, lambda r: f"sparsity {r['set']} {r['layer']} "
                                        f"{r['dataflow'] or 'rs'} ({r['array']})")


def _sweep_rows(layer: ConvLayer, densities, log: Log) -> list[dict]:
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


def _lenet_rows(w: Workload, log: Log) -> list[dict]:
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
        for r in dataflow_run(w, cfg, f"[sparsity] {w.name} {tag}", log):
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
                    | {f"e_{lv}": getattr(er, f"e_{lv}") for lv in ENERGY_LEVELS})
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
             "energy": fmt_energy(r["energy"])}
        for lv in ENERGY_LEVELS:
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
        f"{SPARSITY_TARGET_DENSITY}", table(sweep, list(sweep[0]) if sweep else []),
        "the digits LeNet's real int8 conv inputs (held-out images, golden model, padded with "
        "the zero point)", table(lenet, list(lenet[0]) if lenet else []),
        "energy per LeNet layer and dataflow over the same images: ws / os / rs / ws+skip / "
        "rs+skip "
        "compiled and run on isasim (compute cycles; energy from the program and the run's "
        "counters), rs-eyeriss from the row-stationary models (DRAM: the layer's minimum, where "
        "the others count the program's traffic); energy in millions of MAC units; E/MAC per issued MAC (skipped MACs are not "
        "issued); cyc/ws = compute cycles / ws", table(energy, list(energy[0]) if energy else [])])


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
