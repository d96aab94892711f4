"""Stamen's conv / pool / add numerics against PyTorch's own quantized operators.

Graphs come from ``stamen.sw.frontend.quantize_graph`` on randomly initialised float layers and on
the two digits CNNs; ``stamen.sw.torch_ref`` runs each op with PyTorch's quantized kernels
(``torch.ao.nn.quantized.Conv2d`` / ``ConvReLU2d`` / ``Linear``, quantized ``max_pool2d``,
``avg_pool2d``, ``adaptive_avg_pool2d``, ``torch.ops.quantized.add``) with the graph's integers,
scales and zero points. Fed the same int8 input, every op agrees with golden within 1 LSB
everywhere, and only next to a rounding boundary. The residual differences and why:

* ``conv`` (and Linear): PyTorch (fbgemm, QNNPACK) requantizes in float32 with one rounding,
  ``lrintf((acc + bias) * s_in * s_w / s_out)`` (half to even); golden rounds twice in gemmlowp
  fixed point (``srdhm`` by a Q31 multiplier, then a rounding right shift, half away from zero), so
  a value within ``2**-(shift + 1)`` of a tie ``k + 0.5`` can round the other way, and exact ties
  and float32 error can flip too. Measured: 0 .. 0.6 % of the outputs of the random layers
  (shift 6..10), 0.06 .. 0.28 % of the digits CNNs' convs.
* ``avgpool``: the same double rounding, but ``mult, shift = quantize_multiplier(1 / (KH * KW))``
  has a tiny shift, so the window is wide: for a 2x2 window ``1/4 = 2**30 * 2**-31 * 2**-1``,
  ``srdhm`` already rounds ``sum / 2`` and the 1-bit shift rounds again, so every sum ``4k + 1``
  (``k + 0.25``) becomes ``k + 1`` in golden (0.75 LSB off; PyTorch gives ``k``), plus the ties
  ``4k + 2``. Measured: 2x2 26 .. 28 %, 3x3 10 .. 11 %, 2x3 7 .. 14 %, the ResNet's 4x4
  global average 9.5 % (shift 3), a 9x11 global average 0 .. 2 %.
* ``add``: PyTorch adds the dequantized float inputs exactly (``s1 (x1 - zp1) + s2 (x2 - zp2)``,
  then one float rounding); golden uses the int8 weight ratio ``w2 / w1 ~= s2 / s1``, which moves
  the value by up to ``|w2 / w1 - s2 / s1| * 255 * s1 / s_out`` LSB (``op.extra["add_error_lsb"]``,
  0.001 .. 0.08 here) before the same double rounding. Measured 0.36 .. 1.7 %.
* ``maxpool`` is exact (0 differences).

The check: wherever the two differ, the golden real value (before rounding) and PyTorch's real
value straddle a rounding boundary ``k + 0.5``, up to the double-rounding window ``2**-shift`` and a
float32 allowance (``2**-20`` of the magnitude of the terms, plus one bias count for fbgemm's float
bias). End to end, each side feeding its own outputs forward, a 1-LSB difference in a tensor of a
larger scale than the next op's output becomes several LSB there (the ResNet's ``conv_b`` output
has twice the scale of the add's, and its intermediate tensors differ by up to 6 LSB), so the
digits logits are checked within 2 LSB and the argmax must agree on >= 98 % of the images.
Measured (seed 0, fbgemm and QNNPACK alike): LeNet logits differ by 1 LSB in 2.8 % (never by 2),
argmax agrees on 100 %; ResNet logits by 1 LSB in 29.6 % and by 2 in 0.5 %, argmax 99.7 %.
Fractions are logged per op (``-o log_cli=true --log-cli-level=INFO``).
"""
import logging

import numpy as np
import pytest
import torch
from torch import nn

from stamen.sw import golden
from stamen.sw.frontend import quantize_graph
from stamen.sw.graph import QOp
from stamen.sw.models import DigitsLeNet, DigitsResNet, digits_data, train
from stamen.sw.torch_ref import torch_quantized_forward, torch_quantized_op

from torch_fixtures import engine, one_torch_thread  # noqa: F401 (fixtures)

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs on one intra-op thread."""


def _real_values(op: QOp, xs: list[np.ndarray]):
    """Return golden's exact value before rounding, PyTorch's ideal real value (both in output
    LSB, without the zero point), the magnitude of the summed terms, and the shift."""
    if op.kind == "conv":
        acc = golden.conv2d(xs[0], op.w, op.zp_in[0], op.stride, op.padding, op.groups)
        acc = acc.astype(np.int64) + op.bias.astype(np.int64)
        mult, shift = op.mult.astype(np.int64), op.shift.astype(np.float64)
        scale = op.s_in[0] * np.asarray(op.extra["s_w"]) / op.s_out
        v_g = (acc * mult).astype(np.float64) / 2.0 ** (31 + shift)
        v_t = acc * scale
        mag = (np.abs(acc) + 1) * scale            # + 1: fbgemm re-rounds the float bias
        return v_g, v_t, mag, shift
    if op.kind == "avgpool":
        c = xs[0].shape[-1]
        ones = np.ones((*op.kernel, 1, c), np.int8)
        total = golden.conv2d(xs[0], ones, op.zp_in[0], op.stride, op.padding, c)
        total = total.astype(np.int64)
        v_g = (total * op.mult).astype(np.float64) / 2.0 ** (31 + op.shift)
        v_t = total / (op.kernel[0] * op.kernel[1])
        return v_g, v_t, np.abs(v_t), float(op.shift)
    if op.kind == "add":
        t1 = xs[0].astype(np.int64) - op.zp_in[0]
        t2 = xs[1].astype(np.int64) - op.zp_in[1]
        w1, w2 = op.add_w
        v_g = ((t1 * w1 + t2 * w2) * op.mult).astype(np.float64) / 2.0 ** (31 + op.shift)
        v_t = (op.s_in[0] * t1 + op.s_in[1] * t2) / op.s_out
        mag = (np.abs(op.s_in[0] * t1) + np.abs(op.s_in[1] * t2)) / op.s_out
        return v_g, v_t, mag, float(op.shift)
    raise ValueError(op.kind)


def _check_op(op: QOp, xs: list[np.ndarray], what: str) -> float:
    """Run ``op`` in golden and PyTorch on the same int8 inputs; assert at most 1 LSB apart, and
    only where the two real values straddle a rounding boundary. Return the fraction that differ."""
    expected = op.run(*xs)
    got = torch_quantized_op(op, *xs)
    assert got.shape == expected.shape, f"{what}: shapes {got.shape} != {expected.shape}"
    diff = got.astype(np.int16) - expected.astype(np.int16)
    worst = int(np.abs(diff).max())
    assert worst <= 1, f"{what}: PyTorch and golden differ by {worst} LSB (> 1)"
    if op.kind == "maxpool":
        assert worst == 0, f"{what}: max-pool must be exact"
    elif worst:
        v_g, v_t, mag, shift = _real_values(op, xs)
        idx = np.nonzero(diff)
        shift = np.broadcast_to(shift, v_g.shape)[idx]
        a, b = v_g[idx], v_t[idx]
        slack = mag[idx] * 2.0 ** -20 + 1e-9
        lo = np.minimum(a, b) - 2.0 ** -shift - slack
        hi = np.maximum(a, b) + 2.0 ** -shift + slack
        no_tie = np.floor(hi - 0.5) < np.ceil(lo - 0.5)
        assert not no_tie.any(), (
            f"{what}: {int(no_tie.sum())} elements differ although golden's {a[no_tie][:3]} and "
            f"PyTorch's {b[no_tie][:3]} real values are not next to the same rounding boundary")
    frac = float(np.mean(diff != 0))
    log.info("%s: %d of %d elements (%.3f%%) differ by 1 LSB", what, int(np.sum(diff != 0)),
             diff.size, 100 * frac)
    return frac


def _check_graph_ops(qg, xq: np.ndarray, what: str) -> dict:
    """Feed every op of ``qg`` golden's inputs and check it against PyTorch; return fractions."""
    vals = {"input": xq}
    fracs = {}
    for op in qg.ops:
        xs = [vals[t] for t in op.inputs]
        fracs[op.name] = _check_op(op, xs, f"{what} op {op.name} ({op.kind})")
        vals[op.name] = op.run(*xs)
    return fracs


def _init(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            with torch.no_grad():                 # larger biases than the default init
                m.bias.normal_(0, 0.3)
    return model.eval()


def _images(seed: int, n: int, shape, offset: float) -> torch.Tensor:
    """Normal images shifted by ``offset``, so the input zero point varies between cases."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g) + offset


# (cin, cout, kernel, stride, padding, groups, H, W, bias, activation)
CONVS = [
    (3, 5, 1, 1, 0, 1, 7, 9, True, None),
    (3, 5, 3, 1, "same", 1, 9, 7, False, "relu"),
    (5, 7, 5, 2, 2, 1, 11, 9, True, None),
    (5, 7, 5, 1, 0, 1, 9, 9, True, "relu"),
    (6, 6, 3, 2, 1, 6, 9, 9, False, "relu6"),         # depthwise, stride 2
    (7, 7, 5, 1, "same", 7, 7, 7, True, "relu"),      # depthwise 5x5
    (7, 7, 3, 1, 1, 7, 5, 11, True, None),            # depthwise 3x3
    (4, 6, 3, 1, 0, 2, 7, 7, True, None),             # grouped
    (9, 13, 1, 2, 0, 1, 9, 9, False, "relu"),
    (11, 3, 3, 2, 0, 1, 8, 6, True, None),
    (17, 10, 3, 1, 1, 1, 5, 5, True, "relu6"),
]
ACTS = {None: nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("spec", CONVS, ids=lambda s: "c{}-{}k{}s{}p{}g{}-{}x{}-b{}-{}".format(*s))
def test_random_conv_within_1_lsb(spec, seed, engine):
    cin, cout, k, stride, pad, groups, h, w, bias, act = spec
    model = _init(nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=bias),
                                ACTS[act]()), seed)
    x = _images(seed, 8, (cin, h, w), offset=[0.0, 1.5][seed % 2])
    qg = quantize_graph(model, x)
    (op,) = qg.ops
    _check_op(op, [qg.quantize_input(x)], f"seed={seed} engine={engine} conv {spec} "
                                          f"shift {op.shift.min()}..{op.shift.max()}")


@pytest.mark.parametrize("seed", [0, 1])
def test_random_linear_within_1_lsb(seed, engine):
    """Flatten + Linear (an H x W conv, run by PyTorch as a quantized Linear) and Linear + ReLU."""
    model = _init(nn.Sequential(nn.Flatten(), nn.Linear(5 * 3 * 7, 19), nn.ReLU(),
                                nn.Linear(19, 10)), seed)
    x = _images(seed, 32, (5, 3, 7), offset=0.5)
    qg = quantize_graph(model, x)
    _check_graph_ops(qg, qg.quantize_input(x), f"seed={seed} engine={engine} linear")


POOLS = [
    ("maxpool2", lambda: nn.MaxPool2d(2)),
    ("maxpool3s2p1", lambda: nn.MaxPool2d(3, 2, 1)),
    ("maxpool3s1", lambda: nn.MaxPool2d((3, 2), 1)),
    ("avgpool2", lambda: nn.AvgPool2d(2)),
    ("avgpool3s1p1", lambda: nn.AvgPool2d(3, 1, 1)),
    ("avgpool3s2", lambda: nn.AvgPool2d(3, 2)),
    ("avgpool2x3s1", lambda: nn.AvgPool2d((2, 3), 1)),
    ("gap", lambda: nn.AdaptiveAvgPool2d(1)),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pool", POOLS, ids=[p[0] for p in POOLS])
def test_pools_within_1_lsb(pool, seed, engine):
    """Pools after a conv + ReLU (a non-negative input, as a padded max-pool needs), odd sizes."""
    name, build = pool
    model = _init(nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), build()), seed)
    x = _images(seed, 8, (3, 11, 9), offset=0.3)
    qg = quantize_graph(model, x)
    conv, op = qg.ops
    xq = qg.quantize_input(x)
    _check_op(op, [conv.run(xq)], f"seed={seed} engine={engine} {name}")


class _TwoBranch(nn.Module):
    def __init__(self, relu: bool, residual: bool):
        super().__init__()
        self.relu, self.residual = relu, residual
        self.a = nn.Conv2d(5, 5, 3, padding=1)
        self.b = nn.Conv2d(5, 5, 1)

    def forward(self, x):
        y = self.a(x) + (x if self.residual else self.b(x))
        return torch.relu(y) if self.relu else y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("relu,residual", [(False, False), (True, False), (True, True)],
                         ids=["add", "add_relu", "residual_relu"])
def test_add_within_1_lsb(relu, residual, seed, engine):
    model = _init(_TwoBranch(relu, residual), seed)
    x = _images(seed, 8, (5, 7, 9), offset=0.5 * seed)
    qg = quantize_graph(model, x)
    fracs = _check_graph_ops(qg, qg.quantize_input(x), f"seed={seed} engine={engine} add "
                                                         f"relu={relu} residual={residual}")
    add = qg.op("add")
    log.info("seed=%d add: w1/w2 = %d/%d, ratio error bound %.4f LSB, %.3f%% differ", seed,
             *add.add_w, add.extra["add_error_lsb"], 100 * fracs["add"])


@pytest.fixture(scope="module")
def digits():
    return digits_data(0)


@pytest.fixture(scope="module", params=[DigitsLeNet, DigitsResNet], ids=lambda c: c.__name__)
def digits_graph(request, digits):
    model = train(request.param(), digits, epochs=10, seed=0)
    return request.param.__name__, quantize_graph(model, digits[0])


def test_digits_cnn_ops_within_1_lsb(digits_graph, digits, engine):
    """Every op of both digits CNNs, fed golden's input, is within 1 LSB of PyTorch's."""
    name, qg = digits_graph
    fracs = _check_graph_ops(qg, qg.quantize_input(digits[2]), f"seed=0 engine={engine} {name}")
    log.info("seed=0 %s per-op differing fractions: %s", name,
             ", ".join(f"{k} {100 * v:.2f}%" for k, v in fracs.items()))


def test_digits_cnn_end_to_end(digits_graph, digits, engine):
    """Each side feeding itself forward: logits within 2 LSB, argmax agrees on >= 98 %."""
    name, qg = digits_graph
    x_test, y_test = digits[2], digits[3].numpy()
    expected = qg.reference(qg.quantize_input(x_test))
    got = torch_quantized_forward(qg, x_test)
    np.testing.assert_array_equal(torch_quantized_forward(qg, qg.quantize_input(x_test)), got)
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    what = f"seed=0 engine={engine} {name}"
    assert diff.max() <= 2, f"{what}: logits differ by {diff.max()} LSB end to end (> 2)"
    agree = float(np.mean(got[:, 0, 0].argmax(1) == expected[:, 0, 0].argmax(1)))
    assert agree >= 0.98, f"{what}: argmax agrees on only {agree:.1%} of images"
    acc_g = float(np.mean(expected[:, 0, 0].argmax(1) == y_test))
    acc_t = float(np.mean(got[:, 0, 0].argmax(1) == y_test))
    log.info("%s end to end: logits differ by 1 LSB in %.2f%%, by 2 in %.2f%% of %d; argmax "
             "agrees on %.1f%%; accuracy golden %.2f%%, PyTorch quantized %.2f%%", what,
             100 * np.mean(diff == 1), 100 * np.mean(diff == 2), diff.size, 100 * agree,
             100 * acc_g, 100 * acc_t)
