# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the row-stationary PE ``hw.rs_pe.RsPE`` (zero gating and zero
skipping), its compressor ``hw.rs_compress.RsCompress`` and its cycle model
``sw.sim.rs_pe.rs_pe_timing``. Psums are compared with ``sw.golden.conv2d`` on a 1 x W input."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from stamen.hw.rs_compress import RsCompress
from stamen.hw.rs_pe import RsMac, RsPE, RsPEConfig, RsWindow
from stamen.hw.timing import RS_PSUM_LATENCY
from stamen.sw import golden
from stamen.sw.sim.rs_pe import compress_row, rs_pe_cycles, rs_pe_timing
from stamen.verif import amsim

log = logging.getLogger(__name__)
CFG = RsPEConfig()
DENSITIES = (1.0, 0.7, 0.4, 0.1)
#: Issue 5's array-level target speedup of zero skipping at density 0.4.
SKIP_TARGET = 1.7


@dataclass
class Row:
    """One row command with its data: filters ``wts`` (F, S) at ``wt_base``."""
    acts: np.ndarray
    wts: np.ndarray
    zp: int
    stride: int
    acc: bool
    psums_in: np.ndarray
    wt_base: int = 0

    @property
    def taps(self) -> int:
        return self.wts.shape[1]

    @property
    def filters(self) -> int:
        return self.wts.shape[0]

    @property
    def n_out(self) -> int:
        w, s = len(self.acts), self.taps
        return (w - s) // self.stride + 1 if w >= s else 0

    def expected(self) -> np.ndarray:
        """Return the psums in output order from ``golden.conv2d`` plus the incoming psums."""
        if self.n_out == 0:
            return np.zeros(0, np.int32)
        x = self.acts.reshape(1, 1, -1, 1)
        w = self.wts.T.reshape(1, self.taps, 1, self.filters)
        out = golden.conv2d(x, w, self.zp, stride=(1, self.stride))[0, 0].ravel()
        if self.acc:
            out = golden.wrap_int32(out.astype(np.int64) + self.psums_in)
        return out

    def window_zeros(self) -> int:
        """Return the zero activations summed over all windows (each counted per window)."""
        if self.n_out == 0:
            return 0
        win = np.lib.stride_tricks.sliding_window_view(self.acts, self.taps)[::self.stride]
        return int((win[:self.n_out] == self.zp).sum())

    def expected_counts(self, zero_skip: bool, zero_gate: bool = True) -> tuple[int, int, int]:
        """Return the (macs, gated, skipped) the PE must count for this row."""
        f, total, zeros = self.filters, self.n_out * self.taps * self.filters, self.window_zeros()
        if zero_skip:
            return total - f * zeros, 0, f * zeros
        return total, f * zeros if zero_gate else 0, 0


def _int8(rng, shape, p_extreme=0.1):
    x = rng.integers(-128, 128, shape)
    x = np.where(rng.random(shape) < p_extreme, rng.choice([-128, 127], shape), x)
    return x


def _rand_row(rng, taps, stride, density, width=None, filters=None, acc=None) -> Row:
    width = int(rng.integers(taps, 41)) if width is None else width
    filters = int(rng.integers(1, 4)) if filters is None else filters
    zp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    acts = _int8(rng, width)
    acts = np.where(acts == zp, (zp + 129) % 256 - 128, acts)          # non-zeros are != zp
    acts = np.where(rng.random(width) < density, acts, zp).astype(np.int8)
    wts = np.where(rng.random((filters, taps)) < 0.15, 0, _int8(rng, (filters, taps)))
    acc = bool(rng.random() < 0.7) if acc is None else acc
    row = Row(acts, wts.astype(np.int8), zp, stride, acc, np.zeros(0, np.int64))
    n = row.n_out * filters
    extremes = rng.choice([golden.INT32_MIN, golden.INT32_MAX], n)
    row.psums_in = np.where(rng.random(n) < 0.1, extremes,
                            rng.integers(golden.INT32_MIN, golden.INT32_MAX + 1, n))
    return row


def _place(rows: list[Row]) -> list[Row]:
    """Give each row its own filter spad region."""
    base = 0
    for r in rows:
        r.wt_base = base
        base += r.wts.size
    if base > CFG.wt_depth:
        raise ValueError(f"rows need {base} filter spad entries, more than {CFG.wt_depth}")
    return rows


@dataclass
class RowResult:
    psums: list
    psum_cycles: list        # relative to the row's command handshake
    cycles: int              # command handshake .. end marker handshake, inclusive
    counts: tuple


class _Offer:
    """A producer (or, for ``o_psums``, a consumer) that may idle between beats at random, but
    holds ``valid`` once it is raised until the beat is taken."""

    def __init__(self, rng):
        self.rng, self.on = rng, False

    def want(self) -> bool:
        if not self.on:
            self.on = self.rng is None or bool(self.rng.random() < 0.6)
        return self.on


def _run_pe(dut: RsPE, rows: list[Row], zero_skip: bool, rng=None, limit=20000):
    """Load the rows' filters through ``wt_write``, run the rows back to back and return a
    :class:`RowResult` per row. With ``rng``, every stream idles / backpressures at random."""
    cmds = [{"wt_base": r.wt_base, "taps": r.taps, "stride": r.stride, "filters": r.filters,
             "zp": r.zp, "acc": int(r.acc)} for r in rows]
    beats = []
    for i, r in enumerate(rows):
        beats += [(i, {"value": int(v), "offset": j, "end": 0}) for j, v in enumerate(r.acts)
                  if not zero_skip or v != r.zp]
        beats.append((i, {"value": 0, "offset": len(r.acts), "end": 1}))
    pins = [int(p) for r in rows if r.acc for p in r.psums_in]
    n_out = [r.n_out * r.filters for r in rows]
    res = [RowResult([], [], None, [0, 0, 0]) for _ in rows]

    async def tb(ctx):
        for r in rows:
            for i, w in enumerate(r.wts.ravel()):
                ctx.set(dut.wt_write.en, 1)
                ctx.set(dut.wt_write.addr, r.wt_base + i)
                ctx.set(dut.wt_write.data, int(w))
                await ctx.tick()
        ctx.set(dut.wt_write.en, 0)
        offers = [_Offer(rng) for _ in range(4)]
        nc = na = npi = 0
        cmd_cycle, row, out_row = [], -1, 0
        for cycle in range(limit):
            while out_row < len(rows) and len(res[out_row].psums) == n_out[out_row]:
                out_row += 1
            if out_row == len(rows) and na == len(beats):
                return
            ctx.set(dut.i_cmd.valid, nc < len(rows) and offers[0].want())
            if nc < len(rows):
                ctx.set(dut.i_cmd.p, cmds[nc])
            ctx.set(dut.i_acts.valid, na < len(beats) and offers[1].want())
            if na < len(beats):
                ctx.set(dut.i_acts.p, beats[na][1])
            ctx.set(dut.i_psums.valid, npi < len(pins) and offers[2].want())
            if npi < len(pins):
                ctx.set(dut.i_psums.p, pins[npi])
            ctx.set(dut.o_psums.ready, offers[3].want())
            hs = [ctx.get(s.valid) and ctx.get(s.ready)
                  for s in (dut.i_cmd, dut.i_acts, dut.i_psums, dut.o_psums)]
            if row >= 0:
                for j, inc in enumerate((dut.macs_inc, dut.gated_inc, dut.skipped_inc)):
                    res[row].counts[j] += ctx.get(inc)
            if hs[3]:
                res[out_row].psums.append(ctx.get(dut.o_psums.p))
                res[out_row].psum_cycles.append(cycle - cmd_cycle[out_row])
            await ctx.tick()
            if hs[0]:
                cmd_cycle.append(cycle)
                row, nc = nc, nc + 1
            if hs[1]:
                if beats[na][1]["end"]:
                    res[beats[na][0]].cycles = cycle - cmd_cycle[beats[na][0]] + 1
                na += 1
            npi += hs[2]
            for o, h in zip(offers, hs):
                o.on = o.on and not h
        raise TimeoutError(f"rows not done within {limit} cycles")

    amsim.run(dut, tb)
    for r in res:
        r.counts = tuple(r.counts)
    return res


def _check_rows(rows, res, zero_skip, msg, zero_gate=True, timing=True):
    for i, (r, got) in enumerate(zip(rows, res)):
        m = (f"{msg} row={i} W={len(r.acts)} S={r.taps} U={r.stride} F={r.filters} zp={r.zp} "
             f"acc={r.acc}")
        np.testing.assert_array_equal(np.array(got.psums, np.int64), r.expected(), err_msg=m)
        assert got.counts == r.expected_counts(zero_skip, zero_gate), m
        if timing:
            t = rs_pe_timing(r.acts, r.taps, stride=r.stride, zp=r.zp, zero_skip=zero_skip,
                             filters=r.filters)
            assert got.cycles == t.cycles, m
            assert tuple(got.psum_cycles) == t.psum_cycles, m


# -- parameters ------------------------------------------------------------------------------
def test_rs_pe_rejects_bad_parameters():
    with pytest.raises(TypeError, match="RsPEConfig.wt_depth must be a positive integer"):
        RsPEConfig(wt_depth=0)
    with pytest.raises(TypeError, match="RsPEConfig.max_stride must be a positive integer"):
        RsPEConfig(max_stride=True)
    with pytest.raises(ValueError, match="ifmap_depth must exceed max_stride"):
        RsPEConfig(ifmap_depth=2, max_stride=2)
    with pytest.raises(TypeError, match="must be an RsPEConfig"):
        RsPE({"wt_depth": 224})
    with pytest.raises(TypeError, match="zero_skip must be a bool"):
        RsPE(zero_skip=1)
    with pytest.raises(TypeError, match="zero_gate must be a bool"):
        RsWindow(CFG, zero_gate=None)
    with pytest.raises(TypeError, match="MemoryData of depth 224"):
        RsMac(CFG, None)
    with pytest.raises(TypeError, match="max_width must be a positive integer"):
        RsCompress(0)
    assert CFG.max_taps == 10 and RsPE().cfg == CFG


# -- psums, counters and exact cycles against golden / the model ------------------------------
@pytest.mark.parametrize("zero_skip", [False, True], ids=["dense", "skip"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("taps", [1, 3, 5])
def test_rs_pe_matches_golden(taps, stride, zero_skip):
    """Random rows (densities 0.1..1, an all-zero row, a row narrower than the filter, 1-3
    interleaved filters, with and without incoming psums) run back to back: every psum equals
    golden, the counters are exact, and the busy cycles and each psum's cycle equal the model."""
    seed = 1000 + 100 * taps + 10 * stride + zero_skip
    rng = np.random.default_rng(seed)
    rows = [_rand_row(rng, taps, stride, rng.uniform(0.1, 1.0)) for _ in range(7)]
    rows.append(_rand_row(rng, taps, stride, 0.0, width=2 * taps + 3))
    if taps > 1:
        rows.insert(3, _rand_row(rng, taps, stride, 0.5, width=taps - 1))
    rows.append(_rand_row(rng, taps, stride, 1.0, width=CFG.ifmap_depth + 7, filters=1))
    _place(rows)
    res = _run_pe(RsPE(zero_skip=zero_skip), rows, zero_skip)
    _check_rows(rows, res, zero_skip, f"seed={seed}")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rs_pe_skip_and_dense_identical(seed):
    """The same rows through a skipping and a dense PE: identical psums; the dense PE gates
    exactly the MACs the skipping one skips."""
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])),
                             rng.uniform(0.1, 1.0)) for _ in range(8)])
    dense = _run_pe(RsPE(zero_skip=False), rows, False)
    skip = _run_pe(RsPE(zero_skip=True), rows, True)
    for i, (d, s) in enumerate(zip(dense, skip)):
        assert d.psums == s.psums, f"seed={seed} row={i}"
        assert d.counts[1] == s.counts[2] and d.counts[0] == s.counts[0] + s.counts[2], \
            f"seed={seed} row={i} dense={d.counts} skip={s.counts}"


def test_rs_pe_zero_gate_off():
    """Without zero gating, a dense PE multiplies zeros too: same psums and cycles, none gated."""
    seed = 7
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, 3, int(rng.choice([1, 2])), 0.4) for _ in range(4)])
    res = _run_pe(RsPE(zero_gate=False), rows, False)
    _check_rows(rows, res, False, f"seed={seed}", zero_gate=False)


def test_rs_pe_adds_incoming_psums():
    """The psum row from the neighbour is added element by element (wrapping at int32); a row
    without ``acc`` takes no incoming psum."""
    seed = 11
    rng = np.random.default_rng(seed)
    base = _rand_row(rng, 3, 1, 0.6, width=16, filters=2, acc=False)
    n = base.n_out * base.filters
    extremes = np.array([golden.INT32_MAX, golden.INT32_MIN, -1, 1] * n)[:n]
    rows = _place([base, Row(base.acts, base.wts, base.zp, 1, True, extremes),
                   Row(base.acts, base.wts, base.zp, 1, False, extremes)])
    for skip in (False, True):
        res = _run_pe(RsPE(zero_skip=skip), rows, skip)
        _check_rows(rows, res, skip, f"seed={seed} skip={skip}")
        plain = np.array(res[0].psums, np.int64)
        np.testing.assert_array_equal(np.array(res[1].psums), golden.wrap_int32(plain + extremes),
                                      err_msg=f"seed={seed} skip={skip}")
        assert res[2].psums == res[0].psums, f"seed={seed} skip={skip}"


@pytest.mark.parametrize("zero_skip", [False, True], ids=["dense", "skip"])
@pytest.mark.parametrize("seed", [21, 22])
def test_rs_pe_backpressure(seed, zero_skip):
    """Every stream idles or backpressures at random: psums and counters stay exact."""
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])),
                             rng.uniform(0.1, 1.0)) for _ in range(6)])
    res = _run_pe(RsPE(zero_skip=zero_skip), rows, zero_skip, rng=np.random.default_rng(seed))
    _check_rows(rows, res, zero_skip, f"seed={seed}", timing=False)


@pytest.mark.parametrize("zero_skip", [False, True], ids=["dense", "skip"])
def test_rs_window_ops_stream_rules(zero_skip):
    """``RsWindow`` under random ``o_ops`` backpressure and ``i_acts`` gaps: a valid op stays
    valid and unchanged until taken, and the ops are those of a free-flowing run."""
    seed = 71 + zero_skip
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])),
                             rng.uniform(0.1, 1.0)) for _ in range(4)])
    beats = []
    for r in rows:
        beats += [{"value": int(v), "offset": j, "end": 0} for j, v in enumerate(r.acts)
                  if not zero_skip or v != r.zp]
        beats.append({"value": 0, "offset": len(r.acts), "end": 1})
    n_ops = sum(r.filters * sum(max(1, int((r.acts[x * r.stride:x * r.stride + r.taps]
                                            != r.zp).sum()) if zero_skip else r.taps)
                                for x in range(r.n_out)) for r in rows)

    def run(stall_rng):
        dut, ops = RsWindow(CFG, zero_skip=zero_skip), []

        async def tb(ctx):
            offer_cmd, offer_acts, offer_ops = (_Offer(stall_rng) for _ in range(3))
            nc = na = 0
            held = None
            for _ in range(20000):
                if len(ops) == n_ops and na == len(beats):
                    return
                ctx.set(dut.i_cmd.valid, nc < len(rows) and offer_cmd.want())
                if nc < len(rows):
                    r = rows[nc]
                    ctx.set(dut.i_cmd.p, dict(wt_base=r.wt_base, taps=r.taps, stride=r.stride,
                                              filters=r.filters, zp=r.zp, acc=int(r.acc)))
                ctx.set(dut.i_acts.valid, na < len(beats) and offer_acts.want())
                if na < len(beats):
                    ctx.set(dut.i_acts.p, beats[na])
                ctx.set(dut.o_ops.ready, offer_ops.want())
                valid, payload = ctx.get(dut.o_ops.valid), ctx.get(dut.o_ops.p.as_value())
                if held is not None:
                    assert valid and payload == held, f"seed={seed}: op changed while stalled"
                hs = [ctx.get(s.valid) and ctx.get(s.ready)
                      for s in (dut.i_cmd, dut.i_acts, dut.o_ops)]
                held = payload if valid and not hs[2] else None
                if hs[2]:
                    ops.append(payload)
                await ctx.tick()
                nc, na = nc + hs[0], na + hs[1]
                for o, h in zip((offer_cmd, offer_acts, offer_ops), hs):
                    o.on = o.on and not h
            raise TimeoutError(f"seed={seed}: ops not done")

        amsim.run(dut, tb)
        return ops

    assert run(np.random.default_rng(seed)) == run(None), f"seed={seed}"


def test_rs_pe_cycles_fall_with_density():
    """A 3-tap filter on 32-wide rows: with skipping the cycles fall with density, without it
    they do not; both equal the model. Logs the table (``--log-cli-level=INFO``)."""
    seed, per = 31, 10
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, 3, 1, d, width=32, filters=1, acc=False)
                   for d in DENSITIES for _ in range(per)])
    mean = {}
    for skip in (False, True):
        res = _run_pe(RsPE(zero_skip=skip), rows, skip)
        _check_rows(rows, res, skip, f"seed={seed} skip={skip}")
        cycles = np.array([r.cycles for r in res]).reshape(len(DENSITIES), per)
        mean[skip] = cycles.mean(axis=1)
        if not skip:
            assert (cycles == 2 + 3 + 30 * 3).all(), f"seed={seed} {cycles}"
    assert (np.diff(mean[True]) < 0).all(), f"seed={seed} {mean[True]}"
    speedup = mean[False] / mean[True]
    log.info("RS PE, 3-tap filter, 32-wide row, stride 1, mean of %d rows (seed %d):", per, seed)
    log.info("density  dense cycles  skip cycles  speedup")
    for d, a, b, s in zip(DENSITIES, mean[False], mean[True], speedup):
        log.info("%7.1f  %12.1f  %11.1f  %6.2fx", d, a, b, s)
    assert speedup[DENSITIES.index(0.4)] >= SKIP_TARGET, f"seed={seed} speedup={speedup}"


def test_rs_mac_holds_multiplier_inputs():
    """``RsMac``: an op without ``mul`` leaves the multiplier's activation register alone and adds
    nothing; ``first`` restarts the accumulator; ``last`` emits it."""
    dut = RsMac(CFG, RsPE().wt_spad)
    ops = [dict(act=-255, addr=0, filter=0, mul=1, first=1, last=0, acc=0),
           dict(act=0, addr=1, filter=0, mul=0, first=0, last=0, acc=0),     # gated
           dict(act=200, addr=1, filter=0, mul=1, first=0, last=1, acc=0),
           dict(act=3, addr=0, filter=0, mul=0, first=1, last=1, acc=0)]     # empty window
    seen = []

    async def tb(ctx):
        ctx.set(dut.wt_write.en, 1)
        for a, w in ((0, -128), (1, 7)):
            ctx.set(dut.wt_write.addr, a)
            ctx.set(dut.wt_write.data, w)
            await ctx.tick()
        ctx.set(dut.wt_write.en, 0)
        ctx.set(dut.o_psums.ready, 1)
        for i in range(len(ops) + RS_PSUM_LATENCY):
            ctx.set(dut.i_ops.valid, i < len(ops))
            if i < len(ops):
                ctx.set(dut.i_ops.p, ops[i])
            if ctx.get(dut.o_psums.valid):
                seen.append(ctx.get(dut.o_psums.p))
            await ctx.tick()
            if i == 1:
                assert ctx.get(dut.s1_act) == -255       # held through the gated op

    amsim.run(dut, tb)
    assert seen == [-255 * -128 + 200 * 7, 0]


# -- compressor -------------------------------------------------------------------------------
def _run_compress(dut, rows, rng=None, limit=5000):
    """Stream dense ``(acts, zp)`` rows through ``RsCompress``; return the output beats and the
    cycles (from the first input) at which they were taken."""
    beats = []
    for acts, zp in rows:
        beats += [(dict(value=int(v), end=0), zp) for v in acts] + [(dict(value=0, end=1), zp)]
    out, cyc = [], []
    n_out = sum(int((acts != zp).sum()) + 1 for acts, zp in rows)

    async def tb(ctx):
        offer_in, offer_out = _Offer(rng), _Offer(rng)
        n = 0
        for cycle in range(limit):
            if len(out) == n_out:
                return
            ctx.set(dut.i_acts.valid, n < len(beats) and offer_in.want())
            if n < len(beats):
                ctx.set(dut.i_acts.p, beats[n][0])
                ctx.set(dut.zp, beats[n][1])
            ctx.set(dut.o_acts.ready, offer_out.want())
            hs_in = ctx.get(dut.i_acts.valid) and ctx.get(dut.i_acts.ready)
            if ctx.get(dut.o_acts.valid) and ctx.get(dut.o_acts.ready):
                p = ctx.get(dut.o_acts.p)
                out.append((p.value, p.offset, p.end))
                cyc.append(cycle)
                offer_out.on = False
            await ctx.tick()
            if hs_in:
                n += 1
                offer_in.on = False
        raise TimeoutError(f"compressor not done within {limit} cycles")

    amsim.run(dut, tb)
    return out, cyc


def _expected_compressed(rows):
    exp = []
    for acts, zp in rows:
        values, offsets = compress_row(acts, zp)
        exp += [(int(v), int(o), 0) for v, o in zip(values, offsets)] + [(0, len(acts), 1)]
    return exp


@pytest.mark.parametrize("stalls", [False, True])
@pytest.mark.parametrize("seed", [41, 42])
def test_rs_compress_matches_reference(seed, stalls):
    """Random rows (densities 0..1, extreme zero points): the output is the non-zero activations
    with their offsets and a marker carrying the width; with free-flowing streams a kept beat
    leaves one cycle after it entered, at one dense beat per cycle."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in (0.0, 0.1, 0.4, 0.7, 1.0, rng.uniform()):
        zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
        w = int(rng.integers(1, 40))
        acts = np.where(rng.random(w) < d, _int8(rng, w), zp).astype(np.int8)
        rows.append((acts, zp))
    exp = _expected_compressed(rows)
    out, cyc = _run_compress(RsCompress(), rows, np.random.default_rng(seed) if stalls else None)
    assert out == exp, f"seed={seed} stalls={stalls}"
    if not stalls:
        kept = np.concatenate([np.append(acts != zp, True) for acts, zp in rows])
        assert cyc == [int(p) + 1 for p in np.flatnonzero(kept)], f"seed={seed}"


class _CompressedPE(Elaboratable):
    """A dense row stream through ``RsCompress`` into a skipping ``RsPE`` (test fixture)."""

    def __init__(self):
        self.comp, self.pe = RsCompress(CFG.max_width), RsPE(zero_skip=True)

    def elaborate(self, platform):
        m = Module()
        m.submodules.comp, m.submodules.pe = self.comp, self.pe
        wiring.connect(m, self.comp.o_acts, self.pe.i_acts)
        return m


def test_rs_compress_feeds_pe():
    """Dense rows compressed on the fly by ``RsCompress`` give the golden psums on a skipping PE."""
    seed = 51
    rng = np.random.default_rng(seed)
    rows = _place([_rand_row(rng, int(rng.choice([1, 3, 5])), int(rng.choice([1, 2])),
                             rng.uniform(0.1, 1.0), acc=False) for _ in range(4)])
    top = _CompressedPE()
    pe, comp = top.pe, top.comp
    beats = []
    for r in rows:
        beats += [(r.zp, dict(value=int(v), end=0)) for v in r.acts]
        beats.append((r.zp, dict(value=0, end=1)))
    expected = np.concatenate([r.expected() for r in rows])
    got = []

    async def tb(ctx):
        for r in rows:
            for i, w in enumerate(r.wts.ravel()):
                ctx.set(pe.wt_spad[r.wt_base + i], int(w))
        ctx.set(pe.o_psums.ready, 1)
        nc = nb = 0
        for _ in range(5000):
            if len(got) == len(expected):
                return
            ctx.set(pe.i_cmd.valid, nc < len(rows))
            if nc < len(rows):
                r = rows[nc]
                ctx.set(pe.i_cmd.p, dict(wt_base=r.wt_base, taps=r.taps, stride=r.stride,
                                         filters=r.filters, zp=r.zp, acc=0))
            ctx.set(comp.i_acts.valid, nb < len(beats))
            if nb < len(beats):
                ctx.set(comp.zp, beats[nb][0])
                ctx.set(comp.i_acts.p, beats[nb][1])
            hc = ctx.get(pe.i_cmd.valid) and ctx.get(pe.i_cmd.ready)
            hb = ctx.get(comp.i_acts.valid) and ctx.get(comp.i_acts.ready)
            if ctx.get(pe.o_psums.valid):
                got.append(ctx.get(pe.o_psums.p))
            await ctx.tick()
            nc, nb = nc + hc, nb + hb
        raise TimeoutError("compressed rows not done within 5000 cycles")

    amsim.run(top, tb)
    np.testing.assert_array_equal(np.array(got, np.int64), expected, err_msg=f"seed={seed}")


# -- the cycle model alone --------------------------------------------------------------------
def test_rs_model_dense_closed_form():
    """A dense row costs ``2 + S + OW*F*S`` cycles (F*S >= U), ``2 + W`` when W < S, and the
    model never depends on the values without skipping."""
    rng = np.random.default_rng(61)
    for width in range(1, 30):
        for taps in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for filters in (1, 2):
                    acts = _int8(rng, width).astype(np.int8)
                    got = rs_pe_cycles(acts, taps, stride=stride, filters=filters)
                    if width < taps:
                        assert got == 2 + width
                    elif filters * taps >= stride:
                        ow = (width - taps) // stride + 1
                        assert got == 2 + taps + ow * filters * taps, (width, taps, stride)
                    assert got == rs_pe_cycles(np.zeros(width, np.int8), taps, stride=stride,
                                               filters=filters)


def test_rs_model_skip_bounds_and_errors():
    """With skipping, an all-zero row costs a cycle per psum, and a dense row as many as
    without skipping; bad arguments raise."""
    row = np.full(20, 5, np.int8)
    assert rs_pe_cycles(row, 3, zp=5, zero_skip=True) == 2 + 18
    assert rs_pe_cycles(row, 3, zp=0, zero_skip=True) == rs_pe_cycles(row, 3)
    assert rs_pe_timing(row, 3, zp=5, zero_skip=True).psum_cycles[:3] == (
        1 + RS_PSUM_LATENCY, 2 + RS_PSUM_LATENCY, 3 + RS_PSUM_LATENCY)
    with pytest.raises(TypeError, match="1-D int8"):
        rs_pe_cycles(np.zeros(4, np.int32), 3)
    with pytest.raises(ValueError, match="Stride must be a positive integer"):
        rs_pe_cycles(row, 3, stride=0)
    with pytest.raises(ValueError, match="Filter taps must be a positive integer"):
        rs_pe_cycles(row, True)
