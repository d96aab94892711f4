"""Model of the row-stationary PE (``hw/rs_pe.py`` ``RsPE``): its exact cycles for one row.

NumPy, with the RTL's latencies from ``hw/timing.py``, for streams that never stall (the next
activation beat always presented, incoming psums always valid, outgoing psums always taken).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stamen.hw.timing import RS_PSUM_LATENCY

__all__ = ["compress_row", "RsPeTiming", "rs_pe_timing", "rs_pe_cycles", "check_positive"]


def _row(acts) -> np.ndarray:
    a = np.asarray(acts)
    if a.ndim != 1 or a.dtype != np.int8:
        raise TypeError(f"Activation row must be a 1-D int8 array, not {a.dtype} {a.shape}")
    return a


def check_positive(name: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return int(v)


def compress_row(acts, zp: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the compressed form of a row: the values ``!= zp`` and their offsets (int64),
    in increasing offset; the stream ends with a marker carrying ``len(acts)``."""
    a = _row(acts)
    offsets = np.flatnonzero(a != zp)
    return a[offsets], offsets


@dataclass(frozen=True)
class RsPeTiming:
    """Timing of one row on the PE, in cycles counted from its command handshake (cycle 0).

    Attributes
    ----------
    cycles : int
        Busy cycles: the command, the fill, the windows and the end marker; the next row's
        command is accepted in cycle ``cycles``.
    psum_cycles : tuple of int
        The cycle each psum is valid on ``o_psums``, in output order (window-major, then filter).
    """
    cycles: int
    psum_cycles: tuple[int, ...]


def rs_pe_timing(acts, taps: int, *, stride: int = 1, zp: int = 0, zero_skip: bool = False,
                 filters: int = 1) -> RsPeTiming:
    """Return the exact timing of ``RsPE`` on one row.

    With ``present`` the positions that have a beat (all with a dense stream, the ones
    ``!= zp`` with a compressed one), ``m_x`` the present positions in window ``x``
    (``[x*stride, x*stride + taps - 1]``) and ``n_x`` those in ``(end_{x-1}, end_x]``
    (``end_x = x*stride + taps - 1``, ``end_{-1} = -1``):
    ``t_0 = 1 + n_0``, ``T_x = max(filters * max(1, m_x), n_{x+1})``, ``t_{x+1} = t_x + T_x``,
    psum ``(x, f)`` at ``t_x + filters*(max(1, m_x) - 1) + f + RS_PSUM_LATENCY``, and
    ``cycles = t_OW + 1``.

    Parameters
    ----------
    acts : int8 array (W,)
        The dense row.
    taps, stride, filters : int
        Filter row length S, stride U and interleaved filters F.
    zp : int
        Activation zero point (what counts as a zero with ``zero_skip``).
    zero_skip : bool
        Compressed (True) or dense (False) activation stream.

    Raises
    ------
    TypeError, ValueError
        For a row that is not 1-D int8, or a non-positive ``taps``, ``stride`` or ``filters``.
    """
    a = _row(acts)
    taps = check_positive("Filter taps", taps)
    stride = check_positive("Stride", stride)
    filters = check_positive("Filters", filters)
    width = len(a)
    present = (a != zp) if zero_skip else np.ones(width, bool)
    prefix = np.concatenate([[0], np.cumsum(present)])

    def count(lo: int, hi: int) -> int:      # present positions in [lo, hi]
        lo, hi = max(lo, 0), min(hi, width - 1)
        return int(prefix[hi + 1] - prefix[lo]) if hi >= lo else 0

    n_out = (width - taps) // stride + 1 if width >= taps else 0
    t = 1 + count(0, taps - 1)
    psum_cycles = []
    for x in range(n_out):
        start, end = x * stride, x * stride + taps - 1
        m = count(start, end)
        ops = filters * max(1, m)
        psum_cycles += [t + ops - filters + f + RS_PSUM_LATENCY for f in range(filters)]
        t += max(ops, count(end + 1, end + stride))
    return RsPeTiming(cycles=t + 1, psum_cycles=tuple(psum_cycles))


def rs_pe_cycles(acts, taps: int, *, stride: int = 1, zp: int = 0, zero_skip: bool = False,
                 filters: int = 1) -> int:
    """Return the busy cycles of ``RsPE`` on one row (:attr:`RsPeTiming.cycles`).

    With a dense stream, ``W >= taps`` and ``filters*taps >= stride`` this is
    ``2 + taps + OW*filters*taps``; with zero skipping a window costs
    ``filters * max(1, non-zeros in it)`` (plus load cycles only where the next window brings
    more new non-zeros than that).
    """
    return rs_pe_timing(acts, taps, stride=stride, zp=zp, zero_skip=zero_skip,
                        filters=filters).cycles
