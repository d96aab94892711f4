"""Compiler + ISA simulator: bit-exact vs golden on every case; faults; counters; persistence."""
import numpy as np
import pytest

import cases
import configs
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.hw.timing import bank_release_delay
from stamen.sw import asm, golden
from stamen.sw.compiler.driver import Program, compile_gemm, compile_linear
from stamen.sw.errors import CompileError, DeviceError
from stamen.sw.sim.cycles import (fetch_cycles, load_cycles, misc_cycles, perf_cycles, store_cycles,
                                  zero_dir_cycles)
from stamen.sw.sim.engines import matmul_cycles, matmul_cycles_of
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.sim.ws_engine import ws_skip_cycles, ws_skipped_rows

PRESETS = ("tiny", "small", "small-os", "wide-4x8", "tall-8x4-os", "wide-4x8-rs")


def _run(prog, x):
    mem = prog.memory_image(x)
    counters = IsaSim(prog.cfg).run(mem, prog.prog_addr)
    return mem, counters


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("case", cases.CASES, ids=str)
def test_gemm_matches_golden(case, preset):
    cfg = configs.config(preset)
    x, w, zp = cases.make_gemm(case)
    prog = compile_gemm(w, cfg, case.m, zp=zp)
    mem, ctr = _run(prog, x)
    got = prog.read_output(mem)
    assert got.dtype == np.int32 and got.shape == (case.m, case.n)
    np.testing.assert_array_equal(got, golden.gemm(x, w, zp),
                                  err_msg=f"seed={case.seed} case={case} cfg={preset}")
    np.testing.assert_array_equal(prog.reference(x), golden.gemm(x, w, zp))
    perf = prog.read_perf(mem)
    assert len(perf) == 2
    assert perf[-1]["macs"] == ctr["macs"] >= case.m * case.k * case.n
    assert ctr["instructions"] == len(prog.words)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("case", cases.CASES, ids=str)
def test_linear_matches_golden(case, preset):
    cfg = configs.config(preset)
    p = cases.make_linear(case)
    prog = compile_linear(p["w"], p["bias"], p["mult"], p["shift"], p["zp_in"], p["zp_out"],
                          p["relu"], cfg, case.m)
    mem, _ = _run(prog, p["x"])
    expected = golden.linear(p["x"], p["w"], p["bias"], p["mult"], p["shift"], p["zp_in"],
                             p["zp_out"], p["relu"])
    got = prog.read_output(mem)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected,
                                  err_msg=f"seed={case.seed} case={case} cfg={preset}")


def test_tiling_cases_really_tile():
    tiny = AccelConfig.preset("tiny")
    by_name = {c.name: c for c in cases.CASES}
    c = by_name["mtile_tiny"]
    plan = compile_gemm(cases.make_gemm(c)[1], tiny, c.m).layout["tensors"][0]
    assert plan["nbt"] < c.m                       # rows (images) per MATMUL
    c = by_name["kchunk_tiny"]
    plan = compile_gemm(cases.make_gemm(c)[1], tiny, c.m).layout["tensors"][0]
    assert plan["cg"] < -(-c.k // tiny.rows)        # k-tiles (input chunks) per MATMUL
    c = by_name["kchunk_small"]
    small = AccelConfig.preset("small")
    plan = compile_gemm(cases.make_gemm(c)[1], small, c.m).layout["tensors"][0]
    assert plan["cg"] < -(-c.k // small.rows)


# -- counters ------------------------------------------------------------------------------------
def _gated_brute(x, w, zp, cfg):
    """Count gated MACs beat by beat, PE by PE, over the k-tiles the array sees (an output tile
    of padding channels only reads k-tile 0); 0 without zero gating."""
    if not cfg.zero_gate:
        return 0
    R, C = cfg.rows, cfg.cols
    m, k = x.shape
    n = w.shape[1]
    kt = -(-k // R)
    L = np.lcm(R, C)
    npad = -(-n // L) * L
    a = np.full((m, kt * R), zp, np.int64)
    a[:, :k] = x
    wp = np.zeros((kt * R, npad), np.int64)
    wp[:k, :n] = w
    total = 0
    for t in range(kt):
        for nt in range(npad // C):
            if t and nt * C >= n:
                continue
            W = wp[t * R:(t + 1) * R, nt * C:(nt + 1) * C]
            for i in range(m):
                av = a[i, t * R:(t + 1) * R] - zp
                total += int(np.sum((av[:, None] == 0) | (W == 0)))
    return total


@pytest.mark.parametrize("preset", [p for p in PRESETS if configs.config(p).dataflow != "rs"])
def test_counters(preset):
    """ws / os counters (rs gates per PE pass: tests/test_sw_sparsity.py)."""
    cfg = configs.config(preset)
    case = cases.Case("ctr", 11, 21, 13, 0.5, 99)
    x, w, zp = cases.make_gemm(case)
    prog = compile_gemm(w, cfg, case.m, zp=zp)
    mem, ctr = _run(prog, x)
    R, C = cfg.rows, cfg.cols
    L = np.lcm(R, C)
    kt = -(-case.k // R)
    nt = -(-case.n // L) * L // C
    nt_real = -(-case.n // C)          # an output tile of padding channels only reads one chunk
    assert ctr["macs"] == case.m * (nt_real * kt + nt - nt_real) * R * C, f"seed={case.seed}"
    assert ctr["gated_macs"] == _gated_brute(x, w, zp, cfg), f"seed={case.seed}"
    # every byte of input, weights and output crosses the bus at least once
    assert ctr["dram_write_bytes"] == case.m * (-(-case.n // L) * L) * 4
    assert ctr["dram_read_bytes"] >= case.m * kt * R + kt * R * nt * C
    assert ctr["stall_cycles"] == 0
    assert 0 < ctr["compute_cycles"] < ctr["cycles"]
    perf = prog.read_perf(mem)
    assert perf[0]["instructions"] == 0 and perf[0]["macs"] == 0
    assert perf[1]["instructions"] == len(prog.words) - 2       # all but the last PERF and HALT
    assert prog.est_cycles == ctr["cycles"]
    no_gate = cfg.replace(zero_gate=False)
    ctr2 = IsaSim(no_gate).run(compile_gemm(w, no_gate, case.m, zp=zp).memory_image(x),
                               prog.prog_addr)
    assert ctr2["gated_macs"] == 0


def _one_matmul(cfg, act, w, args, loop):
    """Run LOAD act (ACT rows 0..), LOAD w (WT rows 0..), LOOP ``loop``, one MATMUL ``args``
    (ACC rows 0..), STORE its ACC rows, PERF, HALT on the ISA simulator; return (the stored ACC
    rows, the PERF snapshot, the final counters)."""
    R, C, bb = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    m = args["m"]
    aw, ww, cw = (cfg.spad_row_words(s) for s in ("act", "wt", "acc"))
    act_at = 0x40
    wt_at = act_at + len(act) * aw
    acc_at = wt_at + len(w) * ww
    perf_at = acc_at + m * cw
    prog_addr = perf_at + isa.perf_words(cfg)
    ops = " ".join(f"{k}={v}" for k, v in args.items())
    lp = " ".join(f"{k}={v}" for k, v in loop.items())
    text = f"""
        LOAD spad=ACT spad_addr=0 rows={len(act)} dram_addr={act_at} dram_stride={aw}
        LOAD spad=WT spad_addr=0 rows={len(w)} dram_addr={wt_at} dram_stride={ww}
        LOOP {lp}
        MATMUL act_addr=0 wt_addr=0 acc_addr=0 {ops} accumulate=0
        STORE spad=ACC spad_addr=0 rows={m} dram_addr={acc_at} dram_stride={cw}
        PERF dram_addr={perf_at}
        HALT"""
    mem = _image(cfg, text, prog_addr)
    mem[act_at * bb:wt_at * bb] = act.astype(np.int8).view(np.uint8).ravel()
    mem[wt_at * bb:acc_at * bb] = w.astype(np.int8).view(np.uint8).ravel()
    ctr = IsaSim(cfg).run(mem, prog_addr)
    acc = mem[acc_at * bb:perf_at * bb].view("<i4").reshape(m, C)
    vals = mem[perf_at * bb:prog_addr * bb].view("<u8")
    return acc, dict(zip(isa.PERF_COUNTERS, map(int, vals))), ctr


# Window seeds: 13 stride 2, groups 4+4+1; 15 stride 2, 4+4+3; 18 stride 1, 3+3+3; 20 S=2, 2+2;
# 28 stride 1, 4+4+1; 38 a single tap (k_tiles 1): nothing to skip.
@pytest.mark.parametrize("seed,window", [(11, False), (12, False), (13, True), (15, True),
                                         (18, True), (20, True), (28, True), (38, True)])
def test_rs_zero_skip_counters(seed, window):
    """rs gates or skips on zero activations only. Tap mode (a plain MATMUL) feeds every tile
    dense; window mode (a 1-D convolution: LOOP ``k_wrap0 = S >= 2``, ``m_stride = stride *
    act_stride``) skips the zero activations of each group of ``S`` tiles with two taps or more.
    skipped = those zeros * C, macs + skipped = m*R*C*k_tiles, the results do not depend on
    skipping, ws/os never skip."""
    skip_cfg = AccelConfig(dataflow="rs", zero_skip=True)
    dense_cfg = skip_cfg.replace(zero_skip=False)
    R, C = skip_cfg.rows, skip_cfg.cols
    rng = np.random.default_rng(seed)
    zp = int(rng.integers(-128, 128))
    loop = dict(isa.LOOP_RESET)
    if window:      # nch channel chunks of a width-W row, S taps, stride u
        S, u, nch = int(rng.integers(2, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
        m = int(rng.integers(1, 10))
        W = (m - 1) * u + S
        kt = S * nch - int(rng.integers(0, S))        # a short last group: 1 tap is fed dense
        loop.update(k_wrap0=S, k_stride1=W, m_stride=u)
        args = dict(m=m, k_tiles=kt, act_stride=1, zp=zp)
        n_act = W * nch
        groups = [min(S, kt - g) for g in range(0, kt, S)]
        skipped_tile = np.repeat([n >= 2 for n in groups], groups)
    else:           # k-tile t of output i in act row t*m + i
        m, kt = int(rng.integers(1, 13)), int(rng.integers(1, 4))
        args = dict(m=m, k_tiles=kt, act_stride=m, zp=zp)
        n_act = m * kt
        skipped_tile = np.zeros(kt, bool)
    act = rng.integers(-128, 128, (n_act, R)).astype(np.int8)
    act[rng.random(act.shape) < rng.uniform(0.2, 0.8)] = zp           # real zeros
    w = rng.integers(-128, 128, (kt * R, C)).astype(np.int8)
    w[rng.random(w.shape) < 0.3] = 0                                  # rs must not gate on these
    msg = f"seed={seed} window={window} args={args} loop={loop}"

    # The activations each (k-tile, output) reads (hw/isa.py's act_row), as an (m, kt*R) GEMM.
    t = np.arange(kt)[:, None]
    i = np.arange(m)[None, :]
    if window:
        rows = (t % loop["k_wrap0"]) * args["act_stride"] + (t // loop["k_wrap0"]) * W \
            + i * loop["m_stride"]
    else:
        rows = t * args["act_stride"] + i
    x = act[rows].transpose(1, 0, 2).reshape(m, kt * R)                # x[i, t*R + r]
    want = golden.gemm(x, w, zp)
    zeros = (act[rows] == zp).sum(axis=(1, 2))                         # per k-tile
    total = m * R * C * kt
    skipped = int(zeros[skipped_tile].sum()) * C
    assert zeros.sum() > 0, msg
    if window and skipped_tile.all():
        assert skipped == int(zeros.sum()) * C, msg

    acc_s, snap_s, ctr_s = _one_matmul(skip_cfg, act, w, args, loop)
    np.testing.assert_array_equal(acc_s, want, err_msg=msg)
    assert ctr_s["skipped_macs"] == skipped, msg
    assert ctr_s["macs"] + ctr_s["skipped_macs"] == total, msg
    # the performed zero activations are gated (zero weights never are)
    assert ctr_s["gated_macs"] == int(zeros[~skipped_tile].sum()) * C, msg
    for name in ("macs", "gated_macs", "skipped_macs"):
        assert snap_s[name] == ctr_s[name], f"{msg} PERF {name}"

    acc_d, snap_d, ctr_d = _one_matmul(dense_cfg, act, w, args, loop)
    np.testing.assert_array_equal(acc_d, acc_s, err_msg=msg)
    assert (ctr_d["macs"], ctr_d["skipped_macs"]) == (total, 0), msg
    assert ctr_d["gated_macs"] == int(zeros.sum()) * C, msg
    assert snap_d["gated_macs"] == ctr_d["gated_macs"], msg
    ungated = dense_cfg.replace(zero_gate=False)
    assert _one_matmul(ungated, act, w, args, loop)[2]["gated_macs"] == 0, msg

    for df in ("ws", "os"):                 # unchanged: gated on a zero activation or weight
        cfg = AccelConfig(dataflow=df)
        acc_w, snap_w, ctr_w = _one_matmul(cfg, act, w, args, loop)
        np.testing.assert_array_equal(acc_w, want, err_msg=f"{msg} {df}")
        gated = int(np.sum((x.reshape(m, kt, R, 1) == zp) | (w.reshape(1, kt, R, C) == 0)))
        assert (ctr_w["macs"], ctr_w["gated_macs"], ctr_w["skipped_macs"]) == \
            (total, gated, 0), f"{msg} {df}"
        assert snap_w["skipped_macs"] == 0, f"{msg} {df}"


# -- faults --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,share", [(60, 0.5), (61, 0.9), (62, 0.0), (63, 0.5), (64, 0.3)])
def test_ws_zero_skip_counters(seed, share):
    """ws with zero_skip skips whole act rows: a row whose R lanes are all zp, in a tile after
    the first (the template's MATMUL does not accumulate), not the final row. skipped = its
    R*C MACs, macs + skipped = m*R*C*k_tiles, the fed rows are gated as on the dense ws engine,
    the results do not depend on skipping, and the cycles are those of ``ws_skip_cycles`` (no
    more than the dense engine's). acc_max never skips."""
    cfg = AccelConfig.preset("small-skip")
    dense_cfg = cfg.replace(zero_skip=False)
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(seed)
    zp = int(rng.integers(-128, 128))
    m, kt = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    args = dict(m=m, k_tiles=kt, act_stride=m, zp=zp)             # tile t: act rows t*m + i
    act = rng.integers(-128, 128, (m * kt, R)).astype(np.int8)
    act[rng.random(act.shape) < 0.3] = zp                            # scattered zeros: fed
    act[rng.random(m * kt) < share] = zp                              # all-zero rows
    w = rng.integers(-128, 128, (kt * R, C)).astype(np.int8)
    w[rng.random(w.shape) < 0.3] = 0
    loop = dict(isa.LOOP_RESET)
    msg = f"seed={seed} share={share} m={m} k_tiles={kt} zp={zp}"

    a = act.reshape(kt, m, R)                                         # a[t, i] = act row t*m + i
    skipped = (a == zp).all(axis=2)
    skipped[0] = False                                                # first tile: overwritten
    skipped[-1, -1] = False                                           # the final row
    fed = ~skipped
    total = m * R * C * kt
    gated = int(np.sum(((a[..., None] == zp) | (w.reshape(kt, 1, R, C) == 0))
                       & fed[..., None, None]))
    want = golden.gemm(a.transpose(1, 0, 2).reshape(m, kt * R), w, zp)

    full = dict(args, act_addr=0, wt_addr=0, acc_addr=0, accumulate=0, acc_max=0, wt_repeat=0)
    assert (ws_skipped_rows(cfg, full, loop, act) == skipped).all(), msg
    acc_s, snap_s, ctr_s = _one_matmul(cfg, act, w, args, loop)
    np.testing.assert_array_equal(acc_s, want, err_msg=msg)
    assert ctr_s["skipped_macs"] == int(skipped.sum()) * R * C, msg
    assert ctr_s["macs"] + ctr_s["skipped_macs"] == total, msg
    assert ctr_s["gated_macs"] == gated, msg
    for name in ("macs", "gated_macs", "skipped_macs"):
        assert snap_s[name] == ctr_s[name], f"{msg} PERF {name}"

    acc_d, _, ctr_d = _one_matmul(dense_cfg, act, w, args, loop)
    np.testing.assert_array_equal(acc_d, acc_s, err_msg=msg)
    assert (ctr_d["macs"], ctr_d["skipped_macs"]) == (total, 0), msg
    skip_cyc, dense_cyc = ws_skip_cycles(cfg, skipped), matmul_cycles(cfg, m, kt)
    assert matmul_cycles_of(cfg, full, loop, np.resize(act, (cfg.act_spad_depth, R))) == skip_cyc
    assert ctr_d["cycles"] - ctr_s["cycles"] == dense_cyc - skip_cyc >= 0, msg
    assert ctr_d["compute_cycles"] - ctr_s["compute_cycles"] == dense_cyc - skip_cyc, msg
    if not skipped.any():
        assert skip_cyc == dense_cyc, msg
    # acc_max (max pooling) never skips: a zero product may raise a negative maximum
    mx = dict(full, acc_max=1, accumulate=1)
    assert not ws_skipped_rows(cfg, mx, loop, act).any()
    with pytest.raises(ValueError, match="ACT spad contents"):
        matmul_cycles_of(cfg, full, loop)


def test_ws_zero_skip_cycles():
    """ws_skip_cycles: no skipped row gives the dense figure; a tile whose rows are all
    skipped costs ceil(m/2) cycles (a pair per cycle); pairs feeding one row cost one cycle."""
    cfg = AccelConfig.preset("small-skip")
    R, C = cfg.rows, cfg.cols
    for m, kt in [(1, 1), (2, 3), (5, 4), (21, 3), (64, 8), (100, 2)]:
        none = np.zeros((kt, m), bool)
        assert ws_skip_cycles(cfg, none) == matmul_cycles(cfg, m, kt), (m, kt)
    m, kt = 64, 8                   # long tiles: no bubbles, the pairs set the pace
    skip = np.ones((kt, m), bool)
    skip[0] = False
    skip[-1, -1] = False
    assert ws_skip_cycles(cfg, skip) == m + (kt - 1) * (m // 2) + 2 * R + C + 3
    skip[1:, 1::2] = False          # one fed row per pair: the same cycles
    assert ws_skip_cycles(cfg, skip) == m + (kt - 1) * (m // 2) + 2 * R + C + 3


def _image(cfg, text, prog_addr=16):
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    code = np.frombuffer(asm.to_bytes(asm.assemble(text), cfg), np.uint8)
    mem[prog_addr * cfg.mem_bus_bytes:prog_addr * cfg.mem_bus_bytes + code.size] = code
    return mem


TINY = AccelConfig.preset("tiny")
_FAULTS = [
    ("illegal", "SYNC\n.word 0xf", isa.ErrorCode.ILLEGAL_OPCODE, 1),
    ("zeroed", "SYNC\nSYNC", isa.ErrorCode.ILLEGAL_OPCODE, 2),     # runs into zeroed memory
    ("load_rows0", "LOAD spad=ACT spad_addr=0 rows=0 dram_addr=0 dram_stride=1",
     isa.ErrorCode.BAD_ARG, 0),
    ("mm_m0", "MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=0 k_tiles=1 act_stride=1 zp=0 "
     "accumulate=0", isa.ErrorCode.BAD_ARG, 0),
    ("mm_k0", "MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=1 k_tiles=0 act_stride=1 zp=0 "
     "accumulate=0", isa.ErrorCode.BAD_ARG, 0),
    ("rq_rows0", "REQUANT acc_addr=0 out_addr=0 param_addr=0 rows=0 zp_out=0 relu=0",
     isa.ErrorCode.BAD_ARG, 0),
    ("bad_spad", ".word " + hex(isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, rows=1,
                                           dram_addr=0, dram_stride=0) | (7 << 8)),
     isa.ErrorCode.BAD_ARG, 0),
    ("load_spad", f"LOAD spad=WT spad_addr={TINY.wt_spad_depth - 1} rows=2 dram_addr=0 "
     "dram_stride=1", isa.ErrorCode.SPAD_RANGE, 0),
    ("mm_act", f"MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=2 k_tiles=2 "
     f"act_stride={TINY.act_spad_depth - 1} zp=0 accumulate=0", isa.ErrorCode.SPAD_RANGE, 0),
    ("mm_wt", f"MATMUL act_addr=0 wt_addr={TINY.wt_spad_depth - TINY.rows} acc_addr=0 m=1 "
     "k_tiles=2 act_stride=1 zp=0 accumulate=0", isa.ErrorCode.SPAD_RANGE, 0),
    ("mm_acc", f"MATMUL act_addr=0 wt_addr=0 acc_addr={TINY.acc_spad_depth} m=1 k_tiles=1 "
     "act_stride=1 zp=0 accumulate=0", isa.ErrorCode.SPAD_RANGE, 0),
    ("rq_param", f"REQUANT acc_addr=0 out_addr=0 param_addr={TINY.param_spad_depth - 2} rows=1 "
     "zp_out=0 relu=0", isa.ErrorCode.SPAD_RANGE, 0),
    ("load_dram", f"LOAD spad=ACT spad_addr=0 rows=2 dram_addr={TINY.mem_words - 1} "
     "dram_stride=1", isa.ErrorCode.DRAM_RANGE, 0),
    ("store_dram", f"STORE spad=ACC spad_addr=0 rows=2 dram_addr=0 dram_stride={TINY.mem_words}",
     isa.ErrorCode.DRAM_RANGE, 0),
    ("perf_dram", f"PERF dram_addr={TINY.mem_words - 1}", isa.ErrorCode.DRAM_RANGE, 0),
    ("bad_shift", "REQUANT acc_addr=0 out_addr=0 param_addr=0 rows=1 zp_out=0 relu=0",
     isa.ErrorCode.BAD_PARAM, 0),
]


@pytest.mark.parametrize("name, text, code, index", _FAULTS, ids=[f[0] for f in _FAULTS])
def test_fault(name, text, code, index):
    prog_addr = 16
    mem = _image(TINY, text, prog_addr)
    sim = IsaSim(TINY)
    if name == "bad_shift":
        sim.spads["param"][2, 1] = 32
    before = mem.copy()
    spads = {k: v.copy() for k, v in sim.spads.items()}
    with pytest.raises(DeviceError) as e:
        sim.run(mem, prog_addr)
    assert e.value.code == code
    assert e.value.pc == prog_addr + index * isa.instr_words(TINY)
    np.testing.assert_array_equal(mem, before)           # nothing touched
    for k in spads:
        np.testing.assert_array_equal(sim.spads[k], spads[k])


def test_fetch_range():
    cfg = TINY
    iw = isa.instr_words(cfg)
    prog_addr = cfg.mem_words - iw
    mem = _image(cfg, "SYNC", prog_addr)
    with pytest.raises(DeviceError) as e:
        IsaSim(cfg).run(mem, prog_addr)
    assert e.value.code == isa.ErrorCode.FETCH_RANGE and e.value.pc == cfg.mem_words
    assert e.value.counters["instructions"] == 1


@pytest.mark.parametrize("preset", ["tiny", "large"])        # 2- and 16-byte memory words
def test_perf_writes_counters_and_halts(preset):
    cfg = AccelConfig.preset(preset)
    pw = isa.perf_words(cfg)
    mem = _image(cfg, "SYNC\nPERF dram_addr=0\nHALT", pw)
    pbytes = pw * cfg.mem_bus_bytes
    mem[:pbytes] = 0xFF
    ctr = IsaSim(cfg).run(mem, pw)
    vals = mem[:pbytes].view("<u8")
    assert len(vals) >= len(isa.PERF_COUNTERS)
    assert not vals[len(isa.PERF_COUNTERS):].any()        # the last word's padding is zero
    snap = dict(zip(isa.PERF_COUNTERS, map(int, vals)))
    assert snap["skipped_macs"] == 0
    assert snap["instructions"] == 1 and ctr["instructions"] == 3
    # the snapshot holds SYNC and PERF's own fetch; PERF's retire cycle and HALT count afterwards
    fetch = fetch_cycles(cfg)
    assert fetch == isa.instr_words(cfg) + 4 + cfg.check_cycles
    assert snap["cycles"] == 2 * fetch + misc_cycles(cfg)
    assert ctr["cycles"] == snap["cycles"] + perf_cycles(cfg) + fetch + misc_cycles(cfg)


def _matmul_schedule(cfg, m, k_tiles):
    """MATMUL cycles, tile by tile, as hw/matmul.py schedules them (weight loads into two banks)."""
    r, wt_last, act_last = cfg.rows, [], []
    for kt in range(k_tiles):
        s = 1 if kt == 0 else wt_last[-1] + 1
        if kt >= 2:
            s = max(s, act_last[kt - 2] + bank_release_delay(cfg))
        wt_last.append(s + r - 1)
        first = wt_last[-1] if kt == 0 else max(wt_last[-1], act_last[-1] + 1)
        act_last.append(first + m - 1)
    return act_last[-1] + 2 + (cfg.rows + cfg.cols) + 2


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 2), (2, 4), (3, 5), (8, 8), (16, 4)])
def test_matmul_cycles_closed_form(rows, cols):
    cfg = AccelConfig(name="mm", rows=rows, cols=cols)
    for m in range(1, 3 * (2 * rows + cols)):
        for k_tiles in range(1, 12):
            assert matmul_cycles(cfg, m, k_tiles) == _matmul_schedule(cfg, m, k_tiles), \
                f"cfg={cfg} m={m} k_tiles={k_tiles}"
    big = 2 * rows + cols - 3
    assert matmul_cycles(cfg, big + 5, 9) == 9 * (big + 5) + 2 * rows + cols + 3


def test_max_instructions():
    # a program that never halts: jump-free, so fill memory with SYNCs up to the limit
    cfg = TINY
    mem = _image(cfg, "SYNC\n" * 50, 16)
    with pytest.raises(TimeoutError):
        IsaSim(cfg).run(mem, 16, max_instructions=10)


# -- program checks, config identity, persistence -------------------------------------------------
def test_config_hash_identifies_the_config(tmp_path):
    case = cases.CASES[6]
    x, w, zp = cases.make_gemm(case)
    prog = compile_gemm(w, AccelConfig.preset("tiny"), case.m, zp=zp)
    assert prog.config_hash == AccelConfig.preset("tiny").config_hash
    assert prog.config_hash != AccelConfig.preset("small").config_hash
    path = tmp_path / "prog.bin"
    prog.save(path)
    back = Program.load(path)
    assert back.config_hash == prog.config_hash and back.cfg == prog.cfg
    assert back.words == prog.words and back.layers == prog.layers
    np.testing.assert_array_equal(back.memory_image(x), prog.memory_image(x))
    np.testing.assert_array_equal(back.reference(x), prog.reference(x))


def test_memory_image_validates_input():
    case = cases.CASES[6]
    x, w, zp = cases.make_gemm(case)
    prog = compile_gemm(w, AccelConfig.preset("small"), case.m, zp=zp)
    with pytest.raises(ValueError, match="dtype int8"):
        prog.memory_image(x.astype(np.int16))
    with pytest.raises(ValueError, match=r"shape \(5, 13\)"):
        prog.memory_image(x[:, :4])
    with pytest.raises(TypeError):
        prog.memory_image(x.tolist())


def test_compile_errors():
    small = AccelConfig.preset("small")
    with pytest.raises(CompileError, match="int32 accumulation"):
        compile_gemm(np.zeros((70000, 1), np.int8), small, 1)
    with pytest.raises(CompileError, match="device has"):
        compile_gemm(np.zeros((64, 64), np.int8), AccelConfig.preset("tiny"), 2000)
    w = np.zeros((4, 3), np.int8)
    ok = dict(bias=np.zeros(3, np.int32), mult=np.full(3, 1 << 30, np.int32),
              shift=np.zeros(3, np.int32), zp_in=0, zp_out=0, relu=False)
    with pytest.raises(CompileError, match="linear: every shift"):
        compile_linear(w, **{**ok, "shift": np.array([0, 32, 0], np.int32)}, cfg=small, m=1)
    with pytest.raises(CompileError, match="linear: every mult"):
        compile_linear(w, **{**ok, "mult": np.array([0, -1, 0], np.int32)}, cfg=small, m=1)
    with pytest.raises(CompileError, match="bias must be an integer array of shape"):
        compile_linear(w, **{**ok, "bias": np.zeros(4, np.int32)}, cfg=small, m=1)
    with pytest.raises(CompileError, match="zero point"):
        compile_gemm(w, small, 1, zp=128)
    with pytest.raises(TypeError, match="int8"):
        compile_gemm(w.astype(np.int16), small, 1)
    with pytest.raises(CompileError, match="Batch size"):
        compile_gemm(w, small, 0)


@pytest.mark.parametrize("spad", list(isa.Spad), ids=lambda s: s.name)
@pytest.mark.parametrize("stride_extra", [0, 3, -1])
def test_dma_round_trip(spad, stride_extra):
    """LOAD then STORE every spad with contiguous, gapped and overlapping (-1) strides."""
    cfg = TINY
    name = spad.name.lower()
    rw = cfg.spad_row_words(name)
    stride = rw + stride_extra
    rows = 5
    src, dst = 100, 4000
    text = (f"LOAD spad={spad.name} spad_addr=7 rows={rows} dram_addr={src} dram_stride={stride}\n"
            f"STORE spad={spad.name} spad_addr=7 rows={rows} dram_addr={dst} dram_stride={stride}\n"
            "HALT")
    mem = _image(cfg, text, prog_addr=16)
    rng = np.random.default_rng(5)
    bb = cfg.mem_bus_bytes
    data = rng.integers(0, 256, (rows * stride + rw) * bb, dtype=np.uint8)
    mem[src * bb:src * bb + data.size] = data
    ctr = IsaSim(cfg).run(mem, 16)
    for i in range(rows):                       # later rows win where they overlap
        row = mem[(src + i * stride) * bb:(src + i * stride + rw) * bb]
        if stride_extra >= 0 or i == rows - 1:
            np.testing.assert_array_equal(mem[(dst + i * stride) * bb:(dst + i * stride + rw) * bb],
                                          row, err_msg=f"row {i}")
    assert ctr["dram_read_bytes"] == ctr["dram_write_bytes"] == rows * rw * bb


@pytest.mark.parametrize("preset", PRESETS)
def test_model_chain_with_padding(preset):
    """Three chained layers with odd widths and non-zero zero points: padding stays exact."""
    from types import SimpleNamespace

    from stamen.sw.compiler.driver import compile_model
    cfg = configs.config(preset)
    rng = np.random.default_rng(77)
    dims = [13, 7, 5, 3]
    zps = [int(z) for z in rng.integers(-100, 100, len(dims))]
    layers = []
    for i in range(3):
        k, n = dims[i], dims[i + 1]
        layers.append(SimpleNamespace(
            name=f"fc{i}", w=rng.integers(-128, 128, (k, n), dtype=np.int8),
            bias=rng.integers(-5000, 5000, n).astype(np.int32),
            mult=rng.integers(1 << 30, 1 << 31, n).astype(np.int32),
            shift=np.full(n, 9, np.int32), zp_in=zps[i], zp_out=zps[i + 1], relu=i % 2 == 0))
    prog = compile_model(SimpleNamespace(layers=layers), cfg, batch=9)
    x = rng.integers(-128, 128, (9, 13), dtype=np.int8)
    mem, _ = _run(prog, x)
    y = x
    for ly in layers:
        y = golden.linear(y, ly.w, ly.bias, ly.mult, ly.shift, ly.zp_in, ly.zp_out, ly.relu)
    np.testing.assert_array_equal(prog.read_output(mem), y, err_msg=f"seed=77 cfg={preset}")
    assert len(prog.read_perf(mem)) == 4
    layers[1].zp_in += 1
    with pytest.raises(CompileError, match="fc1: input zero point"):
        compile_model(SimpleNamespace(layers=layers), cfg, batch=9)


# -- zero-row directory (compress=1) --------------------------------------------------------------
ZSMALL = AccelConfig.preset("small").replace(name="small-zdir", compress_acts=True)


def _zdir_bits(cfg, mem):
    """Return the directory bits of ``mem`` (bit n: row slot at word n * zero_row_words)."""
    return np.unpackbits(mem[cfg.zero_dir_base * cfg.mem_bus_bytes:], bitorder="little")


@pytest.mark.parametrize("stride_rows", [1, 3])
def test_zero_dir_store_load_semantics(stride_rows):
    """A compressed STORE writes only the rows that are not all zp and records the others in
    the directory (clearing the bits of the rows it writes); a compressed LOAD gives back the
    rows, zp rows without reading their (stale) slots."""
    cfg = ZSMALL
    seed = 80 + stride_rows
    rng = np.random.default_rng(seed)
    rows, zp, dst, rw = 100, 7, 0x1000 + 3, cfg.zero_row_words   # crosses directory words
    stride = stride_rows * rw
    text = (f"STORE spad=OUT spad_addr=4 rows={rows} dram_addr={dst} dram_stride={stride} "
            f"compress=1 zp={zp}\n"
            f"LOAD spad=ACT spad_addr=9 rows={rows} dram_addr={dst} dram_stride={stride} "
            f"compress=1 zp={zp}\nHALT")
    mem = _image(cfg, text, prog_addr=16)
    stale = rng.integers(0, 256, cfg.mem_bytes - 0x1000 * 8, dtype=np.uint8)
    stale[-cfg.zero_dir_words * cfg.mem_bus_bytes:] = 0
    mem[0x1000 * 8:] = stale
    slots = (dst + np.arange(rows) * stride) // rw
    pre = rng.random(rows) < 0.5                      # earlier bits: the STORE must clear some
    bits = _zdir_bits(cfg, mem)
    bits[slots] = pre
    mem[cfg.zero_dir_base * cfg.mem_bus_bytes:] = np.packbits(bits, bitorder="little")
    before = mem.copy()
    sim = IsaSim(cfg)
    out = rng.integers(-128, 128, (rows, cfg.cols), np.int8)
    zero = rng.random(rows) < 0.4
    out[zero] = zp
    sim.spads["out"][4:4 + rows] = out
    ctr = sim.run(mem, 16)
    msg = f"seed={seed}"
    bb = cfg.mem_bus_bytes
    for i in range(rows):
        a = (dst + i * stride) * bb
        want = before[a:a + rw * bb] if zero[i] else out[i].view(np.uint8)
        np.testing.assert_array_equal(mem[a:a + rw * bb], want, err_msg=f"{msg} row {i}")
    np.testing.assert_array_equal(_zdir_bits(cfg, mem)[slots], zero, err_msg=msg)
    other = np.ones(len(bits), bool)
    other[slots] = False
    np.testing.assert_array_equal(_zdir_bits(cfg, mem)[other], bits[other], err_msg=msg)
    np.testing.assert_array_equal(sim.spads["act"][9:9 + rows], out, err_msg=msg)
    d = len(np.unique(slots // cfg.mem_bus_bits))
    nz = int((~zero).sum())
    assert d > 1
    assert ctr["dram_write_bytes"] == (nz * rw + d) * bb, msg
    assert ctr["dram_read_bytes"] == (nz * rw + 2 * d) * bb, msg


def test_zero_dir_load_ignores_stale_slots_and_plain_store_leaves_directory():
    cfg = ZSMALL
    zp, rw, bb = -3, ZSMALL.zero_row_words, ZSMALL.mem_bus_bytes
    text = (f"LOAD spad=ACT spad_addr=0 rows=4 dram_addr=0x800 dram_stride={rw} compress=1 "
            f"zp={zp}\nSTORE spad=OUT spad_addr=0 rows=4 dram_addr=0x800 dram_stride={rw}\nHALT")
    mem = _image(cfg, text)
    mem[0x800 * bb:0x804 * bb] = 0x55
    mem[cfg.zero_dir_base * bb + (0x800 // 8)] = 0b0101       # slots 0x800 and 0x802
    dir_before = mem[cfg.zero_dir_base * bb:].copy()
    sim = IsaSim(cfg)
    ctr = sim.run(mem, 16)
    np.testing.assert_array_equal(sim.spads["act"][0:4:2], np.full((2, cfg.rows), zp))
    np.testing.assert_array_equal(sim.spads["act"][1:4:2], np.full((2, cfg.rows), 0x55))
    np.testing.assert_array_equal(mem[cfg.zero_dir_base * bb:], dir_before)
    assert ctr["dram_read_bytes"] == (2 * rw + 1) * bb           # 2 rows and 1 directory word
    assert ctr["dram_write_bytes"] == 4 * rw * bb                # plain: no directory traffic


_ZFAULTS = [
    ("dense_cfg", AccelConfig.preset("small"),
     "LOAD spad=ACT spad_addr=0 rows=1 dram_addr=0 dram_stride=1 compress=1 zp=0",
     isa.ErrorCode.BAD_ARG),
    ("load_wrong_spad", ZSMALL,
     "LOAD spad=OUT spad_addr=0 rows=1 dram_addr=0 dram_stride=1 compress=1 zp=0",
     isa.ErrorCode.BAD_ARG),
    ("store_wrong_spad", ZSMALL,
     "STORE spad=ACT spad_addr=0 rows=1 dram_addr=0 dram_stride=1 compress=1 zp=0",
     isa.ErrorCode.BAD_ARG),
    ("unaligned", AccelConfig(rows=16, cols=16, bus_bytes=4, compress_acts=True),
     "STORE spad=OUT spad_addr=0 rows=1 dram_addr=6 dram_stride=4 compress=1 zp=0",
     isa.ErrorCode.BAD_ARG),
    ("unaligned_stride", AccelConfig(rows=16, cols=16, bus_bytes=4, compress_acts=True),
     "LOAD spad=ACT spad_addr=0 rows=1 dram_addr=8 dram_stride=2 compress=1 zp=0",
     isa.ErrorCode.BAD_ARG),
    ("store_into_dir", ZSMALL,
     f"STORE spad=OUT spad_addr=0 rows=2 dram_addr={ZSMALL.zero_dir_base - 1} dram_stride=1 "
     "compress=1 zp=0", isa.ErrorCode.DRAM_RANGE),
    ("plain_store_into_dir", ZSMALL,
     f"STORE spad=ACC spad_addr=0 rows=1 dram_addr={ZSMALL.zero_dir_base - 1} dram_stride=1",
     isa.ErrorCode.DRAM_RANGE),
    ("plain_load_into_dir", ZSMALL,
     f"LOAD spad=WT spad_addr=0 rows=1 dram_addr={ZSMALL.zero_dir_base} dram_stride=1",
     isa.ErrorCode.DRAM_RANGE),
    ("perf_into_dir", ZSMALL, f"PERF dram_addr={ZSMALL.zero_dir_base - 1}",
     isa.ErrorCode.DRAM_RANGE),
]


@pytest.mark.parametrize("name, cfg, text, code", _ZFAULTS, ids=[f[0] for f in _ZFAULTS])
def test_zero_dir_faults(name, cfg, text, code):
    mem = _image(cfg, "SYNC\n" + text)
    before = mem.copy()
    with pytest.raises(DeviceError) as e:
        IsaSim(cfg).run(mem, 16)
    assert (e.value.code, e.value.pc) == (code, 16 + isa.instr_words(cfg)), name
    np.testing.assert_array_equal(mem, before)


def test_zero_dir_bytes_fall_with_zero_rows():
    """256 act rows stored and loaded compressed: the DRAM bytes fall with the share of all-zp
    rows (plus one directory word per 64 rows), and the cycles follow zero_dir_cycles."""
    cfg = ZSMALL
    rows, zp, dst, bb = 256, 0, 0x2000, ZSMALL.mem_bus_bytes
    text = (f"STORE spad=OUT spad_addr=0 rows={rows} dram_addr={dst} dram_stride=1 compress=1 "
            f"zp={zp}\nLOAD spad=ACT spad_addr=0 rows={rows} dram_addr={dst} dram_stride=1 "
            f"compress=1 zp={zp}\nHALT")
    plain = text.replace(" compress=1 zp=0", "")
    rng = np.random.default_rng(90)
    out = rng.integers(1, 128, (rows, cfg.cols), np.int8)
    results = {}
    for share in (None, 0.0, 0.25, 0.5, 1.0):
        sim = IsaSim(cfg)
        rows_out = out.copy()
        if share is not None:
            rows_out[:int(share * rows)] = zp
        rng.shuffle(rows_out)
        sim.spads["out"][:rows] = rows_out
        ctr = sim.run(_image(cfg, plain if share is None else text), 16)
        np.testing.assert_array_equal(sim.spads["act"][:rows], rows_out)
        results[share] = ctr
    base = results[None]
    assert base["dram_read_bytes"] == base["dram_write_bytes"] == rows * bb
    d = rows // cfg.mem_bus_bits                                  # 4 directory words
    for share in (0.0, 0.25, 0.5, 1.0):
        ctr, z = results[share], int(share * rows)
        assert ctr["dram_write_bytes"] == (rows - z + d) * bb, share
        assert ctr["dram_read_bytes"] == (rows - z + 2 * d) * bb, share
        assert ctr["cycles"] - base["cycles"] == (
            zero_dir_cycles(cfg, True, rows, z, d) - store_cycles(cfg, "out", rows)
            + zero_dir_cycles(cfg, False, rows, z, d) - load_cycles(cfg, "act", rows)), share
    assert (results[1.0]["dram_read_bytes"] < results[0.5]["dram_read_bytes"]
            < results[0.25]["dram_read_bytes"] < results[0.0]["dram_read_bytes"])
