"""The one table of GEMM / Linear cases used by every tier (golden, isasim, Amaranth, Verilator).

A case is ``(name, m, k, n, density, seed)`` plus ``fill``: ``"random"`` (uniform int8, a fraction
``1 - density`` of activations set to the real zero ``zp`` and of weights set to 0), ``"extreme"``
(only -128 / 127 activations and weights, zp = -128 or 127 so |a - zp| reaches 255) or ``"zero"``
(all activations at the zero point). ``small`` marks cases cheap enough for the slow RTL tiers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Case", "CASES", "SMALL_CASES", "make_gemm", "make_linear"]


class Case(NamedTuple):
    name: str
    m: int
    k: int
    n: int
    density: float
    seed: int
    fill: str = "random"
    small: bool = True

    def __str__(self) -> str:
        return f"{self.name}-m{self.m}k{self.k}n{self.n}-d{self.density}-s{self.seed}"


CASES: list[Case] = [
    Case("one", 1, 1, 1, 1.0, 1),
    Case("m1", 1, 16, 8, 1.0, 2),
    Case("k1", 8, 1, 8, 1.0, 3),
    Case("n1", 8, 16, 1, 1.0, 4),
    Case("exact8", 8, 8, 8, 1.0, 5),
    Case("exact16", 16, 16, 16, 1.0, 6),
    Case("odd", 5, 13, 7, 1.0, 7),
    Case("odd2", 17, 23, 9, 1.0, 8),
    Case("odd3", 33, 15, 19, 1.0, 9),
    Case("not16", 24, 40, 20, 1.0, 10),
    Case("sparse50", 16, 32, 16, 0.5, 11),
    Case("sparse10", 12, 24, 12, 0.1, 12),
    Case("dense_big", 64, 64, 64, 1.0, 13, small=False),
    Case("extreme", 9, 17, 11, 1.0, 14, fill="extreme"),
    Case("extreme_big", 20, 200, 12, 1.0, 15, fill="extreme", small=False),
    Case("zeros", 8, 16, 8, 1.0, 16, fill="zero"),
    Case("zeros_odd", 3, 5, 6, 0.0, 17, fill="zero"),
    Case("tall", 37, 3, 5, 0.8, 18),
    Case("wide", 3, 5, 70, 0.8, 19),
    # tiny preset (2x4 array, acc/out depth 256, wt depth 256, act depth 512): M tiling ...
    Case("mtile_tiny", 300, 10, 6, 0.7, 20, small=False),
    # ... and K chunking (ceil(300/2) = 150 k-tiles x 2 rows > 256 weight rows)
    Case("kchunk_tiny", 20, 300, 5, 0.7, 21, small=False),
    # small preset (8x8, wt 1024, act 1024): 160 k-tiles x 8 rows > 1024 weight rows
    Case("kchunk_small", 10, 1280, 10, 0.9, 22, small=False),
    Case("big_all", 70, 140, 33, 0.6, 23, small=False),
]

SMALL_CASES = [c for c in CASES if c.small]


def make_gemm(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    """Return ``(x int8 (m, k), w int8 (k, n), zp)`` for ``case`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(case.seed)
    if case.fill == "extreme":
        zp = int(rng.choice([-128, 127]))
        x = rng.choice(np.array([-128, 127], np.int8), size=(case.m, case.k))
        w = rng.choice(np.array([-128, 127], np.int8), size=(case.k, case.n))
        return x.astype(np.int8), w.astype(np.int8), zp
    zp = int(rng.integers(-128, 128))
    x = rng.integers(-128, 128, size=(case.m, case.k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(case.k, case.n), dtype=np.int8)
    if case.fill == "zero":
        x[:] = zp
    else:
        x[rng.random((case.m, case.k)) >= case.density] = zp
        w[rng.random((case.k, case.n)) >= case.density] = 0
    return x, w, zp


def make_linear(case: Case) -> dict:
    """Return a random quantized Linear layer for ``case``: a dict with ``x, w, bias, mult, shift,
    zp_in, zp_out, relu`` (``mult`` in [2**30, 2**31), ``shift`` in 0..31), the arguments of
    ``golden.linear``."""
    x, w, zp = make_gemm(case)
    rng = np.random.default_rng(case.seed + 1_000_003)
    n = case.n
    # a shift that keeps typical outputs in the int8 range, jittered over the whole 0..31 span
    typical = max(1.0, 128.0 * 64.0 * np.sqrt(case.k))
    base = int(np.clip(np.round(np.log2(typical / 64.0)), 0, 31))
    shift = np.clip(base + rng.integers(-3, 4, n), 0, 31).astype(np.int32)
    shift[rng.random(n) < 0.1] = rng.integers(0, 32)                   # some extremes
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64).astype(np.int32)
    bias = rng.integers(-(1 << 16), 1 << 16, n, dtype=np.int64).astype(np.int32)
    if case.fill == "extreme":
        bias[::2] = np.int32(-(1 << 31))
        bias[1::2] = np.int32((1 << 31) - 1)
    zp_out = int(rng.integers(-128, 128))
    relu = bool(case.seed % 2)
    return {"x": x, "w": w, "bias": bias, "mult": mult, "shift": shift, "zp_in": zp,
            "zp_out": zp_out, "relu": relu}
