"""Differential graph fuzzer: random layer graphs on random legal configurations, golden vs isasim.

One seed fixes everything: the configuration (rows and cols from 1 to 8 in any combination,
dataflow ws / os / rs, zero skipping, compressed activations, scratchpad depths small enough to
force tiling), the graph (convolutions incl. grouped, depthwise and strided ones, max and average
pooling, residual adds with every sharing pattern: a tensor read by several ops, the network input
in an add, ``add(x, x)``, 1x1 convs beside identity paths; Linear chains), int8 extremes and
random zero points, and the input batch. The compiler may refuse a graph with a ``CompileError``
(a layer too large for small scratchpads); anything else, or one differing element, is a failure
that names the seed.

    python tests/graph_fuzz.py --n 1000 [--seed S]     # seeds S .. S+N-1, prints a summary
    python tests/graph_fuzz.py --replay SEED           # one seed, with its config and graph

``tests/test_graph_fuzz.py`` runs a fast slice in ``make test``; ``make fuzz`` runs many.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from conv_cases import GraphBuilder
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import compile_model
from stamen.sw.errors import CompileError
from stamen.sw.graph import QuantizedGraph
from stamen.sw.runtime.device import Device

__all__ = ["random_config", "random_graph", "FuzzResult", "run_seed", "main"]

_DIMS = (1, 2, 3, 4, 6, 8)


def random_config(rng: np.random.Generator) -> AccelConfig:
    """Return a random legal configuration (often non-square, with small scratchpads)."""
    rows, cols = (int(v) for v in rng.choice(_DIMS, 2))
    dataflow = str(rng.choice(["ws", "ws", "os", "rs"]))
    zero_skip = dataflow != "os" and bool(rng.random() < 0.4)
    compress = rows == cols and rows in (2, 4, 8) and bool(rng.random() < 0.3)
    return AccelConfig(name=f"fuzz-{rows}x{cols}-{dataflow}", rows=rows, cols=cols,
                       dataflow=dataflow, zero_skip=zero_skip, compress_acts=compress,
                       act_spad_depth=int(rng.choice([128, 256, 512, 1024])),
                       wt_spad_depth=int(rng.choice([64, 256, 512])),
                       acc_spad_depth=int(rng.choice([128, 256, 512])),
                       out_spad_depth=int(rng.choice([64, 128, 256, 512])),
                       param_spad_depth=int(rng.choice([3, 12, 48])),
                       zero_gate=bool(rng.random() < 0.8))


def _shape(b: GraphBuilder, t: str) -> tuple[int, int, int]:
    return b.shapes[t]


def _conv(b: GraphBuilder, rng, name: str, src: str) -> str:
    h, w, c = _shape(b, src)
    k = int(rng.choice([k for k in (1, 3, 5) if k <= max(h, w)] or [1]))
    kh, kw = min(k, h + 2 * (k // 2)), min(k, w + 2 * (k // 2))
    s = int(rng.choice([1, 1, 2]))
    same = rng.random() < 0.6
    p = k // 2 if same and kh == kw == k else 0
    if kh > h + 2 * p or kw > w + 2 * p:
        k, p = 1, 0
    kind = rng.random()
    if kind < 0.2:
        groups, cout = c, c                                   # depthwise
    elif kind < 0.35:
        divs = [g for g in range(2, c + 1) if c % g == 0]
        groups = int(rng.choice(divs)) if divs else 1
        cout = groups * int(rng.integers(1, 4))
    else:
        groups, cout = 1, int(rng.integers(1, 25))
    return b.conv(name, src, cout, k, s, p, groups=groups, relu=bool(rng.random() < 0.5))


def _pool(b: GraphBuilder, rng, name: str, src: str) -> str:
    h, w, _ = _shape(b, src)
    if rng.random() < 0.5:
        k = int(min(rng.choice([2, 3]), h, w))
        pad = 1 if k == 3 and b.zps[src] == -128 and rng.random() < 0.5 else 0
        return b.maxpool(name, src, k, int(rng.choice([1, 2])), pad)
    if rng.random() < 0.3:
        return b.avgpool(name, src)                           # global
    k = int(min(rng.choice([2, 3]), h, w))
    return b.avgpool(name, src, k, int(rng.choice([1, 2])), int(k == 3 and rng.random() < 0.5))


def _add(b: GraphBuilder, rng, name: str, src: str) -> str:
    """Add ``src`` to another tensor of its shape: itself, the input, or a fresh 1x1 conv."""
    same = [t for t in b.shapes if t != src and b.shapes[t] == b.shapes[src]]
    r = rng.random()
    if same and r < 0.5:
        other = str(rng.choice(same))
    elif r < 0.65:
        other = src                                           # add(x, x)
    else:
        other = b.conv(f"{name}_pw", src, _shape(b, src)[2], 1, relu=bool(rng.random() < 0.5))
    a, c = (src, other) if rng.random() < 0.5 else (other, src)
    return b.add(name, a, c, relu=bool(rng.random() < 0.5))


def random_graph(rng: np.random.Generator) -> QuantizedGraph:
    """Return a random graph of 1 to 6 ops (and the 1x1 convs some adds bring)."""
    extreme = bool(rng.random() < 0.15)
    zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    b = GraphBuilder(rng, int(rng.integers(1, 11)), int(rng.integers(1, 11)),
                     int(rng.integers(1, 25)), zp, zp_range=(-128, 127), extreme=extreme)
    cur = "input"
    for i in range(int(rng.integers(1, 7))):
        h, w, _ = _shape(b, cur)
        if (h, w) == (1, 1):                                  # a Linear chain from here on
            if rng.random() < 0.3:
                cur = _add(b, rng, f"add{i}", cur)
            else:
                cur = b.linear(f"fc{i}", cur, int(rng.integers(1, 30)),
                               relu=bool(rng.random() < 0.5))
            continue
        r = rng.random()
        if r < 0.45:
            cur = _conv(b, rng, f"conv{i}", cur)
        elif r < 0.65:
            cur = _pool(b, rng, f"pool{i}", cur)
        elif r < 0.85:
            cur = _add(b, rng, f"add{i}", cur)
        else:
            cur = b.linear(f"fc{i}", cur, int(rng.integers(1, 30)), relu=bool(rng.random() < 0.5))
    return b.graph()


@dataclass
class FuzzResult:
    seed: int
    outcome: str            # "pass", "refused" (a CompileError), "mismatch" or "crash"
    detail: str = ""


def describe(seed: int) -> str:
    """Return the configuration and graph of ``seed``, one op per line."""
    rng = np.random.default_rng(seed)
    cfg, graph = random_config(rng), random_graph(rng)
    lines = [f"seed {seed}: {cfg.name} {cfg.to_dict()}", f"input {graph.input_shape} "
             f"zp {graph.input_zp}"]
    for op in graph.ops:
        lines.append(f"  {op.name}: {op.kind} {op.inputs} -> {op.out_shape} k{op.kernel} "
                     f"s{op.stride} p{op.padding} g{op.groups} zp_in {op.zp_in} "
                     f"zp_out {op.zp_out} relu {op.relu}")
    return "\n".join(lines)


def run_seed(seed: int) -> FuzzResult:
    """Compile and run the graph of ``seed`` on isasim and compare it with golden."""
    rng = np.random.default_rng(seed)
    cfg = random_config(rng)
    graph = random_graph(rng)
    batch = int(rng.integers(1, 4))
    x = rng.integers(-128, 128, (batch, *graph.input_shape), dtype=np.int8)
    if rng.random() < 0.2:                                    # int8 extremes
        x = rng.choice(np.array([-128, 127], np.int8), x.shape)
    try:
        prog = compile_model(graph, cfg, batch=batch)
    except CompileError as e:
        return FuzzResult(seed, "refused", str(e))
    want = graph.reference(x)
    try:
        y, _ = Device(cfg, "isasim").run(prog, x.reshape(prog.input_shape))
    except Exception as e:  # noqa: BLE001 - any exception is a finding
        return FuzzResult(seed, "crash", f"{type(e).__name__}: {e}")
    want = want.reshape(prog.output_shape)
    if y.shape != want.shape or not np.array_equal(y, want):
        n = int((y != want).sum()) if y.shape == want.shape else -1
        return FuzzResult(seed, "mismatch", f"{n} of {want.size} elements differ")
    return FuzzResult(seed, "pass")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="graphs to run (default 200)")
    ap.add_argument("--seed", type=int, default=None,
                    help="first seed (default: from the clock, printed)")
    ap.add_argument("--replay", type=int, default=None, metavar="SEED",
                    help="run one seed and print its configuration and graph")
    args = ap.parse_args(argv)
    if args.replay is not None:
        print(describe(args.replay))
        r = run_seed(args.replay)
        print(f"{r.outcome}: {r.detail}" if r.detail else r.outcome)
        return int(r.outcome in ("mismatch", "crash"))
    first = int(time.time()) % 1_000_000 if args.seed is None else args.seed
    print(f"graph fuzz: seeds {first} .. {first + args.n - 1}", flush=True)
    outcomes, bad = Counter(), []
    t0 = time.time()
    for seed in range(first, first + args.n):
        r = run_seed(seed)
        outcomes[r.outcome] += 1
        if r.outcome in ("mismatch", "crash"):
            bad.append(r)
            print(f"  seed {seed}: {r.outcome}: {r.detail}  (replay: python tests/graph_fuzz.py "
                  f"--replay {seed})", flush=True)
        done = seed - first + 1
        if done % 50 == 0:
            print(f"  {done}/{args.n} graphs, {dict(outcomes)}, {time.time() - t0:.0f} s",
                  flush=True)
    print(f"graph fuzz: {args.n} graphs in {time.time() - t0:.0f} s: {dict(outcomes)}")
    return int(bool(bad))


if __name__ == "__main__":
    sys.exit(main())
