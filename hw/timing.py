"""Pipeline latencies of the device: the one source for the RTL and the cycle models.

Amaranth-free (standard library only), so the host's models (``sw/sim/``) and the compiler may
import it. Each number names the block whose pipeline it describes. Where
a block builds its pipeline from a number (a delay line, a counter), it imports it from here;
where the latency follows from the block's structure, the block's docstring points here and the
test named beside the number checks the RTL against it (all latencies for an ideal memory: the
response one cycle after the request, no backpressure).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:                                   # pragma: no cover
    from .params import AccelConfig

__all__ = ["ISSUE_OVERHEAD", "RETIRE_CYCLES", "MISC_CYCLES",
           "DMA_READ_LATENCY", "DMA_WRITE_LATENCY", "ZERO_DIR_LOAD_CYCLES",
           "ZERO_DIR_STORE_CYCLES",
           "REQUANT_LATENCY", "REQUANT_SERIAL_LATENCY", "REQUANT_FAULT_BUSY",
           "REQUANT_SERIAL_FAULT_BUSY",
           "WT_READ_LATENCY", "ACT_READ_LATENCY", "ACC_WRITE_LATENCY", "array_latency",
           "array_bank_hold", "bank_release_delay", "OS_ACT_LATENCY", "os_array_latency",
           "RS_PSUM_LATENCY", "RS_FEED_START", "RS_FEED_LATENCY", "RS_QUEUE_FREE",
           "RS_END_CYCLES"]

# -- controller (hw/controller.py; tests/test_hw_controller.py compares isasim's cycles) -------
#: Controller: cycles of fetching, decoding, checking and dispatching an instruction beyond one
#: per instruction word (the pc handshake, the memory's response latency, the instruction
#: register and the check-and-dispatch cycle).
ISSUE_OVERHEAD = 4
#: Controller: cycles from a unit's ``busy`` falling until its instruction has retired.
RETIRE_CYCLES = 1
#: Controller: cycles of SYNC and HALT after their dispatch cycle (they retire in it).
MISC_CYCLES = 0

# -- DMA (hw/dma.py; tests/test_hw_dma.py, tests/test_hw_controller.py) ----------------------
#: DMA LOAD: busy cycles beyond one per memory word (the memory's response latency).
DMA_READ_LATENCY = 1
#: DMA STORE: busy cycles beyond one per memory word (spad read, then the one-row buffer).
DMA_WRITE_LATENCY = 2
#: ZeroRowDMA LOAD ``compress=1``: busy cycles per directory word it reads (request, response).
ZERO_DIR_LOAD_CYCLES = 2
#: ZeroRowDMA STORE ``compress=1``: busy cycles per directory word it updates (read request,
#: response, write-back).
ZERO_DIR_STORE_CYCLES = 3

# -- PostProc (hw/postproc.py; tests/test_hw_postproc.py, tests/test_hw_controller.py) --------
#: PostProc REQUANT: busy cycles beyond one per row (4 param-row cycles, the ACC read and the
#: Requantizer's two pipeline stages).
REQUANT_LATENCY = 7
#: SerialRequantizer REQUANT: busy cycles beyond ``requant_row_cycles`` per row and one
#: ``requant_group_cycles`` (the shift-row check's read and test, then the final slot up to the
#: last row's OUT write).
REQUANT_SERIAL_LATENCY = 5
#: PostProc REQUANT with a shift outside ``0..REQUANT_MAX_SHIFT``: busy cycles before ``busy``
#: falls with the fault (the 4 param-row cycles).
REQUANT_FAULT_BUSY = 4
#: SerialRequantizer REQUANT with a bad shift: busy cycles before the fault (the shift-row
#: check's read and test).
REQUANT_SERIAL_FAULT_BUSY = 2

# -- weight-stationary MatmulEngine (hw/matmul.py, hw/pe_array.py; tests/test_hw_matmul.py) ---
#: WeightLoader: cycles from a weight-spad read to its beat on the array's ``i_wts``.
WT_READ_LATENCY = 1
#: ActStreamer: cycles from an act-spad read to its beat on the array's ``i_acts`` (read, then
#: ``a - zp``).
ACT_READ_LATENCY = 2
#: AccumulatorBase (every engine): cycles from a psum row leaving the array to ``busy`` low
#: (the ACC read-modify-write's write cycle, then ``busy`` falls).
ACC_WRITE_LATENCY = 2


def array_latency(rows: int, cols: int) -> int:
    """SystolicArray: cycles from an activation beat on ``i_acts`` to its row on ``o_psums``."""
    return rows + cols


def array_bank_hold(rows: int, cols: int) -> int:
    """SystolicArray: cycles after the last act beat using a weight bank until it may shift."""
    return rows + cols - 2


def bank_release_delay(cfg: AccelConfig) -> int:
    """ActStreamer: cycles from a tile's last act read to the first weight read reusing its bank."""
    return ACT_READ_LATENCY + array_bank_hold(cfg.rows, cfg.cols) - WT_READ_LATENCY


# -- output-stationary OsMatmulEngine (hw/os_matmul.py, hw/os_array.py; tests/test_hw_os.py) --
#: OsActStager: cycles from the act read of a step to PE row 0's operand on the array (the act
#: read, the transposing shift register; PE row ``r`` is skewed ``r`` cycles more).
OS_ACT_LATENCY = 2


def os_array_latency(rows: int, cols: int) -> int:
    """OsSystolicArray: cycles from a row's ``last`` act beat to its outputs on ``o_psums``."""
    return cols + 1


# -- row-stationary RsMatmulEngine (hw/rs_pe.py, hw/rs_matmul.py; tests/test_hw_rs_pe.py,
#    tests/test_hw_matmul.py compare sw.sim.rs_engine's cycles) -------------------------------------
#: RsPE: cycles from the op completing a psum to that psum being valid on ``o_psums`` (filter
#: spad read, then multiply-accumulate).
RS_PSUM_LATENCY = 2
#: RsFeeder: cycles from a pass's issue to the feeder's first act spad read of its run, when the
#: feeder is idle (its pass queue, then its registers).
RS_FEED_START = 2
#: RsFeeder: cycles from the act spad read of a position to its beat (and the watermark) at the
#: PEs (the read, then the push into the row FIFO).
RS_FEED_LATENCY = 2
#: RsAccumulator: cycles from the column adder's top stage taking a pass's last psum to the pass
#: queue taking the next pass (the stage's register, the queue's level).
RS_QUEUE_FREE = 2
#: RsMatmulEngine: cycles from the column adder's top stage taking the last psum to ``busy``
#: falling (the stage's register, the ACC write stage, ``busy``).
RS_END_CYCLES = 3
