"""End to end: a PyTorch MLP trained on digits, quantized, compiled, run on the Verilator device."""
import numpy as np
import pytest
import torch

import stamen
from stamen.sw.apps.demo import load_digits_split, train_mlp

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_digits_mlp_bit_exact_on_device(preset):
    x_train, y_train, x_test, y_test = load_digits_split()
    x_test, y_test = x_test[:120], y_test[:120]
    model = train_mlp(x_train, y_train, epochs=150)
    qnet = stamen.quantize(model, torch.from_numpy(x_train))
    cfg = stamen.AccelConfig.preset(preset)
    prog = stamen.compile(qnet, cfg, batch=len(x_test))
    xq = qnet.quantize_input(x_test)
    y, report = stamen.Device(cfg, backend="verilator").run(prog, xq)
    np.testing.assert_array_equal(y, qnet.golden(xq), err_msg=f"digits MLP cfg={preset}")
    with torch.no_grad():
        float_acc = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    acc = (qnet.dequantize_output(y).argmax(1) == y_test).mean()
    assert acc >= 0.9 and acc >= float_acc - 0.03, (acc, float_acc)
    assert [layer.kind for layer in report.layers] == ["linear", "linear"]
    assert report.macs == len(x_test) * (64 * 32 + 32 * 10)
    assert report.cycles > report.compute_cycles > 0
    assert sum(layer.cycles for layer in report.layers) <= report.cycles
