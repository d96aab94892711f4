"""GEMM benchmarks: measured cycles against SCALE-Sim's weight-stationary closed form.

For each GEMM ``M x K x N`` and array ``R x C`` the device runs ``(x - zp) @ w`` as one program; the
figures come from the device's own counters (Verilator backend) or from the ISA simulator's cycle model.
SCALE-Sim 3.0's weight-stationary compute cycles are ``ceil(K/R)*ceil(N/C)*(2R+C+T-2) - 1`` with
``T = M`` rows streamed. Results go to ``<out>/gemm.csv``, ``<out>/gemm.json`` and ``<out>/gemm.png``.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from stamen.hw.params import AccelConfig

__all__ = ["scalesim_ws_cycles", "scalesim_os_cycles", "GEMM_SHAPES", "run_bench"]

#: (M, K, N) of the benchmark GEMMs.
GEMM_SHAPES = ((64, 64, 64), (128, 256, 64), (256, 64, 256))
BENCH_SEED = 2026


def scalesim_ws_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 weight-stationary compute cycles of an M x K by K x N GEMM on rows x cols."""
    return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2) - 1


def scalesim_os_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 output-stationary compute cycles of the same GEMM."""
    return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2) - 1


def run_bench(out_dir: Path, backend: str = "verilator", log=print, quick: bool = False) -> int:
    """Run every benchmark GEMM on the small (8x8) and large (16x16) presets; return 0 on success."""
    from stamen.sw import golden
    from stamen.sw.compiler import compile_gemm
    from stamen.sw.runtime import Device

    out_dir.mkdir(parents=True, exist_ok=True)
    shapes = GEMM_SHAPES[:1] if quick else GEMM_SHAPES
    rng = np.random.default_rng(BENCH_SEED)
    rows = []
    for preset in ("small", "large"):
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
    with open(out_dir / "gemm.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "gemm.json").write_text(json.dumps(rows, indent=2) + "\n")
    _plot(rows, out_dir / "gemm.png")
    _print_table(rows)
    log(f"wrote {out_dir / 'gemm.csv'}, gemm.json and gemm.png")
    return 0 if all(r["bit_exact"] for r in rows) else 1


def _print_table(rows: list[dict]) -> None:
    cols = ["array", "gemm", "compute_cycles", "scalesim_ws_cycles", "ratio_vs_scalesim",
            "utilization", "end_to_end_cycles", "array_busy_share", "sim_cycles_per_s",
            "bit_exact"]
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.rjust(w) for v, w in zip(x, widths)))


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
