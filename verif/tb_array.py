"""cocotb testbench of ``SystolicArray`` alone: double-buffered weight tiles against ``golden.gemm``.

Parameters come from the ``STAMEN_ARRAY`` environment variable (JSON: rows, cols, zero_gate, m, tiles,
seed). Weight tile ``t`` shifts into bank ``t % 2`` while tile ``t - 1`` streams, as the MatmulEngine
does; every output row is compared element by element with ``golden.gemm``, and the gated-MAC count with
the count NumPy derives from the operands.
"""
from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from stamen.hw.pe_array import acts_layout, psums_layout, wts_layout
from stamen.sw import golden


def _layouts(rows: int, cols: int):
    return wts_layout(cols), acts_layout(rows), psums_layout(cols)


@cocotb.test()
async def array_matches_golden(dut):
    """Stream random tiles through the array and compare every output row with golden.gemm."""
    p = json.loads(os.environ["STAMEN_ARRAY"])
    rows, cols, m, tiles, seed = p["rows"], p["cols"], p["m"], p["tiles"], p["seed"]
    cocotb.log.info("array %dx%d m=%d tiles=%d seed=%d", rows, cols, m, tiles, seed)
    rng = np.random.default_rng(seed)
    wl, al, pl = _layouts(rows, cols)
    ws = [rng.integers(-128, 128, (rows, cols), dtype=np.int8) for _ in range(tiles)]
    acts = [rng.integers(-128, 128, (m, rows), dtype=np.int8) for _ in range(tiles)]
    zps = [int(rng.integers(-128, 128)) for _ in range(tiles)]
    ws[0][0, :] = 0                      # a zero weight row and a zero activation column: gating
    acts[-1][:, 0] = zps[-1]
    ws[-1][-1, -1] = -128
    acts[0][0, :] = -128
    acts[0][1 % m, :] = 127

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i_wts__valid.value = 0
    dut.i_acts__valid.value = 0
    await RisingEdge(dut.clk)
    dut.rst.value = 0

    # schedule: cycle-by-cycle list of (wt beat or None, act beat or None)
    schedule = []
    for r in reversed(range(rows)):                       # tile 0 weights: last row first
        schedule.append(((0, ws[0][r]), None))
    for t in range(tiles):
        nxt = t + 1
        for i in range(max(m, rows if nxt < tiles else 0)):
            wt = (nxt % 2, ws[nxt][rows - 1 - i]) if nxt < tiles and i < rows else None
            act = (t % 2, acts[t][i].astype(np.int16) - zps[t]) if i < m else None
            schedule.append((wt, act))
        # let the tile drain from the bank before it is reloaded two tiles later
        schedule += [(None, None)] * (rows + cols)
    expected = [golden.gemm(acts[t], ws[t], zps[t]) for t in range(tiles)]
    exp_gated = sum(int(((acts[t].astype(np.int16) - zps[t])[:, :, None] == 0).__or__(
        ws[t][None, :, :] == 0).sum()) for t in range(tiles))

    got, gated, macs = [], 0, 0
    for wt, act in schedule + [(None, None)] * (4 * (rows + cols)):
        if wt is None:
            dut.i_wts__valid.value = 0
        else:
            dut.i_wts__valid.value = 1
            dut.i_wts__payload.value = wl.const({"bank": wt[0], "row": [int(v) for v in wt[1]]}
                                                ).as_value().value
        if act is None:
            dut.i_acts__valid.value = 0
        else:
            dut.i_acts__valid.value = 1
            dut.i_acts__payload.value = al.const({"bank": act[0], "row": [int(v) for v in act[1]]}
                                                 ).as_value().value
        await ReadOnly()
        gated += dut.gated_inc.value.to_unsigned()
        macs += dut.macs_inc.value.to_unsigned()
        if dut.o_psums__valid.value:
            row = data.Const(pl, dut.o_psums__payload.value.to_unsigned())
            got.append([row[c] for c in range(cols)])
        await RisingEdge(dut.clk)

    want = np.concatenate(expected)
    got = np.array(got, dtype=np.int64)
    assert got.shape == want.shape, f"seed={seed}: {got.shape[0]} output rows, want {want.shape[0]}"
    np.testing.assert_array_equal(got, want, err_msg=f"seed={seed}")
    assert macs == tiles * m * rows * cols, f"seed={seed}: macs {macs}"
    if p["zero_gate"]:
        assert gated == exp_gated, f"seed={seed}: gated {gated}, want {exp_gated}"
    else:
        assert gated == 0, f"seed={seed}: gated {gated} with gating off"
