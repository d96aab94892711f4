"""Run a :class:`~stamen.sw.graph.QuantizedGraph` with PyTorch's own quantized operators.

The reference that Stamen's numerics are checked against (within 1 LSB, see
``tests/test_sw_torch_conv_reference.py``). Every op uses the graph's integers, scales and zero
points; only the arithmetic is PyTorch's:

* activations: Stamen's int8 ``a`` with zero point ``zp`` is the quint8 ``a + 128`` with zero
  point ``zp + 128`` (NCHW; a Linear's output is 2-D ``(N, features)``);
* ``conv``: ``torch.ao.nn.quantized.Conv2d`` (``torch.ao.nn.intrinsic.quantized.ConvReLU2d``
  when ``relu``; a fused ReLU6 is the plain ReLU clamp, its ``[0, 6]`` range being the output
  scale) with per-channel symmetric qint8 weights ``w_q`` and scales ``s_w`` and the float bias
  ``bias_int32 * s_in * s_w``; a conv that came from a ``Linear`` runs as
  ``torch.ao.nn.quantized.Linear`` / ``LinearReLU`` on the flattened (``C, H, W`` order) input;
* ``maxpool``: ``torch.nn.functional.max_pool2d`` on the quantized tensor;
* ``avgpool``: ``torch.nn.functional.avg_pool2d`` (``adaptive_avg_pool2d(x, 1)`` for an adaptive
  one) on the quantized tensor, which keeps the input's scale and zero point;
* ``add``: ``torch.ops.quantized.add`` / ``add_relu`` with the graph's output scale and zero point
  (exact float scales, not the graph's integer weights ``w1, w2``).

The engine is always chosen here, never taken from the machine's default
(``torch.backends.quantized.engine`` is set for the call and restored afterwards):

* ``"qnnpack"`` (:data:`REFERENCE_ENGINE`, the default): its x86 kernels need only SSE2 and widen
  uint8 and int8 to 16 bits before an exact int32 multiply-accumulate, so it gives the same
  answer on every x86 CPU for full-range (``0 .. 255``) activations, which is what Stamen uses.
* ``"fbgemm"``: only for activations of a reduced range (PyTorch's ``reduce_range=True`` on
  x86; ``quantize_graph(..., reduce_range=True)``). On CPUs without AVX512-VNNI (every AVX2 CPU,
  e.g. AMD EPYC before Zen 4) fbgemm multiplies uint8 x int8 pairs into a *saturating* int16
  (``vpmaddubsw``), so full-range activations give wrong sums there (tens of LSB) and right ones
  on VNNI CPUs. Before every conv / Linear the reference checks that no pair can saturate
  (``2 * max(a) * max|w| <= 32767``, :func:`fbgemm_exact`) and raises a ``ValueError`` otherwise,
  so the fbgemm answer, where it is given, is the same on every x86 CPU.

PyTorch's quantized tensors are deprecated; that one warning is filtered by its message where
they are created.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from ..graph import QOp, QuantizedGraph

__all__ = ["torch_quantized_forward", "torch_quantized_op", "to_quint8", "from_quint8",
           "quantized_engine", "fbgemm_exact", "TORCH_AO_DEPRECATION", "U8_OFFSET",
           "REFERENCE_ENGINE", "ENGINES"]

#: The message of PyTorch's deprecation warning for quantized tensors (a regular expression).
TORCH_AO_DEPRECATION = (r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other "
                        r"quantized tensor creation functions")
#: quint8 value = Stamen int8 value + 128; zero points likewise.
U8_OFFSET = 128
#: The quantized engine of the reference: exact for full-range activations on every x86 CPU.
REFERENCE_ENGINE = "qnnpack"
#: The engines the reference can run on (see the module docstring for when fbgemm is exact).
ENGINES = ("qnnpack", "fbgemm")
_INT16_MAX = (1 << 15) - 1


@contextmanager
def quantized_engine(engine: str = REFERENCE_ENGINE):
    """Run the body with PyTorch's quantized engine set to ``engine``; restore the previous one.

    Raises
    ------
    ValueError
        When ``engine`` is not one of :data:`ENGINES` or this PyTorch build lacks it.
    """
    if engine not in ENGINES:
        raise ValueError(f"Quantized engine must be one of {ENGINES}, not {engine!r}")
    if engine not in torch.backends.quantized.supported_engines:
        raise ValueError(f"Quantized engine {engine!r} must be supported by this PyTorch build "
                         f"(supported: {torch.backends.quantized.supported_engines})")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def fbgemm_exact(act_max_u8: int, w_absmax: int) -> bool:
    """Return whether fbgemm's int16 pair sums ``a0 * w0 + a1 * w1`` cannot saturate for quint8
    activations up to ``act_max_u8`` and int8 weights up to ``w_absmax`` in magnitude (exact on
    AVX2 as on AVX512-VNNI)."""
    return 2 * int(act_max_u8) * int(w_absmax) <= _INT16_MAX


@contextmanager
def _torch_ao():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_AO_DEPRECATION, category=UserWarning)
        yield


def to_quint8(a: np.ndarray, scale: float, zp: int) -> torch.Tensor:
    """Return int8 NHWC activations ``a`` (zero point ``zp``) as the equal quint8 NCHW tensor.

    ``(N, 1, 1, C)`` stays 4-D; callers flatten it where PyTorch has a 2-D tensor.
    """
    a = np.asarray(a)
    if a.dtype != np.int8 or a.ndim != 4:
        raise ValueError(f"Activations must be int8 NHWC, not {a.dtype} {a.shape}")
    real = torch.from_numpy((a.astype(np.float64) - zp) * scale).float().permute(0, 3, 1, 2)
    with _torch_ao():
        q = torch.quantize_per_tensor(real.contiguous(), float(scale), int(zp) + U8_OFFSET,
                                      torch.quint8)
    if not np.array_equal(from_quint8(q), a):
        raise RuntimeError("quint8 conversion is not exact")
    return q


def from_quint8(q: torch.Tensor) -> np.ndarray:
    """Return a quint8 NCHW (or ``(N, C)``) tensor's values as Stamen int8 NHWC
    (``(N, 1, 1, C)`` for a 2-D tensor)."""
    r = q.int_repr().numpy().astype(np.int16) - U8_OFFSET
    if r.ndim == 2:
        r = r[:, None, None, :]
    else:
        r = r.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(r).astype(np.int8)


def _weights(op: QOp) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``op``'s per-channel qint8 weights (PyTorch layout) and float bias."""
    s_w = np.asarray(op.extra["s_w"], dtype=np.float64)
    wq = op.w.transpose(3, 2, 0, 1)                              # Cout, Cin/g, KH, KW
    if op.extra.get("linear") is not None:
        wq = wq.reshape(wq.shape[0], -1)                         # C, H, W flattening order
    cout = wq.shape[0]
    real = torch.from_numpy(wq.astype(np.float64) * s_w.reshape(-1, *([1] * (wq.ndim - 1))))
    with _torch_ao():
        qw = torch.quantize_per_channel(real.float().contiguous(), torch.from_numpy(s_w),
                                        torch.zeros(cout, dtype=torch.long), axis=0,
                                        dtype=torch.qint8)
    if not np.array_equal(qw.int_repr().numpy(), wq):
        raise RuntimeError(f"{op.name}: qint8 weight conversion is not exact")
    bias = torch.from_numpy(op.bias.astype(np.float64) * op.s_in[0] * s_w).float()
    return qw, bias


def _conv_module(op: QOp) -> torch.nn.Module:
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    qw, bias = _weights(op)
    with _torch_ao():
        if op.extra.get("linear") is not None:
            cls = nniq.LinearReLU if op.relu else nnq.Linear
            mod = cls(qw.shape[1], qw.shape[0], dtype=torch.qint8)
        else:
            kh, kw, cg, cout = op.w.shape
            cls = nniq.ConvReLU2d if op.relu else nnq.Conv2d
            mod = cls(cg * op.groups, cout, (kh, kw), stride=op.stride, padding=op.padding,
                      groups=op.groups)
        mod.set_weight_bias(qw, bias)
    mod.scale = float(op.s_out)
    mod.zero_point = int(op.zp_out) + U8_OFFSET
    return mod


def _check_fbgemm(op: QOp, x: torch.Tensor) -> None:
    """Raise unless fbgemm computes ``op`` on ``x`` exactly on every x86 CPU (no int16
    saturation)."""
    if torch.backends.quantized.engine != "fbgemm" or not x.numel():
        return
    a_max = int(x.int_repr().max())
    w_max = int(np.abs(op.w.astype(np.int16)).max())
    if not fbgemm_exact(a_max, w_max):
        raise ValueError(f"{op.name}: fbgemm input must be of reduced range (quint8 values at "
                         f"most {_INT16_MAX // (2 * max(w_max, 1))} for weights up to {w_max}), "
                         f"not up to {a_max}: without AVX512-VNNI fbgemm saturates pairs of "
                         f"products to int16; use the 'qnnpack' engine or "
                         f"quantize_graph(..., reduce_range=True) calibrated on this data")


def _run(op: QOp, xs: list[torch.Tensor]) -> torch.Tensor:
    """Run ``op`` on quint8 tensors as PyTorch's quantized operators would."""
    x = xs[0]
    with _torch_ao(), torch.no_grad():
        if op.kind == "conv":
            _check_fbgemm(op, x)
            mod = _conv_module(op)
            if op.extra.get("linear") is not None:
                x = x.flatten(1)
            elif x.ndim == 2:
                x = x[:, :, None, None]
            return mod(x)
        if op.kind == "maxpool":
            return F.max_pool2d(x, op.kernel, op.stride, op.padding)
        if op.kind == "avgpool":
            if op.extra.get("adaptive"):
                return F.adaptive_avg_pool2d(x, 1)
            return F.avg_pool2d(x, op.kernel, op.stride, op.padding)
        if op.kind == "add":
            fn = torch.ops.quantized.add_relu if op.relu else torch.ops.quantized.add
            return fn(x, xs[1], float(op.s_out), int(op.zp_out) + U8_OFFSET)
    raise ValueError(f"{op.name}: op kind {op.kind!r} has no PyTorch reference")


def torch_quantized_op(op: QOp, *xs: np.ndarray, engine: str = REFERENCE_ENGINE) -> np.ndarray:
    """Return ``op``'s output (int8 NHWC) computed by PyTorch's quantized operators on ``engine``
    for int8 NHWC inputs ``xs`` (with the scales and zero points of ``op``'s inputs).

    Raises
    ------
    ValueError
        For an unknown or unavailable engine, or fbgemm with activations it would saturate.
    """
    with quantized_engine(engine):
        qs = [to_quint8(x, s, zp) for x, s, zp in zip(xs, op.s_in, op.zp_in)]
        if op.kind == "add" and op.out_shape[:2] == (1, 1):
            qs = [q.flatten(1) for q in qs]
        return from_quint8(_run(op, qs))


def torch_quantized_forward(qgraph: QuantizedGraph, x, engine: str = REFERENCE_ENGINE
                            ) -> np.ndarray:
    """Return the network output (int8 NHWC) computed by PyTorch's quantized operators on
    ``engine`` (``"qnnpack"`` unless given; see the module docstring).

    ``x`` is a batch of float NCHW images (tensor or array), quantized with
    :meth:`QuantizedGraph.quantize_input` so that both sides see the same integers, or an int8
    NHWC array already quantized (for a graph that takes rows, float or int8 ``(N, C)`` rows too,
    giving ``(N, OC)`` as :meth:`QuantizedGraph.reference` does). Tensors stay quint8 from the
    input to the output.

    Raises
    ------
    ValueError
        For an unknown or unavailable engine, or fbgemm with activations it would saturate.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    xq = x if x.dtype == np.int8 else qgraph.quantize_input(x)
    rows = xq.ndim == 2
    if rows:
        xq = xq[:, None, None, :]
    with quantized_engine(engine):
        vals = {"input": to_quint8(xq, qgraph.input_scale, qgraph.input_zp)}
        for op in qgraph.ops:
            vals[op.name] = _run(op, [vals[t] for t in op.inputs])
        y = from_quint8(vals[qgraph.output])
    return y[:, 0, 0, :] if rows and y.shape[1:3] == (1, 1) else y
