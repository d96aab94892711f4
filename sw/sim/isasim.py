"""ISA simulator: runs a Stamen program on a NumPy model of device memory and the five scratchpads.

Semantics are exactly those of ``hw/isa.py``; numerics come from ``sw/golden.py``. Each
instruction is executed as a whole with vectorised NumPy, so a 256x256x64 GEMM takes milliseconds.
Any legal program runs in memory bounded by the device's own state, whatever its trip counts: a
MATMUL is gathered a chunk of tiles at a time (at most ``_CHUNK_ELEMS`` values), and with
``wt_repeat`` each distinct act tile is read once and counted as often as it is used (a
``MATMUL m=512 k_tiles=65535 wt_repeat=1`` on ``small``, 33.5 M device cycles, takes
milliseconds and a few MB). The row-stationary cycle model works pass by pass in closed form
(``sw.rs_model.rs_matmul_cycles``). ``scripts/bench_isasim.py`` measures both.

Faults (:class:`~sw.errors.DeviceError` with ``pc`` = word address of the faulting instruction) are
checked in this order, before the instruction touches anything:

1. fetch: ``pc + instr_words > mem_words`` -> ``FETCH_RANGE``;
2. an opcode not in :class:`~hw.isa.Opcode` -> ``ILLEGAL_OPCODE``;
3. a zero count (``rows``, ``m``, ``k_tiles``) or a ``spad`` selector outside :class:`~hw.isa.Spad`
   -> ``BAD_ARG``; so is a LOAD / STORE with ``compress=1`` without ``cfg.compress_acts``, from
   or to another spad than ``ACT`` (LOAD) / ``OUT`` (STORE), or with a ``dram_addr`` or
   ``dram_stride`` that is not a multiple of ``cfg.zero_row_words``;
4. a scratchpad row range beyond the spad depth -> ``SPAD_RANGE`` (MATMUL's act rows: after the
   MATMUL's cycles and MACs are counted, as the device finds them while reading; its zero-gated
   MACs are then not modelled, nor are an ``rs`` array's skipped MACs: all its MACs count as
   ``macs``; a zero-skipping ``ws`` engine's skipped rows are, as it never skips a row beyond
   the depth);
5. a device-memory word range beyond ``mem_words`` (``cfg.zero_dir_base`` with
   ``cfg.compress_acts``: LOAD, STORE and PERF never reach the zero-row directory) ->
   ``DRAM_RANGE``;
6. REQUANT: a shift row entry outside ``0..REQUANT_MAX_SHIFT`` -> ``BAD_PARAM`` (found by the
   PostProc: its check's :func:`requant_fault_cycles` are counted).

The raised error carries ``counters`` (the counters at the fault).

Cycle model
-----------
``cycles`` and ``compute_cycles`` equal the RTL's performance counters exactly for an ideal memory
(``SimDevice`` with ``mem_latency=0``, ``mem_stall=0``; ``tests/test_vl_device.py`` checks this for
every program of ``tests/cases.py``), zero-skipping MATMULs included: their cycles depend on the
ACT spad contents (:func:`matmul_cycles_of`). The in-order controller runs one instruction at a time:

* every instruction costs :func:`fetch_cycles` (``instr_words + ISSUE_OVERHEAD``: the pc handshake,
  one read per instruction word, the memory's response latency, the instruction register and the
  cycle that checks it and dispatches it to its unit; plus ``cfg.check_cycles`` with a
  shift-and-add range-check multiplier);
* a LOAD, STORE, MATMUL or REQUANT then keeps its unit busy and retires in the cycle after ``busy``
  falls: :func:`load_cycles`, :func:`store_cycles` (:func:`zero_dir_cycles` with ``compress=1``;
  they depend on the data), :func:`matmul_cycles`, :func:`requant_cycles`
  (each is the unit's busy cycles plus ``RETIRE_CYCLES``; REQUANT follows ``cfg.requant_lanes``
  and ``cfg.requant_mul_bits``);
* SYNC and HALT retire in their dispatch cycle (:func:`misc_cycles` is 0);
* PERF freezes every counter while it writes them, so the snapshot holds the counters after the
  PERF's own fetch and dispatch, its ``perf_words`` write cycles are never counted, and only its
  retire cycle (:func:`perf_cycles`) is counted, after the snapshot;
* ``compute_cycles`` counts the cycles the MatmulEngine is busy: ``matmul_cycles - RETIRE_CYCLES``
  per MATMUL.

MAC counters
------------
A MATMUL has ``total = m * R * C * k_tiles`` MACs (``R = cfg.rows``, ``C = cfg.cols``); let ``Z``
be the number of zero activations it reads (entries ``a - zp == 0`` over ``(kt, i, r)``), each
of which meets the ``C`` weights of its array row.

* ``macs`` counts the MACs performed, ``gated_macs`` those of them performed with a gated
  multiplier, ``skipped_macs`` the MACs never performed because a zero activation was skipped;
  ``macs + skipped_macs == total``.
* ``ws`` / ``os``: ``macs += total``; with ``cfg.zero_gate`` a MAC is gated when its activation
  or its weight is zero, ``gated_macs += Z * C +`` (the MACs of a non-zero activation with a zero
  weight).
* ``ws`` with ``cfg.zero_skip`` skips whole act rows (:func:`ws_skipped_rows`: all ``R`` lanes
  zero, a tile after the first or ``accumulate``, not ``acc_max``, not the MATMUL's final row,
  inside the ACT depth); each skipped row's ``R * C`` MACs (those the array would have
  performed for it) count as ``skipped_macs`` and not as ``macs``; the fed rows are counted as
  above (``gated_macs`` loses the skipped rows' ``R * C`` each).
* ``rs``: a row-stationary PE gates and skips on a zero activation only, never on a zero weight.
  With ``cfg.zero_skip`` the zero activations of the tiles in windows of two taps or more are
  skipped (``sw.rs_model.rs_skipped_tiles``; one-tap passes are fed dense): ``skipped_macs``
  adds their ``Z_skip * C`` and ``macs += total - Z_skip * C``. The other zero activations
  (all of them without ``zero_skip``) are performed, and gated with ``cfg.zero_gate``:
  ``gated_macs += (Z - Z_skip) * C``.
"""
from __future__ import annotations

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.hw.timing import (ACC_WRITE_LATENCY, ACT_READ_LATENCY, DMA_READ_LATENCY,
                              DMA_WRITE_LATENCY, ISSUE_OVERHEAD, MISC_CYCLES, OS_ACT_LATENCY,
                              REQUANT_FAULT_BUSY, REQUANT_LATENCY, REQUANT_SERIAL_FAULT_BUSY,
                              REQUANT_SERIAL_LATENCY, RETIRE_CYCLES, ZERO_DIR_LOAD_CYCLES,
                              ZERO_DIR_STORE_CYCLES, array_latency, bank_release_delay,
                              os_array_latency)

from .. import golden
from ..asm import fields
from ..errors import DeviceError
from ..faults import bad_arg_reason

__all__ = ["IsaSim", "fetch_cycles", "load_cycles", "store_cycles", "zero_dir_cycles",
           "zero_dir_runs", "read_zero_dir", "write_zero_dir", "matmul_cycles",
           "matmul_cycles_of", "requant_cycles", "perf_cycles", "misc_cycles",
           "act_rows", "ws_skipped_rows", "ws_skip_cycles", "requant_fault_cycles"]

# The latencies in the formulas below (ISSUE_OVERHEAD, RETIRE_CYCLES, ...) are the RTL's own,
# from stamen.hw.timing; the tests named there check the RTL against them.


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


def zero_dir_runs(cfg: AccelConfig, dram_addr: int, rows: int, dram_stride: int) -> int:
    """Return how many directory words a LOAD / STORE with ``compress=1`` accesses: the runs of
    consecutive rows whose slots' bits lie in the same directory word."""
    per_word = cfg.zero_row_words * cfg.mem_bus_bits          # memory words one dir word covers
    words = (dram_addr + np.arange(rows, dtype=np.int64) * dram_stride) // per_word
    return 1 + int(np.count_nonzero(np.diff(words)))


def read_zero_dir(cfg: AccelConfig, mem: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Return the zero-row directory bits of row ``slots`` in the memory image ``mem`` (uint8,
    ``cfg.mem_bytes``; bit ``n``: bit ``n % 8`` of byte ``n // 8`` from word
    ``cfg.zero_dir_base``, ``hw/isa.py``) as a bool array."""
    directory = mem[cfg.zero_dir_base * cfg.mem_bus_bytes:]
    return ((directory[slots // 8] >> (slots % 8).astype(np.uint8)) & 1).astype(bool)


def write_zero_dir(cfg: AccelConfig, mem: np.ndarray, slots: np.ndarray,
                   zero: np.ndarray) -> None:
    """Set the zero-row directory bits of the distinct row ``slots`` in the memory image ``mem``
    to ``zero`` (as :func:`read_zero_dir` reads them)."""
    directory = mem[cfg.zero_dir_base * cfg.mem_bus_bytes:]
    bits = (1 << (slots % 8)).astype(np.uint8)
    np.bitwise_and.at(directory, slots // 8, ~bits)
    np.bitwise_or.at(directory, slots[zero] // 8, bits[zero])


def zero_dir_cycles(cfg: AccelConfig, store: bool, rows: int, zero_rows: int,
                    dir_words: int) -> int:
    """Return the cycles after dispatch of a LOAD / STORE with ``compress=1`` of ``rows`` rows,
    ``zero_rows`` of them all-zp (their directory bit set: LOAD; all bytes ``zp``: STORE), whose
    bits lie in ``dir_words`` runs of one directory word (:func:`zero_dir_runs`), for an ideal
    memory: ``S + dir_words * ZERO_DIR_LOAD_CYCLES + DMA_READ_LATENCY + RETIRE_CYCLES`` (LOAD)
    or ``S + dir_words * ZERO_DIR_STORE_CYCLES + RETIRE_CYCLES`` (STORE), with
    ``S = zero_rows + (rows - zero_rows) * row_words`` (a row of data moves one word per
    cycle, an all-zp row takes one cycle)."""
    s = zero_rows + (rows - zero_rows) * cfg.zero_row_words
    if store:
        return s + dir_words * ZERO_DIR_STORE_CYCLES + RETIRE_CYCLES
    return s + dir_words * ZERO_DIR_LOAD_CYCLES + DMA_READ_LATENCY + RETIRE_CYCLES


def matmul_cycles(cfg: AccelConfig, m: int, k_tiles: int) -> int:
    """Return the cycles of a MATMUL after dispatch: from its acceptance by the MatmulEngine to
    the cycle ``busy`` is low (the busy cycles plus ``RETIRE_CYCLES``).

    The engine reads tile 0's weights in cycles ``1 .. R``. Tile ``t``'s ``m`` activation rows
    are read back to back, starting in the cycle its last weight row is read and after tile
    ``t - 1``'s rows; tile ``t``'s weights are read after tile ``t - 1``'s, and for ``t >= 2``
    only from :func:`bank_release_delay` cycles after tile ``t - 2``'s last act read (two weight
    banks). The first act read of the last tile ``k = k_tiles - 1`` is therefore the longest path
    ``R + max(k * s, (k // 2) * J + (k % 2) * s)`` with ``s = max(m, R)`` (a tile paced by its
    activations or by its weight reads) and ``J = m + bank_release_delay + R - 2`` (two tiles
    paced by a bank release). Its last row is read ``m - 1`` cycles later, enters the array
    ``ACT_READ_LATENCY`` later, leaves it :func:`array_latency` later, and ``busy`` is low
    ``ACC_WRITE_LATENCY`` after that. With ``m >= 2R + C - 3`` this is ``k_tiles*m + 2R + C + 3``.
    With ``cfg.zero_skip`` this is the figure of a MATMUL that skips no row, an upper bound
    (the exact, data-dependent figure is :func:`ws_skip_cycles`, through
    :func:`matmul_cycles_of`).

    Output-stationary (``cfg.dataflow == "os"``, ``hw/os_matmul.py``): the ``m`` rows go in
    ``G = ceil(m / R)`` groups of ``R``; each group streams its whole reduction, ``k_tiles * R``
    steps, one per cycle and back to back with the next group (its outputs drain while the
    next group computes), the act read of step ``u`` in cycle ``1 + u``. The last group's row
    ``r = (m - 1) % R`` gets its last operand ``2 + r`` cycles after the last step's read (the
    act read, the transposing shift register, the skew of PE row ``r``), leaves the array
    ``C + 1`` cycles later (two PE stages, ``C - 1`` columns, the de-skew), and ``busy`` is low
    ``ACC_WRITE_LATENCY`` after that: ``G*k_tiles*R + (m - 1) % R + C + 5`` cycles. SCALE-Sim's
    output-stationary form ``G*(K + R + C - 2) - 1`` (``K = k_tiles*R``) pays every group's fill
    and drain; here they overlap the next group's reduction and are paid once.
    """
    if cfg.dataflow == "rs":
        raise ValueError("A row-stationary MATMUL's cycles depend on the LOOP state: use "
                         "matmul_cycles_of")
    if cfg.dataflow == "os":
        groups = -(-m // cfg.rows)
        steps = groups * k_tiles * cfg.rows
        return (steps + (m - 1) % cfg.rows + OS_ACT_LATENCY
                + os_array_latency(cfg.rows, cfg.cols) + ACC_WRITE_LATENCY)
    r = cfg.rows
    s = max(m, r)
    pair = m + bank_release_delay(cfg) + r - 2
    k = k_tiles - 1
    last_tile_first_read = r + max(k * s, (k // 2) * pair + (k % 2) * s)
    return (last_tile_first_read + m - 1 + ACT_READ_LATENCY + array_latency(cfg.rows, cfg.cols)
            + ACC_WRITE_LATENCY)


def matmul_cycles_of(cfg: AccelConfig, args: dict, loop: dict,
                     act: np.ndarray | None = None) -> int:
    """Return the cycles of the MATMUL ``args`` under LOOP state ``loop``, like
    :func:`matmul_cycles`: for ``dataflow="rs"`` ``sw.rs_model.rs_matmul_cycles`` (its passes
    follow the LOOP state; with ``zero_skip`` they depend on the ACT spad contents ``act``);
    for ``"ws"`` with ``zero_skip`` :func:`ws_skip_cycles` of :func:`ws_skipped_rows` (it
    needs ``act``; computed a chunk of tiles at a time), else :func:`matmul_cycles` of ``m``
    and ``k_tiles``."""
    if cfg.dataflow == "rs":
        from .rs_model import rs_matmul_cycles
        return rs_matmul_cycles(cfg, args, loop, act)
    if cfg.dataflow == "ws" and cfg.zero_skip:
        if act is None:
            raise ValueError("A zero-skipping ws MATMUL's cycles depend on the ACT spad "
                             "contents: pass act")
        return _ws_cycles_of_costs(cfg, _ws_skip_costs(cfg, args, loop, act)[0])
    return matmul_cycles(cfg, args["m"], args["k_tiles"])


#: Elements (act rows times lanes or columns) a MATMUL's operands are gathered in at a time:
#: isasim runs a MATMUL a chunk of whole tiles at a time, so its memory is bounded by this
#: and by the scratchpads, never by ``k_tiles * m``.
_CHUNK_ELEMS = 1 << 20


def _act_tiles(args: dict, loop: dict) -> tuple[np.ndarray, np.ndarray]:
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


def _chunks(bases: np.ndarray, offs: np.ndarray, width: int):
    """Yield ``(c0, c1, rows)``: the act rows ``bases[c0:c1, None] + offs`` of tiles ``c0 ..
    c1 - 1``, in chunks of at most :data:`_CHUNK_ELEMS` elements of ``width`` per row."""
    step = max(1, _CHUNK_ELEMS // (len(offs) * width))
    for c0 in range(0, len(bases), step):
        yield c0, min(c0 + step, len(bases)), bases[c0:c0 + step, None] + offs[None, :]


def act_rows(args: dict, loop: dict) -> np.ndarray:
    """Return the ``(k_tiles, m)`` act-spad rows (exact, however far beyond the depth) that the
    MATMUL ``args`` reads under LOOP state ``loop`` (``hw/isa.py``'s ``act_row``)."""
    tile, offs = _act_tiles(args, loop)
    return tile[:, None] + offs[None, :]


def _zp_rows(cfg: AccelConfig, rows: np.ndarray, act: np.ndarray, zp: int) -> np.ndarray:
    """Return which act ``rows`` lie inside the ACT depth with all ``R`` lanes equal to ``zp``."""
    inside = rows < cfg.act_spad_depth
    return (act[np.where(inside, rows, 0)] == zp).all(axis=2) & inside


def _ws_zero_rows(cfg: AccelConfig, args: dict, rows: np.ndarray, act: np.ndarray, kt0: int
                  ) -> np.ndarray:
    """Return which of the act ``rows`` (tiles ``kt0 ..``) a zero-skipping ``ws`` engine
    skips (:func:`ws_skipped_rows`)."""
    zero = _zp_rows(cfg, rows, act, args["zp"])
    if args["acc_max"]:
        return np.zeros_like(zero)
    if not args["accumulate"] and kt0 == 0:
        zero[0] = False
    if kt0 + len(rows) == args["k_tiles"]:
        zero[-1, -1] = False
    return zero


def ws_skipped_rows(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray) -> np.ndarray:
    """Return which act rows ``(kt, i)`` of the MATMUL ``args`` a zero-skipping ``ws`` engine
    skips (``hw/matmul.py``'s ``SkipActStreamer``), a ``(k_tiles, m)`` bool array: a row whose
    ``R`` lanes all equal ``zp`` in the ACT spad contents ``act`` (``(depth, R)`` int8), inside
    the ACT depth, whose zero product changes nothing (``accumulate`` or ``kt > 0``, and not
    ``acc_max``), and that is not the MATMUL's final row ``(k_tiles - 1, m - 1)``."""
    return _ws_zero_rows(cfg, args, act_rows(args, loop), act, 0)


def _ws_tile_costs(skipped: np.ndarray) -> np.ndarray:
    """Return each tile's cycles of act-row pairs (:func:`ws_skip_cycles`), ``(k_tiles,)``."""
    k_tiles, m = skipped.shape
    fed = ~skipped
    if m % 2:
        fed = np.concatenate([fed, np.zeros((k_tiles, 1), bool)], axis=1)
    return np.maximum(1, fed[:, 0::2].astype(np.int64) + fed[:, 1::2]).sum(axis=1)


def _ws_skip_costs(cfg: AccelConfig, args: dict, loop: dict, act: np.ndarray
                   ) -> tuple[np.ndarray, int]:
    """Return a zero-skipping ``ws`` MATMUL's tile costs (:func:`_ws_tile_costs`) and its
    skipped rows. The rows of each distinct tile are read once, a chunk at a time; the first
    tile (without ``accumulate``) and the last one, whose rows the rule treats apart, are
    counted on their own."""
    tile, offs = _act_tiles(args, loop)
    k_tiles = len(tile)
    if args["acc_max"]:
        return np.repeat(_ws_tile_costs(np.zeros((1, len(offs)), bool)), k_tiles), 0
    bases, inv, counts = np.unique(tile, return_inverse=True, return_counts=True)
    costs_b = np.empty(len(bases), np.int64)
    zero_b = np.empty(len(bases), np.int64)
    for c0, c1, rows in _chunks(bases, offs, cfg.rows):
        zero = _zp_rows(cfg, rows, act, args["zp"])
        costs_b[c0:c1] = _ws_tile_costs(zero)
        zero_b[c0:c1] = zero.sum(axis=1)
    costs = costs_b[inv]
    skipped = int((counts * zero_b).sum())
    for t in sorted({k_tiles - 1} | (set() if args["accumulate"] else {0})):
        zero = _ws_zero_rows(cfg, args, tile[t] + offs[None, :], act, t)
        costs[t] = _ws_tile_costs(zero)[0]
        skipped += int(zero.sum()) - int(zero_b[inv[t]])
    return costs, skipped


def ws_skip_cycles(cfg: AccelConfig, skipped: np.ndarray) -> int:
    """Return the cycles of a zero-skipping ``ws`` MATMUL (like :func:`matmul_cycles`) whose
    skipped rows are ``skipped`` (``(k_tiles, m)`` bool, :func:`ws_skipped_rows`).

    The engine reads tile ``t``'s rows in pairs ``(i, i + 1)``, ``i`` even, one pair per cycle,
    and a pair that feeds both its rows to the array takes a second cycle: tile ``t`` costs
    ``T_t = sum(max(1, fed rows of the pair))``. Weights as in :func:`matmul_cycles`: tile
    ``t``'s ``R`` weight reads start after tile ``t - 1``'s last (``L_{t-1} + 1``, ``L_{-1} =
    0``) and, for ``t >= 2``, not before tile ``t - 2``'s bank release ``E_{t-2} +
    bank_release_delay - 1``; they end at ``L_t``. Tile ``t``'s pairs start at ``S_t = max(L_t,
    E_{t-1})`` and its last pair is taken at ``E_t = S_t + T_t``. The final row is on the array
    ``ACT_READ_LATENCY - 1`` cycles later, leaves it :func:`array_latency` later and ``busy``
    is low ``ACC_WRITE_LATENCY`` after that. With no skipped row this is :func:`matmul_cycles`.
    """
    return _ws_cycles_of_costs(cfg, _ws_tile_costs(skipped))


def _ws_cycles_of_costs(cfg: AccelConfig, costs: np.ndarray) -> int:
    """Return :func:`ws_skip_cycles` from the tiles' costs (:func:`_ws_tile_costs`)."""
    r = cfg.rows
    release = bank_release_delay(cfg) - 1
    last_wt, end = 0, 0
    ends = []
    for t, cost in enumerate(costs.tolist()):
        first_wt = last_wt + 1 if t < 2 else max(last_wt + 1, ends[t - 2] + release)
        last_wt = first_wt + r - 1
        end = max(last_wt, end) + cost
        ends.append(end)
    return end + ACT_READ_LATENCY - 1 + array_latency(cfg.rows, cfg.cols) + ACC_WRITE_LATENCY


def requant_cycles(cfg: AccelConfig, rows: int) -> int:
    """Return the cycles of a REQUANT after dispatch: ``rows + REQUANT_LATENCY + RETIRE_CYCLES``,
    or with ``cfg.requant_serial`` (fewer requantization lanes than ``cols`` or a shift-and-add
    multiplier) ``rows * cfg.requant_row_cycles + cfg.requant_group_cycles +
    REQUANT_SERIAL_LATENCY + RETIRE_CYCLES``."""
    if cfg.requant_serial:
        return (rows * cfg.requant_row_cycles + cfg.requant_group_cycles + REQUANT_SERIAL_LATENCY
                + RETIRE_CYCLES)
    return rows + REQUANT_LATENCY + RETIRE_CYCLES


def requant_fault_cycles(cfg: AccelConfig) -> int:
    """Return the cycles after dispatch of a REQUANT that halts with ``BAD_PARAM``:
    ``REQUANT_FAULT_BUSY`` (``REQUANT_SERIAL_FAULT_BUSY`` with ``cfg.requant_serial``)
    ``+ RETIRE_CYCLES``, whatever its ``rows``."""
    busy = REQUANT_SERIAL_FAULT_BUSY if cfg.requant_serial else REQUANT_FAULT_BUSY
    return busy + RETIRE_CYCLES


def perf_cycles(cfg: AccelConfig) -> int:
    """Return the counted cycles of a PERF after dispatch: ``RETIRE_CYCLES``, counted after the
    snapshot (the counters are frozen while PERF writes them)."""
    return RETIRE_CYCLES


def misc_cycles(cfg: AccelConfig) -> int:
    """Return the cycles of SYNC or HALT after dispatch: ``MISC_CYCLES``."""
    return MISC_CYCLES


_SPAD_NAMES = ("act", "wt", "acc", "out", "param")
_SPAD_DTYPES = {"act": np.int8, "wt": np.int8, "acc": np.dtype("<i4"), "out": np.int8,
                "param": np.dtype("<i4")}


class IsaSim:
    """Instruction-set simulator of one device configuration.

    Parameters
    ----------
    cfg : AccelConfig
        The configuration; scratchpad sizes, array size and memory size come from it.

    Scratchpads persist across :meth:`run` calls (as on the device, which does not clear them) and
    are available as ``spads[name]`` (``"act"``: ``(depth, R)`` int8, ``"wt"``/``"out"``:
    ``(depth, C)`` int8, ``"acc"``/``"param"``: ``(depth, C)`` int32).
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"IsaSim config must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.spads = {}
        for name in _SPAD_NAMES:
            width = cfg.spad_row_bytes(name) // np.dtype(_SPAD_DTYPES[name]).itemsize
            self.spads[name] = np.zeros((cfg.spad_depth(name), width), _SPAD_DTYPES[name])
        self._decoded: dict[int, tuple] = {}
        self.loop = dict(isa.LOOP_RESET)

    # -- decode ---------------------------------------------------------------------------------
    def _decode(self, word: int, pc: int):
        try:
            return self._decoded[word]
        except KeyError:
            pass
        if isa.opcode_bits(word) not in {o.value for o in isa.Opcode}:
            raise DeviceError(isa.ErrorCode.ILLEGAL_OPCODE, pc=pc,
                              detail=f"opcode {isa.opcode_bits(word)} in {word:#x}")
        reason = bad_arg_reason(self.cfg, word)        # step 3 of the fault order
        if reason is not None:
            raise DeviceError(isa.ErrorCode.BAD_ARG, pc=pc, detail=reason)
        d = fields(word)
        self._decoded[word] = d
        return d

    # -- run ------------------------------------------------------------------------------------
    def run(self, mem: np.ndarray, prog_addr: int, max_instructions: int = 10 ** 7) -> dict:
        """Execute the program at word address ``prog_addr`` in place on ``mem`` until HALT.

        Parameters
        ----------
        mem : uint8 array of ``cfg.mem_bytes``
            The device memory image; modified in place.
        prog_addr : int
            Word address of the first instruction.
        max_instructions : int
            Raise :class:`TimeoutError` when this many instructions retired without HALT.

        Returns
        -------
        dict
            The final counters, keyed by :data:`hw.isa.PERF_COUNTERS`.

        Raises
        ------
        DeviceError
            On a fault (see the module docstring); ``.counters`` holds the counters at the fault.
        """
        cfg = self.cfg
        if not isinstance(mem, np.ndarray) or mem.dtype != np.uint8 or mem.ndim != 1:
            raise TypeError(f"Device memory must be a 1-D uint8 array, not {type(mem).__name__} "
                            f"{getattr(mem, 'dtype', None)}")
        if mem.size != cfg.mem_bytes:
            raise ValueError(f"Device memory must be {cfg.mem_bytes} bytes, not {mem.size}")
        bb = cfg.mem_bus_bytes
        iw = isa.instr_words(cfg)
        ibytes = isa.INSTR_BITS // 8
        ctr = dict.fromkeys(isa.PERF_COUNTERS, 0)
        self.counters = ctr
        pc = int(prog_addr)
        fetch = fetch_cycles(cfg)
        self.loop = dict(isa.LOOP_RESET)                # start resets the address generator
        try:
            while True:
                if ctr["instructions"] >= max_instructions:
                    raise TimeoutError(f"Program did not HALT within {max_instructions} "
                                       f"instructions (pc={pc:#x})")
                if pc < 0 or pc + iw > cfg.mem_words:
                    raise DeviceError(isa.ErrorCode.FETCH_RANGE, pc=pc,
                                      detail=f"fetch of words {pc:#x}..{pc + iw - 1:#x} beyond "
                                             f"memory of {cfg.mem_words} words")
                word = int.from_bytes(mem[pc * bb: pc * bb + ibytes].tobytes(), "little")
                ctr["cycles"] += fetch
                op, a = self._decode(word, pc)
                if op == isa.Opcode.HALT:
                    ctr["cycles"] += misc_cycles(cfg)
                    ctr["instructions"] += 1
                    break
                self._execute(op, a, mem, pc, ctr)
                ctr["instructions"] += 1
                pc += iw
        except DeviceError as e:
            e.counters = dict(ctr)
            raise
        return dict(ctr)

    # -- checks ---------------------------------------------------------------------------------
    def _spad_check(self, pc, spad, addr, rows):
        depth = self.cfg.spad_depth(spad)
        if addr + rows > depth:
            raise DeviceError(isa.ErrorCode.SPAD_RANGE, pc=pc,
                              detail=f"{spad} rows {addr}..{addr + rows - 1} beyond depth {depth}")

    def _dram_check(self, pc, first, last):
        limit = self.cfg.zero_dir_base                  # mem_words without compress_acts
        if last >= limit:
            raise DeviceError(isa.ErrorCode.DRAM_RANGE, pc=pc,
                              detail=f"memory words {first:#x}..{last:#x} beyond "
                                     f"{limit} words" + (" (the zero-row directory)"
                                                         if self.cfg.compress_acts else ""))

    # -- execute --------------------------------------------------------------------------------
    def _execute(self, op, a, mem, pc, ctr):
        cfg = self.cfg
        if op == isa.Opcode.LOAD or op == isa.Opcode.STORE:
            self._dma(op == isa.Opcode.STORE, a, mem, pc, ctr)
        elif op == isa.Opcode.MATMUL:
            self._matmul(a, pc, ctr)
        elif op == isa.Opcode.REQUANT:
            self._requant(a, pc, ctr)
        elif op == isa.Opcode.PERF:
            pw = isa.perf_words(cfg)
            self._dram_check(pc, a["dram_addr"], a["dram_addr"] + pw - 1)
            mask = (1 << cfg.counter_bits) - 1         # the counters wrap at counter_bits
            snap = b"".join((ctr[n] & mask).to_bytes(isa.PERF_SLOT_BYTES, "little")
                            for n in isa.PERF_COUNTERS).ljust(pw * cfg.mem_bus_bytes, b"\0")
            start = a["dram_addr"] * cfg.mem_bus_bytes
            mem[start:start + len(snap)] = np.frombuffer(snap, np.uint8)
            ctr["cycles"] += perf_cycles(cfg)           # the retire cycle, after the snapshot
        elif op == isa.Opcode.LOOP:
            self.loop = dict(a)
            ctr["cycles"] += misc_cycles(cfg)
        elif op == isa.Opcode.SYNC:
            ctr["cycles"] += misc_cycles(cfg)
        else:   # pragma: no cover - every legal opcode is handled above
            raise DeviceError(isa.ErrorCode.ILLEGAL_OPCODE, pc=pc, detail=f"opcode {op}")

    def _dma(self, store, a, mem, pc, ctr):
        cfg = self.cfg
        spad = _SPAD_NAMES[a["spad"]]
        rows, saddr, daddr, stride = a["rows"], a["spad_addr"], a["dram_addr"], a["dram_stride"]
        compress = a.get("compress", 0)
        self._spad_check(pc, spad, saddr, rows)
        rw = cfg.spad_row_words(spad)
        last = daddr + (rows - 1) * stride + rw - 1
        self._dram_check(pc, daddr, last)
        if compress:
            self._zero_dir_dma(store, spad, saddr, rows, daddr, stride, a["zp"], mem, ctr)
            return
        bb = cfg.mem_bus_bytes
        rb = rw * bb
        arr = self.spads[spad]
        if stride == rw:                        # contiguous: one slice
            region = mem[daddr * bb: daddr * bb + rows * rb]
            if store:
                region[:] = arr[saddr:saddr + rows].view(np.uint8).reshape(-1)
            else:
                arr[saddr:saddr + rows] = region.view(arr.dtype).reshape(rows, -1)
        else:
            idx = ((daddr + np.arange(rows, dtype=np.int64) * stride) * bb)[:, None] \
                + np.arange(rb, dtype=np.int64)[None, :]
            if store:
                src = arr[saddr:saddr + rows].view(np.uint8).reshape(rows, rb)
                if stride >= rw:
                    mem[idx] = src
                else:                           # overlapping rows: later rows win, in order
                    for i in range(rows):
                        mem[idx[i]] = src[i]
            else:
                arr[saddr:saddr + rows] = mem[idx].reshape(-1).view(arr.dtype).reshape(rows, -1)
        nbytes = rows * rb
        ctr["dram_write_bytes" if store else "dram_read_bytes"] += nbytes
        ctr["cycles"] += (store_cycles if store else load_cycles)(cfg, spad, rows)

    def _zero_dir_dma(self, store, spad, saddr, rows, daddr, stride, zp, mem, ctr):
        """Execute a LOAD / STORE with ``compress=1`` (``hw/isa.py``), checked already."""
        cfg = self.cfg
        bb, rw = cfg.mem_bus_bytes, cfg.zero_row_words
        rb = rw * bb
        arr = self.spads[spad]
        addrs = daddr + np.arange(rows, dtype=np.int64) * stride
        slots = addrs // rw
        idx = (addrs * bb)[:, None] + np.arange(rb, dtype=np.int64)[None, :]
        if store:
            src = arr[saddr:saddr + rows]
            zero = (src == zp).all(axis=1)
            data = src.view(np.uint8).reshape(rows, rb)
            written, last = np.flatnonzero(~zero), np.arange(rows)
            if stride == 0:             # one slot: the last row written and the last row's bit
                written, last = written[-1:], last[-1:]
            mem[idx[written]] = data[written]
            write_zero_dir(cfg, mem, slots[last], zero[last])
            n_zero = int(zero.sum())
        else:
            zero = read_zero_dir(cfg, mem, slots)
            loaded = mem[idx].view(np.int8).copy()
            loaded[zero] = zp
            arr[saddr:saddr + rows] = loaded
            n_zero = int(zero.sum())
        d = zero_dir_runs(cfg, daddr, rows, stride)
        data_bytes = (rows - n_zero) * rb
        if store:
            ctr["dram_write_bytes"] += data_bytes + d * bb
            ctr["dram_read_bytes"] += d * bb
        else:
            ctr["dram_read_bytes"] += data_bytes + d * bb
        ctr["cycles"] += zero_dir_cycles(cfg, store, rows, n_zero, d)

    def act_rows(self, a) -> np.ndarray:
        """Return the ``(k_tiles, m)`` act-spad rows a MATMUL with operands ``a`` reads under the
        current LOOP state (:func:`act_rows`)."""
        return act_rows(a, self.loop)

    def _matmul(self, a, pc, ctr):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m, kt = a["m"], a["k_tiles"]
        wt_rows = R if a["wt_repeat"] else kt * R
        self._spad_check(pc, "wt", a["wt_addr"], wt_rows)
        self._spad_check(pc, "acc", a["acc_addr"], m)
        act = self.spads["act"]
        skip_rows = 0
        if cfg.dataflow == "ws" and cfg.zero_skip:
            costs, skip_rows = _ws_skip_costs(cfg, a, self.loop, act)
            cyc = _ws_cycles_of_costs(cfg, costs)
        else:
            cyc = matmul_cycles_of(cfg, a, self.loop, act)
        tile, offs = _act_tiles(a, self.loop)
        act_last = int(tile.max() + offs.max())
        if act_last >= cfg.act_spad_depth:             # found as the rows are read: at the end
            ctr["cycles"] += cyc
            ctr["compute_cycles"] += cyc - RETIRE_CYCLES
            skip_macs = skip_rows * R * C
            ctr["macs"] += m * R * C * kt - skip_macs
            ctr["skipped_macs"] += skip_macs
            raise DeviceError(isa.ErrorCode.SPAD_RANGE, pc=pc,
                              detail=f"act row {act_last} beyond depth {cfg.act_spad_depth}")
        self._matmul_results(a, ctr, skip_rows)
        ctr["cycles"] += cyc
        ctr["compute_cycles"] += cyc - RETIRE_CYCLES       # the MatmulEngine's busy cycles

    def _matmul_results(self, a, ctr, skip_rows):
        """Write a legal MATMUL's ACC rows and add its MACs to ``macs``, ``gated_macs`` and
        ``skipped_macs`` (module docstring, "MAC counters"; ``skip_rows``: the act rows a
        zero-skipping ``ws`` engine skips), a chunk of tiles at a time (:func:`_chunks`), so
        the memory is that of a chunk whatever ``k_tiles``. With ``wt_repeat`` every tile
        meets the same weights, so each distinct act tile is read once and weighted by the
        number of tiles that read it (at most the ACT depth of them)."""
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m, zp = a["m"], a["zp"]
        act, wt = self.spads["act"], self.spads["wt"]
        repeat, acc_max = a["wt_repeat"], a["acc_max"]
        tile, offs = _act_tiles(a, self.loop)
        if repeat:
            w_tile = wt[a["wt_addr"]:a["wt_addr"] + R].astype(np.int64)
            tile, inv, counts = np.unique(tile, return_inverse=True, return_counts=True)
            a_sum = np.zeros((m, R), np.int64)          # sum over the tiles of a - zp
        out = None if acc_max else np.zeros((m, C), np.int64)
        zeros = np.zeros(len(tile), np.int64)           # zero activations per (distinct) tile
        gated_w = 0                                     # non-zero acts meeting a zero weight
        for c0, c1, rows in _chunks(tile, offs, max(R, C)):
            raw = act[rows]                                                  # (ck, m, R)
            za = raw == zp
            zeros[c0:c1] = za.sum(axis=(1, 2))
            acts = raw.astype(np.int64) - zp
            if repeat:
                wts = w_tile                                                 # (R, C)
            else:
                wts = wt[a["wt_addr"] + c0 * R:a["wt_addr"] + c1 * R].astype(np.int64)
            if cfg.zero_gate and cfg.dataflow != "rs":
                zw = (wts == 0).reshape(-1, R, C).sum(axis=2)                # (1 or ck, R)
                per_tile = ((m - za.sum(axis=1)) * zw).sum(axis=1)
                gated_w += int((per_tile * counts[c0:c1]).sum() if repeat else per_tile.sum())
            if acc_max:
                # float64 is exact: |a @ W| <= 255 * 128 * R < 2**53.
                per = (acts.astype(np.float64)
                       @ wts.reshape(-1, R, C).astype(np.float64)).max(axis=0)
                out = per if out is None else np.maximum(out, per)
            elif repeat:
                a_sum += np.tensordot(counts[c0:c1], acts, axes=1)
            else:
                # float64 is exact for a chunk: |sum| <= 255 * 128 * R * chunk tiles < 2**53.
                a2 = acts.transpose(1, 0, 2).reshape(m, -1).astype(np.float64)
                out += (a2 @ wts.astype(np.float64)).astype(np.int64)
        if acc_max:
            out = out.astype(np.int64)
        elif repeat:
            out = a_sum @ w_tile                # exact: |a_sum| <= 255 * 65535, int64
        if repeat:
            zeros = zeros[inv]
        acc = self.spads["acc"]
        lo, hi = a["acc_addr"], a["acc_addr"] + m
        if a["accumulate"]:
            out = np.maximum(out, acc[lo:hi]) if acc_max else out + acc[lo:hi]
        acc[lo:hi] = golden.wrap_int32(out)
        self._count_macs(zeros, gated_w, ctr, a, skip_rows)

    def _count_macs(self, zeros, gated_w, ctr, args, skip_rows=0):
        """Add a MATMUL's MACs to ``macs``, ``gated_macs`` and ``skipped_macs`` (module
        docstring, "MAC counters") from its zero activations per tile ``zeros`` (``(k_tiles,)``),
        the MACs of a non-zero activation with a zero weight ``gated_w`` (``ws`` / ``os``) and
        the act rows a zero-skipping ``ws`` engine skips."""
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        total = args["m"] * R * C * args["k_tiles"]
        if cfg.dataflow == "rs":        # a row-stationary PE gates or skips on zero acts only
            skip = np.zeros(len(zeros), bool)
            if cfg.zero_skip:
                from .rs_model import rs_skipped_tiles
                skip = rs_skipped_tiles(cfg, args, self.loop)
            skipped = int(zeros[skip].sum()) * C
            ctr["skipped_macs"] += skipped
            ctr["macs"] += total - skipped
            if cfg.zero_gate:
                ctr["gated_macs"] += int(zeros[~skip].sum()) * C
            return
        ctr["skipped_macs"] += skip_rows * R * C
        ctr["macs"] += total - skip_rows * R * C
        if cfg.zero_gate:
            ctr["gated_macs"] += (int(zeros.sum()) - skip_rows * R) * C + gated_w

    def _requant(self, a, pc, ctr):
        cfg = self.cfg
        rows = a["rows"]
        self._spad_check(pc, "acc", a["acc_addr"], rows)
        self._spad_check(pc, "out", a["out_addr"], rows)
        self._spad_check(pc, "param", a["param_addr"], 3)
        p = self.spads["param"]
        bias, mult, shift = p[a["param_addr"]], p[a["param_addr"] + 1], p[a["param_addr"] + 2]
        if np.any(shift < 0) or np.any(shift > isa.REQUANT_MAX_SHIFT):
            ctr["cycles"] += requant_fault_cycles(cfg)     # the check runs on the PostProc
            raise DeviceError(isa.ErrorCode.BAD_PARAM, pc=pc,
                              detail=f"shift row {a['param_addr'] + 2} holds {shift.tolist()}, "
                                     f"outside 0..{isa.REQUANT_MAX_SHIFT}")
        acc = self.spads["acc"][a["acc_addr"]:a["acc_addr"] + rows]
        self.spads["out"][a["out_addr"]:a["out_addr"] + rows] = golden.requantize(
            acc, bias, mult, shift, a["zp_out"], bool(a["relu"]))
        ctr["cycles"] += requant_cycles(cfg, rows)
