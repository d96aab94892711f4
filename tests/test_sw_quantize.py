"""Post-training quantization of a small MLP on sklearn's digits; golden vs float vs isasim."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from stamen.hw.params import AccelConfig
from stamen.sw.compiler.driver import compile_model
from stamen.sw.errors import CompileError
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.frontend.quantize import QuantizedNet, quantize

SEED = 0


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return train_test_split(x, y, test_size=360, random_state=SEED, stratify=y)


@pytest.fixture(scope="module")
def mlp(digits):
    x_tr, _, y_tr, _ = digits
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr).long()
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def qnet(mlp, digits):
    x_tr = digits[0]
    calib = [torch.from_numpy(x_tr[i:i + 256]) for i in range(0, len(x_tr), 256)]
    return quantize(mlp, calib)


def test_structure(qnet):
    assert isinstance(qnet, QuantizedNet)
    assert [ly.w.shape for ly in qnet.layers] == [(64, 32), (32, 10)]
    assert [ly.relu for ly in qnet.layers] == [True, False]
    first, second = qnet.layers
    assert first.w.dtype == np.int8 and np.abs(first.w.astype(int)).max() == 127
    assert first.zp_out == second.zp_in and first.s_out == second.s_in
    assert first.zp_out == -128                       # the ReLU output range starts at 0
    assert first.zp_in == qnet.input_zp == -128       # digits are >= 0
    for ly in qnet.layers:
        assert ly.bias.dtype == ly.mult.dtype == ly.shift.dtype == np.int32
        assert np.all((ly.mult >= 1 << 30) | (ly.mult == 0)) and np.all(ly.shift <= 31)


def test_accuracy_close_to_float(qnet, digits):
    _, x_te, _, y_te = digits
    acc_float = np.mean(qnet.forward_float(x_te).argmax(1) == y_te)
    y_q = qnet.golden(qnet.quantize_input(x_te))
    acc_q = np.mean(y_q.argmax(1) == y_te)
    assert acc_float > 0.9, f"seed={SEED}: float model did not train ({acc_float:.3f})"
    assert acc_q >= acc_float - 0.03, f"seed={SEED}: float {acc_float:.3f} quantized {acc_q:.3f}"
    err = np.abs(qnet.dequantize_output(y_q) - qnet.forward_float(x_te))
    assert np.median(err) < 4 * qnet.output_scale, f"seed={SEED}"


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_isasim_equals_golden(qnet, digits, preset):
    x_te = digits[1]
    cfg = AccelConfig.preset(preset)
    xq = qnet.quantize_input(x_te)
    prog = compile_model(qnet, cfg, batch=len(xq))
    assert prog.input_shape == (360, 64) and prog.output_shape == (360, 10)
    assert [(li.kind, li.m, li.k, li.n, li.macs) for li in prog.layers] == \
        [("linear", 360, 64, 32, 360 * 64 * 32), ("linear", 360, 32, 10, 360 * 32 * 10)]
    mem = prog.memory_image(xq)
    ctr = IsaSim(cfg).run(mem, prog.prog_addr)
    got = prog.read_output(mem)
    np.testing.assert_array_equal(got, qnet.golden(xq), err_msg=f"seed={SEED} cfg={preset}")
    np.testing.assert_array_equal(prog.reference(xq), qnet.golden(xq))
    perf = prog.read_perf(mem)
    assert len(perf) == 3
    per_layer = [perf[i + 1]["macs"] - perf[i]["macs"] for i in range(2)]
    assert all(p >= li.macs for p, li in zip(per_layer, prog.layers))
    assert perf[-1]["macs"] == ctr["macs"]


@pytest.mark.parametrize("module, index, name", [
    (nn.Conv2d(1, 1, 3), 1, "Conv2d"),
    (nn.Sigmoid(), 2, "Sigmoid"),
])
def test_unsupported_module_is_named(module, index, name):
    layers = [nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)]
    layers.insert(index, module)
    model = nn.Sequential(*layers)
    with pytest.raises(CompileError, match=rf"Module {index} \({name}\) is not supported"):
        quantize(model, torch.randn(8, 4))


def test_relu_first_is_rejected():
    with pytest.raises(CompileError, match=r"Module 0 \(ReLU\)"):
        quantize(nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), torch.randn(8, 4))


def test_not_sequential_is_rejected():
    with pytest.raises(TypeError, match="Sequential"):
        quantize(nn.Linear(4, 2), torch.randn(8, 4))


def test_quantize_input_range():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3))
    calib = torch.randn(64, 4)
    q = quantize(model, calib)
    xq = q.quantize_input(calib)
    assert xq.dtype == np.int8 and xq.min() >= -128 and xq.max() <= 127
    back = (xq.astype(np.float64) - q.input_zp) * q.input_scale
    assert np.max(np.abs(back - calib.numpy())) <= q.input_scale / 2 + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="shape"):
            q.quantize_input(np.zeros((2, 5)))
