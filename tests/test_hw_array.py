# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the weight-stationary ``hw.pe_array.SystolicArray``."""
import numpy as np
import pytest

from stamen.hw.pe import WT_BANKS
from stamen.hw.pe_array import SystolicArray
from stamen.hw.timing import array_bank_hold, array_latency
from stamen.sw import golden
from stamen.verif import amsim

INT8_MIN, INT8_MAX = -128, 127


def _int8(rng, shape, zeros=0.25, fill=0):
    """Return random int8 data with a share of ``fill`` values (zeros) and -128/127 extremes."""
    x = rng.integers(INT8_MIN, INT8_MAX + 1, size=shape)
    pick = rng.random(shape)
    x = np.where(pick < 0.1, INT8_MIN, np.where(pick < 0.2, INT8_MAX, x))
    x = np.where(rng.random(shape) < zeros, fill, x)
    return x.astype(np.int8)


def _tiles(rng, rows, cols, ms):
    """Return one ``(zp, acts, wts)`` per tile: ``acts`` is m x rows, ``wts`` rows x cols."""
    zps = [INT8_MIN, INT8_MAX, 0] + [int(rng.integers(INT8_MIN, INT8_MAX + 1)) for _ in ms]
    tiles = []
    for kt, m in enumerate(ms):
        zp = zps[kt]
        acts = _int8(rng, (m, rows), fill=zp)          # a == zp gives a zero operand
        if kt == len(ms) - 1:
            acts[0, :] = zp                             # one all-zero operand row
        tiles.append((zp, acts, _int8(rng, (rows, cols))))
    return tiles


def _schedule(rng, rows, cols, tiles, bubbles):
    """Return ``{cycle: [("wts", bank, row) | ("acts", bank, operands, tile, i)]}``.

    The schedule is as tight as the array's contract allows: a tile's weights go into its bank as
    soon as the previous tile of that bank has its last beat ``rows + cols - 2`` cycles in the
    array; its beats follow one cycle after its last weight beat (with random bubbles).
    """
    events, wt_last, act_last = {}, [], []
    cycle = 0
    for kt, (zp, acts, wts) in enumerate(tiles):
        bank = kt % WT_BANKS
        start = wt_last[-1] + 1 if wt_last else 0
        if kt >= WT_BANKS:
            start = max(start, act_last[kt - WT_BANKS] + array_bank_hold(rows, cols))
        for j in range(rows):                           # row rows-1 first, row 0 last
            events.setdefault(start + j, []).append(("wts", bank, wts[rows - 1 - j]))
        wt_last.append(start + rows - 1)
        cycle = max(wt_last[-1] + 1, act_last[-1] + 1 if act_last else 0)
        ops = acts.astype(np.int64) - zp
        for i in range(len(acts)):
            while rng.random() < bubbles:
                cycle += 1
            events.setdefault(cycle, []).append(("acts", bank, ops[i], kt, i))
            cycle += 1
        act_last.append(cycle - 1)
    return events


@pytest.mark.parametrize("zero_gate", [True, False])
@pytest.mark.parametrize("rows,cols,seed", [(2, 4, 1), (4, 4, 2), (4, 2, 3), (8, 8, 4)])
def test_array_matches_golden(rows, cols, seed, zero_gate):
    rng = np.random.default_rng(seed)
    msg = f"seed={seed} rows={rows} cols={cols} zero_gate={zero_gate}"
    ms = [1, 2, rows + cols - 1, 3, 2 * rows + cols, 1, 5]
    tiles = _tiles(rng, rows, cols, ms)
    events = _schedule(rng, rows, cols, tiles, bubbles=0.2)
    dut = SystolicArray(rows, cols, zero_gate)
    assert dut.latency == array_latency(rows, cols) == rows + cols
    assert array_bank_hold(rows, cols) == rows + cols - 2
    n_cycles = max(events) + dut.latency + 2
    got_rows, got_cycles, beat_cycles, gated, macs = [], [], [], [], []

    async def tb(ctx):
        for cycle in range(n_cycles):
            ctx.set(dut.i_wts.valid, 0)
            ctx.set(dut.i_acts.valid, 0)
            for ev in events.get(cycle, []):
                if ev[0] == "wts":
                    ctx.set(dut.i_wts.valid, 1)
                    ctx.set(dut.i_wts.p, {"bank": ev[1], "row": [int(v) for v in ev[2]]})
                else:
                    ctx.set(dut.i_acts.valid, 1)
                    ctx.set(dut.i_acts.p, {"bank": ev[1], "row": [int(v) for v in ev[2]]})
                    beat_cycles.append(cycle)
                    gated.append(ctx.get(dut.gated_inc))
                    macs.append(ctx.get(dut.macs_inc))
            if not ctx.get(dut.i_acts.valid):
                assert ctx.get(dut.macs_inc) == 0 and ctx.get(dut.gated_inc) == 0, msg
            if ctx.get(dut.o_psums.valid):
                got_rows.append([int(v) for v in ctx.get(dut.o_psums.p)])
                got_cycles.append(cycle)
            await ctx.tick()

    amsim.run(dut, tb)

    expected = np.concatenate([golden.gemm(acts, wts, zp) for zp, acts, wts in tiles])
    np.testing.assert_array_equal(np.array(got_rows, dtype=np.int64), expected, err_msg=msg)
    np.testing.assert_array_equal(got_cycles, np.array(beat_cycles) + dut.latency, err_msg=msg)
    # Gated MACs per beat: operand zero or weight zero (only with zero gating).
    exp_gated = np.concatenate([
        ((acts.astype(np.int64) - zp)[:, :, None] == 0) | (wts[None, :, :] == 0)
        for zp, acts, wts in tiles]).sum(axis=(1, 2))
    np.testing.assert_array_equal(gated, exp_gated if zero_gate else 0 * exp_gated, err_msg=msg)
    np.testing.assert_array_equal(macs, np.full(len(expected), rows * cols), err_msg=msg)
    if zero_gate:
        assert 0 < sum(gated) < len(expected) * rows * cols, msg


def test_array_rejects_bad_parameters():
    with pytest.raises(TypeError, match="rows must be a positive integer"):
        SystolicArray(0, 4)
    with pytest.raises(TypeError, match="cols must be a positive integer"):
        SystolicArray(2, True)
    with pytest.raises(TypeError, match="zero_gate must be a bool"):
        SystolicArray(2, 2, zero_gate="yes")
