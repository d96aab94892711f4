"""Golden numerics: srdhm, rounding shift, requantize, quantize_multiplier, by hand."""
import math

import numpy as np
import pytest

from stamen.sw import golden

I32_MIN, I32_MAX = golden.INT32_MIN, golden.INT32_MAX


@pytest.mark.parametrize("a, b, expected", [
    (1 << 30, 1 << 30, 1 << 29),       # 0.5 * 0.5 * 2**31 = 2**29 exactly
    (1, 1 << 30, 1),                   # 0.5 -> +0.5 nudge -> 1
    (3, 1 << 30, 2),                   # 1.5 -> 2
    (-1, 1 << 30, 0),                  # -0.5: (-2**30 + 1 - 2**30) / 2**31 truncates to 0
    (-3, 1 << 30, -1),                 # -1.5: (-2**32 + 1) / 2**31 truncates to -1
    (I32_MAX, I32_MAX, I32_MAX - 1),   # (2**31-1)**2 / 2**31 = 2**31 - 2 + 2**-31 -> 2**31 - 2
    (I32_MIN, I32_MIN, I32_MAX),       # the one saturating case
    (I32_MIN, I32_MAX, I32_MIN + 1),   # -2**31 * (2**31-1) / 2**31 = -(2**31 - 1)
    (0, 12345, 0),
    (1000, 1 << 30, 500),
    (1000, I32_MAX, 1000),             # 1000 * (1 - 2**-31) + 0.5 truncates to 1000
])
def test_srdhm_hand_examples(a, b, expected):
    assert int(golden.srdhm(a, b)) == expected


@pytest.mark.parametrize("x, shift, expected", [
    (5, 1, 3), (-5, 1, -3),            # ties away from zero
    (4, 1, 2), (-4, 1, -2),
    (7, 2, 2), (-7, 2, -2),            # 1.75
    (6, 2, 2), (-6, 2, -2),            # 1.5 ties away
    (5, 2, 1), (-5, 2, -1),            # 1.25
    (123, 0, 123), (-123, 0, -123),
    (-1, 31, 0), (I32_MAX, 31, 1), (I32_MIN, 31, -1),
    (1 << 30, 31, 1), ((1 << 30) - 1, 31, 0), (-(1 << 30), 31, -1),
])
def test_rounding_shift_right_hand_examples(x, shift, expected):
    assert int(golden.rounding_shift_right(x, shift)) == expected


def test_rounding_shift_rejects_bad_shift():
    with pytest.raises(ValueError, match="shift"):
        golden.rounding_shift_right(1, 32)
    with pytest.raises(ValueError, match="shift"):
        golden.rounding_shift_right(1, -1)


def test_requantize_within_one_lsb_of_float():
    rng = np.random.default_rng(1234)
    acc = rng.integers(-(1 << 20), 1 << 20, size=(200, 16)).astype(np.int32)
    mult = rng.integers(1 << 30, 1 << 31, size=16).astype(np.int32)
    shift = rng.integers(8, 20, size=16).astype(np.int32)
    bias = rng.integers(-1000, 1000, size=16).astype(np.int32)
    zp = -7
    got = golden.requantize(acc, bias, mult, shift, zp, relu=False).astype(np.int64)
    real = (acc.astype(np.float64) + bias) * mult / 2.0 ** 31 / 2.0 ** shift
    ref = np.clip(np.round(real) + zp, -128, 127)
    assert np.max(np.abs(got - ref)) <= 1, "seed=1234"


def test_requantize_relu_and_saturation():
    acc = np.array([[-10 ** 9, 10 ** 9, 0]], np.int32)
    one = np.full(3, 1 << 30, np.int32)          # 0.5
    zero = np.zeros(3, np.int32)
    got = golden.requantize(acc, zero, one, zero, 5, relu=True)
    np.testing.assert_array_equal(got, [[5, 127, 5]])
    got = golden.requantize(acc, zero, one, zero, 5, relu=False)
    np.testing.assert_array_equal(got, [[-128, 127, 5]])


def test_bias_add_wraps_int32():
    acc = np.array([[I32_MAX]], np.int32)
    got = golden.requantize(acc, np.array([1], np.int32), np.array([1 << 30], np.int32),
                            np.array([31], np.int32), 0, False)
    # I32_MAX + 1 wraps to I32_MIN; * 0.5 -> -2**30; >> 31 rounds to -1 (ties away from zero)
    assert int(got[0, 0]) == -1


def test_gemm_wraps_and_uses_zero_point():
    a = np.array([[1, 2]], np.int8)
    w = np.array([[3], [-4]], np.int8)
    np.testing.assert_array_equal(golden.gemm(a, w, zp=-1), [[(1 + 1) * 3 + (2 + 1) * -4]])
    np.testing.assert_array_equal(golden.wrap_int32([1 << 31, -(1 << 31) - 1]), [I32_MIN, I32_MAX])


@pytest.mark.parametrize("seed", range(5))
def test_quantize_multiplier_round_trip(seed):
    rng = np.random.default_rng(seed)
    for scale in 10.0 ** rng.uniform(-9, -1e-3, size=200):
        mult, shift = golden.quantize_multiplier(float(scale))
        assert (1 << 30) <= mult < (1 << 31), f"seed={seed} scale={scale}"
        assert 0 <= shift <= 31, f"seed={seed} scale={scale}"
        back = mult * 2.0 ** -31 * 2.0 ** -shift
        assert abs(back - scale) <= scale * 2.0 ** -30, f"seed={seed} scale={scale}"


def test_quantize_multiplier_edges():
    assert golden.quantize_multiplier(0.0) == (0, 0)
    assert golden.quantize_multiplier(0.5) == (1 << 30, 0)
    assert golden.quantize_multiplier(0.25) == (1 << 30, 1)
    assert golden.quantize_multiplier(2.0 ** -40) == (0, 0)       # below 2**-32: rounds to zero
    for bad in (1.0, 1.5, -0.1, math.inf, math.nan):
        with pytest.raises(ValueError):
            golden.quantize_multiplier(bad)


def test_quantize_multiplier_just_below_one():
    # the mantissa rounds up to 2**31; the result must stay representable (shift >= 0)
    mult, shift = golden.quantize_multiplier(1.0 - 2.0 ** -40)
    assert 0 <= shift <= 31
    assert abs(mult * 2.0 ** -31 * 2.0 ** -shift - (1.0 - 2.0 ** -40)) < 2.0 ** -30
