"""The zero-row directory in device memory (``compress_acts``; ``hw/isa.py``, ``hw/dma.py``).

Bit ``n`` (bit ``n % 8`` of byte ``n // 8`` from word ``cfg.zero_dir_base``) is set when act row
slot ``n`` (``cfg.zero_row_words`` memory words) is all zero point. The program image, isasim and
the cycle model share these three helpers.
"""
from __future__ import annotations

import numpy as np

from stamen.hw.params import AccelConfig

__all__ = ["zero_dir_runs", "read_zero_dir", "write_zero_dir"]


def zero_dir_runs(cfg: AccelConfig, dram_addr: int, rows: int, dram_stride: int) -> int:
    """Return how many directory words a LOAD / STORE with ``compress=1`` accesses: the runs of
    consecutive rows whose slots' bits lie in the same directory word."""
    per_word = cfg.zero_row_words * cfg.mem_bus_bits          # memory words one dir word covers
    words = (dram_addr + np.arange(rows, dtype=np.int64) * dram_stride) // per_word
    return 1 + int(np.count_nonzero(np.diff(words)))


def read_zero_dir(cfg: AccelConfig, mem: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Return the directory bits of row ``slots`` in the memory image ``mem`` (uint8,
    ``cfg.mem_bytes``) as a bool array."""
    directory = mem[cfg.zero_dir_base * cfg.mem_bus_bytes:]
    return ((directory[slots // 8] >> (slots % 8).astype(np.uint8)) & 1).astype(bool)


def write_zero_dir(cfg: AccelConfig, mem: np.ndarray, slots: np.ndarray,
                   zero: np.ndarray) -> None:
    """Set the directory bits of the distinct row ``slots`` in ``mem`` to ``zero``."""
    directory = mem[cfg.zero_dir_base * cfg.mem_bus_bytes:]
    bits = (1 << (slots % 8)).astype(np.uint8)
    np.bitwise_and.at(directory, slots // 8, ~bits)
    np.bitwise_or.at(directory, slots[zero] // 8, bits[zero])
