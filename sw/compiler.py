"""Compiler entry points: raw GEMMs, quantized Linear layers, MLPs and CNN graphs.

Every entry point builds a :class:`~sw.graph.QuantizedGraph` and compiles it with
:func:`sw.lower.compile_graph`, the one tiler and code generator: a GEMM or Linear layer over ``M``
rows of ``K`` features is a ``1 x 1`` convolution over ``M`` images of ``1 x 1 x K`` (the MATMUL
rows walk the images), so an MLP and a CNN share tiling, scratchpad caching, the cycle-model plan
choice and the memory layout (``sw/lower.py``'s module docstring). Programs of these ``1 x 1``
graphs take ``(M, K)`` int8 inputs and give ``(M, N)`` outputs (int32 for a raw GEMM).
"""
from __future__ import annotations

import numpy as np

from stamen.hw.params import AccelConfig

from .errors import CompileError
from .graph import QOp, QuantizedGraph
from .lower import K_MAX_INT32, compile_graph
from .program import FORMAT_VERSION, LayerInfo, Program

__all__ = ["Program", "LayerInfo", "compile_gemm", "compile_linear", "compile_model",
           "K_MAX_INT32", "FORMAT_VERSION"]


def _weights_2d(name: str, w) -> np.ndarray:
    if not isinstance(w, np.ndarray) or w.dtype != np.int8:
        raise TypeError(f"{name}: weights must be an int8 numpy array, not "
                        f"{getattr(w, 'dtype', type(w).__name__)}")
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
        raise CompileError(f"{name}: weights must have shape (K, N) with K, N >= 1, not {w.shape}")
    return w


def _dense_op(name: str, kind: str, w: np.ndarray, zp_in: int, zp_out: int = 0, bias=None,
              mult=None, shift=None, relu: bool = False) -> QOp:
    """A GEMM / Linear layer as a ``1 x 1`` convolution over ``1 x 1 x K`` images."""
    w = _weights_2d(name, w)
    k, n = w.shape
    return QOp(name, kind, [], [zp_in], zp_out, [1.0], 1.0, (1, 1, n),
               w=w.reshape(1, 1, k, n), bias=bias, mult=mult, shift=shift, relu=bool(relu),
               extra={"linear": True} if kind == "conv" else {})


def _chain(ops: list[QOp], zp_in: int, batch: int, cfg: AccelConfig) -> Program:
    """Compile a chain of dense ops (each reads the previous one's output)."""
    for i, op in enumerate(ops):
        op.inputs = [ops[i - 1].name if i else "input"]
    for prev, nxt in zip(ops, ops[1:]):
        if prev.out_shape[2] != nxt.w.shape[2]:
            raise CompileError(f"{nxt.name}: input features {nxt.w.shape[2]} must equal the "
                               f"previous layer's {prev.out_shape[2]} outputs")
        if prev.zp_out != nxt.zp_in[0]:
            raise CompileError(f"{nxt.name}: input zero point {nxt.zp_in[0]} must equal the "
                               f"previous layer's output zero point {prev.zp_out}")
    try:
        graph = QuantizedGraph(ops, (1, 1, ops[0].w.shape[2]), 1.0, int(zp_in))
    except (TypeError, ValueError) as e:
        raise CompileError(str(e)) from None
    return compile_graph(graph, cfg, batch)


def compile_gemm(w: np.ndarray, cfg: AccelConfig, m: int, zp: int = 0) -> Program:
    """Compile the raw GEMM ``(x - zp) @ w`` (int32 output, wrapping) for ``m`` input rows.

    Parameters
    ----------
    w : int8 array (K, N)
    cfg : AccelConfig
    m : int
        Rows of the input ``x`` (M x K int8).
    zp : int
        Activation zero point in [-128, 127].

    Raises
    ------
    TypeError
        When ``w`` is not an int8 array or ``cfg`` not an AccelConfig.
    CompileError
        When a limit is exceeded (K for int32 accumulation, scratchpads, DMA stride, memory size).
    """
    return _chain([_dense_op("gemm", "gemm", w, zp)], zp, m, cfg)


def compile_linear(w: np.ndarray, bias, mult, shift, zp_in: int, zp_out: int, relu: bool,
                   cfg: AccelConfig, m: int) -> Program:
    """Compile one quantized Linear layer: ``golden.linear(x, w, bias, mult, shift, zp_in, zp_out,
    relu)`` with int8 output.

    Raises
    ------
    TypeError, CompileError
        As :func:`compile_gemm`; also for a bias / mult / shift of the wrong shape or range.
    """
    return _chain([_dense_op("linear", "conv", w, zp_in, zp_out, bias, mult, shift, relu)],
                  zp_in, m, cfg)


def compile_model(qnet, cfg: AccelConfig, batch: int = 1) -> Program:
    """Compile a :class:`~sw.quantize.QuantizedNet` (a chain of quantized Linear layers) or a
    :class:`~sw.graph.QuantizedGraph` (a CNN; see :func:`sw.lower.compile_graph`) for ``batch``
    input rows or images (the whole batch runs as one program).

    Raises
    ------
    CompileError
        Naming the layer and the limit.
    """
    if isinstance(qnet, QuantizedGraph):
        return compile_graph(qnet, cfg, batch)
    qlayers = list(getattr(qnet, "layers", []))
    if not qlayers:
        raise CompileError("Model must have at least one quantized Linear layer")
    ops = [_dense_op(ql.name, "conv", ql.w, ql.zp_in, ql.zp_out, ql.bias, ql.mult, ql.shift,
                     ql.relu) for ql in qlayers]
    return _chain(ops, qlayers[0].zp_in, batch, cfg)
