"""Compiler entry points: raw GEMMs, quantized Linear layers, MLPs and CNN graphs.

Every entry point builds a :class:`~sw.graph.QuantizedGraph` and compiles it with
:func:`sw.lower.compile_graph`, the one tiler and code generator: a GEMM or Linear layer over ``M``
rows of ``K`` features is a ``1 x 1`` convolution over ``M`` images of ``1 x 1 x K`` (the MATMUL
rows walk the images), so an MLP and a CNN share tiling, scratchpad caching, the cycle-model plan
choice and the memory layout (``sw/compiler/lower.py``'s module docstring). Programs of these ``1 x 1``
graphs take ``(M, K)`` int8 inputs and give ``(M, N)`` outputs (int32 for a raw GEMM).

Before the expensive tiling and planning, :func:`check_fits_memory` rejects a graph whose weights
and tensors cannot fit the device memory at all (a lower bound, so it never refuses what
``compile_graph`` would accept), in microseconds instead of minutes.
"""
from __future__ import annotations

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..errors import CompileError
from ..graph import QOp, QuantizedGraph
from .lower import compile_graph
from .ops import K_MAX_INT32
from ..program import FORMAT_VERSION, LayerInfo, Program

__all__ = ["Program", "LayerInfo", "compile_gemm", "compile_linear", "compile_model",
           "check_fits_memory", "min_device_bytes", "K_MAX_INT32", "FORMAT_VERSION"]


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


def min_device_bytes(graph: QuantizedGraph, batch: int) -> tuple[int, int, int]:
    """Return ``(weight_bytes, tensor_bytes, largest_op)``: lower bounds on the device memory the
    graph's weights and its live tensors need for ``batch`` images, and the index of the op whose
    input and output tensors are the largest.

    Every weight is at least one byte of device memory for the whole program; while an op runs,
    its inputs and its output are in device memory together, each at least
    ``batch * H * W * C`` elements (halos, padded channels and tiles only add to these).
    """
    def tensor_bytes(name: str) -> int:
        if name == "input":
            h, w, c = graph.input_shape
            item = 1
        else:
            op = graph.op(name)
            h, w, c = op.out_shape
            item = 4 if op.kind == "gemm" else 1
        return batch * h * w * c * item

    weights = sum(int(op.w.size) for op in graph.ops if op.w is not None)
    live = [sum(tensor_bytes(t) for t in set(op.inputs)) + tensor_bytes(op.name)
            for op in graph.ops]
    largest = int(np.argmax(live))
    return weights, live[largest], largest


def check_fits_memory(graph: QuantizedGraph, cfg: AccelConfig, batch: int) -> None:
    """Raise :class:`CompileError` when ``graph`` cannot fit ``cfg``'s device memory for
    ``batch`` images whatever the tiling (:func:`min_device_bytes` plus the PERF area), before
    any planning. Cheap: it reads only shapes."""
    if not isinstance(cfg, AccelConfig) or isinstance(batch, bool) or \
            not isinstance(batch, (int, np.integer)) or batch < 1:
        return                                  # compile_graph names these
    weights, tensors, largest = min_device_bytes(graph, int(batch))
    bb = cfg.mem_bus_bytes
    perf = (len(graph.ops) + 1) * isa.perf_words(cfg) * bb
    have = cfg.zero_dir_base * bb
    need = perf + weights + tensors
    if need > have:
        big = max((op for op in graph.ops if op.w is not None), key=lambda op: op.w.size,
                  default=None)
        biggest = (f"; the largest layer, {big.name!r}, has {big.w.size:,} weight bytes"
                   if big is not None else "")
        raise CompileError(
            f"Model needs at least {need:,} bytes of device memory for batch {int(batch)} "
            f"({weights:,} bytes of weights, {tensors:,} bytes of tensors live around op "
            f"{graph.ops[largest].name!r}, {perf:,} bytes of performance counters{biggest}) but "
            f"the device has {have:,} ({cfg.name})")


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
    check_fits_memory(graph, cfg, batch)
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
        Naming the layer and the limit; a model that cannot fit the device memory whatever the
        tiling is refused before any planning (:func:`check_fits_memory`).
    """
    if isinstance(qnet, QuantizedGraph):
        check_fits_memory(qnet, cfg, batch)
        return compile_graph(qnet, cfg, batch)
    qlayers = list(getattr(qnet, "layers", []))
    if not qlayers:
        raise CompileError("Model must have at least one quantized Linear layer")
    ops = [_dense_op(ql.name, "conv", ql.w, ql.zp_in, ql.zp_out, ql.bias, ql.mult, ql.shift,
                     ql.relu) for ql in qlayers]
    return _chain(ops, qlayers[0].zp_in, batch, cfg)
