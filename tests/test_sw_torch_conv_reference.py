"""Stamen's conv / pool / add numerics against PyTorch's own quantized operators.

Graphs come from ``stamen.sw.frontend.fx_graph.quantize_graph`` on randomly initialised float layers and on
the two digits CNNs; ``stamen.sw.frontend.torch_ref`` runs each op with PyTorch's quantized kernels
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
Measured (seed 0, QNNPACK; full-range fbgemm on an AVX512-VNNI CPU gave the same): LeNet logits
differ by 1 LSB in 2.8 % (never by 2), argmax agrees on 100 %; ResNet logits by 1 LSB in 29.6 % and by 2 in 0.5 %, argmax 99.7 %.
Fractions are logged per op (``-o log_cli=true --log-cli-level=INFO``).

Engines and CPUs. Every test names its engine and ``stamen.sw.frontend.torch_ref`` sets it for the call
(and restores the previous one), so nothing depends on the machine's default engine:

* ``qnnpack`` (the reference engine, also of the demo): full-range activations (``0 .. 255`` as
  quint8), exactly as Stamen quantizes. Its x86 kernels need only SSE2 and accumulate exactly in
  int32, so it gives the same bits on every x86 CPU (AVX2-only, AVX-512, AVX512-VNNI).
* ``fbgemm``: only on graphs quantized with ``reduce_range=True`` (activations of 128 levels, as
  PyTorch's own x86 observers). Without AVX512-VNNI (every AVX2 CPU, e.g. AMD EPYC up to Zen 3,
  and AVX-512 CPUs without VNNI) fbgemm adds pairs of uint8 x int8 products in a saturating int16,
  which full-range activations overflow (up to 37 LSB off); reduced-range ones cannot
  (``2 * 129 * 127 < 2**15``), and ``torch_ref`` refuses an fbgemm input that could. The
  single-op tests use it; the digits CNNs, whose tensors fed forward drift past the calibrated
  range, run on qnnpack only.
  ``test_reference_is_the_same_on_every_x86_cpu`` runs both engines in a child process forced
  onto fbgemm's AVX2 kernels and ATen's generic (non-vector) kernels
  (``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``, ``ATEN_CPU_CAPABILITY=default``) and requires the same
  bits as this process. (``ATEN_CPU_CAPABILITY=avx2`` alone does not change fbgemm's kernels.)
"""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from stamen.sw import golden
from stamen.sw.frontend.fx_graph import quantize_graph
from stamen.sw.graph import QOp
from stamen.sw.apps.networks import DigitsLeNet, DigitsResNet, digits_data, train
from stamen.sw.frontend.torch_ref import (REFERENCE_ENGINE, quantized_engine, torch_quantized_forward,
                                 torch_quantized_op)

from torch_fixtures import ENGINES, engine, one_torch_thread  # noqa: F401 (fixtures)

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


def _rr(engine: str) -> bool:
    """Whether ``engine`` is compared on reduced-range activations (fbgemm; see the docstring)."""
    return engine == "fbgemm"


def _check_op(op: QOp, xs: list[np.ndarray], what: str, engine: str) -> float:
    """Run ``op`` in golden and PyTorch (``engine``) on the same int8 inputs; assert at most 1 LSB
    apart, and only where the two real values straddle a rounding boundary. Return the fraction
    that differ."""
    expected = op.run(*xs)
    got = torch_quantized_op(op, *xs, engine=engine)
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


def _check_graph_ops(qg, xq: np.ndarray, what: str, engine: str) -> dict:
    """Feed every op of ``qg`` golden's inputs and check it against PyTorch; return fractions."""
    vals = {"input": xq}
    fracs = {}
    for op in qg.ops:
        xs = [vals[t] for t in op.inputs]
        fracs[op.name] = _check_op(op, xs, f"{what} op {op.name} ({op.kind})", engine)
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
    qg = quantize_graph(model, x, reduce_range=_rr(engine))
    (op,) = qg.ops
    _check_op(op, [qg.quantize_input(x)], f"seed={seed} engine={engine} conv {spec} "
                                          f"shift {op.shift.min()}..{op.shift.max()}", engine)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_linear_within_1_lsb(seed, engine):
    """Flatten + Linear (an H x W conv, run by PyTorch as a quantized Linear) and Linear + ReLU."""
    model = _init(nn.Sequential(nn.Flatten(), nn.Linear(5 * 3 * 7, 19), nn.ReLU(),
                                nn.Linear(19, 10)), seed)
    x = _images(seed, 32, (5, 3, 7), offset=0.5)
    qg = quantize_graph(model, x, reduce_range=_rr(engine))
    _check_graph_ops(qg, qg.quantize_input(x), f"seed={seed} engine={engine} linear", engine)


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
    qg = quantize_graph(model, x, reduce_range=_rr(engine))
    conv, op = qg.ops
    xq = qg.quantize_input(x)
    _check_op(op, [conv.run(xq)], f"seed={seed} engine={engine} {name}", engine)


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
    qg = quantize_graph(model, x, reduce_range=_rr(engine))
    fracs = _check_graph_ops(qg, qg.quantize_input(x), f"seed={seed} engine={engine} add "
                                                         f"relu={relu} residual={residual}", engine)
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


@pytest.fixture
def ref_engine():
    """The digits CNNs are compared with the reference engine only: their tensors, fed forward,
    drift a few LSB past a reduced calibration range (the ResNet's ``pw`` input reaches quint8
    137), beyond what fbgemm computes exactly on AVX2, so fbgemm is covered by the single ops."""
    if REFERENCE_ENGINE not in ENGINES:
        pytest.skip("PyTorch lacks the qnnpack engine")
    return REFERENCE_ENGINE


def test_digits_cnn_ops_within_1_lsb(digits_graph, digits, ref_engine):
    """Every op of both digits CNNs, fed golden's input, is within 1 LSB of PyTorch's."""
    name, qg = digits_graph
    engine = ref_engine
    fracs = _check_graph_ops(qg, qg.quantize_input(digits[2]), f"seed=0 engine={engine} {name}",
                             engine)
    log.info("seed=0 %s per-op differing fractions: %s", name,
             ", ".join(f"{k} {100 * v:.2f}%" for k, v in fracs.items()))


def test_digits_cnn_end_to_end(digits_graph, digits, ref_engine):
    """Each side feeding itself forward: logits within 2 LSB, argmax agrees on >= 98 %."""
    name, qg = digits_graph
    engine = ref_engine
    x_test, y_test = digits[2], digits[3].numpy()
    expected = qg.reference(qg.quantize_input(x_test))
    got = torch_quantized_forward(qg, x_test, engine=engine)
    np.testing.assert_array_equal(
        torch_quantized_forward(qg, qg.quantize_input(x_test), engine=engine), got)
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


# -- the engine is explicit, and the reference is the same on every x86 CPU ----------------------
class _Mixed(nn.Module):
    """Every op kind of the reference: conv, depthwise and grouped conv, add, pools, Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.g = nn.Conv2d(8, 8, 1, groups=2)
        self.pool = nn.AvgPool2d(2)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 10)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(self.g(self.dw(h)) + h)
        return self.fc(self.mp(self.pool(h)).flatten(1))


def _mixed_graphs():
    """Return ``{engine: (graph, int8 input)}``: full range for qnnpack, reduced for fbgemm."""
    model = _init(_Mixed(), 3)
    x = _images(3, 32, (3, 8, 8), offset=0.7) * 2
    out = {}
    for engine in ENGINES:
        qg = quantize_graph(model, x, reduce_range=_rr(engine))
        out[engine] = qg, qg.quantize_input(x)
    return out


def test_reference_engine_is_explicit():
    """The machine's default engine does not matter: the reference sets qnnpack (or the engine
    asked for) for the call and restores the previous one afterwards."""
    if REFERENCE_ENGINE not in ENGINES:
        pytest.skip("PyTorch lacks the qnnpack engine")
    qg, xq = _mixed_graphs()[REFERENCE_ENGINE]
    with quantized_engine(REFERENCE_ENGINE):
        want = torch_quantized_forward(qg, xq)
    for default in ENGINES:
        with quantized_engine(default):
            np.testing.assert_array_equal(torch_quantized_forward(qg, xq), want,
                                          err_msg=f"default engine {default}")
            assert torch.backends.quantized.engine == default
    with pytest.raises(ValueError, match="must be one of"):
        torch_quantized_forward(qg, xq, engine="onednn-typo")


@pytest.mark.skipif("fbgemm" not in ENGINES, reason="PyTorch lacks the fbgemm engine")
def test_fbgemm_refuses_full_range_activations():
    """Full-range activations would saturate fbgemm's int16 pair sums on AVX2 CPUs: refused."""
    qg, xq = _mixed_graphs()["qnnpack" if "qnnpack" in ENGINES else "fbgemm"]
    if int(xq.max()) + 128 <= 129:
        pytest.skip("the full-range input happens to be small")
    with pytest.raises(ValueError, match="reduced range"):
        torch_quantized_forward(qg, xq, engine="fbgemm")


_CHILD = """
import json, sys, warnings
import numpy as np
from stamen.sw.graph import QuantizedGraph
from stamen.sw.frontend.torch_ref import torch_quantized_forward
warnings.filterwarnings("ignore")
d = sys.argv[1]
for engine in json.loads(sys.argv[2]):
    meta = json.load(open(f"{d}/{engine}.json"))
    arrays = dict(np.load(f"{d}/{engine}.npz"))
    xq = arrays.pop("__input__")
    qg = QuantizedGraph.from_dict(meta, arrays)
    np.save(f"{d}/{engine}_out.npy", torch_quantized_forward(qg, xq, engine=engine))
"""


def test_reference_is_the_same_on_every_x86_cpu(tmp_path):
    """Both engines give the same bits in a child process on fbgemm's AVX2 kernels (the ones of
    an AVX2-only CPU such as an AMD EPYC Zen 2/3) and ATen's generic kernels as here."""
    if not ENGINES:
        pytest.skip("PyTorch has no quantized engine")
    graphs = _mixed_graphs()
    want = {}
    for engine, (qg, xq) in graphs.items():
        meta, arrays = qg.to_dict()
        (tmp_path / f"{engine}.json").write_text(json.dumps(meta))
        np.savez(tmp_path / f"{engine}.npz", __input__=xq, **arrays)
        want[engine] = torch_quantized_forward(qg, xq, engine=engine)
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2", ATEN_CPU_CAPABILITY="default",
               OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), json.dumps(list(graphs))],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for engine, expected in want.items():
        got = np.load(tmp_path / f"{engine}_out.npy")
        np.testing.assert_array_equal(got, expected, err_msg=f"engine {engine}: the reference "
                                      f"differs on AVX2 fbgemm / generic ATen kernels")
