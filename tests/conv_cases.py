"""The one table of convolutional graph cases used by the isasim and Verilator tiers.

Each case builds a :class:`~sw.graph.QuantizedGraph` with seeded random int8 weights, int32 biases,
Q31 multipliers and zero points, and a seeded random int8 NHWC input batch: kernels 1, 3 and 5,
strides 1 and 2, padding 0 and "same", depthwise and grouped convolutions, channel counts that are
not multiples of the array, odd spatial sizes, max / average / global pooling, residual adds and a
Linear layer over a flattened feature map, alone and chained into small networks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stamen.sw import golden
from stamen.sw.graph import QOp, QuantizedGraph

__all__ = ["ConvCase", "CONV_CASES", "make_case", "GraphBuilder"]


class ConvCase(NamedTuple):
    name: str
    seed: int
    batch: int = 1

    def __str__(self) -> str:
        return f"{self.name}-s{self.seed}-b{self.batch}"


class GraphBuilder:
    """Build a :class:`QuantizedGraph` op by op with seeded random parameters.

    ``zp_range`` bounds the output zero points of ops without ReLU (a ReLU output has -128);
    ``extreme`` draws every weight from {-128, 127}."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, c: int, zp: int,
                 zp_range: tuple[int, int] = (-20, 20), extreme: bool = False):
        self.rng = rng
        self.zp_range = zp_range
        self.extreme = extreme
        self.shapes = {"input": (h, w, c)}
        self.zps = {"input": zp}
        self.ops: list[QOp] = []
        self.input_shape = (h, w, c)
        self.input_zp = zp

    def _zp(self, relu: bool) -> int:
        return -128 if relu else int(self.rng.integers(self.zp_range[0], self.zp_range[1] + 1))

    def conv(self, name, src, cout, k, s=1, p=0, groups=1, relu=True):
        h, w, cin = self.shapes[src]
        kh, kw = (k, k) if isinstance(k, int) else k
        oh, ow = golden.conv_out_size(h, kh, s, p), golden.conv_out_size(w, kw, s, p)
        rng = self.rng
        fan = kh * kw * cin // groups
        self._add(QOp(name, "conv", [src], [self.zps[src]], self._zp(relu), [1.0], 1.0,
                      (oh, ow, cout),
                      w=self._weights((kh, kw, cin // groups, cout)),
                      bias=rng.integers(-2000, 2000, cout).astype(np.int32),
                      mult=rng.integers(1 << 30, 1 << 31, cout).astype(np.int32),
                      # a shift that keeps the output spread over the int8 range
                      shift=np.full(cout, round(np.log2(70 * np.sqrt(fan))), np.int32),
                      kernel=(kh, kw), stride=(s, s), padding=(p, p), groups=groups, relu=relu))
        return name

    def _weights(self, shape) -> np.ndarray:
        if self.extreme:
            return self.rng.choice(np.array([-128, 127], np.int8), shape)
        return self.rng.integers(-127, 128, shape, dtype=np.int8)

    def maxpool(self, name, src, k, s, p=0):
        h, w, c = self.shapes[src]
        oh, ow = golden.conv_out_size(h, k, s, p), golden.conv_out_size(w, k, s, p)
        zp = self.zps[src]
        self._add(QOp(name, "maxpool", [src], [zp], zp, [1.0], 1.0, (oh, ow, c), kernel=(k, k),
                      stride=(s, s), padding=(p, p)))
        return name

    def avgpool(self, name, src, k=None, s=1, p=0):
        h, w, c = self.shapes[src]
        kh, kw = (h, w) if k is None else (k, k)
        oh, ow = golden.conv_out_size(h, kh, s, p), golden.conv_out_size(w, kw, s, p)
        mult, shift = golden.quantize_multiplier(1 / (kh * kw * golden.AVGPOOL_GAIN))
        zp = self.zps[src]
        self._add(QOp(name, "avgpool", [src], [zp], zp, [1.0], 1.0, (oh, ow, c), mult=mult,
                      shift=shift, kernel=(kh, kw), stride=(s, s), padding=(p, p)))
        return name

    def add(self, name, a, b, relu=True):
        w1, w2 = (int(v) for v in self.rng.integers(20, 128, 2))
        self._add(QOp(name, "add", [a, b], [self.zps[a], self.zps[b]], self._zp(relu),
                      [1.0, 1.0], 1.0, self.shapes[a], add_w=(w1, w2),
                      mult=int(self.rng.integers(1 << 30, 1 << 31)), shift=6, relu=relu))
        return name

    def linear(self, name, src, n, relu=False):
        h, w, _ = self.shapes[src]
        return self.conv(name, src, n, (h, w), relu=relu)

    def _add(self, op: QOp):
        self.ops.append(op)
        self.shapes[op.name] = op.out_shape
        self.zps[op.name] = op.zp_out

    def graph(self) -> QuantizedGraph:
        return QuantizedGraph(self.ops, self.input_shape, 0.05, self.input_zp)


def _build(name: str, rng: np.random.Generator) -> GraphBuilder:
    def b(h, w, c, zp=None):
        return GraphBuilder(rng, h, w, c, int(rng.integers(-30, 31)) if zp is None else zp)
    if name == "k1":
        g = b(5, 7, 13)
        g.conv("conv", "input", 17, 1)
    elif name == "k3-same":
        g = b(7, 9, 3)
        g.conv("conv", "input", 5, 3, 1, 1)
    elif name == "k3-s2":
        g = b(9, 8, 10)
        g.conv("conv", "input", 12, 3, 2, 1, relu=False)
    elif name == "k5-same":
        g = b(7, 7, 6)
        g.conv("conv", "input", 9, 5, 1, 2)
    elif name == "k5-s2-valid":
        g = b(11, 9, 5)
        g.conv("conv", "input", 11, 5, 2, 0)
    elif name == "depthwise":
        g = b(6, 5, 12)
        g.conv("dw", "input", 12, 3, 1, 1, groups=12)
    elif name == "depthwise-s2":
        g = b(7, 7, 9)
        g.conv("dw", "input", 9, 3, 2, 1, groups=9, relu=False)
    elif name == "grouped":
        g = b(6, 6, 12)
        g.conv("conv", "input", 18, 3, 1, 1, groups=3)
    elif name == "maxpool":
        g = b(8, 7, 11, zp=-128)
        g.maxpool("pool", "input", 2, 2)
        g.maxpool("pool2", "pool", 3, 2, 1)
    elif name == "avgpool":
        g = b(7, 6, 10)
        g.avgpool("pool", "input", 3, 2, 1)
        g.avgpool("gap", "pool")
    elif name == "add":
        g = b(5, 6, 11)
        g.conv("a", "input", 11, 3, 1, 1, relu=False)
        g.add("add", "a", "input")
    elif name == "linear":
        g = b(3, 4, 7)
        g.linear("fc", "input", 10)
    elif name == "lenet":
        g = b(8, 8, 1)
        g.conv("c1", "input", 8, 3, 1, 1)
        g.maxpool("p1", "c1", 2, 2)
        g.conv("c2", "p1", 16, 3, 1, 1)
        g.maxpool("p2", "c2", 2, 2)
        g.linear("fc", "p2", 10)
    elif name == "resnet":
        g = b(8, 8, 1)
        g.conv("stem", "input", 12, 3, 1, 1)
        g.maxpool("pool", "stem", 3, 2, 1)
        g.conv("r1", "pool", 12, 3, 1, 1)
        g.conv("r2", "r1", 12, 3, 1, 1, relu=False)
        g.add("res", "r2", "pool")
        g.conv("dw", "res", 12, 3, 2, 1, groups=12)
        g.conv("pw", "dw", 20, 1)
        g.avgpool("gap", "pw")
        g.linear("fc", "gap", 10)
    # tensor sharing: the patterns of residual networks, with channel counts above the rows of
    # every array in the tables and not a multiple of them
    elif name == "pw-identity":         # a 1x1 conv beside the identity path (issue 13's block)
        g = b(6, 6, 1)
        g.conv("stem", "input", 6, 3, 1, 1)
        g.conv("pw", "stem", 6, 1, relu=False)
        g.add("add", "pw", "stem")
    elif name == "input-add":           # the network input (no halo) as the add's other input
        g = b(5, 7, 11)
        g.conv("pw", "input", 11, 1, relu=False)
        g.add("add", "pw", "input")
    elif name == "two-readers":         # the input read by two convs, joined by an add
        g = b(6, 5, 13)
        g.conv("a", "input", 20, 1, relu=False)
        g.conv("b", "input", 20, 3, 1, 1, relu=False)
        g.add("add", "b", "a")
    elif name == "downsample":          # ResNet's strided block with a 1x1 strided shortcut
        g = b(9, 8, 10)
        g.conv("c1", "input", 14, 3, 2, 1)
        g.conv("c2", "c1", 14, 3, 1, 1, relu=False)
        g.conv("short", "input", 14, 1, 2, 0, relu=False)
        g.add("add", "c2", "short")
        g.maxpool("pool", "add", 2, 2)
    elif name == "fan-out":             # one tensor read by a conv, a pool and both adds
        g = b(6, 6, 3)
        g.conv("h", "input", 18, 3, 1, 1)
        g.conv("pw", "h", 18, 1, relu=False)
        g.add("add1", "pw", "h")
        g.maxpool("pool", "h", 3, 1, 1)
        g.add("add2", "pool", "add1")
        g.add("self", "h", "h")
        g.add("add3", "self", "add2")
    # rows too wide for the scratchpads: the compiler cuts them into segments (issue 15)
    elif name == "wide-rows":           # an output row wider than ACC / OUT and its band than ACT
        g = b(4, 420, 5)
        g.conv("conv", "input", 7, 3, 1, 1)
        g.maxpool("pool", "conv", 3, 2, 1)
    elif name == "wide-stem":           # ResNet's 7x7 / 2 stem on a thin, wide input
        g = b(9, 260, 3)
        g.conv("stem", "input", 8, 7, 2, 3)
    elif name == "big-kernel":          # 9x9 taps: more weight rows than the WT spad holds
        g = b(12, 11, 5)
        g.conv("conv", "input", 6, 9, 1, 4)
    else:
        raise KeyError(name)
    return g


CONV_CASES: list[ConvCase] = [
    ConvCase("k1", 11), ConvCase("k3-same", 12, 2), ConvCase("k3-s2", 13),
    ConvCase("k5-same", 14), ConvCase("k5-s2-valid", 15, 2), ConvCase("depthwise", 16),
    ConvCase("depthwise-s2", 17), ConvCase("grouped", 18), ConvCase("maxpool", 19, 2),
    ConvCase("avgpool", 20), ConvCase("add", 21), ConvCase("linear", 22, 3),
    ConvCase("lenet", 23, 2), ConvCase("resnet", 24, 2),
    ConvCase("pw-identity", 25, 2), ConvCase("input-add", 26, 2), ConvCase("two-readers", 27),
    ConvCase("downsample", 28, 2), ConvCase("fan-out", 29),
    ConvCase("wide-rows", 30), ConvCase("wide-stem", 31), ConvCase("big-kernel", 32),
]


def make_case(case: ConvCase) -> tuple[QuantizedGraph, np.ndarray]:
    """Return the case's graph and its seeded int8 NHWC input batch."""
    rng = np.random.default_rng(case.seed)
    g = _build(case.name, rng).graph()
    x = rng.integers(-128, 128, (case.batch, *g.input_shape), dtype=np.int8)
    return g, x
