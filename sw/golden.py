"""The NumPy golden model: the one numerical reference for every tier (isasim, Amaranth, Verilator).

Pure functions, NumPy only, explicit dtypes. The arithmetic contract:

* Activations are int8 with a zero point ``zp`` (asymmetric); weights are int8, symmetric per output
  channel. The array multiplies ``(a - zp) * w``: a 9-bit signed activation operand times an int8 weight,
  so a real-zero activation gives an exact zero product.
* Accumulation is int32 and wraps modulo 2**32 (two's complement), as the hardware adders do.
* Requantization follows gemmlowp / TFLite: ``x = acc + bias`` (wrapping int32), then
  :func:`srdhm` (saturating rounding doubling high multiply by a Q31 multiplier), then
  :func:`rounding_shift_right` (round half away from zero), then ``+ zp_out``, then clamp to
  ``[zp_out if relu else -128, 127]`` (saturation to int8; ReLU in the quantized domain).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["wrap_int32", "gemm", "srdhm", "rounding_shift_right", "requantize",
           "quantize_multiplier", "linear", "conv2d", "conv2d_requant", "maxpool2d", "avgpool2d",
           "add", "conv_out_size", "AVGPOOL_GAIN", "INT32_MIN", "INT32_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
#: Average pooling scales each window sum by this power of two before requantizing, so the
#: fixed-point multiply is exact (for a power-of-two window) or nearly so, and the result is
#: rounded once, by the final shift.
AVGPOOL_GAIN = 64


def wrap_int32(x) -> np.ndarray:
    """Return ``x`` reduced modulo 2**32 into int32 (two's complement wrap-around)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _check_int8(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"{name} must be an int8 array, not {x.dtype}")
    return x


def gemm(a: np.ndarray, w: np.ndarray, zp: int = 0) -> np.ndarray:
    """Return ``(a - zp) @ w`` as int32 (wrapping).

    Parameters
    ----------
    a : int8 array, shape (M, K)
        Activations.
    w : int8 array, shape (K, N)
        Weights.
    zp : int
        Activation zero point, in [-128, 127].
    """
    a = _check_int8("GEMM activations", a)
    w = _check_int8("GEMM weights", w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"GEMM shapes must be (M, K) and (K, N), not {a.shape} and {w.shape}")
    if not -128 <= int(zp) <= 127:
        raise ValueError(f"Activation zero point must be in [-128, 127], not {zp!r}")
    prod = (a.astype(np.int64) - int(zp)) @ w.astype(np.int64)
    return wrap_int32(prod)


def srdhm(a, b) -> np.ndarray:
    """Saturating rounding doubling high multiply of int32 values (gemmlowp).

    ``(a*b + nudge) / 2**31`` with C division (truncation toward zero), where ``nudge`` is ``2**30`` when
    ``a*b >= 0`` and ``1 - 2**30`` otherwise. The one overflowing case, ``a == b == -2**31``, saturates
    to ``2**31 - 1``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    q = np.where(num >= 0, num >> 31, -((-num) >> 31))       # truncate toward zero
    q = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)
    return q.astype(np.int32)


def rounding_shift_right(x, shift) -> np.ndarray:
    """Divide int32 ``x`` by ``2**shift`` rounding to nearest, ties away from zero (gemmlowp).

    ``shift`` must be in [0, 31].
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 0) or np.any(shift > 31):
        raise ValueError(f"Requantization shift must be in [0, 31], not {shift!r}")
    mask = (np.int64(1) << shift) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> shift) + (remainder > threshold)).astype(np.int32)


def requantize(acc, bias, mult, shift, zp_out: int, relu: bool) -> np.ndarray:
    """Requantize int32 accumulators to int8 (see the module docstring for the exact steps).

    Parameters
    ----------
    acc : int32 array, shape (..., N)
    bias, mult, shift : int32 arrays, shape (N,)
        Per-output-channel bias, Q31 multiplier and right shift (0..31).
    zp_out : int
        Output zero point in [-128, 127].
    relu : bool
        Clamp below at ``zp_out`` (the quantized real zero).
    """
    x = wrap_int32(np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64))
    y = rounding_shift_right(srdhm(x, np.asarray(mult, dtype=np.int32)), shift)
    y = y.astype(np.int64) + int(zp_out)
    lo = max(int(zp_out), -128) if relu else -128
    return np.clip(y, lo, 127).astype(np.int8)


def quantize_multiplier(scale: float) -> tuple[int, int]:
    """Return ``(mult, shift)`` with ``scale ~= mult * 2**-31 * 2**-shift`` (TFLite's QuantizeMultiplier).

    ``mult`` is in ``[2**30, 2**31)`` (or 0) and ``shift`` in [0, 31].

    A scale below ``2**-32`` (the smallest ``mult * 2**-31 * 2**-31`` is ``2**-32``) gives
    ``(0, 0)``. That is exact, not a saturation: every int32 ``x`` has ``|x| <= 2**31``, so
    ``|x * scale| < 0.5`` and the correctly rounded result is 0 as well; :func:`requantize` then
    outputs the zero point (clamped), whatever the accumulator.

    Raises
    ------
    ValueError
        When ``scale`` is negative, not finite, at least 1, or too small to represent.
    """
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"Requantization scale must be a finite non-negative number, not {scale!r}")
    if scale == 0:
        return 0, 0
    if scale >= 1.0:
        raise ValueError(f"Requantization scale must be below 1.0, not {scale!r}")
    mant, exp = math.frexp(scale)           # scale = mant * 2**exp, mant in [0.5, 1)
    q = math.floor(mant * (1 << 31) + 0.5)     # ties away from zero, as TFLite
    if q == (1 << 31):
        q //= 2
        exp += 1
    shift = -exp
    if shift < 0:                            # scale just below 1 rounded up to 1.0
        return INT32_MAX, 0
    if shift > 31:
        return 0, 0                          # below the smallest representable scale: rounds to 0
    return q, shift


def linear(x: np.ndarray, w: np.ndarray, bias, mult, shift, zp_in: int, zp_out: int,
           relu: bool) -> np.ndarray:
    """Return the quantized Linear layer ``requantize(gemm(x, w, zp_in), ...)`` as int8, shape (M, N)."""
    return requantize(gemm(x, w, zp_in), bias, mult, shift, zp_out, relu)


# -- convolutional layers (activations NHWC) ---------------------------------------------------------
def _pair(name: str, v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (int(v), int(v))
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in v)):
        raise ValueError(f"{name} must be an int or a pair of ints, not {v!r}")
    return int(v[0]), int(v[1])


def conv_out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Return the output size of a convolution or pooling window along one axis:
    ``(size + 2*padding - kernel) // stride + 1`` (floor, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


def _windows(x: np.ndarray, kernel, stride, padding, fill: int) -> np.ndarray:
    """Return the windows of NHWC ``x`` padded with ``fill``: shape (N, OH, OW, KH, KW, C)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"Window kernel {kernel} and stride {stride} must be >= 1 and padding "
                         f"{padding} >= 0")
    n, h, w, c = x.shape
    oh, ow = conv_out_size(h, kh, sh, ph), conv_out_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"Window {kernel} with padding {padding} does not fit the input "
                         f"{h}x{w}")
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), fill, x.dtype)
    xp[:, ph:ph + h, pw:pw + w, :] = x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # N,H',W',C,KH,KW
    win = win[:, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw]
    return win.transpose(0, 1, 2, 4, 5, 3)


def conv2d(x: np.ndarray, w: np.ndarray, zp: int, stride=1, padding=0, groups: int = 1
           ) -> np.ndarray:
    """Return the int32 (wrapping) convolution ``sum (x - zp) * w`` of NHWC int8 ``x``.

    Parameters
    ----------
    x : int8 array (N, H, W, Cin)
    w : int8 array (KH, KW, Cin // groups, Cout)
    zp : int
        Input zero point; padding holds the real zero, so padded products are 0.
    stride, padding : int or (int, int)
    groups : int
        ``Cin`` and ``Cout`` must be multiples of it; output channel ``o`` reads input channels
        ``g * Cin/groups .. (g+1) * Cin/groups - 1`` with ``g = o // (Cout/groups)``
        (``groups == Cin == Cout`` is a depthwise convolution).

    Returns
    -------
    int32 array (N, OH, OW, Cout)
    """
    x = _check_int8("Conv activations", x)
    w = _check_int8("Conv weights", w)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"Conv shapes must be (N, H, W, Cin) and (KH, KW, Cin/groups, Cout), "
                         f"not {x.shape} and {w.shape}")
    cin, cout = x.shape[3], w.shape[3]
    if groups < 1 or cin % groups or cout % groups or w.shape[2] * groups != cin:
        raise ValueError(f"Conv groups={groups} must divide Cin={cin} and Cout={cout} with "
                         f"weights of {cin // max(groups, 1)} input channels, not {w.shape[2]}")
    if not -128 <= int(zp) <= 127:
        raise ValueError(f"Activation zero point must be in [-128, 127], not {zp!r}")
    win = _windows(x, (w.shape[0], w.shape[1]), _pair("stride", stride),
                   _pair("padding", padding), int(zp)).astype(np.int64) - int(zp)
    cg, og = cin // groups, cout // groups
    outs = []
    for g in range(groups):
        xs = win[..., g * cg:(g + 1) * cg].reshape(*win.shape[:3], -1)     # N,OH,OW,KH*KW*cg
        ws = w[..., g * og:(g + 1) * og].astype(np.int64).reshape(-1, og)
        outs.append(xs @ ws)
    return wrap_int32(np.concatenate(outs, axis=-1))


def conv2d_requant(x: np.ndarray, w: np.ndarray, bias, mult, shift, zp_in: int, zp_out: int,
                   relu: bool, stride=1, padding=0, groups: int = 1) -> np.ndarray:
    """Return the quantized convolution ``requantize(conv2d(x, w, zp_in, ...), ...)`` as int8."""
    return requantize(conv2d(x, w, zp_in, stride, padding, groups), bias, mult, shift, zp_out,
                      relu)


def maxpool2d(x: np.ndarray, kernel, stride, padding=0) -> np.ndarray:
    """Return the max over each window of NHWC int8 ``x`` (padding never wins: it is -128 and
    every window holds at least one input element); scale and zero point are unchanged."""
    x = _check_int8("Max-pool input", x)
    if x.ndim != 4:
        raise ValueError(f"Max-pool input must be NHWC, not shape {x.shape}")
    win = _windows(x, _pair("kernel", kernel), _pair("stride", stride), _pair("padding", padding),
                   -128)
    return win.max(axis=(3, 4)).astype(np.int8)


def avgpool2d(x: np.ndarray, kernel, stride, padding, zp_in: int, mult: int, shift: int,
              zp_out: int) -> np.ndarray:
    """Return the average pool of NHWC int8 ``x`` as ``requantize(AVGPOOL_GAIN * sum(x - zp_in),
    0, mult, shift, zp_out, False)`` over each window, padding counted as real zeros (PyTorch's
    ``count_include_pad=True``);
    ``mult, shift = quantize_multiplier(s_in / (s_out * KH * KW * AVGPOOL_GAIN))``.

    The gain keeps the rounding single: with ``mult = 2**30`` (a power-of-two window)
    ``srdhm(64 * sum, mult) = 32 * sum`` exactly and only the shift rounds; without it a 2x2
    window's ``sum / 4`` would be rounded twice (``k + 0.25`` becoming ``k + 1``)."""
    x = _check_int8("Avg-pool input", x)
    if x.ndim != 4:
        raise ValueError(f"Avg-pool input must be NHWC, not shape {x.shape}")
    win = _windows(x, _pair("kernel", kernel), _pair("stride", stride), _pair("padding", padding),
                   int(zp_in))
    total = (win.astype(np.int64) - int(zp_in)).sum(axis=(3, 4)) * AVGPOOL_GAIN
    c = x.shape[3]
    return requantize(total, np.zeros(c, np.int32), np.full(c, mult, np.int32),
                      np.full(c, shift, np.int32), zp_out, False)


def add(x1: np.ndarray, x2: np.ndarray, zp1: int, zp2: int, w1: int, w2: int, mult: int,
        shift: int, zp_out: int, relu: bool) -> np.ndarray:
    """Return the quantized elementwise sum
    ``requantize((x1 - zp1) * w1 + (x2 - zp2) * w2, 0, mult, shift, zp_out, relu)``.

    ``w1, w2`` are int8 integers with ``w2 / w1 ~= s2 / s1`` and ``mult, shift`` represent
    ``s1 / (s_out * w1)``, so the result is ``(s1 (x1 - zp1) + s2 (x2 - zp2)) / s_out + zp_out``
    up to the rounding of the weight ratio (see ``stamen.quantize``).
    """
    x1 = _check_int8("Add input 1", x1)
    x2 = _check_int8("Add input 2", x2)
    if x1.shape != x2.shape:
        raise ValueError(f"Add inputs must have equal shapes, not {x1.shape} and {x2.shape}")
    for name, v in (("w1", w1), ("w2", w2)):
        if not -128 <= int(v) <= 127:
            raise ValueError(f"Add weight {name} must be an int8 value, not {v!r}")
    total = ((x1.astype(np.int64) - int(zp1)) * int(w1) + (x2.astype(np.int64) - int(zp2))
             * int(w2))
    c = x1.shape[-1]
    return requantize(total, np.zeros(c, np.int32), np.full(c, mult, np.int32),
                      np.full(c, shift, np.int32), zp_out, relu)
