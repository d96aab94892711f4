"""The CNN front end (``stamen.sw.frontend.fx_graph.quantize_graph``): supported ops and fusions quantize and
track the float model; every unsupported node or arrangement raises a ``CompileError`` naming it.

Tracking is measured in output LSB: ``|dequantize(golden(quantize(x))) - model(x)| / s_out`` on
the random calibration images (so that no value lies outside its calibrated range and saturates).
The error sources are the input rounding (half an input LSB per pixel, summed over the receptive
field), the weight rounding (half a weight LSB per weight), the output rounding and, through
several ops, each intermediate rounding. Measured over seeds 0..5: a single op stays within 0.5
(max-pool of the input) to 2.1 output LSB (a conv + ReLU, whose output scale is half that of the
signed conv), a chain of 2-3 ops within 3.0; the mean is 0.1 .. 0.45 LSB.
"""
import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stamen.sw import golden
from stamen.sw.errors import CompileError
from stamen.sw.frontend.fx_graph import add_weights, fold_batchnorm, quantize_graph
from stamen.sw.graph import QuantizedGraph
from stamen.sw.apps.networks import DigitsLeNet, DigitsResNet, accuracy, digits_data, train

from torch_fixtures import one_torch_thread  # noqa: F401 (fixtures)

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs on one intra-op thread."""


class Fn(nn.Module):
    """A module whose forward is ``fn(self, x)``; keyword modules become its submodules."""

    def __init__(self, fn, **mods):
        super().__init__()
        self.fn = fn
        for k, v in mods.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


def _randomize_bn(bn: nn.BatchNorm2d, g: torch.Generator):
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        if bn.affine:
            bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.2)


def _init(model: nn.Module, seed: int) -> nn.Module:
    """Seed the weights of ``model`` and give its BatchNorms non-trivial statistics."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if isinstance(m, nn.BatchNorm2d):
            _randomize_bn(m, g)
    return model.eval()


def _images(seed: int, n: int, shape, signed: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    return x * 2 - 1 if signed else x


def _tracking_lsb(model, qg, x) -> np.ndarray:
    """Return ``|golden - float| / s_out`` per output element."""
    with torch.no_grad():
        want = model(x).numpy().astype(np.float64)
    got = qg.dequantize_output(qg.reference(qg.quantize_input(x)))
    return np.abs(got.reshape(want.shape) - want) / qg.output_scale


def _iadd_relu6(s, x):
    y = s.c1(x)
    y += s.c2(x)
    return F.relu6(y)


C = 5   # input channels of the random-model cases (not a multiple of 8)

# (id, model builder, input (C, H, W), signed input, expected op kinds, max LSB)
CASES = [
    ("conv3x3_bias", lambda: nn.Conv2d(C, 6, 3, padding=1), (C, 7, 9), True, ["conv"], 2.5),
    ("conv5x5_s2_nobias", lambda: nn.Conv2d(C, 7, 5, stride=2, padding=2, bias=False),
     (C, 9, 7), True, ["conv"], 2.5),
    ("conv_same_tuple", lambda: nn.Sequential(nn.Conv2d(C, 4, 3, padding="same"),
                                              nn.Conv2d(4, 6, (3, 1), padding=(1, 0))),
     (C, 7, 7), True, ["conv", "conv"], 4),
    ("conv_bn", lambda: nn.Sequential(nn.Conv2d(C, 6, 3), nn.BatchNorm2d(6)), (C, 8, 8), True,
     ["conv"], 2.5),
    ("conv_bn_relu", lambda: nn.Sequential(nn.Conv2d(C, 6, 3, bias=False), nn.BatchNorm2d(6),
                                           nn.ReLU(inplace=True)), (C, 8, 8), True, ["conv"], 2.5),
    ("conv_F_relu", lambda: Fn(lambda s, x: F.relu(s.c(x)), c=nn.Conv2d(C, 6, 3)), (C, 6, 6),
     True, ["conv"], 2.5),
    ("conv_torch_relu", lambda: Fn(lambda s, x: torch.relu(s.c(x)), c=nn.Conv2d(C, 6, 3)),
     (C, 6, 6), True, ["conv"], 2.5),
    ("conv_method_relu", lambda: Fn(lambda s, x: s.c(x).relu(), c=nn.Conv2d(C, 6, 3)), (C, 6, 6),
     True, ["conv"], 2.5),
    ("conv_relu6", lambda: nn.Sequential(nn.Conv2d(C, 6, 3), nn.ReLU6()), (C, 6, 6), True,
     ["conv"], 2.5),
    ("conv_F_relu6", lambda: Fn(lambda s, x: F.relu6(s.c(x)), c=nn.Conv2d(C, 6, 3)), (C, 6, 6),
     True, ["conv"], 2.5),
    ("depthwise_bn_relu6", lambda: nn.Sequential(nn.Conv2d(C, C, 3, padding=1, groups=C),
                                                 nn.BatchNorm2d(C), nn.ReLU6()),
     (C, 7, 7), True, ["conv"], 2.5),
    ("grouped", lambda: nn.Conv2d(4, 6, 3, groups=2), (4, 7, 7), True, ["conv"], 2.5),
    ("relu_maxpool", lambda: nn.Sequential(nn.Conv2d(C, 6, 3), nn.ReLU(), nn.MaxPool2d(2)),
     (C, 9, 9), True, ["conv", "maxpool"], 4),
    ("maxpool_pad_after_relu", lambda: Fn(lambda s, x: F.max_pool2d(F.relu(s.c(x)), 3, 2, 1),
                                          c=nn.Conv2d(C, 6, 3)),
     (C, 8, 8), True, ["conv", "maxpool"], 4),
    ("relu_after_maxpool", lambda: Fn(lambda s, x: F.relu(F.max_pool2d(s.c(x), 2)),
                                      c=nn.Conv2d(C, 6, 3)),
     (C, 9, 9), True, ["conv", "maxpool"], 4),
    ("maxpool_input", lambda: nn.MaxPool2d(3, stride=2, padding=1), (C, 7, 7), False,
     ["maxpool"], 2.5),
    ("avgpool", lambda: nn.Sequential(nn.Conv2d(C, 6, 3), nn.AvgPool2d(2)), (C, 9, 9), True,
     ["conv", "avgpool"], 4),
    ("avgpool_pad", lambda: Fn(lambda s, x: F.avg_pool2d(s.c(x), 3, 1, 1), c=nn.Conv2d(C, 6, 1)),
     (C, 7, 5), True, ["conv", "avgpool"], 4),
    ("gap_flatten_linear", lambda: nn.Sequential(nn.Conv2d(C, 8, 3), nn.ReLU(),
                                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                 nn.Linear(8, 10)),
     (C, 7, 7), True, ["conv", "avgpool", "conv"], 4),
    ("flatten_linear", lambda: nn.Sequential(nn.Conv2d(C, 4, 3), nn.ReLU(), nn.Flatten(),
                                             nn.Dropout(0.5), nn.Linear(4 * 3 * 5, 10)),
     (C, 5, 7), True, ["conv", "conv"], 4),
    ("torch_flatten", lambda: Fn(lambda s, x: s.fc(torch.flatten(s.c(x), 1)),
                                 c=nn.Conv2d(C, 3, 3), fc=nn.Linear(3 * 4 * 4, 7)),
     (C, 6, 6), True, ["conv", "conv"], 4),
    ("method_flatten", lambda: Fn(lambda s, x: s.fc(s.c(x).flatten(1)), c=nn.Conv2d(C, 3, 3),
                                  fc=nn.Linear(3 * 4 * 4, 7)),
     (C, 6, 6), True, ["conv", "conv"], 4),
    ("view_size", lambda: Fn(lambda s, x: s.fc(s.c(x).view(x.size(0), -1)),
                             c=nn.Conv2d(C, 3, 3), fc=nn.Linear(3 * 4 * 4, 7)),
     (C, 6, 6), True, ["conv", "conv"], 4),
    ("reshape_shape", lambda: Fn(lambda s, x: s.fc(s.c(x).reshape(x.shape[0], -1)),
                                 c=nn.Conv2d(C, 3, 3), fc=nn.Linear(3 * 4 * 4, 7)),
     (C, 6, 6), True, ["conv", "conv"], 4),
    ("view_minus1", lambda: Fn(lambda s, x: s.fc(s.c(x).view(-1, 48)),
                               c=nn.Conv2d(C, 3, 3), fc=nn.Linear(3 * 4 * 4, 7)),
     (C, 6, 6), True, ["conv", "conv"], 4),
    ("mlp_head", lambda: nn.Sequential(nn.Flatten(), nn.Linear(C * 4 * 4, 12), nn.ReLU(),
                                       nn.Linear(12, 6)),
     (C, 4, 4), True, ["conv", "conv"], 4),
    ("residual_add", lambda: Fn(lambda s, x: s.c2(F.relu(s.c1(x))) + x,
                                c1=nn.Conv2d(C, C, 3, padding=1), c2=nn.Conv2d(C, C, 3, padding=1)),
     (C, 6, 6), True, ["conv", "conv", "add"], 4),
    ("torch_add_relu", lambda: Fn(lambda s, x: F.relu(torch.add(s.c1(x), s.c2(x))),
                                  c1=nn.Conv2d(C, 6, 3, padding=1), c2=nn.Conv2d(C, 6, 1)),
     (C, 6, 6), True, ["conv", "conv", "add"], 4),
    ("iadd_relu6", lambda: Fn(_iadd_relu6, c1=nn.Conv2d(C, 6, 3, padding=1),
                              c2=nn.Conv2d(C, 6, 1)),
     (C, 6, 6), True, ["conv", "conv", "add"], 4),
    ("identity_dropout", lambda: nn.Sequential(nn.Identity(), nn.Conv2d(C, 6, 3), nn.Dropout(),
                                               nn.ReLU()),
     (C, 6, 6), True, ["conv"], 2.5),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_quantizes_and_tracks_float(case, seed):
    """Each supported op / fusion becomes the expected ops, and golden tracks the float model."""
    name, build, shape, signed, kinds, max_lsb = case
    model = _init(build(), seed)
    calib = _images(seed, 64, shape, signed)
    qg = quantize_graph(model, calib)
    what = f"case={name} seed={seed}"
    assert [op.kind for op in qg.ops] == kinds, f"{what}: ops {[op.kind for op in qg.ops]}"
    err = _tracking_lsb(model, qg, calib)
    log.info("%s: max %.2f, mean %.3f output LSB from float", what, err.max(), err.mean())
    assert err.max() <= max_lsb, f"{what}: golden is {err.max():.2f} output LSB from float"
    assert err.mean() <= 0.5, f"{what}: golden is {err.mean():.3f} output LSB from float on average"


def test_fusions_and_parameters():
    """ReLU / ReLU6 / BatchNorm fuse; ReLU6 has range [0, 6]; pools keep the input scale."""
    model = _init(nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU6(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), nn.ReLU(),
        nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6, 4)), 3)
    qg = quantize_graph(model, _images(3, 32, (3, 9, 9), True))
    c1, c2, mp, ap, fc = qg.ops
    assert (c1.relu, c1.extra["relu6"], c1.s_out, c1.zp_out) == (True, True, 6 / 255, -128)
    assert "bn" not in [op.name for op in qg.ops] and "1: BatchNorm2d" in c1.torch_op
    assert c2.relu and c2.groups == 6 and c2.w.shape == (3, 3, 1, 6) and c2.zp_out == -128
    assert (mp.s_out, mp.zp_out) == (c2.s_out, c2.zp_out) == (ap.s_out, ap.zp_out)
    assert (ap.mult, ap.shift) == golden.quantize_multiplier(1 / (4 * golden.AVGPOOL_GAIN))
    assert fc.kernel == (1, 1) and fc.extra["linear"] == (1, 1, 6) and fc.out_shape == (1, 1, 4)
    assert qg.output == fc.name and qg.input_shape == (9, 9, 3)
    for op in (c1, c2, fc):
        assert op.mult.dtype == np.int32 and op.bias.dtype == np.int32 and op.w.dtype == np.int8
        np.testing.assert_array_equal(op.w.max(axis=(0, 1, 2)) | -op.w.min(axis=(0, 1, 2)) >= 127,
                                      True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_weights_reordered_from_chw(seed):
    """Flatten + Linear over H x W x C: an H x W conv, weights reordered from torch's C, H, W."""
    model = _init(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6, bias=False)), seed)
    qg = quantize_graph(model, _images(seed, 16, (3, 4, 5), True))
    (op,) = qg.ops
    w = model[1].weight.detach().numpy().reshape(6, 3, 4, 5)     # N, C, H, W
    s_w = np.asarray(op.extra["s_w"])
    np.testing.assert_allclose(op.w * s_w, w.transpose(2, 3, 1, 0), atol=s_w.max() / 2 + 1e-9,
                               err_msg=f"seed={seed}")
    assert op.kernel == (4, 5) and op.padding == (0, 0)


def test_bn_folding_exact_in_float():
    """Folded weights and bias give the conv + eval BatchNorm output up to float64 rounding."""
    for seed, bias, affine, groups in [(0, True, True, 1), (1, False, True, 1),
                                       (2, True, False, 1), (3, False, True, 6)]:
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        conv = nn.Conv2d(6, 6, 3, padding=1, bias=bias, groups=groups).double()
        bn = nn.BatchNorm2d(6, affine=affine).double()
        _randomize_bn(bn, g)
        bn.eval()
        w, b = fold_batchnorm(conv.weight.detach().numpy(),
                              None if conv.bias is None else conv.bias.detach().numpy(), bn)
        x = torch.randn(4, 6, 7, 7, generator=g, dtype=torch.float64)
        with torch.no_grad():
            want = bn(conv(x))
            got = F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1, groups=groups)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=f"seed={seed} bias={bias} affine={affine}")


def test_calibration_input_forms():
    """A tensor, a list of tensors, a generator and a DataLoader of (x, y) give the same graph."""
    model = _init(nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)), 0)
    x = _images(0, 40, (2, 5, 5), True)
    ds = torch.utils.data.TensorDataset(x, torch.zeros(len(x)))
    forms = {"tensor": x, "list": list(x.split(16)), "generator": (b for b in x.split(7)),
             "dataloader": torch.utils.data.DataLoader(ds, batch_size=8)}
    graphs = {k: quantize_graph(model, v) for k, v in forms.items()}
    ref = graphs["tensor"]
    for k, qg in graphs.items():      # float conv results may differ in the last bit by batch size
        assert (qg.input_scale, qg.input_zp) == (ref.input_scale, ref.input_zp), k
        for a, b in zip(qg.ops, ref.ops):
            assert a.s_out == pytest.approx(b.s_out, rel=1e-6) and a.zp_out == b.zp_out, k
            np.testing.assert_array_equal(a.w, b.w, err_msg=k)


@pytest.mark.parametrize("seed", range(4))
def test_add_weights(seed):
    """add_weights: the closest ratio (larger w1 on ties), multiplier below 1, the error bound."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.uniform(0.005, 0.05, 2)
    s_out = (s1 + s2) * rng.uniform(0.5, 1.5)
    w1, w2, mult, shift, err = add_weights(s1, s2, s_out)
    ws = np.arange(1, 128)
    best = np.abs(ws[None, :] / ws[:, None] - s2 / s1).min()
    assert abs(w2 / w1 - s2 / s1) == best, f"seed={seed}: {w2}/{w1} is not the closest ratio"
    assert (mult, shift) == golden.quantize_multiplier(s1 / (s_out * w1))
    assert err == pytest.approx(abs(w2 / w1 - s2 / s1) * 255 * s1 / s_out)
    x1 = rng.integers(-128, 128, (1, 64, 64, 1), dtype=np.int8)
    x2 = rng.integers(-128, 128, (1, 64, 64, 1), dtype=np.int8)
    zp1, zp2, zp_out = (int(v) for v in rng.integers(-20, 21, 3))
    got = golden.add(x1, x2, zp1, zp2, w1, w2, mult, shift, zp_out, False).astype(np.int64)
    exact = (s1 * (x1.astype(np.int64) - zp1) + s2 * (x2.astype(np.int64) - zp2)) / s_out + zp_out
    dist = np.abs(got - np.clip(exact, -128, 127))
    assert dist.max() <= 0.5 + err + 2.0 ** -shift + 1e-9, f"seed={seed}: {dist.max()}"
    assert add_weights(0.01, 0.005, 0.02)[:2] == (126, 63)     # ties: the larger w1


def test_add_of_far_apart_scales_warns():
    """Input scales more than 127x apart cannot be matched by int8 weights: a UserWarning."""
    model = _init(Fn(lambda s, x: s.a(x) + s.b(x), a=nn.Conv2d(3, 4, 1), b=nn.Conv2d(3, 4, 1)), 0)
    with torch.no_grad():
        model.b.weight.mul_(1000)
        model.b.bias.mul_(1000)
    with pytest.warns(UserWarning, match="too far apart"):
        qg = quantize_graph(model, _images(0, 8, (3, 5, 5), True))
    add = qg.op("add")
    assert add.add_w == (1, 127) and add.extra["add_error_lsb"] > 0.5, add.add_w


@pytest.fixture(scope="module")
def digits():
    return digits_data(0)


@pytest.mark.parametrize("cls", [DigitsLeNet, DigitsResNet], ids=lambda c: c.__name__)
def test_digits_cnn_accuracy(cls, digits):
    """On held-out digits, golden int8 accuracy is within 2 points of float (seed 0)."""
    x_train, y_train, x_test, y_test = digits
    model = train(cls(), digits, epochs=10, seed=0)
    qg = quantize_graph(model, x_train)
    y = qg.reference(qg.quantize_input(x_test))
    acc_q = float((qg.dequantize_output(y).argmax(1) == y_test.numpy()).mean())
    acc_f = accuracy(model, x_test, y_test)
    log.info("%s: float %.2f%%, golden int8 %.2f%%", cls.__name__, 100 * acc_f, 100 * acc_q)
    assert acc_f >= 0.95, f"seed=0 {cls.__name__}: float accuracy only {acc_f:.1%}"
    assert abs(acc_q - acc_f) <= 0.02, f"seed=0 {cls.__name__}: float {acc_f:.1%}, int8 {acc_q:.1%}"


def test_digits_resnet_graph(digits):
    """The ResNet becomes stem, block convs, add+ReLU, depthwise+ReLU6, pointwise, GAP, Linear."""
    qg = quantize_graph(_init(DigitsResNet(), 0), digits[0][:64])
    kinds = [(op.name, op.kind, op.relu, op.groups) for op in qg.ops]
    assert kinds == [("stem", "conv", True, 1), ("conv_a", "conv", True, 1),
                     ("conv_b", "conv", False, 1), ("add", "add", True, 1),
                     ("dw", "conv", True, 12), ("pw", "conv", True, 1),
                     ("gap", "avgpool", False, 1), ("fc", "conv", False, 1)], kinds
    assert qg.op("add").inputs == ["conv_b", "stem"] and qg.op("dw").extra["relu6"]
    assert qg.op("gap").kernel == (4, 4) and qg.op("gap").extra["adaptive"]


def test_graph_survives_json(digits):
    """A quantized CNN's metadata (``op.extra`` included) is JSON-able, as ``Program.save`` needs;
    the rebuilt graph computes the same outputs."""
    qg = quantize_graph(_init(DigitsResNet(), 0), digits[0][:64])
    meta, arrays = qg.to_dict()
    back = QuantizedGraph.from_dict(json.loads(json.dumps(meta)), arrays)
    xq = qg.quantize_input(digits[2][:16])
    np.testing.assert_array_equal(back.reference(xq), qg.reference(xq))


def test_train_is_deterministic(digits):
    a = train(DigitsLeNet(), digits, epochs=1, seed=5)
    torch.rand(3)                                   # disturb the global random state
    b = train(DigitsLeNet(), digits, epochs=1, seed=5)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), f"seed=5: {k} differs between two runs"


# -- errors ---------------------------------------------------------------------------------------
def _signed_conv(c=3):
    return nn.Conv2d(c, c, 3, padding=1)


ERRORS = [
    # (id, model builder, fx node name expected in the message, text expected); the children
    # of a Sequential (and a lone module, traced as a Sequential of it) are fx nodes "_0", "_1"...
    ("bn_on_input", lambda: nn.Sequential(nn.BatchNorm2d(3), _signed_conv()), "_0",
     "must directly follow a Conv2d"),
    ("bn_after_relu", lambda: nn.Sequential(_signed_conv(), nn.ReLU(), nn.BatchNorm2d(3)), "_2",
     "must directly follow a Conv2d"),
    ("bn_conv_two_users", lambda: Fn(lambda s, x: s.bn(y := s.c(x)) + s.c2(y), c=_signed_conv(),
                                     bn=nn.BatchNorm2d(3), c2=_signed_conv()),
     "bn", "only user"),
    ("bn1d_after_linear", lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 36, 4),
                                                nn.BatchNorm1d(4)), "_2", "BatchNorm2d"),
    ("flatten_as_output", lambda: nn.Sequential(_signed_conv(), nn.Flatten()), "_1",
     "must be followed by a Linear"),
    ("flatten_then_relu", lambda: nn.Sequential(_signed_conv(), nn.Flatten(), nn.ReLU(),
                                                nn.Linear(108, 2)), "_1",
     "must be followed by a Linear"),
    ("flatten_keeps_dims", lambda: Fn(lambda s, x: s.fc(torch.flatten(s.c(x), 2)),
                                      c=_signed_conv(), fc=nn.Linear(36, 2)),
     "flatten", "start_dim=1"),
    ("view_not_flatten", lambda: Fn(lambda s, x: s.fc(s.c(x).view(x.size(0), 3, -1)),
                                    c=_signed_conv(), fc=nn.Linear(36, 2)),
     "view", "only as a flatten"),
    ("relu_on_input", lambda: nn.Sequential(nn.ReLU(), _signed_conv()), "_0", "fused"),
    ("relu_after_avgpool", lambda: nn.Sequential(_signed_conv(), nn.AvgPool2d(2), nn.ReLU()),
     "_2", "fused"),
    ("relu_after_relu", lambda: Fn(lambda s, x: F.relu(F.relu(s.c(x))), c=_signed_conv()),
     "relu_1", "fused"),
    ("relu_on_shared_conv", lambda: Fn(lambda s, x: F.relu(y := s.c(x)) + y, c=_signed_conv()),
     "relu", "only user"),
    ("padding_mode", lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), "_0",
     "padding_mode"),
    ("dilation", lambda: nn.Conv2d(3, 4, 3, dilation=2), "_0", "dilation"),
    ("same_even_kernel", lambda: nn.Conv2d(3, 4, 2, padding="same"), "_0", "odd kernel"),
    ("maxpool_ceil_mode", lambda: nn.Sequential(_signed_conv(), nn.ReLU(),
                                                nn.MaxPool2d(2, ceil_mode=True)), "_2",
     "ceil_mode"),
    ("avgpool_ceil_mode", lambda: nn.Sequential(_signed_conv(), nn.AvgPool2d(4, ceil_mode=True)),
     "_1", "ceil_mode"),
    ("avgpool_exclude_pad", lambda: nn.Sequential(_signed_conv(),
                                                  nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
     "_1", "count_include_pad"),
    ("maxpool_dilation", lambda: Fn(lambda s, x: F.max_pool2d(s.c(x), 2, dilation=2),
                                    c=_signed_conv()), "max_pool2d", "dilation"),
    ("maxpool_pad_signed", lambda: nn.Sequential(_signed_conv(), nn.MaxPool2d(3, 1, 1)), "_1",
     "zero point -128"),
    ("adaptive_2", lambda: nn.Sequential(_signed_conv(), nn.AdaptiveAvgPool2d(2)), "_1",
     "output size of 1"),
    ("linear_on_4d", lambda: nn.Sequential(_signed_conv(), nn.Linear(6, 4)), "_1",
     "flattened input"),
    ("sigmoid", lambda: nn.Sequential(_signed_conv(), nn.Sigmoid()), "_1", "Sigmoid"),
    ("mul", lambda: Fn(lambda s, x: s.c(x) * 2, c=_signed_conv()), "mul", "supported:"),
    ("cat", lambda: Fn(lambda s, x: torch.cat([s.c(x), x], 1), c=_signed_conv()), "cat",
     "supported:"),
    ("add_constant", lambda: Fn(lambda s, x: s.c(x) + 1.0, c=_signed_conv()), "add",
     "constant"),
    ("add_broadcast", lambda: Fn(lambda s, x: s.c(x) + s.g(s.c(x)), c=_signed_conv(),
                                 g=nn.AdaptiveAvgPool2d(1)), "add", "equal shape"),
    ("add_alpha", lambda: Fn(lambda s, x: torch.add(s.c(x), x, alpha=2), c=_signed_conv()),
     "add", "alpha"),
    ("dropout_training", lambda: Fn(lambda s, x: F.dropout(s.c(x), 0.5, training=True),
                                    c=_signed_conv()), "dropout", "training"),
    ("get_attr", lambda: Fn(lambda s, x: F.conv2d(x, s.w), w=nn.Parameter(torch.ones(3, 3, 1, 1))),
     "w", "outside a module"),
    ("conv_transpose", lambda: nn.ConvTranspose2d(3, 3, 2), "_0", "ConvTranspose2d"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
def test_unsupported_raises_compile_error_naming_the_node(case):
    """The message names the fx node (and its target) and the rule or what is supported."""
    name, build, node, text = case
    model = _init(build(), 0)
    with pytest.raises(CompileError) as info:
        quantize_graph(model, _images(0, 8, (3, 6, 6), True))
    msg = str(info.value)
    assert f"fx node '{node}' (" in msg and text in msg, f"case={name}: message {msg!r}"
