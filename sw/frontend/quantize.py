"""Post-training quantization of a PyTorch ``Sequential`` MLP into Stamen's int8 numerics.

Supported modules: ``nn.Linear``, ``nn.ReLU`` (fused into the Linear before it) and ``nn.Flatten``
(before the first Linear it flattens each sample; later it is a no-op on 2-D activations).
:func:`quantize_model` sends any other model (a plain ``nn.Module`` MLP, a ``Sequential`` with
Dropout, a CNN) to :func:`stamen.sw.frontend.fx_graph.quantize_graph`, which traces it with ``torch.fx``.

Scheme (its helpers, shared with the ``torch.fx`` front end, are in :mod:`stamen.sw.frontend.calibration`):

* weights: symmetric int8 per output channel, ``s_w[n] = max|w[n, :]| / 127``,
  ``w_q = clip(round(w / s_w), -127, 127)``. An all-zero channel has no scale of its own; it gets
  ``s_w = 2**-16 * s_out / s_in`` (requantization scale ``2**-16``, a larger power of two only when
  its bias would not fit int32 otherwise), so its output ``bias / s_out + zp_out`` is exact to
  ``2**-16`` LSB before rounding;
* activations: asymmetric int8 from the min / max observed over the calibration data (the range is
  widened to include 0), ``s = (max - min) / 255``, ``zp = clip(round(-128 - min / s), -128, 127)``;
  the output range of a Linear followed by ReLU is observed after the ReLU. With
  ``reduce_range=True`` (PyTorch's x86 default, needed to compare with its ``fbgemm`` engine on
  every CPU) ``s = (max - min) / 127`` and the observed range maps to ``[-128, -1]``;
* bias: ``int32 round(b / (s_in * s_w))``; requantization per channel:
  ``(mult, shift) = golden.quantize_multiplier(s_in * s_w / s_out)``. A requantization scale below
  ``2**-32`` gives ``mult = 0``: exact, since every int32 accumulator times such a scale is below
  half an LSB, so the output is the zero point (see :func:`stamen.sw.golden.quantize_multiplier`).

Bad input raises :class:`~stamen.sw.errors.QuantizeError` naming the tensor or layer and the rule,
never a silently wrong model: a NaN or inf in a weight, bias, BatchNorm statistic, calibration
batch or observed activation; empty calibration data; a bias that does not fit int32 (together
with the largest accumulator of its channel) once divided by ``s_in * s_w``; a requantization scale
of 1 or more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import golden
from .calibration import (ZERO_CHANNEL_SCALE, act_qparams, calibration_batches, check_finite,
                          check_module_params, quantize_layer)
from ..errors import CompileError
from .fx_graph import quantize_graph

# quantize_layer and ZERO_CHANNEL_SCALE live in sw/frontend/calibration.py (shared with sw/frontend/fx_graph.py)
# and stay importable from here.
__all__ = ["QLinear", "QuantizedNet", "quantize", "quantize_model", "quantize_layer",
           "ZERO_CHANNEL_SCALE"]


@dataclass
class QLinear:
    """One quantized Linear layer (with ReLU fused when ``relu``).

    ``w`` is int8 (K, N); ``bias``, ``mult``, ``shift`` are int32 (N,); ``s_in`` / ``s_out`` are the
    activation scales and ``s_w`` the per-channel weight scales (float64 (N,)).
    """
    name: str
    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    zp_in: int
    zp_out: int
    relu: bool
    s_in: float
    s_out: float
    s_w: np.ndarray | None = None


class QuantizedNet:
    """A chain of quantized Linear layers and the float model it came from.

    Attributes
    ----------
    layers : list[QLinear]
    input_scale, output_scale : float
    input_zp, output_zp : int
    model : torch.nn.Sequential
        The float model (for :meth:`forward_float`).
    """

    def __init__(self, layers: list[QLinear], input_scale: float, input_zp: int,
                 output_scale: float, output_zp: int, model: nn.Module | None = None,
                 flatten: bool = False):
        self.layers = layers
        self.input_scale = float(input_scale)
        self.input_zp = int(input_zp)
        self.output_scale = float(output_scale)
        self.output_zp = int(output_zp)
        self.model = model
        self._flatten = flatten

    @property
    def in_features(self) -> int:
        """Return the input features of the first layer."""
        return self.layers[0].w.shape[0]

    @property
    def out_features(self) -> int:
        """Return the output features of the last layer."""
        return self.layers[-1].w.shape[1]

    def _as_2d(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        if self._flatten and x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Input must have shape (batch, {self.in_features}), not {x.shape}")
        return x

    def quantize_input(self, x_float) -> np.ndarray:
        """Return ``x_float`` (array or tensor, (batch, K) or flattenable) quantized to int8."""
        x = self._as_2d(x_float)
        q = np.round(x / self.input_scale) + self.input_zp
        return np.clip(q, -128, 127).astype(np.int8)

    def dequantize_output(self, y_int8) -> np.ndarray:
        """Return the int8 network output as float: ``(y - output_zp) * output_scale``."""
        y = np.asarray(y_int8)
        return (y.astype(np.float64) - self.output_zp) * self.output_scale

    def golden(self, x_int8: np.ndarray) -> np.ndarray:
        """Return the int8 output of the quantized network (a chain of :func:`golden.linear`)."""
        y = np.asarray(x_int8)
        for ly in self.layers:
            y = golden.linear(y, ly.w, ly.bias, ly.mult, ly.shift, ly.zp_in, ly.zp_out, ly.relu)
        return y

    def forward_float(self, x) -> np.ndarray:
        """Return the float model's output for ``x`` as a float64 array."""
        if self.model is None:
            raise ValueError("QuantizedNet has no float model")
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x),
                                                                   dtype=torch.float32)
        with torch.no_grad():
            return self.model(t.float()).detach().cpu().numpy().astype(np.float64)


def quantize_model(model: nn.Module, calibration, reduce_range: bool = False):
    """Quantize ``model`` post-training: an ``nn.Sequential`` of only Linear / ReLU / Flatten
    modules gives a :class:`QuantizedNet` (:func:`quantize`); any other module (a CNN, an MLP
    written as a plain ``nn.Module`` or with Dropout, ...) is traced with ``torch.fx`` and gives a
    :class:`~sw.graph.QuantizedGraph` (:func:`sw.frontend.fx_graph.quantize_graph`; its input may be
    ``(N, features)`` rows or NCHW images). Both compile with ``stamen.compile``.
    ``reduce_range`` is that of :func:`quantize`.
    """
    mlp = (nn.Linear, nn.ReLU, nn.Flatten)
    if isinstance(model, nn.Sequential) and all(isinstance(m, mlp) for m in model):
        return quantize(model, calibration, reduce_range=reduce_range)
    return quantize_graph(model, calibration, reduce_range=reduce_range)


def quantize(model: nn.Sequential, calibration, reduce_range: bool = False) -> QuantizedNet:
    """Quantize a ``Sequential`` of Linear / ReLU / Flatten post-training.

    Parameters
    ----------
    model : torch.nn.Sequential
    calibration : torch.Tensor or iterable of tensors (or ``(x, y)`` pairs)
        Representative inputs; activation ranges are the min / max observed over all of them.
    reduce_range : bool
        Quantize activations to 128 levels (``[-128, -1]`` over the observed range), as PyTorch's
        ``reduce_range=True`` observers do for its fbgemm engine.

    Raises
    ------
    TypeError
        When ``model`` is not an ``nn.Sequential``.
    CompileError
        Naming the module index and type, for an unsupported module or arrangement.
    QuantizeError
        (a :class:`CompileError`) Naming the tensor or layer and the rule: see the module
        docstring.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"Model must be a torch.nn.Sequential, not {type(model).__name__}")
    mods = list(model)
    # -- structure: groups of (linear index, relu?)
    groups = []
    flatten = False
    for i, mod in enumerate(mods):
        if isinstance(mod, nn.Linear):
            groups.append([i, False])
        elif isinstance(mod, nn.ReLU):
            if not groups:
                raise CompileError(f"Module {i} (ReLU) must follow a Linear: a ReLU on the network "
                                   f"input is not supported")
            groups[-1][1] = True
        elif isinstance(mod, nn.Flatten):
            if not groups:
                flatten = True
            elif mod.start_dim != 1:
                raise CompileError(f"Module {i} (Flatten) after a Linear must have start_dim=1")
        else:
            raise CompileError(f"Module {i} ({type(mod).__name__}) is not supported; supported "
                               f"modules: Linear, ReLU (after a Linear), Flatten")
    if not groups:
        raise CompileError("Model must contain at least one Linear module")
    if flatten and any(isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) != (1, -1)
                       for m in mods[:groups[0][0]]):
        raise CompileError("A Flatten before the first Linear must flatten each sample "
                           "(start_dim=1, end_dim=-1)")

    # -- observe ranges: network input (after leading Flattens) and after each group
    for i, mod in enumerate(mods):
        check_module_params(mod, str(i))
    first = groups[0][0]
    obs = [[np.inf, -np.inf] for _ in range(len(groups) + 1)]
    ends = {(g[0] + 1 if not g[1] else _relu_index(mods, g[0]) + 1): j + 1
            for j, g in enumerate(groups)}
    model.eval()
    with torch.no_grad():
        for bi, xb in enumerate(calibration_batches(calibration)):
            h = xb.float()
            for i, mod in enumerate(mods):
                if i == first:
                    obs[0][0] = min(obs[0][0], float(h.min()))
                    obs[0][1] = max(obs[0][1], float(h.max()))
                h = mod(h)
                check_finite(f"Module {i} ({type(mod).__name__}) output on calibration batch "
                             f"{bi}", h)
                if i + 1 in ends:
                    j = ends[i + 1]
                    obs[j][0] = min(obs[j][0], float(h.min()))
                    obs[j][1] = max(obs[j][1], float(h.max()))
    qparams = [act_qparams(lo, hi, reduce_range, "the network input" if j == 0 else
                           f"the output of module {groups[j - 1][0]} (Linear)")
               for j, (lo, hi) in enumerate(obs)]

    layers = []
    for j, (idx, relu) in enumerate(groups):
        lin: nn.Linear = mods[idx]
        s_in, zp_in = qparams[j]
        s_out, zp_out = qparams[j + 1]
        w = lin.weight.detach().double().cpu().numpy()             # (N, K)
        b = lin.bias.detach().double().cpu().numpy() if lin.bias is not None else None
        wq, s_w, bias, mult, shift = quantize_layer(f"Module {idx} (Linear)", w, b, s_in, s_out)
        layers.append(QLinear(name=f"{idx}.Linear", w=wq.T.copy(), bias=bias, mult=mult,
                              shift=shift, zp_in=zp_in, zp_out=zp_out, relu=relu, s_in=s_in,
                              s_out=s_out, s_w=s_w))
    return QuantizedNet(layers, qparams[0][0], qparams[0][1], qparams[-1][0], qparams[-1][1],
                        model=model, flatten=flatten)


def _relu_index(mods, linear_idx: int) -> int:
    """Return the index of the last module of the ReLU / Flatten run fused after a Linear."""
    i = linear_idx
    while i + 1 < len(mods) and isinstance(mods[i + 1], (nn.ReLU, nn.Flatten)):
        i += 1
    return i
