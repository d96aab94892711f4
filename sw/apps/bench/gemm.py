"""The GEMM suite: each ``M x K x N`` of :data:`GEMM_SHAPES` runs ``(x - zp) @ w`` as one
program on the small and large weight-stationary presets; compute and end-to-end cycles against
SCALE-Sim's weight-stationary closed form (``gemm.csv``, ``gemm.json``, ``gemm.png``;
``docs/bench.md``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import compile_gemm
from stamen.sw.runtime.device import Device
from stamen.sw.apps.bench.common import (BENCH_SEED, CONV_PRESETS, Log, scalesim_ws_cycles,
                                         table, write_rows)

__all__ = ["GEMM_SHAPES", "run_gemm_bench"]

#: (M, K, N) of the benchmark GEMMs.
GEMM_SHAPES = ((64, 64, 64), (128, 256, 64), (256, 64, 256))


def run_gemm_bench(out_dir: Path, backend: str, log: Log = print,
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
    write_rows(rows, out_dir / "gemm.csv", out_dir / "gemm.json")
    _plot(rows, out_dir / "gemm.png")
    print(table(rows, ["array", "gemm", "compute_cycles", "scalesim_ws_cycles",
                       "ratio_vs_scalesim", "utilization", "end_to_end_cycles",
                       "array_busy_share", "sim_cycles_per_s", "bit_exact"]))
    log(f"wrote {out_dir / 'gemm.csv'}, gemm.json and gemm.png")
    return [f"GEMM {r['gemm']} on {r['array']} ({backend}): output is not bit-exact against "
            f"golden" for r in rows if not r["bit_exact"]]


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
