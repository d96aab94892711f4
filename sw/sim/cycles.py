"""Cycles of every instruction but MATMUL (whose engine models are in ``sim/engines.py``).

Each figure is the RTL's for an ideal memory, with the latencies of ``hw/timing.py``: every
instruction costs :func:`fetch_cycles`, then its unit's busy cycles plus ``RETIRE_CYCLES``.
:func:`estimate_cycles` is the compiler's data-independent figure of one whole instruction.
docs/internals.md ("Cycle model") derives them.
"""
from __future__ import annotations

import functools

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.hw.timing import (DMA_READ_LATENCY, DMA_WRITE_LATENCY, ISSUE_OVERHEAD, MISC_CYCLES,
                              REQUANT_FAULT_BUSY, REQUANT_LATENCY, REQUANT_SERIAL_FAULT_BUSY,
                              REQUANT_SERIAL_LATENCY, RETIRE_CYCLES, ZERO_DIR_LOAD_CYCLES,
                              ZERO_DIR_STORE_CYCLES)

from ..zero_dir import zero_dir_runs
from .engines import engine_model

__all__ = ["fetch_cycles", "load_cycles", "store_cycles", "zero_dir_cycles", "requant_cycles",
           "requant_fault_cycles", "perf_cycles", "misc_cycles", "estimate_cycles"]

_SPAD_NAME = {isa.Spad.ACT: "act", isa.Spad.WT: "wt", isa.Spad.ACC: "acc", isa.Spad.OUT: "out",
              isa.Spad.PARAM: "param"}


@functools.lru_cache(maxsize=64)
def fetch_cycles(cfg: AccelConfig) -> int:
    """Return the cycles of fetching, decoding and dispatching one instruction:
    ``instr_words + ISSUE_OVERHEAD + cfg.check_cycles`` (the last is the range checks'
    shift-and-add multiplier, 0 unless ``cfg.check_mul_bits``)."""
    return isa.instr_words(cfg) + ISSUE_OVERHEAD + cfg.check_cycles


def load_cycles(cfg: AccelConfig, spad: str, rows: int) -> int:
    """Return the cycles of a LOAD after dispatch:
    ``rows * row_words + DMA_READ_LATENCY + RETIRE_CYCLES``."""
    return rows * cfg.spad_row_words(spad) + DMA_READ_LATENCY + RETIRE_CYCLES


def store_cycles(cfg: AccelConfig, spad: str, rows: int) -> int:
    """Return the cycles of a STORE after dispatch:
    ``rows * row_words + DMA_WRITE_LATENCY + RETIRE_CYCLES``."""
    return rows * cfg.spad_row_words(spad) + DMA_WRITE_LATENCY + RETIRE_CYCLES


def zero_dir_cycles(cfg: AccelConfig, store: bool, rows: int, zero_rows: int,
                    dir_words: int) -> int:
    """Return the cycles after dispatch of a LOAD / STORE with ``compress=1`` of ``rows`` rows,
    ``zero_rows`` of them all-zp, whose directory bits lie in ``dir_words`` runs of one
    directory word (``zero_dir_runs``): ``S + dir_words * ZERO_DIR_LOAD_CYCLES +
    DMA_READ_LATENCY + RETIRE_CYCLES`` (LOAD) or ``S + dir_words * ZERO_DIR_STORE_CYCLES +
    RETIRE_CYCLES`` (STORE), ``S = zero_rows + (rows - zero_rows) * row_words``."""
    s = zero_rows + (rows - zero_rows) * cfg.zero_row_words
    if store:
        return s + dir_words * ZERO_DIR_STORE_CYCLES + RETIRE_CYCLES
    return s + dir_words * ZERO_DIR_LOAD_CYCLES + DMA_READ_LATENCY + RETIRE_CYCLES


def requant_cycles(cfg: AccelConfig, rows: int) -> int:
    """Return the cycles of a REQUANT after dispatch: ``rows + REQUANT_LATENCY + RETIRE_CYCLES``,
    or with ``cfg.requant_serial`` ``rows * cfg.requant_row_cycles + cfg.requant_group_cycles
    + REQUANT_SERIAL_LATENCY + RETIRE_CYCLES``."""
    if cfg.requant_serial:
        return (rows * cfg.requant_row_cycles + cfg.requant_group_cycles + REQUANT_SERIAL_LATENCY
                + RETIRE_CYCLES)
    return rows + REQUANT_LATENCY + RETIRE_CYCLES


def requant_fault_cycles(cfg: AccelConfig) -> int:
    """Return the cycles after dispatch of a REQUANT that halts with ``BAD_PARAM``, whatever its
    ``rows``: ``REQUANT_FAULT_BUSY`` (``_SERIAL_`` with ``cfg.requant_serial``) ``+
    RETIRE_CYCLES``."""
    busy = REQUANT_SERIAL_FAULT_BUSY if cfg.requant_serial else REQUANT_FAULT_BUSY
    return busy + RETIRE_CYCLES


def perf_cycles(cfg: AccelConfig) -> int:
    """Return the counted cycles of a PERF after dispatch: ``RETIRE_CYCLES``, counted after the
    snapshot (the counters are frozen while PERF writes them)."""
    return RETIRE_CYCLES


def misc_cycles(cfg: AccelConfig) -> int:
    """Return the cycles of SYNC or HALT after dispatch: ``MISC_CYCLES``."""
    return MISC_CYCLES


def estimate_cycles(cfg: AccelConfig, op: isa.Opcode, args: dict, loop: dict) -> int:
    """Return the cycles of one instruction with its fetch, independent of the data: exact but
    for a zero-skipping MATMUL and a compressed LOAD / STORE, whose figure here (no row
    skipped, no all-zero row) is an upper bound."""
    if op in (isa.Opcode.LOAD, isa.Opcode.STORE) and args.get("compress"):
        runs = zero_dir_runs(cfg, args["dram_addr"], args["rows"], args["dram_stride"])
        c = zero_dir_cycles(cfg, op == isa.Opcode.STORE, args["rows"], 0, runs)
    elif op == isa.Opcode.LOAD:
        c = load_cycles(cfg, _SPAD_NAME[args["spad"]], args["rows"])
    elif op == isa.Opcode.STORE:
        c = store_cycles(cfg, _SPAD_NAME[args["spad"]], args["rows"])
    elif op == isa.Opcode.MATMUL:
        c = engine_model(cfg).estimate(cfg, args, loop)
    elif op == isa.Opcode.REQUANT:
        c = requant_cycles(cfg, args["rows"])
    elif op == isa.Opcode.PERF:
        c = perf_cycles(cfg)
    else:
        c = misc_cycles(cfg)
    return c + fetch_cycles(cfg)
