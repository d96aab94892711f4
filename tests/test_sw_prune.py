"""Magnitude pruning: exact fractions and 2:4 groups, refusals, and a pruned digits LeNet that stays
bit-exact on the ISA simulator while its zero-gated MACs rise with the amount."""
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

import stamen
from stamen.hw.params import AccelConfig
from stamen.sw.apps.networks import DigitsLeNet, accuracy, digits_data, train
from stamen.sw.frontend.prune import prunable_layers, prune, weight_sparsity
from stamen.sw.runtime.device import Device

log = logging.getLogger(__name__)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, (1, 3)),
                         nn.Flatten(), nn.Linear(6 * 5 * 3, 7), nn.BatchNorm1d(7))


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_unstructured_prunes_the_smallest_fraction_of_each_layer(amount):
    model = _net()
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    pruned = prune(model, amount)
    for name, p in model.state_dict().items():                    # the input is untouched
        assert torch.equal(p, before[name]), name
    assert pruned is not model
    for (name, mod), (_, orig) in zip(prunable_layers(pruned), prunable_layers(model)):
        w, w0 = mod.weight.detach(), orig.weight.detach()
        zero = w == 0
        assert int(zero.sum()) == round(amount * w.numel()), f"amount={amount} layer={name}"
        assert torch.equal(w[~zero], w0[~zero])                  # kept weights unchanged
        if 0 < zero.sum() < w.numel():
            assert w0[zero].abs().max() <= w0[~zero].abs().min(), name
        assert torch.equal(mod.bias, orig.bias)                  # biases are not pruned
    assert torch.equal(pruned[5].weight, model[5].weight)        # nor BatchNorm


def test_2_4_keeps_the_two_largest_of_every_four_inputs():
    model = _net(1)
    pruned = prune(model, pattern="2:4")
    assert prune(model, 0.5, "2:4").state_dict().keys() == pruned.state_dict().keys()
    for (name, mod), (_, orig) in zip(prunable_layers(pruned), prunable_layers(model)):
        w = mod.weight.detach().reshape(mod.weight.shape[0], -1)     # (out, Cin*KH*KW) / (out, in)
        w0 = orig.weight.detach().reshape(w.shape)
        n_in = w.shape[1]
        for o in range(w.shape[0]):
            for g in range(0, n_in, 4):
                group, group0 = w[o, g:g + 4], w0[o, g:g + 4]
                keep = min(len(group), 2)
                # the kept ones are the largest |w| of the group, unchanged
                want = torch.zeros_like(group0)
                top = torch.sort(group0.abs(), descending=True, stable=True).indices[:keep]
                want[top] = group0[top]
                assert torch.equal(group, want), f"{name} out {o} group {g}"
    # conv 2x3x3: rows of 18 = 4 groups of 4 and a tail of 2 (kept whole): 8 + 2 of 18 kept
    assert weight_sparsity(pruned)["0"] == pytest.approx(8 / 18)
    assert weight_sparsity(pruned)["4"] == pytest.approx(44 / 90)   # 90 inputs: 22 groups + 2


def test_2_4_by_hand():
    lin = nn.Linear(7, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, -0.4, 0.3, -0.2, 0.5, -0.05, 0.6]]))
    got = prune(nn.Sequential(lin), pattern="2:4")[0].weight.detach()
    # group 1 keeps -0.4, 0.3; tail (0.5, -0.05, 0.6) padded with a zero keeps 0.5 and 0.6
    assert torch.equal(got, torch.tensor([[0.0, -0.4, 0.3, 0.0, 0.5, 0.0, 0.6]]))


@pytest.mark.parametrize("amount, pattern, exc, match", [
    (-0.1, "unstructured", ValueError, r"in \[0, 1\]"),
    (1.5, "unstructured", ValueError, r"in \[0, 1\]"),
    (math.nan, "unstructured", ValueError, r"in \[0, 1\]"),
    ("0.5", "unstructured", TypeError, "real number"),
    (True, "unstructured", TypeError, "real number"),
    (None, "unstructured", TypeError, "must be given"),
    (0.3, "2:4", ValueError, "0.5 or omitted"),
    (0.5, "1:4", ValueError, "pattern must be one of"),
    (0.5, None, ValueError, "pattern must be one of"),
])
def test_refusals(amount, pattern, exc, match):
    with pytest.raises(exc, match=match):
        prune(_net(), amount, pattern)


def test_refuses_a_non_model_and_a_model_without_weights():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        prune({"w": torch.ones(3)}, 0.5)
    with pytest.raises(ValueError, match="Conv2d or Linear"):
        prune(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.5)
    assert stamen.prune is prune


@pytest.fixture(scope="module")
def lenet():
    data = digits_data(0)
    return train(DigitsLeNet(), data, epochs=10, seed=0), data


def _run_pruned(model, data, batch=32):
    """Quantize, compile for small, run ``batch`` held-out images on the ISA simulator; return
    the graph, the report and the golden int8 accuracy on all held-out images."""
    x_train, _, x_test, y_test = data
    qg = stamen.quantize_graph(model, x_train)
    cfg = AccelConfig.preset("small")
    prog = stamen.compile(qg, cfg, batch=batch)
    x = qg.quantize_input(x_test[:batch])
    y, rep = Device(cfg, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, qg.reference(x), err_msg="pruned LeNet on isasim")
    yq = qg.reference(qg.quantize_input(x_test))
    acc = float((qg.dequantize_output(yq).argmax(1) == y_test.numpy()).mean())
    return qg, rep, acc


def test_pruned_lenet_gates_more_macs_and_stays_bit_exact(lenet):
    model, data = lenet
    shares, accs = [], []
    amounts = (0.0, 0.25, 0.5, 0.75)
    for amount in amounts:
        pruned = prune(model, amount)
        qg, rep, acc = _run_pruned(pruned, data)
        # quantization keeps every pruned weight exactly 0 (symmetric int8 weights)
        convs = [op for op in qg.ops if op.kind == "conv"]
        for (name, mod), op in zip(prunable_layers(pruned), convs):
            assert int((op.w == 0).sum()) >= int((mod.weight == 0).sum()), name
        shares.append(rep.gated_macs / rep.issued_macs)
        accs.append(acc)
        log.info("unstructured %.2f: gated %d / %d MACs (%.1f%%), float %.2f%%, int8 %.2f%%; "
                 "per layer %s", amount, rep.gated_macs, rep.issued_macs, 100 * shares[-1],
                 100 * accuracy(pruned, data[2], data[3]), 100 * acc,
                 {r.name: f"{r.gated_macs / r.issued_macs:.1%}" for r in rep.layers})
    assert all(a < b for a, b in zip(shares, shares[1:])), f"gated shares {shares}"
    assert accs[0] >= 0.95, f"unpruned int8 accuracy {accs[0]:.1%}"
    assert accs[2] >= accs[0] - 0.05, f"accuracy at 0.5: {accs[2]:.1%} vs {accs[0]:.1%}"

    qg, rep, acc = _run_pruned(prune(model, pattern="2:4"), data)
    log.info("2:4: gated %.1f%%, int8 %.2f%%", 100 * rep.gated_macs / rep.issued_macs, 100 * acc)
    assert rep.gated_macs / rep.issued_macs > shares[0]
