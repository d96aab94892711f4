"""What the benchmark suites share: the convolution layer type and its seeded random graph,
SCALE-Sim's closed forms, the device memory of the full-size layers, and the writers of every
suite's CSV / JSON files and text tables (``docs/bench.md``)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from stamen.sw.graph import QOp, QuantizedGraph

__all__ = ["BENCH_SEED", "CONV_PRESETS", "BIG_MEM_BYTES", "VERILATOR_BUDGET", "Log", "ConvLayer",
           "scalesim_ws_cycles", "scalesim_os_cycles", "SCALESIM_FORMS", "ENERGY_LEVELS",
           "conv_layer_graph", "layer_seed", "row_failures", "fmt_energy", "write_rows", "table"]

BENCH_SEED = 2026
#: Presets every suite runs on.
CONV_PRESETS = ("small", "large")
#: Device memory of the ISA-simulator configuration of the full-size layers.
BIG_MEM_BYTES = 16 << 20
#: Default cycle budget of a full-size layer on Verilator (about 1.5 s at 700k cycles/s).
VERILATOR_BUDGET = 1_000_000
#: A suite's progress log: called with one line of text.
Log = Callable[[str], None]


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


def scalesim_ws_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 weight-stationary compute cycles of an M x K by K x N GEMM on rows x cols."""
    return math.ceil(k / rows) * math.ceil(n / cols) * (2 * rows + cols + m - 2) - 1


def scalesim_os_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim 3.0 output-stationary compute cycles of the same GEMM."""
    return math.ceil(m / rows) * math.ceil(n / cols) * (k + rows + cols - 2) - 1


#: SCALE-Sim 3.0's closed form of each dataflow it models, ``f(T, K, N, rows, cols)`` (it has no
#: row-stationary form: an ``rs`` row leaves the SCALE-Sim columns empty).
SCALESIM_FORMS = {"ws": scalesim_ws_cycles, "os": scalesim_os_cycles}
#: The energy model's levels (the ``e_*`` columns of the dataflow and sparsity suites).
ENERGY_LEVELS = ("dram", "buffer", "array", "rf", "mac")


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


def layer_seed(layer: ConvLayer) -> int:
    """Return the seed of ``layer``'s random weights and input in the suites."""
    return BENCH_SEED + sum(layer.name.encode()) + 1000 * layer.k + layer.cin


def row_failures(rows: list[dict], where) -> list[str]:
    """Return a failure per row with an error or an output that is not bit-exact (rows without
    a device run have ``bit_exact`` None); ``where(row)`` names the row."""
    out = []
    for r in rows:
        if r["error"]:
            out.append(f"{where(r)}: {r['error']}")
        elif r["bit_exact"] is False:
            out.append(f"{where(r)}: output is not bit-exact against golden (graph.reference)")
    return out


def fmt_energy(e) -> str:
    return f"{e / 1e6:,.2f}M" if isinstance(e, float) else "-"


def write_rows(rows: list[dict], csv_path: Path, json_path: Path,
               fields: tuple[str, ...] | None = None) -> None:
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields or rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=2) + "\n")


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    cols = [c for c in cols if c != "error" or any(r.get(c) for r in rows)]
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(x, widths)) for x in cells]
    return "\n".join(lines)
