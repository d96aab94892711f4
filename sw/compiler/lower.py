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
from .ops import STRIDE_MAX, ceil_div, layer_info, lower_graph
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
    bb = cfg.mem_bus_bytes
    tensors, ops = lower_graph(graph, cfg, batch)
    if cfg.compress_acts:
        # The int8 activations go through the zero-row directory: the input's bits and the
        # other tensors' halo bits are set with the memory image (Program.memory_image), the
        # rows an op writes by its compressed STOREs (from OUT) before any compressed LOAD reads
        # them. The output (read by the host) and raw int32 outputs stay plain.
        tensors["input"].compressed = graph.output != "input"
        for op in ops:
            if op.params is not None and op.out.name != graph.output:
                op.out.compressed = True
    mem_words = cfg.zero_dir_base               # below the zero-row directory, if any

    # -- layout: perf, constants, tensors
    pw = isa.perf_words(cfg)
    perf_addr = 0
    addr = perf_addr + (len(ops) + 1) * pw
    const_addr = addr
    chunks = []
    for op in ops:
        for t in op.terms:
            for nt, tiles in t.tiles.items():
                blob = np.ascontiguousarray(tiles).reshape(-1).view(np.uint8)
                t.w_addr[nt] = addr
                chunks.append(blob)
                addr += blob.size // bb
        if op.params is not None:
            op.p_addr = addr
            blob = np.ascontiguousarray(op.params).reshape(-1).view(np.uint8)
            chunks.append(blob)
            addr += blob.size // bb
    const = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    for t in tensors.values():
        if t.compressed:                        # its rows start on directory slots
            addr = ceil_div(addr, cfg.zero_row_words) * cfg.zero_row_words
        t.addr = addr
        addr += t.words(bb)
        if t.pix_words(bb) > STRIDE_MAX:
            raise CompileError(f"{t.name}: a pixel of {t.cp} padded channels exceeds the "
                               f"largest DMA stride ({STRIDE_MAX} words of {bb} bytes)")
    if addr > mem_words:
        raise CompileError(f"Program data needs {addr} words of device memory (weights, params "
                           f"and {len(tensors)} tensors for batch {batch}) but the device has "
                           f"{mem_words} ({cfg.name})")

    # -- plan and emit
    prog_addr = addr
    for small_code in (False, True):
        state = CodegenState()
        words = [encode(_OP.PERF, (("dram_addr", perf_addr),))]
        est = estimate_cycles(cfg, _OP.PERF, {}, {})
        for i, op in enumerate(ops):
            op.plan, instrs, state = choose_plan(op, cfg, state, small_code)
            est += op.plan.est_cycles
            words.extend(encode(o, a) for o, a in instrs)
            words.append(encode(_OP.PERF, (("dram_addr", perf_addr + (i + 1) * pw),)))
            est += estimate_cycles(cfg, _OP.PERF, {}, {})
        words.append(encode(_OP.HALT, ()))
        est += estimate_cycles(cfg, _OP.HALT, {}, {})
        used = prog_addr + len(words) * isa.instr_words(cfg)
        if used <= mem_words:
            break
    if used > mem_words:
        raise CompileError(f"Program needs {used} words of device memory (code "
                           f"{len(words) * isa.instr_words(cfg)}, data {prog_addr}) but the "
                           f"device has {mem_words} ({cfg.name})")
    out = tensors[graph.output]
    in_shape, out_shape = [batch, *graph.input_shape], [batch, *graph.output_shape]
    if graph.input_shape[:2] == (1, 1):                 # MLP style: 2-D rows
        in_shape = [batch, graph.input_shape[2]]
        if graph.output_shape[:2] == (1, 1):
            out_shape = [batch, graph.output_shape[2]]
    meta = {
        "prog_addr": prog_addr, "used_words": used, "perf_addr": perf_addr,
        "const_addr": const_addr,
        "input": tensors["input"].layout(bb), "output": out.layout(bb),
        "fills": [t.layout(bb) for t in tensors.values()],
        "input_shape": in_shape, "output_shape": out_shape,
        "output_dtype": "int32" if out.itemsize == 4 else "int8",
        "config_hash": cfg.config_hash, "est_cycles": est,
        "layers": [vars(layer_info(op, batch)) for op in ops],
        "tensors": [{"name": op.q.name, **dataclasses.asdict(op.plan)} for op in ops],
    }
    return Program(cfg, words, meta, const, graph)
