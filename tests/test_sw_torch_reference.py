"""Stamen's numerics contract against PyTorch's own quantized execution (QNNPACK and fbgemm).

The same quantized network, with the same int8 weights, scales, zero points and integer inputs, is
built from ``torch.ao.nn.quantized.Linear`` / ``torch.ao.nn.intrinsic.quantized.LinearReLU`` and run
next to ``sw.golden``. Stamen's int8 activation ``a`` with zero point ``zp`` is PyTorch's quint8
``a + 128`` with zero point ``zp + 128``; weights are per-channel symmetric qint8; the bias is the
float ``bias_int32 * s_in * s_w``.

The outputs agree within 1 LSB, not bit for bit, because the two requantize differently:

* PyTorch (fbgemm ``ReQuantizeOutput``, QNNPACK's fp32 requantization) rounds once, in float32:
  ``lrintf((acc + bias) * (s_in * s_w / s_out))``, round half to even, carrying float32's error
  (about 2**-24 relative) in the multiplier, the product and the float bias. (This float32 formula
  in NumPy reproduces both engines' outputs bit for bit.)
* Stamen (gemmlowp / TFLite) multiplies by a Q31 fixed-point multiplier and rounds *twice*:
  ``srdhm`` rounds ``(acc + bias) * mult / 2**31`` to an integer, then ``rounding_shift_right``
  rounds the division by ``2**shift`` half away from zero. A value a hair below ``k + 0.5``
  (within ``2**-(shift + 1)`` of it) is first rounded onto the exact tie ``k + 0.5`` and then up to
  ``k + 1``, where the single rounding gives ``k``. Exact ties (half away vs half to even) and
  float32 error can also flip a near-tie.

So every difference sits next to a rounding boundary, and the tests check exactly that: wherever the
two disagree, the exact real value ``(acc + bias) * mult * 2**-(31 + shift)`` is within
``2**-shift`` (plus a float32 allowance) of ``k + 0.5``.

Measured (torch 2.13 CPU, digits MLP trained 150 epochs, QNNPACK; full-range fbgemm on an
AVX512-VNNI CPU gave the same numbers):
layer 1 (64->32, ReLU, shift 9..12) fed the same input differs by exactly 1 LSB in 9 of 11520
elements (0.078 %), every one a double-rounding case (real value k + 0.4991 .. k + 0.49995, Stamen
rounds up, PyTorch down); layer 2 (32->10, shift 9) in 0 of 3600. End to end (each side feeding its
own hidden layer forward) the logits differ by exactly 1 LSB in 9 of 3600 elements (0.25 %), never
by more (a hidden-layer LSB could in principle move a logit by more than one LSB; here it does
not), and the argmax agrees on 360 of 360 images. The randomized single layers (shift 9..14)
differ by 1 LSB in 0 to 3 of 6144 elements (0 % .. 0.05 %, logged per case).

Engines and CPUs: each test names its engine and runs PyTorch under
``stamen.sw.frontend.torch_ref.quantized_engine`` (set for the call, then restored), never the machine's
default. ``qnnpack`` (the reference) sees full-range activations, as Stamen quantizes them, and
is exact on every x86 CPU (SSE2 kernels, int32 accumulation). ``fbgemm`` sees only reduced-range
activations (``stamen.quantize(..., reduce_range=True)``, random inputs in quint8 ``0 .. 127``),
and every fbgemm input is checked to be one whose int16 pair sums cannot saturate
(``torch_ref.fbgemm_exact``): AVX2-only CPUs (e.g. AMD EPYC Zen 2/3) saturate them, AVX512-VNNI
CPUs do not, so full-range fbgemm results depend on the CPU (up to 33 LSB off on AVX2) and
reduced-range ones do not. Checked under ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (fbgemm's AVX2
kernels on any CPU) as well as natively on an AVX512-VNNI CPU.
"""
import logging
import math
import warnings
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
import torch

import stamen
from stamen.sw import golden
from stamen.sw.apps.demo import load_digits_split, train_mlp
from stamen.sw.frontend.quantize import QLinear
from stamen.sw.frontend.torch_ref import fbgemm_exact, quantized_engine

from torch_fixtures import engine  # noqa: F401 (fixtures)

log = logging.getLogger(__name__)

# PyTorch deprecates its quantized tensors (torch.ao) with this UserWarning; silence only it.
TORCH_AO_DEPRECATION = (r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other "
                        r"quantized tensor creation functions")
U8_OFFSET = 128                       # quint8 value = Stamen int8 value + 128; zero points likewise


@contextmanager
def _torch_ao():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_AO_DEPRECATION, category=UserWarning)
        yield


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def mlp(digits):
    x_train, y_train, _, _ = digits
    return train_mlp(x_train, y_train, epochs=150)


@pytest.fixture
def qnet(mlp, digits, engine):
    """The digits MLP quantized for ``engine``: full range on the training images (qnnpack), or
    reduced range on the training and held-out images (fbgemm), so that every tensor stays
    where fbgemm is exact."""
    x_train, _, x_test, _ = digits
    if engine == "fbgemm":
        return stamen.quantize(mlp, [torch.from_numpy(x_train), torch.from_numpy(x_test)],
                               reduce_range=True)
    return stamen.quantize(mlp, torch.from_numpy(x_train))


def _torch_act(a: np.ndarray, scale: float, zp: int) -> torch.Tensor:
    """Return Stamen int8 activations ``a`` (zero point ``zp``) as the equal quint8 tensor."""
    real = torch.from_numpy((a.astype(np.float64) - zp) * scale).float()
    with _torch_ao():
        q = torch.quantize_per_tensor(real, float(scale), int(zp) + U8_OFFSET, torch.quint8)
    np.testing.assert_array_equal(q.int_repr().numpy().astype(np.int16) - U8_OFFSET, a)
    return q


def _from_torch(q: torch.Tensor) -> np.ndarray:
    """Return a quint8 tensor's values as Stamen int8 values, held in int16 so differences fit."""
    return q.int_repr().numpy().astype(np.int16) - U8_OFFSET


def _torch_linear(ly: QLinear, engine: str) -> torch.nn.Module:
    """Build ``ly`` as a PyTorch quantized Linear (LinearReLU when ``ly.relu``), numbers equal,
    with its weights packed for ``engine``."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    k, n = ly.w.shape
    s_w = np.asarray(ly.s_w, dtype=np.float64)
    with _torch_ao(), quantized_engine(engine):
        mod = (nniq.LinearReLU if ly.relu else nnq.Linear)(k, n, dtype=torch.qint8)
        w_real = torch.from_numpy(ly.w.T.astype(np.float64) * s_w[:, None]).float()
        qw = torch.quantize_per_channel(w_real, torch.from_numpy(s_w),
                                        torch.zeros(n, dtype=torch.long), axis=0, dtype=torch.qint8)
        np.testing.assert_array_equal(qw.int_repr().numpy(), ly.w.T)
        bias = torch.from_numpy(ly.bias.astype(np.float64) * ly.s_in * s_w).float()
        mod.set_weight_bias(qw, bias)
    mod.scale = float(ly.s_out)
    mod.zero_point = int(ly.zp_out) + U8_OFFSET
    return mod


def _run_torch(mod: torch.nn.Module, q: torch.Tensor, engine: str) -> torch.Tensor:
    """Run ``mod`` on ``engine``; for fbgemm, only on input it computes exactly on every CPU."""
    if engine == "fbgemm":
        a_max = int(q.int_repr().max())
        w_max = int(mod.weight().int_repr().abs().max())
        assert fbgemm_exact(a_max, w_max), (
            f"fbgemm input up to quint8 {a_max} with weights up to {w_max} could saturate int16 "
            f"on AVX2 CPUs: the test must use reduced-range activations")
    with _torch_ao(), torch.no_grad(), quantized_engine(engine):
        return mod(q)


def _check_near_ties(ly: QLinear, x: np.ndarray, got: np.ndarray, expected: np.ndarray, what: str):
    """Assert ``got`` and ``expected`` differ by at most 1, and only next to a rounding boundary.

    ``x`` is the layer's int8 input. Where they differ, the exact value Stamen rounds,
    ``v = (acc + bias) * mult * 2**-(31 + shift)``, must lie within ``2**-shift`` of ``k + 0.5``
    (the double-rounding window) plus a float32 allowance of ``2**-20 * (|acc| + |bias|) * scale``.
    Return the fraction of elements that differ.
    """
    diff = got.astype(np.int16) - expected.astype(np.int16)
    worst = int(np.abs(diff).max())
    assert worst <= 1, f"{what}: PyTorch and golden differ by {worst} LSB (> 1)"
    acc = golden.gemm(x, ly.w, ly.zp_in).astype(np.int64)
    for i, j in zip(*np.nonzero(diff)):
        a, b = int(acc[i, j]), int(ly.bias[j])
        mult, shift = int(ly.mult[j]), int(ly.shift[j])
        scale = Fraction(mult, 1 << (31 + shift))
        v = (a + b) * scale
        to_tie = abs(v - math.floor(v) - Fraction(1, 2))
        allowance = Fraction(1, 1 << shift) + (abs(a) + abs(b)) * scale / 2**20
        assert to_tie <= allowance, (
            f"{what}: element ({i}, {j}) differs (golden {expected[i, j]}, PyTorch {got[i, j]}) "
            f"but its real value {float(v):.6f} is {float(to_tie):.3g} from a rounding tie")
    return float(np.mean(diff != 0))


def test_digits_mlp_layers_within_1_lsb(qnet, digits, engine):
    """Feed each layer the same int8 input: PyTorch and golden differ by <= 1 LSB, at near-ties."""
    x = qnet.quantize_input(digits[2])
    for ly in qnet.layers:
        expected = golden.linear(x, ly.w, ly.bias, ly.mult, ly.shift, ly.zp_in, ly.zp_out, ly.relu)
        got = _from_torch(_run_torch(_torch_linear(ly, engine), _torch_act(x, ly.s_in, ly.zp_in),
                                     engine))
        frac = _check_near_ties(ly, x, got, expected, what=f"{engine} layer {ly.name}")
        log.info("%s layer %s: %.3f%% of %d elements differ by 1 LSB (shift %d..%d)", engine,
                 ly.name, 100 * frac, expected.size, ly.shift.min(), ly.shift.max())
        x = expected


def test_digits_mlp_end_to_end_within_1_lsb(qnet, digits, engine):
    """Run the held-out images through both whole networks: logits within 1 LSB, argmax >= 99 %."""
    _, _, x_test, y_test = digits
    xq = qnet.quantize_input(x_test)
    expected = qnet.golden(xq)
    first = qnet.layers[0]
    q = _torch_act(xq, first.s_in, first.zp_in)
    for ly in qnet.layers:
        q = _run_torch(_torch_linear(ly, engine), q, engine)
    got = _from_torch(q)
    diff = np.abs(got - expected.astype(np.int16))
    assert diff.max() <= 1, f"{engine}: end-to-end logits differ by {diff.max()} LSB (> 1)"
    agree = float(np.mean(got.argmax(1) == expected.argmax(1)))
    assert agree >= 0.99, f"{engine}: argmax agrees on only {agree:.1%} of images"
    log.info("%s end to end: %.3f%% of %d logits differ by 1 LSB; argmax agrees on %.1f%%; "
             "accuracy golden %.1f%%, PyTorch %.1f%%", engine, 100 * np.mean(diff == 1), diff.size,
             100 * agree, 100 * np.mean(expected.argmax(1) == y_test),
             100 * np.mean(got.argmax(1) == y_test))


def _random_layer(rng: np.random.Generator, k: int, n: int, relu: bool) -> QLinear:
    s_in = float(rng.uniform(0.005, 0.05))
    s_w = rng.uniform(0.002, 0.02, n)
    s_out = s_in * float(s_w.max()) * math.sqrt(k) * 160 * float(rng.uniform(0.5, 2.0))
    mult, shift = zip(*(golden.quantize_multiplier(s_in * sw / s_out) for sw in s_w))
    return QLinear(name="random", w=rng.integers(-127, 128, (k, n), dtype=np.int8),
                   bias=rng.integers(-20000, 20001, n, dtype=np.int32),
                   mult=np.array(mult, np.int32), shift=np.array(shift, np.int32),
                   # zp_out away from the rails, so that most outputs are not clamped
                   zp_in=int(rng.integers(-128, 128)), zp_out=int(rng.integers(-96, 97)), relu=relu,
                   s_in=s_in, s_out=s_out, s_w=s_w)


@pytest.mark.parametrize("relu", [False, True], ids=["linear", "relu"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_linear_within_1_lsb(seed, relu, engine):
    """Random int8 weights, activations, zero points, scales: golden.linear vs PyTorch <= 1 LSB."""
    rng = np.random.default_rng(seed)
    ly = _random_layer(rng, k=96, n=48, relu=relu)
    # fbgemm: reduced-range activations, quint8 0 .. 127 (int8 -128 .. -1)
    x = rng.integers(-128, 0 if engine == "fbgemm" else 128, (128, 96), dtype=np.int8)
    expected = golden.linear(x, ly.w, ly.bias, ly.mult, ly.shift, ly.zp_in, ly.zp_out, ly.relu)
    got = _from_torch(_run_torch(_torch_linear(ly, engine), _torch_act(x, ly.s_in, ly.zp_in),
                                 engine))
    what = f"seed={seed} relu={relu} engine={engine} zp_in={ly.zp_in} zp_out={ly.zp_out}"
    np.testing.assert_array_less(np.abs(got - expected.astype(np.int16)), 2, err_msg=what)
    frac = _check_near_ties(ly, x, got, expected, what=what)
    clipped = float(np.mean((expected == 127) | (expected == (ly.zp_out if relu else -128))))
    log.info("%s: %.3f%% of %d elements differ by 1 LSB (shift %d..%d, %.0f%% at a clamp bound)",
             what, 100 * frac, expected.size, ly.shift.min(), ly.shift.max(), 100 * clipped)
