"""Quantize a PyTorch CNN or MLP post-training into a :class:`~stamen.sw.graph.QuantizedGraph`.

In: a ``torch.nn.Module`` that ``torch.fx`` can trace, taking one batch of float NCHW images (or
``(N, features)`` rows) and returning one tensor, and calibration batches of such input.
Out (:func:`quantize_graph`): int8 ``conv``, ``maxpool``, ``avgpool`` and ``add`` ops (see
:mod:`stamen.sw.graph`) with per-channel weight scales and calibrated activation scales.
Supported: Conv2d, Linear, BatchNorm2d (folded), ReLU / ReLU6 (fused), pools, flatten before a
Linear, Dropout, Identity, residual add (:data:`SUPPORTED`); anything else raises
:class:`~stamen.sw.errors.CompileError` naming the fx node, bad numbers a ``QuantizeError``.
fx nodes become ops in :mod:`stamen.sw.frontend.fx_ops`; the rules in full: ``docs/frontend.md``.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import fx, nn

from .. import golden
from .calibration import (act_qparams, calibration_batches, check_module_params, nonfinite,
                          quantize_layer)
from ..errors import CompileError, QuantizeError
from ..graph import QOp, QuantizedGraph
# SUPPORTED and fold_batchnorm are re-exported: they were defined here and stay public API
from .fx_ops import SUPPORTED, FxOp, GraphBuilder, fold_batchnorm, node_desc

__all__ = ["quantize_graph", "observe_ranges", "fold_batchnorm", "quantize_weights",
           "add_weights", "SUPPORTED"]

_ADD_WARN_LSB = 0.5


# -- public numerical helpers -------------------------------------------------------------------
def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(w_q, s_w)``: float weights ``(Cout, ...)`` as symmetric per-output-channel int8.

    ``s_w[o] = max|w[o]| / 127`` (1.0 for an all-zero channel) and
    ``w_q = clip(round(w / s_w), -127, 127)``, as :func:`stamen.sw.frontend.quantize.quantize`.
    """
    w = np.asarray(w, dtype=np.float64)
    flat = w.reshape(w.shape[0], -1)
    s_w = np.abs(flat).max(axis=1) / 127.0
    s_w = np.where(s_w > 0, s_w, 1.0)
    wq = np.clip(np.round(w / s_w.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127)
    return wq.astype(np.int8), s_w


def add_weights(s1: float, s2: float, s_out: float) -> tuple[int, int, int, int, float]:
    """Return ``(w1, w2, mult, shift, error_lsb)`` of a quantized add ``s1 x1 + s2 x2 -> s_out``.

    ``w1, w2`` are integers in [1, 127] with ``w2 / w1`` as close as possible to ``s2 / s1`` (all
    pairs searched; among equally close pairs the larger ``w1``), taking the best pair whose
    ``s1 / (s_out * w1)`` is below 1, and
    ``(mult, shift) = quantize_multiplier(s1 / (s_out * w1))``.
    ``error_lsb = |w2 / w1 - s2 / s1| * 255 * s1 / s_out`` bounds, in output LSB, how far the
    rescaled sum can be from the exact ``(s1 (x1 - zp1) + s2 (x2 - zp2)) / s_out`` before rounding
    (``|x2 - zp2| <= 255``).

    Raises
    ------
    ValueError
        When a scale is not positive, or no pair gives a multiplier below 1.
    """
    if not (s1 > 0 and s2 > 0 and s_out > 0):
        raise ValueError(f"Add scales must be positive, not {(s1, s2, s_out)!r}")
    ratio = s2 / s1
    ws = np.arange(1, 128, dtype=np.int64)
    w1g, w2g = np.meshgrid(ws, ws, indexing="ij")
    err = np.abs(w2g / w1g - ratio).ravel()
    order = np.lexsort((-w1g.ravel(), err))          # smallest error, then the larger w1
    for idx in order:
        w1, w2 = int(w1g.ravel()[idx]), int(w2g.ravel()[idx])
        scale = s1 / (s_out * w1)
        if scale < 1.0:
            mult, shift = golden.quantize_multiplier(scale)
            return w1, w2, int(mult), int(shift), float(err[idx] * 255 * s1 / s_out)
    raise ValueError(f"Add input scale {s1:.4g} is too large for the output scale {s_out:.4g}: "
                     f"s1 / (s_out * w1) must be below 1 for some w1 <= 127")


# -- calibration ------------------------------------------------------------------------------
class _Recorder(fx.Interpreter):
    """Run a traced module and record each tensor node's min, max and per-sample shape."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.ranges: dict[str, list[float]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.batch = 0

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            bad = nonfinite(out)
            if bad:
                raise QuantizeError(f"{node_desc(self.module, n)}: its output on calibration "
                                    f"batch {self.batch} must be finite, not containing {bad}")
            lo, hi = float(out.min()), float(out.max())
            r = self.ranges.setdefault(n.name, [np.inf, -np.inf])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)
            self.shapes[n.name] = tuple(out.shape[1:])
        return out


def observe_ranges(gm: fx.GraphModule, calibration) -> tuple[dict, dict]:
    """Run ``gm`` (eval, no grad) over ``calibration``; return per-node ``{name: (min, max)}`` and
    ``{name: per-sample shape}``.

    ``calibration`` is a tensor, a list of tensors, or an iterable of tensors or ``(x, y)`` pairs
    (a ``DataLoader``) of float NCHW images or ``(N, features)`` rows.

    Raises
    ------
    QuantizeError
        For no batch, an empty batch, a batch that is neither 4-D nor 2-D, or a NaN / inf in a
        batch or in any node's output (naming the batch or the fx node).
    """
    rec = _Recorder(gm)
    with torch.no_grad():
        for i, xb in enumerate(calibration_batches(calibration)):
            if xb.ndim not in (2, 4):
                raise QuantizeError(f"Calibration batch {i} must be NCHW images (4-D) or "
                                    f"(N, features) rows (2-D), not shape {tuple(xb.shape)}")
            rec.batch = i
            rec.run(xb.float())
    return {k: (v[0], v[1]) for k, v in rec.ranges.items()}, rec.shapes


# -- quantization of the built graph -----------------------------------------------------------
def _out_qparams(op: FxOp, ranges: dict, reduce_range: bool = False) -> tuple[float, int]:
    if op.relu == "relu6":
        return act_qparams(0.0, 6.0, reduce_range)
    lo, hi = ranges[op.range_node.name]
    if op.relu:
        lo, hi = 0.0, max(hi, 0.0)
    return act_qparams(lo, hi, reduce_range, f"fx node {op.range_node.name!r}")


def _quantize_op(op: FxOp, qp: dict, ranges: dict, reduce_range: bool = False) -> QOp:
    s_in = [qp[t][0] for t in op.inputs]
    zp_in = [qp[t][1] for t in op.inputs]
    where = f"fx node {op.nodes[0]!r} ({' + '.join(op.parts)})"
    common = dict(name=op.name, kind=op.kind, inputs=list(op.inputs), zp_in=zp_in, s_in=s_in,
                  out_shape=op.out_shape, kernel=op.kernel, stride=op.stride,
                  padding=op.padding, groups=op.groups, relu=op.relu is not None,
                  torch_op=" + ".join(op.parts))
    extra = {"nodes": list(op.nodes), "relu6": op.relu == "relu6", **op.extra}
    if op.kind == "conv":
        s_out, zp_out = _out_qparams(op, ranges, reduce_range)
        wq, s_w, bias, mult, shift = quantize_layer(where, op.w, op.b, s_in[0], s_out)
        extra["s_w"] = [float(v) for v in s_w]       # JSON-able, as QuantizedGraph.to_dict needs
        if op.linear is not None:
            extra["linear"] = op.linear
        return QOp(**common, zp_out=zp_out, s_out=s_out,
                   w=np.ascontiguousarray(wq.transpose(2, 3, 1, 0)),
                   bias=bias.astype(np.int32), mult=mult, shift=shift, extra=extra)
    if op.kind == "maxpool":
        if op.padding != (0, 0) and zp_in[0] != -128:
            raise CompileError(f"{where}: a padded max-pool needs a non-negative input (zero "
                               f"point -128, e.g. after a ReLU), not zero point {zp_in[0]}: the "
                               f"device pads max-pool windows with -128 only then")
        return QOp(**common, zp_out=zp_in[0], s_out=s_in[0], extra=extra)
    if op.kind == "avgpool":
        kh, kw = op.kernel
        mult, shift = golden.quantize_multiplier(1.0 / (kh * kw * golden.AVGPOOL_GAIN))
        extra["adaptive"] = op.adaptive
        return QOp(**common, zp_out=zp_in[0], s_out=s_in[0], mult=int(mult), shift=int(shift),
                   extra=extra)
    # add
    s_out, zp_out = _out_qparams(op, ranges, reduce_range)
    try:
        w1, w2, mult, shift, err = add_weights(s_in[0], s_in[1], s_out)
    except ValueError as e:
        raise CompileError(f"{where}: {e}") from None
    if err > _ADD_WARN_LSB:
        warnings.warn(f"{where}: the input scales {s_in[0]:.4g} and {s_in[1]:.4g} are too far "
                      f"apart for int8 add weights: w2/w1 = {w2}/{w1} leaves up to {err:.2f} "
                      f"output LSB of error", UserWarning, stacklevel=3)
    extra["add_error_lsb"] = err
    return QOp(**common, zp_out=zp_out, s_out=s_out, mult=mult, shift=shift, add_w=(w1, w2),
               extra=extra)


def quantize_graph(model: nn.Module, calibration, reduce_range: bool = False
                   ) -> QuantizedGraph:
    """Quantize a PyTorch CNN or MLP post-training into a :class:`QuantizedGraph`.

    Parameters
    ----------
    model : torch.nn.Module
        Traceable by ``torch.fx.symbolic_trace``; takes one batch of float NCHW images (or of
        ``(N, features)`` rows) and returns one tensor. It is put in eval mode (BatchNorm uses its
        running statistics, Dropout is the identity).
    calibration : torch.Tensor, list of tensors, or an iterable of tensors or ``(x, y)`` pairs
        Representative float NCHW images or feature rows; activation ranges are the min / max
        over all of them.
    reduce_range : bool
        Quantize every activation to 128 levels (as PyTorch's ``reduce_range=True`` observers for
        its fbgemm engine; see :mod:`stamen.sw.frontend.torch_ref`).

    Raises
    ------
    TypeError
        When ``model`` is not a ``torch.nn.Module``.
    CompileError
        Naming the fx node, its op and target and what is supported, for an unsupported node or
        arrangement, or a model fx cannot trace.
    QuantizeError
        (a :class:`CompileError`) Naming the tensor, node or layer and the rule: empty or
        non-finite calibration data, a non-finite parameter or activation, a bias beyond int32,
        a requantization scale of 1 or more (see ``docs/frontend.md``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Model must be a torch.nn.Module, not {type(model).__name__}")
    model.eval()
    root = model
    if fx.Tracer().is_leaf_module(model, ""):     # a lone nn.Conv2d etc.: trace it as one call
        root = nn.Sequential(model)
    try:
        gm = fx.symbolic_trace(root)
    except Exception as e:   # fx raises TraceError, TypeError, ... for untraceable code
        raise CompileError(f"torch.fx.symbolic_trace cannot trace {type(model).__name__}: "
                           f"{type(e).__name__}: {e}") from e
    gm.eval()
    for n in gm.graph.nodes:                     # before calibrating: a NaN weight names itself
        if n.op == "call_module":
            check_module_params(gm.get_submodule(n.target), str(n.target))
    ranges, shapes = observe_ranges(gm, calibration)

    # Only nodes that reach the output matter; in-place calls elsewhere would change them.
    live: set[fx.Node] = set()
    out_nodes = [n for n in gm.graph.nodes if n.op == "output"]
    stack = list(out_nodes)
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.all_input_nodes)
    builder = GraphBuilder(gm, shapes, live)
    for node in gm.graph.nodes:
        if node in live:
            builder.visit(node)
        elif node.op in ("call_method", "call_function") and (
                str(getattr(node.target, "__name__", node.target)).endswith("_")
                or node.kwargs.get("inplace")):
            raise builder.unsupported(node, "an in-place call whose result is unused is not "
                                            "supported")
    if not builder.ops or builder.output is None:
        raise CompileError(f"{type(model).__name__} computes no supported op; supported: "
                           f"{SUPPORTED}")
    inp = next(n for n in gm.graph.nodes if n.op == "placeholder")
    qp = {"input": act_qparams(*ranges[inp.name], reduce_range, "the network input")}
    qops = []
    for op in builder.ops:
        q = _quantize_op(op, qp, ranges, reduce_range)
        qp[q.name] = (q.s_out, q.zp_out)
        qops.append(q)
    h, w, c = builder.vals[inp].shape
    return QuantizedGraph(qops, (h, w, c), qp["input"][0], qp["input"][1],
                          output=builder.output, model=model)
