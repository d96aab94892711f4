"""Graph compiler: ``compile_graph`` lowers a QuantizedGraph onto the array as one program.

The pipeline: ``ops.lower_graph`` (tensors and MATMUL terms), the device-memory layout (PERF
area, constants, tensors with halos, code), ``plans.choose_plan`` per op (the cheapest tiling
under the cycle model) and ``codegen.gen_op`` (its instructions). docs/internals.md ("Lowering a
graph") gives the memory map, the mapping of each op kind and the tiling.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..errors import CompileError
from ..graph import QuantizedGraph
from ..program import Program
from ..sim.cycles import estimate_cycles
from .codegen import CodegenState, encode
from .layout import DataLayout, mark_compressed, place_data
from .ops import layer_info, lower_graph
from .plans import choose_plan

__all__ = ["compile_graph"]

_OP = isa.Opcode


def compile_graph(graph: QuantizedGraph, cfg: AccelConfig, batch: int = 1) -> Program:
    """Compile a quantized graph for ``batch`` images into one program.

    The program's input is int8 NHWC ``(batch, H, W, C)`` (``graph.quantize_input``) and its output
    int8 NHWC ``(batch, OH, OW, OC)`` (int32 for a ``gemm`` output). A graph whose input is
    ``1 x 1 x C`` (an MLP) takes ``(batch, C)`` and, with a ``1 x 1`` output, gives
    ``(batch, OC)``. Each op's plan is the one with the fewest estimated cycles; when the code
    would not fit the device memory, the ones with the fewest instructions.

    Raises
    ------
    CompileError
        Naming the op and the limit (scratchpads, address generator, device memory) or an
        unsupported arrangement.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Compiler config must be an AccelConfig, not {cfg!r}")
    if not isinstance(graph, QuantizedGraph):
        raise TypeError(f"compile_graph needs a QuantizedGraph, not {type(graph).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise CompileError(f"Batch size must be a positive integer, not {batch!r}")
    batch = int(batch)
    tensors, ops = lower_graph(graph, cfg, batch)
    mark_compressed(cfg, graph, tensors, ops)
    data = place_data(cfg, tensors, ops, batch)
    words, est = _emit(cfg, ops, data)
    meta = _program_meta(cfg, graph, batch, tensors, ops, data, words, est)
    return Program(cfg, words, meta, data.const, graph)


def _emit(cfg: AccelConfig, ops: list, data: DataLayout) -> tuple[list[int], int]:
    """Choose every op's plan and return the program's words (a PERF before the first op and
    after each, then HALT) and its estimated cycles. When the code does not fit below the
    zero-row directory, the plans with the fewest instructions are used instead."""
    pw = isa.perf_words(cfg)
    perf = estimate_cycles(cfg, _OP.PERF, {}, {})
    for small_code in (False, True):
        state = CodegenState()
        words = [encode(_OP.PERF, (("dram_addr", data.perf_addr),))]
        est = perf
        for i, op in enumerate(ops):
            op.plan, instrs, state = choose_plan(op, cfg, state, small_code)
            est += op.plan.est_cycles + perf
            words.extend(encode(o, a) for o, a in instrs)
            words.append(encode(_OP.PERF, (("dram_addr", data.perf_addr + (i + 1) * pw),)))
        words.append(encode(_OP.HALT, ()))
        est += estimate_cycles(cfg, _OP.HALT, {}, {})
        code = len(words) * isa.instr_words(cfg)
        if data.prog_addr + code <= cfg.zero_dir_base:
            return words, est
    raise CompileError(f"Program needs {data.prog_addr + code} words of device memory (code "
                       f"{code}, data {data.prog_addr}) but the device has {cfg.zero_dir_base} "
                       f"({cfg.name})")


def _program_meta(cfg: AccelConfig, graph: QuantizedGraph, batch: int, tensors: dict, ops: list,
                  data: DataLayout, words: list[int], est: int) -> dict:
    """Return the program's metadata: addresses, tensor layouts, shapes, layers and plans."""
    bb = cfg.mem_bus_bytes
    out = tensors[graph.output]
    in_shape, out_shape = [batch, *graph.input_shape], [batch, *graph.output_shape]
    if graph.input_shape[:2] == (1, 1):                 # MLP style: 2-D rows
        in_shape = [batch, graph.input_shape[2]]
        if graph.output_shape[:2] == (1, 1):
            out_shape = [batch, graph.output_shape[2]]
    return {
        "prog_addr": data.prog_addr,
        "used_words": data.prog_addr + len(words) * isa.instr_words(cfg),
        "perf_addr": data.perf_addr, "const_addr": data.const_addr,
        "input": tensors["input"].layout(bb), "output": out.layout(bb),
        "fills": [t.layout(bb) for t in tensors.values()],
        "input_shape": in_shape, "output_shape": out_shape,
        "output_dtype": "int32" if out.itemsize == 4 else "int8",
        "config_hash": cfg.config_hash, "est_cycles": est,
        "layers": [vars(layer_info(op, batch)) for op in ops],
        "tensors": [{"name": op.q.name, **dataclasses.asdict(op.plan)} for op in ops],
    }
