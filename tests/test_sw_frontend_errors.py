"""Bad input to the quantizer and the compiler gets a named error, never a silently wrong model.

Every case of issue 13, item 3: NaN / inf in calibration data, weights, biases, BatchNorm
statistics or observed activations; empty calibration; a bias beyond int32; a requantization
scale below ``2**-32`` (documented as exact: the output is the zero point); a layer whose weights
are all zero (valid: it compiles and runs); an MLP written as a plain ``nn.Module`` or with
Dropout (supported through ``torch.fx``) or GELU / LayerNorm (named as unsupported); a model too
large for the device memory (refused before any planning, in well under a second). Each error is a
:class:`~stamen.sw.errors.QuantizeError` or :class:`~stamen.sw.errors.CompileError` (both
``StamenError`` and ``ValueError``) whose message names the tensor or layer and the rule.
"""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import stamen
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import check_fits_memory, compile_model, min_device_bytes
from stamen.sw.errors import CompileError, QuantizeError, StamenError
from stamen.sw.frontend.fx_graph import quantize_graph
from stamen.sw.graph import QuantizedGraph
from stamen.sw.frontend.quantize import QuantizedNet, quantize_model
from stamen.sw.runtime.device import Device

from torch_fixtures import one_torch_thread  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs on one intra-op thread."""


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4)).eval()


class _Cnn(nn.Module):
    def __init__(self, relu: bool = True):
        super().__init__()
        self.relu = relu
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        h = self.bn(self.conv(x))
        return self.fc((torch.relu(h) if self.relu else h).flatten(1))


def _cnn(seed: int = 0, relu: bool = True) -> _Cnn:
    torch.manual_seed(seed)
    m = _Cnn(relu)
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _rows(seed: int = 0, n: int = 32) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))


def _images(seed: int = 0, n: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, 5, 5, generator=torch.Generator().manual_seed(seed))


class _PlainMlp(nn.Module):
    """An MLP written as a plain module (not a Sequential)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 6)
        self.drop = nn.Dropout(0.3)
        self.b = nn.Linear(6, 4)

    def forward(self, x):
        return self.b(self.drop(torch.relu(self.a(x))))


def _run_isasim(q, x: torch.Tensor, preset: str = "small"):
    """Compile ``q`` for the batch ``x``, run it on isasim; return (device, golden) outputs."""
    cfg = AccelConfig.preset(preset)
    prog = compile_model(q, cfg, batch=len(x))
    xq = q.quantize_input(x)
    y, _ = Device(cfg, "isasim").run(prog, xq)
    ref = q.golden(xq) if isinstance(q, QuantizedNet) else q.reference(xq)
    return y, ref


def test_quantize_error_is_a_named_stamen_error():
    assert issubclass(QuantizeError, CompileError)
    assert issubclass(QuantizeError, StamenError) and issubclass(QuantizeError, ValueError)
    assert stamen.QuantizeError is QuantizeError


# -- NaN and inf ---------------------------------------------------------------------------------
BAD = {"nan": (float("nan"), "1 NaN"), "+inf": (float("inf"), "1 +inf"),
       "-inf": (float("-inf"), "1 -inf")}


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
@pytest.mark.parametrize("path", ["sequential", "fx_mlp", "cnn"])
def test_non_finite_calibration_is_named(path, bad):
    value, text = BAD[bad]
    model, x = {"sequential": (_mlp(), _rows()), "fx_mlp": (_PlainMlp().eval(), _rows()),
                "cnn": (_cnn(), _images())}[path]
    x = x.clone()
    x.view(-1)[7] = value
    batches = [x[:8], x[8:]] if path != "cnn" else [x]     # the bad value is in batch 0
    with pytest.raises(QuantizeError, match=r"Calibration batch 0 must be finite, not "
                                            rf"containing {text.replace('+', '[+]')} of"):
        quantize_model(model, batches)


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
@pytest.mark.parametrize("where", ["0.weight", "2.bias"])
def test_non_finite_mlp_parameter_is_named(where, bad):
    value, text = BAD[bad]
    model = _mlp()
    with torch.no_grad():
        model.get_parameter(where).view(-1)[1] = value
    with pytest.raises(QuantizeError, match=rf"Parameter '{where}' \(Linear\) must be finite, "
                                            rf"not containing {text.replace('+', '[+]')} of"):
        stamen.quantize(model, _rows())


@pytest.mark.parametrize("where", ["conv.weight", "conv.bias", "bn.weight", "bn.running_var",
                                   "fc.weight"])
def test_non_finite_cnn_parameter_is_named(where):
    model = _cnn()
    t = model.get_parameter(where) if "running" not in where else model.get_buffer(where)
    with torch.no_grad():
        t.view(-1)[0] = float("nan")
    with pytest.raises(QuantizeError, match=rf"Parameter '{where}' \(\w+\) must be finite"):
        quantize_graph(model, _images())


def test_non_finite_activation_is_named():
    """Finite weights and input whose float32 product overflows: the node is named."""
    model = nn.Sequential(nn.Linear(8, 4)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1e38)
    with pytest.raises(QuantizeError, match=r"Module 0 \(Linear\) output on calibration batch 0 "
                                            r"must be finite"):
        stamen.quantize(model, _rows().abs() + 1)
    cnn = _cnn()
    with torch.no_grad():
        cnn.conv.weight.fill_(1e38)
    with pytest.raises(QuantizeError, match=r"fx node 'conv' \(call_module Conv2d 'conv'\): its "
                                            r"output on calibration batch 0 must be finite"):
        quantize_graph(cnn, _images().abs() + 1)


# -- empty and malformed calibration -------------------------------------------------------------
@pytest.mark.parametrize("calib, text", [
    (torch.empty(0, 8), r"Calibration batch 0 must hold at least one sample, not shape \(0, 8\)"),
    ([], "Calibration data must hold at least one batch"),
    ([_rows(), torch.empty(0, 8)], "Calibration batch 1 must hold at least one sample"),
    (np.zeros((0, 8), np.float32), "Calibration batch 0 must hold at least one sample"),
], ids=["empty_tensor", "no_batches", "empty_second_batch", "empty_array"])
@pytest.mark.parametrize("model", [_mlp, lambda: _PlainMlp().eval()], ids=["sequential", "fx"])
def test_empty_calibration_is_named(model, calib, text):
    with pytest.raises(QuantizeError, match=text):
        quantize_model(model(), calib)


def test_calibration_of_wrong_rank_is_named():
    with pytest.raises(QuantizeError, match=r"Calibration batch 0 must be NCHW images \(4-D\) or "
                                            r"\(N, features\) rows \(2-D\), not shape \(4, 2, 8\)"):
        quantize_graph(_PlainMlp().eval(), torch.randn(4, 2, 8))


# -- bias and requantization range -----------------------------------------------------------------
def test_huge_bias_is_named_not_clipped():
    model = _mlp()
    with torch.no_grad():
        model[0].bias[3] = 1e12
    with pytest.raises(QuantizeError, match=r"Module 0 \(Linear\): output channel 3: bias 1e\+12 "
                                            r"/ \(s_in \* s_w\) = .* must fit int32"):
        stamen.quantize(model, _rows())
    cnn = _cnn()
    with torch.no_grad():
        cnn.conv.bias[1] = -1e12
    with pytest.raises(QuantizeError, match=r"fx node 'conv' \(.*\): output channel 1: bias "
                                            r"-9.\d+e\+11 .* must fit int32"):   # BN folded
        quantize_graph(cnn, _images())


def test_requant_scale_below_2_pow_32_is_exact():
    """Documented rule: a scale below 2**-32 gives mult 0, and the output is the zero point,
    which is also the correctly rounded answer for every int32 accumulator."""
    for scale in (2.0 ** -33, 1e-12, 2.0 ** -32 * 0.999, 1e-300):
        assert golden.quantize_multiplier(scale) == (0, 0), scale
    assert golden.quantize_multiplier(2.0 ** -32) == (1 << 30, 31)   # smallest representable
    acc = np.array([[golden.INT32_MIN, -12345, 0, 777, golden.INT32_MAX]], np.int32)
    for zp in (-128, -3, 0, 90):
        y = golden.requantize(acc, np.zeros(5, np.int32), np.zeros(5, np.int32),
                              np.zeros(5, np.int32), zp, False)
        exact = np.round(acc.astype(np.float64) * 2.0 ** -33) + zp
        np.testing.assert_array_equal(y, exact.astype(np.int8))
    # in a model: a channel of weights ~1e-13 next to normal ones gets mult 0 and is exact
    model = nn.Sequential(nn.Linear(8, 2, bias=False)).eval()
    with torch.no_grad():
        model[0].weight[0].mul_(1e-13)
    x = _rows()
    q = stamen.quantize(model, x)
    (ly,) = q.layers
    assert ly.mult[0] == 0 and ly.mult[1] != 0
    got = q.dequantize_output(q.golden(q.quantize_input(x)))
    want = model(x).detach().numpy()
    assert np.all(got[:, 0] == 0.0), "channel 0 is the zero point"
    assert np.abs(want[:, 0]).max() < q.output_scale / 2, "... which is exact"


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("path", ["sequential", "fx_mlp", "cnn"])
def test_all_zero_weights_with_bias_compile_and_run(path, relu):
    """A layer whose weights are all zero but whose bias is not is a valid model: it quantizes,
    compiles and runs bit-exact, and that layer's output is its bias within half an LSB."""
    if path == "cnn":
        model, x = _cnn(relu=relu), _images()
        layer = model.conv
        model.bn = nn.Identity()
    else:
        model = _mlp() if relu else nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4)).eval()
        x = _rows()
        if path == "fx_mlp":
            model = nn.Sequential(*model, nn.Dropout(0.5)).eval()   # not a pure MLP: fx path
        layer = model[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.linspace(-3, 5, layer.bias.numel()))
    q = quantize_model(model, x)
    y, ref = _run_isasim(q, x[:4])
    np.testing.assert_array_equal(y, ref, err_msg=f"path={path} relu={relu}")
    # the zero-weight layer alone: its output is relu?(bias), exact to rounding
    xq = q.quantize_input(x[:4])
    if isinstance(q, QuantizedNet):
        ly = q.layers[0]
        got = golden.linear(xq, ly.w, ly.bias, ly.mult, ly.shift, ly.zp_in, ly.zp_out, ly.relu)
        s_out, zp_out = ly.s_out, ly.zp_out
    else:
        op = q.ops[0]
        got = op.run(xq if xq.ndim == 4 else xq[:, None, None, :])
        got = got.transpose(0, 3, 1, 2).reshape(4, -1)
        s_out, zp_out = op.s_out, op.zp_out
    with torch.no_grad():
        want = layer(x[:4])
        want = (torch.relu(want) if relu else want).numpy().reshape(4, -1)
    err = np.abs((got.reshape(4, -1).astype(np.float64) - zp_out) * s_out - want).max()
    assert err <= 0.5 * s_out * (1 + 1e-3), f"path={path} relu={relu}: {err / s_out:.3f} LSB"


# -- MLPs through torch.fx -------------------------------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda: _PlainMlp(),
    lambda: nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.1), nn.ReLU(), nn.Linear(6, 4)),
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Dropout(),
                          nn.Identity(), nn.Linear(6, 4)),
], ids=["plain_module", "sequential_dropout", "sequential_flatten_dropout_identity"])
@pytest.mark.parametrize("preset", ["small", "tiny"])
def test_mlp_through_fx_compiles_and_runs(build, preset):
    torch.manual_seed(1)
    model = build().eval()
    x = _rows(1)
    q = quantize_model(model, x)
    assert isinstance(q, QuantizedGraph) and q.takes_rows
    y, ref = _run_isasim(q, x[:5], preset)
    assert y.shape == ref.shape == (5, 4)
    np.testing.assert_array_equal(y, ref, err_msg=f"preset={preset}")
    want = model(x[:5]).detach().numpy()
    assert np.abs(q.dequantize_output(ref) - want).max() <= 3 * q.output_scale


@pytest.mark.parametrize("mod, name", [(nn.GELU(), "GELU"), (nn.LayerNorm(6), "LayerNorm"),
                                       (nn.Sigmoid(), "Sigmoid")])
def test_unsupported_op_in_mlp_is_named(mod, name):
    model = nn.Sequential(nn.Linear(8, 6), mod, nn.Linear(6, 4)).eval()
    with pytest.raises(CompileError) as info:
        quantize_model(model, _rows())
    msg = str(info.value)
    assert f"fx node '_1' (call_module {name} '1'): not supported; supported:" in msg, msg
    assert "NCHW" not in msg


def test_reduce_range_uses_128_levels():
    x = _rows()
    q = quantize_model(_PlainMlp().eval(), x, reduce_range=True)
    full = quantize_model(_PlainMlp().eval(), x)
    assert q.input_scale == pytest.approx(full.input_scale * 255 / 127)
    xq = q.quantize_input(x)
    assert xq.min() == -128 and xq.max() <= 0


# -- device memory, before planning ----------------------------------------------------------------
def test_model_too_large_for_device_memory_is_refused_fast(monkeypatch):
    """Refused from shapes alone: the tiler (minutes for this layer) is never called."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4096, 4096)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = stamen.quantize(model, torch.randn(4, 4096))
    cfg = AccelConfig.preset("tiny")

    def no_planning(*args, **kwargs):
        raise AssertionError("the tiler ran before the cheap device-memory check")
    monkeypatch.setattr(stamen.sw.compiler.driver, "compile_graph", no_planning)
    with pytest.raises(CompileError, match=r"Model needs at least .* \(16,777,216 bytes of "
                                           r"weights.*'0.Linear'.* but the device has 131,072 "
                                           r"\(tiny\)"):
        compile_model(q, cfg, batch=1)


def _graphs():
    torch.manual_seed(2)
    mlp = quantize_model(_PlainMlp().eval(), _rows())
    cnn = quantize_model(_cnn(), _images())
    return {"mlp": mlp, "cnn": cnn}


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_memory_lower_bound_never_refuses_what_compiles(preset):
    """The early check is a lower bound of what compile_graph lays out."""
    cfg = AccelConfig.preset(preset)
    for name, qg in _graphs().items():
        for batch in (1, 7):
            prog = compile_model(qg, cfg, batch=batch)
            weights, tensors, _ = min_device_bytes(qg, batch)
            used = prog.used_words * cfg.mem_bus_bytes
            assert weights + tensors <= used, f"{name} batch={batch}: {weights + tensors} > {used}"
            check_fits_memory(qg, cfg, batch)
