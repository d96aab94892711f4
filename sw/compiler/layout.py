"""Device-memory layout of a program: the PERF area, the constants, the tensors, then the code.

Word addresses: the PERF snapshots (one per op plus the first) from 0, each op's weight tiles and
requant params from ``const_addr``, every tensor (NHWC per image, with its halo and padded
channels; a compressed tensor on zero-row-directory slots), and the instruction stream from
``prog_addr``, all below ``cfg.zero_dir_base``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..errors import CompileError
from ..graph import QuantizedGraph
from .ops import STRIDE_MAX, LoweredOp, Tensor, ceil_div

__all__ = ["DataLayout", "mark_compressed", "place_data"]


@dataclass
class DataLayout:
    """Where a program's data lives: PERF area, constants (``const``, the bytes from
    ``const_addr``) and the first free word, where the code goes."""
    perf_addr: int
    const_addr: int
    const: np.ndarray
    prog_addr: int


def mark_compressed(cfg: AccelConfig, graph: QuantizedGraph, tensors: dict[str, Tensor],
                    ops: list[LoweredOp]) -> None:
    """With ``cfg.compress_acts``, mark the int8 activations that go through the zero-row
    directory: the input (its bits and the other tensors' halo bits are set with the memory
    image) and every requantized op output, whose compressed STOREs set their rows' bits before
    any compressed LOAD reads them. The graph output (read by the host) and raw int32 outputs
    stay plain."""
    if not cfg.compress_acts:
        return
    tensors["input"].compressed = graph.output != "input"
    for op in ops:
        if op.params is not None and op.out.name != graph.output:
            op.out.compressed = True


def place_data(cfg: AccelConfig, tensors: dict[str, Tensor], ops: list[LoweredOp],
               batch: int) -> DataLayout:
    """Give every weight group, param block and tensor its address (``Term.w_addr``,
    ``LoweredOp.p_addr``, ``Tensor.addr``) and return the layout.

    Raises
    ------
    CompileError
        When a pixel is wider than the DMA's largest stride or the data exceeds device memory.
    """
    bb = cfg.mem_bus_bytes
    perf_addr = 0
    addr = const_addr = perf_addr + (len(ops) + 1) * isa.perf_words(cfg)
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
    if addr > cfg.zero_dir_base:
        raise CompileError(f"Program data needs {addr} words of device memory (weights, params "
                           f"and {len(tensors)} tensors for batch {batch}) but the device has "
                           f"{cfg.zero_dir_base} ({cfg.name})")
    return DataLayout(perf_addr, const_addr, const, addr)
