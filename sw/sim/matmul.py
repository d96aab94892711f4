"""What every MATMUL engine model shares (``sim/ws_engine.py``, ``os_engine.py``, ``rs_engine.py``).

The act rows a MATMUL reads under the LOOP state (``hw/isa.py``'s ``act_row``), gathered a chunk
of tiles at a time so memory stays bounded whatever ``k_tiles``, and the result types each
engine model returns: :class:`MatmulTiming`, :class:`MacCounts` and :class:`MatmulAccesses`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stamen.hw.params import AccelConfig

__all__ = ["MatmulTiming", "MacCounts", "MatmulAccesses", "CHUNK_ELEMS", "act_tiles",
           "act_chunks", "act_rows", "zp_rows"]

#: Elements (act rows times lanes or columns) a MATMUL's operands are gathered in at a time.
CHUNK_ELEMS = 1 << 20


@dataclass(frozen=True)
class MatmulTiming:
    """A MATMUL's cycles from its acceptance to ``busy`` falling plus ``RETIRE_CYCLES``, and the
    act rows a zero-skipping ``ws`` engine skipped (0 on the other engines)."""
    cycles: int
    skipped_rows: int = 0


@dataclass(frozen=True)
class MacCounts:
    """A MATMUL's additions to the ``macs``, ``gated_macs`` and ``skipped_macs`` counters."""
    macs: int
    gated: int
    skipped: int


@dataclass(frozen=True)
class MatmulAccesses:
    """Accesses of one MATMUL before gating (``sw/analysis/energy.py``'s table)."""
    wt_reads: int
    act_reads: int
    acc_reads: int
    acc_writes: int
    array_wt: int
    array_act: int
    array_psum: int
    rf_fixed: int
    macs: int


def act_tiles(args: dict, loop: dict) -> tuple[np.ndarray, np.ndarray]:
    """Return the act row of each tile's row 0, ``(k_tiles,)``, and each row's offset from it,
    ``(m,)``: :func:`act_rows` is their outer sum."""
    kt = np.arange(args["k_tiles"], dtype=np.int64)
    i = np.arange(args["m"], dtype=np.int64)
    w0, w1, mw = loop["k_wrap0"], loop["k_wrap1"], loop["m_wrap"]
    t0, rest = (kt % w0, kt // w0) if w0 else (kt, 0 * kt)
    t1, t2 = (rest % w1, rest // w1) if w1 else (rest, 0 * kt)
    i0, i1 = (i % mw, i // mw) if mw else (i, 0 * i)
    tile = (args["act_addr"] + t0 * args["act_stride"] + t1 * loop["k_stride1"]
            + t2 * loop["k_stride2"])
    return tile, i0 * loop["m_stride"] + i1 * loop["m_stride1"]


def act_chunks(bases: np.ndarray, offs: np.ndarray, width: int):
    """Yield ``(c0, c1, rows)``: the act rows ``bases[c0:c1, None] + offs`` of tiles ``c0 ..
    c1 - 1``, in chunks of at most :data:`CHUNK_ELEMS` elements of ``width`` per row."""
    step = max(1, CHUNK_ELEMS // (len(offs) * width))
    for c0 in range(0, len(bases), step):
        yield c0, min(c0 + step, len(bases)), bases[c0:c0 + step, None] + offs[None, :]


def act_rows(args: dict, loop: dict) -> np.ndarray:
    """Return the ``(k_tiles, m)`` act-spad rows (exact, however far beyond the depth) that the
    MATMUL ``args`` reads under LOOP state ``loop``."""
    tile, offs = act_tiles(args, loop)
    return tile[:, None] + offs[None, :]


def zp_rows(cfg: AccelConfig, rows: np.ndarray, act: np.ndarray, zp: int) -> np.ndarray:
    """Return which act ``rows`` lie inside the ACT depth with all ``R`` lanes equal to ``zp``."""
    inside = rows < cfg.act_spad_depth
    return (act[np.where(inside, rows, 0)] == zp).all(axis=2) & inside
