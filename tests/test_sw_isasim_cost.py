"""ISA simulator cost on legal programs (issue 13, item 4): memory bounded by the device's state
whatever the trip counts, and the row-stationary cycle model's closed form equal, cycle for
cycle, to its pass-by-pass statement.

Speed targets live in ``scripts/bench_isasim.py``, not here; these tests check results and
bounds, and each runs in about a second or less.
"""
import tracemalloc

import numpy as np
import pytest

from stamen.hw import isa
from stamen.hw.params import RS_PASS_QUEUE, AccelConfig
from stamen.sw import golden
from stamen.sw.sim import matmul
from stamen.sw.errors import DeviceError
from stamen.sw.sim.cycles import fetch_cycles, load_cycles, misc_cycles
from stamen.sw.sim.engines import matmul_cycles
from stamen.sw.sim.isasim import IsaSim
from stamen.hw.timing import RS_END_CYCLES, RS_FEED_LATENCY, RS_FEED_START, RS_QUEUE_FREE
from stamen.sw.sim.rs_engine import (RsEnginePass, rs_engine_mode, rs_engine_passes,
                                     rs_fed_pe_timing, rs_matmul_cycles)

PROG_ADDR = 16
DATA_ADDR = 0x400


def _program(cfg, acts, wts, matmul, loop=None):
    """Return the memory image of ``LOAD ACT, LOAD WT, [LOOP,] MATMUL, HALT`` and its
    instruction count."""
    bb = cfg.mem_bus_bytes
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    aw, ww = cfg.spad_row_words("act"), cfg.spad_row_words("wt")
    wt_at = DATA_ADDR + len(acts) * aw
    mem[DATA_ADDR * bb:DATA_ADDR * bb + acts.size] = acts.view(np.uint8).reshape(-1)
    mem[wt_at * bb:wt_at * bb + wts.size] = wts.view(np.uint8).reshape(-1)
    words = [isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, rows=len(acts),
                        dram_addr=DATA_ADDR, dram_stride=aw),
             isa.encode(isa.Opcode.LOAD, spad=isa.Spad.WT, spad_addr=0, rows=len(wts),
                        dram_addr=wt_at, dram_stride=ww)]
    if loop is not None:
        words.append(isa.encode(isa.Opcode.LOOP, **loop))
    words += [isa.encode(isa.Opcode.MATMUL, **matmul), isa.encode(isa.Opcode.HALT)]
    ib = isa.INSTR_BITS // 8
    for n, w in enumerate(words):
        at = (PROG_ADDR + n * isa.instr_words(cfg)) * bb
        mem[at:at + ib] = np.frombuffer(int(w).to_bytes(ib, "little"), np.uint8)
    return mem, len(words)


def _traced(f, *args):
    """Return the peak memory NumPy and Python allocated during ``f(*args)``, and its value."""
    tracemalloc.start()
    try:
        value = f(*args)
        return tracemalloc.get_traced_memory()[1], value
    finally:
        tracemalloc.stop()


def _mm(**kw):
    return dict(dict(act_addr=0, wt_addr=0, acc_addr=0, m=1, k_tiles=1, act_stride=0, zp=0,
                     accumulate=0, acc_max=0, wt_repeat=0), **kw)


# -- the issue's MATMUL: 65535 tiles, memory of a chunk --------------------------------------
@pytest.mark.parametrize("preset,m,wrap", [("small", 512, 0), ("small", 512, 300),
                                           ("small-os", 512, 300), ("tiny", 256, 200),
                                           ("small-rs", 64, 0), ("small-rs-skip", 64, 3)])
def test_deep_legal_matmul_runs_in_bounded_memory(preset, m, wrap):
    """``MATMUL k_tiles=65535 wt_repeat=1`` (33.5 M device cycles on ``small`` with m=512)
    completes with the ACC rows of a golden int64 GEMM of the same ACT spad contents, the MAC
    counters of the module docstring and the cycles of the cycle model, in a few MB (it asked
    for 7 GB before issue 13). ``wrap``: ``LOOP k_wrap0=wrap`` spreads the tiles over ``wrap``
    distinct act tiles (window mode on the rs engine for ``wrap=3``)."""
    seed = 13
    cfg = AccelConfig.preset(preset)
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(seed)
    k, zp = 65535, -7
    rows = m + max(wrap, 1) - 1
    acts = rng.integers(-128, 128, (rows, R), dtype=np.int8)
    acts[rng.random((rows, R)) < 0.4] = zp
    wts = rng.integers(-128, 128, (R, C), dtype=np.int8)
    wts[rng.random((R, C)) < 0.2] = 0
    loop = dict(isa.LOOP_RESET, k_wrap0=wrap) if wrap else None
    args = _mm(m=m, k_tiles=k, act_stride=1 if wrap else 0, zp=zp, wt_repeat=1)
    mem, n_instr = _program(cfg, acts, wts, args, loop)
    sim = IsaSim(cfg)
    msg = f"seed={seed} cfg={preset} m={m} wrap={wrap}"
    if cfg.dataflow == "rs":        # tracemalloc slows the pass loop 25x: see the test below
        ctr = sim.run(mem, PROG_ADDR)
    else:
        peak, ctr = _traced(sim.run, mem, PROG_ADDR)
        assert peak < 48 * 2 ** 20, f"{msg}: peak {peak / 2 ** 20:.1f} MB"
    # golden: tile kt reads act rows (kt % wrap) + i; count the tiles of each distinct tile
    bases = np.arange(k) % wrap if wrap else np.zeros(k, np.int64)
    uses = np.bincount(bases, minlength=max(wrap, 1)).astype(np.int64)
    a = acts.astype(np.int64) - zp
    tiles = np.stack([a[b:b + m] for b in range(len(uses))])               # (tiles, m, R)
    want = golden.wrap_int32(np.einsum("t,tmr,rc->mc", uses, tiles, wts.astype(np.int64)))
    np.testing.assert_array_equal(sim.spads["acc"][:m], want, err_msg=msg)
    total = m * R * C * k
    zeros = (tiles == 0).sum(axis=(1, 2))                                   # per distinct tile
    if cfg.dataflow == "rs":
        skipped = int((uses * zeros).sum()) * C if cfg.zero_skip and wrap >= 2 else 0
        gated = int((uses * zeros).sum()) * C - skipped
        cyc = rs_matmul_cycles(cfg, args, loop or dict(isa.LOOP_RESET), sim.spads["act"])
    else:
        skipped = 0
        nza = m - (tiles == 0).sum(axis=1)                                  # (tiles, R)
        gated = int((uses * zeros).sum()) * C + int((uses[:, None] * nza
                                                     * (wts == 0).sum(axis=1)).sum())
        cyc = matmul_cycles(cfg, m, k)
    assert ctr["macs"] == total - skipped and ctr["skipped_macs"] == skipped, msg
    assert ctr["gated_macs"] == (gated if cfg.zero_gate else 0), msg
    assert ctr["cycles"] == (n_instr * fetch_cycles(cfg) + load_cycles(cfg, "act", rows)
                             + load_cycles(cfg, "wt", R) + misc_cycles(cfg) * (n_instr - 3)
                             + cyc), msg
    if preset == "small" and m == 512:
        assert cyc > 33_500_000


@pytest.mark.parametrize("preset", ["small", "small-os", "small-skip", "small-rs",
                                    "small-rs-skip", "tiny"])
def test_chunked_matmul_equals_unchunked(preset, monkeypatch):
    """MATMULs of every kind (sum, ``acc_max``, ``accumulate``, ``wt_repeat``, LOOP levels, an
    act row beyond the depth) give the same ACC rows, counters, cycles and faults whether
    isasim gathers one tile at a time or all at once, and the ACC rows of ``hw/isa.py``'s
    loop, tile by tile."""
    seed = 41
    cfg = AccelConfig.preset(preset)
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(seed)
    for n in range(25):
        zp = int(rng.integers(-3, 3))
        act = rng.integers(-3, 3, (cfg.act_spad_depth, R), dtype=np.int8)
        act[rng.random(cfg.act_spad_depth) < 0.3] = zp                     # all-zp rows
        wt = rng.integers(-2, 3, (cfg.wt_spad_depth, C), dtype=np.int8)
        acc0 = rng.integers(-2 ** 31, 2 ** 31, (cfg.acc_spad_depth, C)).astype(np.int32)
        loop = dict(isa.LOOP_RESET)
        if n % 2:
            loop.update(k_wrap0=int(rng.integers(0, 6)), k_wrap1=int(rng.integers(0, 3)),
                        k_stride1=int(rng.integers(0, 9)), k_stride2=int(rng.integers(0, 9)),
                        m_wrap=int(rng.integers(0, 9)), m_stride=int(rng.integers(1, 3)),
                        m_stride1=int(rng.integers(0, 20)))
        repeat = int(rng.random() < 0.5)
        args = _mm(act_addr=int(rng.integers(0, 40)), wt_addr=int(rng.integers(0, 16)),
                   acc_addr=int(rng.integers(0, 30)), m=int(rng.integers(1, 90)),
                   k_tiles=int(rng.integers(1, 200 if repeat else 12)),
                   act_stride=int(rng.integers(0, 4)), zp=zp,
                   accumulate=int(rng.integers(0, 2)), acc_max=int(rng.random() < 0.3),
                   wt_repeat=repeat)
        if n == 24:
            args["act_addr"] = cfg.act_spad_depth - 1                       # SPAD_RANGE
        got = []
        for chunk in (1, 1 << 20):
            monkeypatch.setattr(matmul, "CHUNK_ELEMS", chunk)
            sim = IsaSim(cfg)
            sim.spads["act"][:], sim.spads["wt"][:], sim.spads["acc"][:] = act, wt, acc0
            sim.loop = dict(loop)
            ctr = dict.fromkeys(isa.PERF_COUNTERS, 0)
            try:
                sim._matmul(dict(args), 0, ctr)
                err = None
            except DeviceError as e:
                err = e.code
            got.append((ctr, err, sim.spads["acc"].copy()))
        msg = f"seed={seed} cfg={preset} n={n} args={args} loop={loop}"
        (c1, e1, a1), (c2, e2, a2) = got
        assert c1 == c2 and e1 == e2, msg
        if e1 is not None:
            assert e1 == isa.ErrorCode.SPAD_RANGE, msg
            continue
        np.testing.assert_array_equal(a1, a2, err_msg=msg)
        want = acc0.astype(np.int64)
        rows = matmul.act_rows(args, loop)
        for kt in range(args["k_tiles"]):                                   # hw/isa.py
            w0 = args["wt_addr"] + (0 if repeat else kt * R)
            p = (act[rows[kt]].astype(np.int64) - zp) @ wt[w0:w0 + R].astype(np.int64)
            lo, hi = args["acc_addr"], args["acc_addr"] + args["m"]
            if not (args["accumulate"] or kt > 0):
                want[lo:hi] = p
            elif args["acc_max"]:
                want[lo:hi] = np.maximum(want[lo:hi], p)
            else:
                want[lo:hi] = golden.wrap_int32(want[lo:hi] + p)
        np.testing.assert_array_equal(a1, golden.wrap_int32(want), err_msg=msg)


# -- the row-stationary cycle model: closed form == pass-by-pass statement --------------------
def _reference_rs_matmul_cycles(cfg, args, loop, act):
    """The events of ``rs_matmul_cycles``' docstring followed literally, pass by pass and PE
    row by PE row with :func:`rs_fed_pe_timing` (the model as it was before issue 13)."""
    from stamen.hw.params import RS_SEGMENT
    R = cfg.rows
    zp = args["zp"]
    _, taps, stride, pstep = rs_engine_mode(cfg, args, loop)
    m, k_tiles = args["m"], args["k_tiles"]
    row_outputs = loop["m_wrap"] or m

    def level(n, wrap):
        return (n % wrap, n // wrap) if wrap else (n, 0)
    passes = []
    for g, kt in enumerate(range(0, k_tiles, taps)):
        t0, rest = level(kt, loop["k_wrap0"])
        t1, t2 = level(rest, loop["k_wrap1"])
        gbase = (args["act_addr"] + t0 * args["act_stride"] + t1 * loop["k_stride1"]
                 + t2 * loop["k_stride2"])
        for i1, i in enumerate(range(0, m, row_outputs)):
            in_row = min(row_outputs, m - i)
            for o0 in range(0, in_row, RS_SEGMENT):
                n = min(RS_SEGMENT, in_row - o0)
                tk = min(taps, k_tiles - kt)
                passes.append(RsEnginePass(
                    group=g, kt=kt, base=gbase + i1 * loop["m_stride1"] + o0 * stride * pstep,
                    pstep=pstep, width=(n - 1) * stride + tk, outputs=n, taps=tk, stride=stride,
                    acc_row=args["acc_addr"] + i + o0, first=i == 0 and o0 == 0))
    assert passes == rs_engine_passes(cfg, args, loop)
    load_end, loaded, all_started = {}, {}, {}
    row_end = [0] * R
    issue, walk_end = 0, 0
    done = []
    fired = [-1] * R
    for n, p in enumerate(passes):
        g = p.group
        issue = max(issue + 1, done[n - RS_PASS_QUEUE] + RS_QUEUE_FREE
                    if n >= RS_PASS_QUEUE else 0)
        if g not in loaded:
            begin = 1 if g == 0 else load_end[g - 1]
            if g >= 2:
                begin = max(begin, all_started[g - 1] + 1)
            load_end[g] = begin + p.taps * R
            loaded[g] = load_end[g] + 1
        walk = max(issue + RS_FEED_START, walk_end + 1)
        walk_end = walk + p.width
        arrive = walk + RS_FEED_LATENCY + np.arange(p.width + 1)
        if cfg.zero_skip and p.taps >= 2:
            run = act[(p.base + p.pstep * np.arange(p.width)) % len(act)]
            present = [run[:, r] != zp for r in range(R)]
        else:
            present = [np.ones(p.width, bool)] * R
        starts, timings = [], []
        for r in range(R):
            start = max(issue + 1, row_end[r], loaded[g])
            tm = rs_fed_pe_timing(present[r], p.taps, p.stride, watermark=cfg.zero_skip,
                                  arrive=arrive - start)
            row_end[r] = start + max(tm.cycles, tm.psum_cycles[-1] + 1)
            starts.append(start)
            timings.append(tm)
        if p.first:
            all_started[g] = max(starts)
        for k in range(p.outputs):
            below = None
            for i in reversed(range(R)):
                f = max(starts[i] + timings[i].psum_cycles[k] + 1, fired[i] + 1)
                if below is not None:
                    f = max(f, below + 1)
                fired[i] = below = f
        done.append(fired[0])
    return fired[0] + RS_END_CYCLES


def _rs_cases(seed, count):
    rng = np.random.default_rng(seed)
    base = AccelConfig.preset("small-rs")
    fixed = [   # (rows, zero_skip, m, k_tiles, act_stride, loop, density of zero points)
        (8, False, 200, 7, 0, {}, 0.5),                                    # tap mode, 4 segments
        (8, True, 130, 12, 1, {"k_wrap0": 3}, 0.6),                        # 3 taps, 3 segments
        (8, True, 70, 10, 1, {"k_wrap0": 4, "m_stride": 2}, 0.5),          # stride 2, short group
        (4, True, 40, 9, 2, {"k_wrap0": 3, "m_wrap": 7, "m_stride": 2, "m_stride1": 20},
         0.7),                                                             # rows of 7 outputs
        (8, True, 64, 6, 1, {"k_wrap0": 2}, 1.0),                          # all zero points
        (8, True, 64, 6, 1, {"k_wrap0": 2}, 0.0),                          # no zero point
        (1, True, 90, 10, 1, {"k_wrap0": 10}, 0.5),                        # one PE row, 10 taps
        (16, True, 33, 5, 1, {"k_wrap0": 3, "k_wrap1": 2, "k_stride1": 9}, 0.5),
    ]
    for n in range(len(fixed) + count):
        if n < len(fixed):
            R, skip, m, k, a_stride, lp, dens = fixed[n]
        else:
            R, skip = int(rng.integers(1, 17)), bool(rng.integers(0, 2))
            m, k, a_stride = int(rng.integers(1, 150)), int(rng.integers(1, 25)), 1
            lp = {}
            if rng.random() < 0.8:
                u = int(rng.integers(1, 3))
                a_stride = int(rng.integers(1, 3))
                lp = {"k_wrap0": int(rng.integers(1, 12)), "m_stride": a_stride * u}
                if rng.random() < 0.4:
                    lp.update(m_wrap=int(rng.integers(1, 80)),
                              m_stride1=int(rng.integers(0, 40)))
                if rng.random() < 0.4:
                    lp.update(k_wrap1=int(rng.integers(0, 4)),
                              k_stride1=int(rng.integers(0, 30)),
                              k_stride2=int(rng.integers(0, 30)))
            dens = float(rng.choice([0.0, 1.0, rng.random()]))
        cfg = base.replace(rows=R, cols=2, zero_skip=skip)
        zp = int(rng.integers(-3, 3))
        act = rng.integers(-3, 3, (cfg.act_spad_depth, R), dtype=np.int8)
        act[rng.random(act.shape) < dens] = zp
        args = _mm(act_addr=int(rng.integers(0, 40)), m=m, k_tiles=k, act_stride=a_stride,
                   zp=zp, accumulate=int(rng.integers(0, 2)), acc_max=int(rng.random() < 0.1),
                   wt_repeat=1)
        yield cfg, args, dict(isa.LOOP_RESET, **lp), act


@pytest.mark.parametrize("seed", [1, 2])
def test_rs_closed_form_matches_pass_by_pass_model(seed, monkeypatch):
    """``rs_matmul_cycles`` (closed forms, runs summarised a chunk of groups at a time) equals
    the pass-by-pass, row-by-row statement of its events on random MATMULs: tap and window
    mode, strides 1 and 2, several segments and output rows, a short last group, dense and
    zero-skipping arrays of 1 to 16 PE rows, any density of zero points, chunks of one group
    and of many."""
    from stamen.sw.sim import rs_engine
    for n, (cfg, args, loop, act) in enumerate(_rs_cases(seed, 30)):
        monkeypatch.setattr(rs_engine, "_RS_CHUNK_ELEMS", 1 if n % 3 == 0 else 1 << 18)
        want = _reference_rs_matmul_cycles(cfg, args, loop, act)
        assert rs_matmul_cycles(cfg, args, loop, act) == want, (
            f"seed={seed} n={n} rows={cfg.rows} zero_skip={cfg.zero_skip} args={args} "
            f"loop={loop}")


@pytest.mark.parametrize("preset,wrap", [("small-rs", 0), ("small-rs-skip", 3)])
def test_rs_cycle_model_memory_does_not_grow_with_passes(preset, wrap):
    """The row-stationary cycle model keeps no per-pass state: its peak memory is the same
    for 1 k and 4 k passes (and a few MB), in tap mode and in zero-skipping window mode."""
    cfg = AccelConfig.preset(preset)
    act = np.random.default_rng(3).integers(-2, 2, (cfg.act_spad_depth, cfg.rows), np.int8)
    loop = dict(isa.LOOP_RESET, k_wrap0=wrap)
    peaks = []
    for passes in (1024, 4096):
        k = passes * max(wrap, 1)
        args = _mm(m=64, k_tiles=k, act_stride=1 if wrap else 0, wt_repeat=1)
        peaks.append(_traced(rs_matmul_cycles, cfg, args, loop, act)[0])
    assert peaks[1] < 16 * 2 ** 20 and peaks[1] < 1.5 * peaks[0] + 2 ** 20, peaks


def test_rs_zero_skip_needs_act():
    cfg = AccelConfig.preset("small-rs-skip")
    loop = dict(isa.LOOP_RESET, k_wrap0=3)
    with pytest.raises(ValueError, match="ACT spad contents"):
        rs_matmul_cycles(cfg, _mm(m=4, k_tiles=3, act_stride=1), loop)
    # a one-tap MATMUL is fed dense: no contents needed
    assert rs_matmul_cycles(cfg, _mm(m=4, k_tiles=3), dict(isa.LOOP_RESET)) > 0
