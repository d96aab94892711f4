"""End to end: the two digits CNNs (LeNet-style; residual + depthwise-separable) trained in PyTorch,
quantized from their torch.fx graphs, compiled as one program each and run on the Verilator device.

Outputs are bit-exact against golden; accuracy is compared with the float model and with PyTorch's
own quantized operators on the same scales and zero points (``sw/frontend/torch_ref.py``).
"""
import numpy as np
import pytest

import stamen
from stamen.sw.apps.networks import DigitsLeNet, DigitsResNet, accuracy, digits_data, train
from stamen.sw.frontend.torch_ref import torch_quantized_forward

pytestmark = pytest.mark.verilator

IMAGES = 48


@pytest.fixture(scope="module")
def data():
    return digits_data()


@pytest.mark.parametrize("net,preset,memory", [(DigitsLeNet, "small", (0, 0)),
                                               (DigitsResNet, "small", (5, 3)),
                                               (DigitsLeNet, "tiny", (0, 0)),
                                               (DigitsLeNet, "small-skip", (0, 0)),
                                               (DigitsLeNet, "small-rs-skip", (0, 0))])
def test_digits_cnn_bit_exact_on_device(data, net, preset, memory):
    x_train, y_train, x_test, y_test = data
    x_test, y_test = x_test[:IMAGES], y_test[:IMAGES].numpy()
    model = train(net(), (x_train, y_train))
    qgraph = stamen.quantize(model, x_train)
    assert isinstance(qgraph, stamen.QuantizedGraph)
    cfg = stamen.AccelConfig.preset(preset)
    prog = stamen.compile(qgraph, cfg, batch=16)
    xq = qgraph.quantize_input(x_test.numpy())
    y, report = stamen.Device(cfg, "verilator", mem_latency=memory[0],
                              mem_stall=memory[1]).run_batched(prog, xq)
    label = f"{net.__name__} cfg={preset} memory={memory}"
    np.testing.assert_array_equal(y, qgraph.reference(xq), err_msg=label)
    acc = float((qgraph.dequantize_output(y).argmax(1) == y_test).mean())
    float_acc = accuracy(model, x_test, data[3][:IMAGES])
    torch_q = torch_quantized_forward(qgraph, xq)
    torch_acc = float((qgraph.dequantize_output(torch_q).argmax(1) == y_test).mean())
    print(f"{label}: float {float_acc:.3f} torch-quantized {torch_acc:.3f} stamen {acc:.3f}, "
          f"{report.cycles / IMAGES:.0f} cycles/image")
    assert acc >= 0.9 and acc >= float_acc - 0.05, label
    # PyTorch requantizes in float, golden in gemmlowp fixed point: logits stay within 2 LSB
    # (see tests/test_sw_torch_conv_reference.py for the per-op 1-LSB bound)
    assert np.abs(y.astype(int) - torch_q.astype(int)).max() <= 2, label
    assert [r.name for r in report.layers] == [op.name for op in qgraph.ops]
    assert report.macs == IMAGES * sum(op.macs_per_image for op in qgraph.ops)
    assert report.cycles > report.compute_cycles > 0
    if memory != (0, 0):
        assert report.stall_cycles > 0, label
    if cfg.zero_skip:               # the post-ReLU zeros of the conv layers are skipped
        assert report.skipped_macs > 0 and report.issued_macs + report.skipped_macs >= report.macs
