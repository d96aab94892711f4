"""The int8 quantization scheme shared by :mod:`stamen.sw.frontend.quantize` (``Sequential`` MLPs) and
:mod:`stamen.sw.frontend.fx_graph` (``torch.fx`` graphs), so both agree.

* :func:`calibration_batches`: the calibration data as checked tensors;
* :func:`act_qparams`: an observed activation range to ``(scale, zero point)``;
* :func:`quantize_layer`: a conv / Linear's float weights and bias to int8 weights, int32 bias and
  per-channel requantization;
* :func:`nonfinite`, :func:`check_finite`, :func:`check_module_params`: NaN / inf checks.

The scheme itself is described in :mod:`stamen.sw.frontend.quantize`. Every bad input raises
:class:`~stamen.sw.errors.QuantizeError` naming the tensor or layer and the rule.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import golden
from ..errors import QuantizeError

__all__ = ["ZERO_CHANNEL_SCALE", "act_qparams", "nonfinite", "check_finite",
           "check_module_params", "calibration_batches", "quantize_layer"]

#: Requantization scale given to an all-zero weight channel (its output is its bias).
ZERO_CHANNEL_SCALE = 2.0 ** -16


def act_qparams(lo: float, hi: float, reduce_range: bool = False,
                what: str = "activation") -> tuple[float, int]:
    """Return ``(scale, zero point)`` of an observed range ``[lo, hi]``.

    The range is widened to include 0; ``s = (hi - lo) / 255`` (``/ 127`` with ``reduce_range``),
    ``zp = clip(round(-128 - lo / s), -128, 127)``; an empty range gives ``(1.0, -128)``.
    ``what`` names the activation in errors.

    Raises
    ------
    QuantizeError
        When the range is not finite.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise QuantizeError(f"The calibration range of {what} must be finite, not "
                            f"[{lo!r}, {hi!r}]")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return 1.0, -128
    s = (hi - lo) / (127.0 if reduce_range else 255.0)
    zp = int(np.clip(round(-128 - lo / s), -128, 127))
    return s, zp


def nonfinite(t) -> str:
    """Return ``""`` when every value of tensor / array ``t`` is finite, else what is not."""
    t = torch.as_tensor(t.detach() if isinstance(t, torch.Tensor) else np.asarray(t))
    if not t.is_floating_point() or bool(torch.isfinite(t).all()):
        return ""
    counts = [(int(torch.isnan(t).sum()), "NaN"), (int(torch.isposinf(t).sum()), "+inf"),
              (int(torch.isneginf(t).sum()), "-inf")]
    first = tuple(int(i) for i in torch.nonzero(~torch.isfinite(t))[0])
    return (", ".join(f"{n} {k}" for n, k in counts if n)
            + f" of {t.numel()} values (the first at index {first})")


def check_finite(what: str, t) -> None:
    """Raise :class:`QuantizeError` naming ``what`` unless every value of ``t`` is finite."""
    bad = nonfinite(t)
    if bad:
        raise QuantizeError(f"{what} must be finite, not containing {bad}")


def check_module_params(mod: nn.Module, name: str) -> None:
    """Raise :class:`QuantizeError` naming the tensor for a NaN / inf in ``mod``'s floating point
    parameters and buffers (weights, biases, BatchNorm statistics); ``name`` is its path."""
    for pname, p in list(mod.named_parameters()) + list(mod.named_buffers()):
        full = f"{name}.{pname}" if name else pname
        check_finite(f"Parameter {full!r} ({type(mod).__name__})", p)


def calibration_batches(calibration) -> list[torch.Tensor]:
    """Return the calibration data (a tensor, an array, or an iterable of tensors, arrays or
    ``(x, y)`` pairs) as a list of tensors, each checked: at least one batch, every batch with at
    least one sample and only finite values (:class:`QuantizeError` otherwise)."""
    if isinstance(calibration, torch.Tensor):
        out = [calibration]
    elif isinstance(calibration, np.ndarray):
        out = [torch.as_tensor(calibration)]
    else:
        out = []
        for b in calibration:
            if isinstance(b, (tuple, list)):       # (x, y) pairs from a DataLoader
                b = b[0]
            out.append(b if isinstance(b, torch.Tensor) else torch.as_tensor(np.asarray(b)))
    if not out:
        raise QuantizeError("Calibration data must hold at least one batch, not none")
    for i, b in enumerate(out):
        if b.ndim == 0 or b.shape[0] == 0 or b.numel() == 0:
            raise QuantizeError(f"Calibration batch {i} must hold at least one sample, not "
                                f"shape {tuple(b.shape)}")
        check_finite(f"Calibration batch {i}", b)
    return out


def quantize_layer(where: str, w: np.ndarray, b: np.ndarray | None, s_in: float, s_out: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(w_q, s_w, bias, mult, shift)`` of a conv / Linear with float weights ``w``
    ``(Cout, ...)`` and bias ``b`` (or None) between activations of scales ``s_in`` and ``s_out``.

    ``w_q`` is int8 of ``w``'s shape, ``s_w`` float64 ``(Cout,)``, the rest int32 ``(Cout,)``; see
    :mod:`stamen.sw.frontend.quantize` for the scheme and the all-zero channel. ``where`` names the layer in
    errors.

    Raises
    ------
    QuantizeError
        Naming ``where`` and the channel: a weight or bias that is not finite, a bias that does not
        fit int32 with the channel's largest accumulator, a requantization scale of 1 or more.
    """
    w = np.asarray(w, dtype=np.float64)
    cout = w.shape[0]
    b = np.zeros(cout) if b is None else np.asarray(b, dtype=np.float64)
    check_finite(f"{where}: the weights", w)
    check_finite(f"{where}: the bias", b)
    flat = w.reshape(cout, -1)
    amax = np.abs(flat).max(axis=1)
    s_w = amax / 127.0
    wq = np.zeros(w.shape, np.int8)
    nz = amax > 0
    if nz.any():
        shape = (-1, *([1] * (w.ndim - 1)))
        wq[nz] = np.clip(np.round(w[nz] / s_w[nz].reshape(shape)), -127, 127).astype(np.int8)
    for o in np.nonzero(~nz)[0]:
        # No weights: the output is b / s_out. Keep the requantization scale 2**-16 (exact to
        # 2**-16 LSB), or the smallest power of two at which the bias fits int32.
        scale = ZERO_CHANNEL_SCALE
        while scale < 0.5 and abs(b[o]) / (s_out * scale) > golden.INT32_MAX:
            scale *= 2
        s_w[o] = scale * s_out / s_in
    # the largest |accumulator| of a channel: |a - zp| <= 255 times the sum of |w_q|
    acc_max = 255 * np.abs(wq.reshape(cout, -1).astype(np.int64)).sum(axis=1)
    bias_real = np.round(b / (s_in * s_w))
    bias = np.zeros(cout, np.int32)
    mult = np.zeros(cout, np.int32)
    shift = np.zeros(cout, np.int32)
    for o in range(cout):
        if abs(bias_real[o]) + acc_max[o] > golden.INT32_MAX:
            raise QuantizeError(
                f"{where}: output channel {o}: bias {b[o]:.4g} / (s_in * s_w) = "
                f"{bias_real[o]:.4g} plus the largest accumulator {int(acc_max[o])} must fit "
                f"int32 (|sum| <= {golden.INT32_MAX}), not {abs(bias_real[o]) + acc_max[o]:.4g}: "
                f"the bias is far outside the layer's output range")
        bias[o] = int(bias_real[o])
        scale = s_in * s_w[o] / s_out
        try:
            mult[o], shift[o] = golden.quantize_multiplier(float(scale))
        except ValueError as e:
            raise QuantizeError(f"{where}: output channel {o}: requantization scale "
                                f"s_in * s_w / s_out = {scale:.4g} must be below 1 ({e})"
                                ) from None
    return wq, s_w, bias, mult, shift
