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
           "quantize_multiplier", "linear", "INT32_MIN", "INT32_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


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

    ``mult`` is in ``[2**30, 2**31)`` (or 0 for a zero scale) and ``shift`` in [0, 31].

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
