# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the row-stationary array ``hw.rs_array.RsArray`` running whole
conv layers mapped by ``sw.analysis.eyeriss.map_conv``: the psums are compared element by element with
``sw.golden.conv2d`` on random data (seeds printed), the counters with the model's, and each
pass's cycles with ``sw.analysis.eyeriss.chain_cycles``."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from stamen.hw.rs_array import RsArray
from stamen.hw.rs_pe import RsPEConfig
from stamen.sw import golden
from stamen.sw.analysis.eyeriss import RsConvShape, chain_cycles, map_conv, rs_conv_cycles
from stamen.sw.sim.rs_pe import rs_pe_timing
from stamen.verif import amsim

log = logging.getLogger(__name__)
#: A small PE so the simulations stay quick; the array logic does not depend on the sizes.
PE = RsPEConfig(wt_depth=48, ifmap_depth=7, psum_depth=4, max_width=24, max_stride=2)


def _layer(rng, shape: RsConvShape, density: float):
    """Return a padded input (C, H, W), weights (Fo, Cin/groups, KH, KW) and a zero point."""
    zp = int(rng.choice([-128, 0, 5, int(rng.integers(-128, 128))]))
    x = rng.integers(-128, 128, (shape.in_ch, shape.in_h, shape.in_w))
    x = np.where(x == zp, (zp + 129) % 256 - 128, x)
    x = np.where(rng.random(x.shape) < density, x, zp).astype(np.int8)
    w = rng.integers(-128, 128, (shape.out_ch, shape.in_ch // shape.groups, shape.kh, shape.kw))
    return x, np.where(rng.random(w.shape) < 0.1, 0, w).astype(np.int8), zp


def _run(dut: RsArray, mapping, x, w, zp, zero_skip: bool, limit: int = 20000):
    """Run every pass of ``mapping`` on the array; return the int32 output (Fo, OH, OW), the
    measured cycles of each pass and the summed (macs, gated, skipped) counters."""
    shape = mapping.shape
    g_in = shape.in_ch // shape.groups
    out = np.zeros((shape.out_ch, shape.out_h, shape.out_w), np.int64)
    pass_cycles, counts = [], [0, 0, 0]

    def beats(row):
        b = [{"value": int(v), "offset": k, "end": 0} for k, v in enumerate(row)
             if not zero_skip or v != zp]
        return b + [{"value": 0, "offset": len(row), "end": 1}]

    def column_psums(p, j):
        e = len(p.out_rows)
        oy, fs = p.out_rows[j % e], p.filter_sets[j // e]
        return oy, list(fs) + [None] * (p.filters - len(fs))

    async def tb(ctx):
        for p in mapping.passes:
            e, f = len(p.out_rows), p.filters
            for i, (c, ky) in enumerate(p.items):
                for b, fs in enumerate(p.filter_sets):
                    ctx.set(dut.wt_write[i], {"en": 1, "cols": ((1 << e) - 1) << (b * e)})
                    for k in range(f * shape.kw):
                        fi, s = divmod(k, shape.kw)
                        v = int(w[fs[fi], c - p.group * g_in, ky, s]) if fi < len(fs) else 0
                        ctx.set(dut.wt_write[i].addr, k)
                        ctx.set(dut.wt_write[i].data, [v] * dut.shape[1])
                        await ctx.tick()
                ctx.set(dut.wt_write[i].en, 0)
            acts = {(i, j): beats(x[c, y]) for i, j, c, y, ky, fs in p.pe_rows(shape)}
            pins, pouts = {}, {}
            for j in range(p.used_cols):
                oy, fs = column_psums(p, j)
                pins[j] = [int(out[fo, oy, xo]) if fo is not None else 0
                           for xo in range(shape.out_w) for fo in fs] if p.acc else []
                pouts[j] = []
            sent = {k: 0 for k in acts}
            nin = {j: 0 for j in pins}
            ctx.set(dut.i_cmd.p, {"wt_base": 0, "taps": shape.kw, "stride": shape.stride,
                                  "filters": f, "zp": zp, "acc": int(p.acc),
                                  "used_rows": p.used_rows, "used_cols": p.used_cols})
            ctx.set(dut.i_cmd.valid, 1)
            start = None
            for cycle in range(limit):
                for (i, j), b in acts.items():
                    s = dut.i_acts[i][j]
                    ctx.set(s.valid, sent[(i, j)] < len(b))
                    if sent[(i, j)] < len(b):
                        ctx.set(s.p, b[sent[(i, j)]])
                for j in pins:
                    ctx.set(dut.i_psums[j].valid, nin[j] < len(pins[j]))
                    if nin[j] < len(pins[j]):
                        ctx.set(dut.i_psums[j].p, pins[j][nin[j]])
                    ctx.set(dut.o_psums[j].ready, 1)
                if start is None:
                    assert ctx.get(dut.i_cmd.ready), "array not idle before a pass"
                    start = cycle
                elif ctx.get(dut.idle):
                    pass_cycles.append(cycle - start)
                    break
                hs_a = [k for k in acts if ctx.get(dut.i_acts[k[0]][k[1]].ready)
                        and sent[k] < len(acts[k])]
                hs_i = [j for j in pins if ctx.get(dut.i_psums[j].ready)
                        and nin[j] < len(pins[j])]
                for j in pouts:
                    if ctx.get(dut.o_psums[j].valid):
                        pouts[j].append(ctx.get(dut.o_psums[j].p))
                for n, inc in enumerate((dut.macs_inc, dut.gated_inc, dut.skipped_inc)):
                    counts[n] += ctx.get(inc)
                await ctx.tick()
                ctx.set(dut.i_cmd.valid, 0)
                for k in hs_a:
                    sent[k] += 1
                for j in hs_i:
                    nin[j] += 1
            else:
                raise TimeoutError(f"pass not done within {limit} cycles")
            assert all(sent[k] == len(acts[k]) for k in acts), "activation beats left"
            assert all(nin[j] == len(pins[j]) for j in pins), "psum buffer beats left"
            for j, got in pouts.items():
                oy, fs = column_psums(p, j)
                assert len(got) == shape.out_w * f, f"column {j}: {len(got)} psums"
                for n, v in enumerate(got):
                    xo, fi = divmod(n, f)
                    if fs[fi] is not None:
                        out[fs[fi], oy, xo] = v

    amsim.run(dut, tb)
    return out, pass_cycles, tuple(counts)


def _golden(x, w, zp, shape):
    nhwc = x.transpose(1, 2, 0)[None]
    return golden.conv2d(nhwc, w.transpose(2, 3, 1, 0), zp, stride=shape.stride,
                         groups=shape.groups)[0].transpose(2, 0, 1)


#: (shape, array rows, array cols): folding (more items / output rows than the array),
#: replication (channels stacked in a column, filter sets side by side), stride 2, groups.
CASES = [
    (RsConvShape(2, 6, 7, 3, 3, 3), 3, 2),           # fold out rows and items
    (RsConvShape(2, 5, 8, 5, 2, 3), 4, 3),           # 2 channels stacked; 2 filter sets
    (RsConvShape(3, 7, 9, 2, 3, 3, stride=2), 3, 3),  # stride 2, items folded
    (RsConvShape(4, 5, 6, 4, 3, 2, groups=2), 3, 4),  # grouped
    (RsConvShape(5, 1, 6, 6, 1, 1), 4, 2),           # a Linear of 5 -> 6 on a batch of 6
]


@pytest.mark.parametrize("zero_skip", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_rs_array_conv_matches_golden(case, zero_skip):
    shape, rows, cols = CASES[case]
    seed = 100 * case + zero_skip
    log.info("seed %d", seed)
    rng = np.random.default_rng(seed)
    x, w, zp = _layer(rng, shape, density=0.5)
    mapping = map_conv(shape, rows, cols, PE)
    dut = RsArray(PE, rows, cols, zero_skip=zero_skip)
    out, cycles, counts = _run(dut, mapping, x, w, zp, zero_skip)
    msg = f"seed={seed} {shape} array={rows}x{cols} skip={zero_skip}"
    np.testing.assert_array_equal(out, _golden(x, w, zp, shape), err_msg=msg)
    model = rs_conv_cycles(x, mapping, zp, zero_skip)
    assert counts[0] == model.issued_macs, msg
    assert counts[2] == model.skipped_macs, msg
    if zero_skip:
        assert counts[1] == 0, msg
    else:
        dense_zero_ops = model.issued_macs - rs_conv_cycles(x, mapping, zp, True).issued_macs
        assert counts[1] == dense_zero_ops, msg
    _check_cycles(cycles, model, zero_skip, msg)


def _check_cycles(cycles, model, zero_skip: bool, msg: str) -> None:
    """Dense passes take exactly the model's cycles (every PE of a column has the same timing,
    so nothing stalls but the chain's one cycle per PE); with skipping the model is an upper
    bound (a stalled PE may still load beats) that the RTL meets or beats by a few cycles."""
    if not zero_skip:
        assert tuple(cycles) == model.pass_cycles, msg
        return
    assert all(c <= m for c, m in zip(cycles, model.pass_cycles)), (cycles, model, msg)
    assert sum(cycles) >= 0.97 * model.cycles, (cycles, model, msg)


def _random_case(rng):
    kh, kw, stride = int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2]))
    shape = RsConvShape(groups * int(rng.integers(1, 3)), int(rng.integers(kh, 8)),
                        int(rng.integers(kw, 16)), groups * int(rng.integers(1, 6)), kh, kw,
                        stride, groups)
    return shape, int(rng.integers(1, 5)), int(rng.integers(1, 4))


@pytest.mark.parametrize("seed", range(8))
def test_rs_array_random_layers(seed):
    """Random shapes, arrays, densities and both modes: bit-exact, cycles equal the model."""
    rng = np.random.default_rng(1000 + seed)
    log.info("seed %d", 1000 + seed)
    shape, rows, cols = _random_case(rng)
    density = float(rng.choice([0.1, 0.4, 0.7, 1.0]))
    x, w, zp = _layer(rng, shape, density)
    mapping = map_conv(shape, rows, cols, PE)
    for zero_skip in (False, True):
        out, cycles, counts = _run(RsArray(PE, rows, cols, zero_skip=zero_skip), mapping,
                                   x, w, zp, zero_skip)
        msg = (f"seed={1000 + seed} {shape} array={rows}x{cols} density={density} "
               f"skip={zero_skip}")
        np.testing.assert_array_equal(out, _golden(x, w, zp, shape), err_msg=msg)
        model = rs_conv_cycles(x, mapping, zp, zero_skip)
        assert (counts[0], counts[2]) == (model.issued_macs, model.skipped_macs), msg
        _check_cycles(cycles, model, zero_skip, msg)


def test_rs_mapping_errors_and_shape():
    with pytest.raises(ValueError, match="kernel width 6 exceeds .* 5 taps"):
        map_conv(RsConvShape(1, 8, 8, 1, 3, 6), 3, 3, PE)
    with pytest.raises(ValueError, match="stride 3 exceeds"):
        map_conv(RsConvShape(1, 8, 8, 1, 3, 3, stride=3), 3, 3, PE)
    with pytest.raises(ValueError, match="row of 30 exceeds .* max width 24"):
        map_conv(RsConvShape(1, 8, 30, 1, 3, 3), 3, 3, PE)
    with pytest.raises(ValueError, match="groups .2. must divide in_ch .3."):
        RsConvShape(3, 8, 8, 4, 3, 3, groups=2)
    with pytest.raises(ValueError, match="larger than the .padded. input"):
        RsConvShape(1, 2, 8, 1, 3, 3)
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        RsArray(PE, 0, 2)
    with pytest.raises(TypeError, match="must be an RsPEConfig"):
        RsArray(None, 2, 2)
    with pytest.raises(ValueError, match="psum_fifo_depth must be a non-negative integer"):
        RsArray(PE, 2, 2, psum_fifo_depth=-1)
    # every (channel, filter row, output row, filter) is covered exactly once
    shape = RsConvShape(3, 9, 9, 7, 3, 3, stride=2)
    m = map_conv(shape, 4, 5, PE)
    seen = {}
    for p in m.passes:
        for i, j, c, y, ky, fs in p.pe_rows(shape):
            oy = (y - ky) // shape.stride
            for fo in fs:
                seen[(c, ky, oy, fo)] = seen.get((c, ky, oy, fo), 0) + 1
    assert len(seen) == 3 * 3 * shape.out_h * 7 and set(seen.values()) == {1}
    assert m.filters == 4 and [len(s) for s in m.passes[0].filter_sets] == [4]
    assert sorted({len(s) for p in m.passes for s in p.filter_sets}) == [3, 4]
