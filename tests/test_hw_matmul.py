# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of ``hw.matmul.MatmulEngine`` (and, for ``dataflow="os"``
configurations, ``hw.os_matmul.OsMatmulEngine``; for ``"rs"``, ``hw.rs_matmul.RsMatmulEngine``)
with real scratchpad memories, each MATMUL compared with an ``sw.sim.isasim.IsaSim`` run of the same
scratchpads and instruction."""
import numpy as np
import pytest
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from stamen.hw import bus, isa
from stamen.hw.matmul import ActAddressGenerator, MatmulEngine, acc_read_transparent
from stamen.hw.os_matmul import OsMatmulEngine
from stamen.hw.top import MATMUL_ENGINES
from stamen.hw.params import AccelConfig
from stamen.hw.perf import skipped_inc_shape
from stamen.sw import golden
from stamen.sw.asm import to_bytes
from stamen.sw.errors import DeviceError
from stamen.sw.sim.engines import matmul_cycles, matmul_cycles_of
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.sim.ws_engine import ws_skipped_rows
from stamen.sw.sim.rs_engine import rs_matmul_cycles
from stamen.verif import amsim

INT8_MIN, INT8_MAX = -128, 127
STRIDE_MAX = (1 << 16) - 1

CFG_1x2 = AccelConfig(name="t1x2", rows=1, cols=2, act_spad_depth=128, wt_spad_depth=32,
                      acc_spad_depth=32, bus_bytes=1, mem_bytes=1 << 12)
CFG_2x4 = AccelConfig(name="t2x4", rows=2, cols=4, act_spad_depth=128, wt_spad_depth=32,
                      acc_spad_depth=32, bus_bytes=2, mem_bytes=1 << 12)
CFG_4x4 = AccelConfig(name="t4x4", rows=4, cols=4, act_spad_depth=256, wt_spad_depth=64,
                      acc_spad_depth=128, bus_bytes=4, mem_bytes=1 << 12)
CFG_8x8 = AccelConfig(name="t8x8", rows=8, cols=8, act_spad_depth=1024, wt_spad_depth=128,
                      acc_spad_depth=128, mem_bytes=1 << 12)
#: An ACT depth that is not a power of two: rows depth..127 have valid-looking addresses.
CFG_ODD = CFG_2x4.replace(name="t2x4-odd", act_spad_depth=100)


def _os(cfg: AccelConfig) -> AccelConfig:
    """Return ``cfg`` with the output-stationary dataflow."""
    return cfg.replace(name=f"{cfg.name}-os", dataflow="os")


#: Output-stationary only: more rows than columns, and sizes that are not powers of two.
CFG_4x2_OS = AccelConfig(name="t4x2-os", rows=4, cols=2, dataflow="os", act_spad_depth=128,
                         wt_spad_depth=32, acc_spad_depth=32, bus_bytes=2, mem_bytes=1 << 12)
CFG_3x5_OS = AccelConfig(name="t3x5-os", rows=3, cols=5, dataflow="os", act_spad_depth=100,
                         wt_spad_depth=48, acc_spad_depth=40, bus_bytes=1, mem_bytes=1 << 12)


def _skip(cfg: AccelConfig, **changes) -> AccelConfig:
    """Return the weight-stationary ``cfg`` skipping all-zero act rows (and ``changes``)."""
    return cfg.replace(name=f"{cfg.name}-ws", zero_skip=True, **changes)


def _rs(cfg: AccelConfig, **changes) -> AccelConfig:
    """Return ``cfg`` with the row-stationary dataflow (and ``changes``)."""
    return cfg.replace(name=f"{cfg.name}-rs", dataflow="rs", **changes)


#: Row-stationary with sizes that are not powers of two and a small filter spad (two rows of the
#: longest filter), so the loader's halves are back to back.
CFG_3x5_RS = CFG_3x5_OS.replace(name="t3x5-rs", dataflow="rs", rs_wt_depth=12, rs_ifmap_depth=8)


class _Harness(wiring.Component):
    """MatmulEngine (OsMatmulEngine for ``dataflow="os"``, as in hw/top.py) with its ACT, WT and
    ACC scratchpads (ACC read port as in hw/top.py)."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        pe_count = cfg.rows * cfg.cols
        super().__init__({
            "i_cmd": In(stream.Signature(isa.MatmulArgs)),
            "i_loop": In(stream.Signature(isa.LoopArgs)), "loop_clear": In(1),
            "busy": Out(1), "fault": Out(1),
            "macs_inc": Out(range(pe_count + 1)),
            "gated_inc": Out(range(pe_count + 1)),
            "skipped_inc": Out(skipped_inc_shape(cfg)),
        })
        self.mems = {name: memory.MemoryData(shape=bus.spad_row_layout(cfg, name),
                                             depth=cfg.spad_depth(name), init=[])
                     for name in ("act", "wt", "acc")}

    def elaborate(self, platform):
        m = Module()
        engine_cls = MATMUL_ENGINES[self.cfg.dataflow]
        m.submodules.engine = engine = engine_cls(self.cfg)
        mems = {}
        for name, mem_data in self.mems.items():
            m.submodules[f"{name}_mem"] = mems[name] = memory.Memory(data=mem_data)
        acc_wr = mems["acc"].write_port()
        wiring.connect(m, mems["act"].read_port(), engine.act_rd)
        if "act_rd1" in engine.signature.members:          # zero-skipping ws: a second port
            wiring.connect(m, mems["act"].read_port(), engine.act_rd1)
        wiring.connect(m, mems["wt"].read_port(), engine.wt_rd)
        # As hw/top.py: transparent only when needed, else the read enable masked by a write
        # to the same address (which must never happen: the results would be wrong).
        if acc_read_transparent(self.cfg):
            wiring.connect(m, mems["acc"].read_port(transparent_for=(acc_wr,)), engine.acc_rd)
        else:
            acc_rd = mems["acc"].read_port()
            m.d.comb += [acc_rd.addr.eq(engine.acc_rd.addr), engine.acc_rd.data.eq(acc_rd.data),
                         acc_rd.en.eq(engine.acc_rd.en &
                                      ~(acc_wr.en & (acc_wr.addr == engine.acc_rd.addr)))]
        wiring.connect(m, acc_wr, engine.acc_wr)
        wiring.connect(m, wiring.flipped(self.i_cmd), engine.i_cmd)
        wiring.connect(m, wiring.flipped(self.i_loop), engine.i_loop)
        m.d.comb += [engine.loop_clear.eq(self.loop_clear), self.busy.eq(engine.busy),
                     self.fault.eq(engine.fault), self.macs_inc.eq(engine.macs_inc),
                     self.gated_inc.eq(engine.gated_inc),
                     self.skipped_inc.eq(engine.skipped_inc)]
        return m


def _int8(rng, shape, zeros=0.2):
    x = rng.integers(INT8_MIN, INT8_MAX + 1, size=shape)
    pick = rng.random(shape)
    x = np.where(pick < 0.1, INT8_MIN, np.where(pick < 0.2, INT8_MAX, x))
    return np.where(rng.random(shape) < zeros, 0, x).astype(np.int8)


def _zero_rows(rng, act, zps, share=0.5):
    """Return ``act`` with each row, with probability ``share``, set to one zero point drawn
    from ``zps`` in every lane (an all-zero act row of the MATMULs with that ``zp``)."""
    act = act.copy()
    pick = rng.random(len(act)) < share
    act[pick] = rng.choice(sorted(zps), size=(int(pick.sum()), 1))
    return act


def _isasim(cfg, act, wt, acc, cmd, loop):
    """Run ``[LOOP loop,] MATMUL cmd, HALT`` on an IsaSim holding the given spads.

    Returns ``(acc after, counters, error)``: ``error`` is the DeviceError code or None.
    """
    sim = IsaSim(cfg)
    for name, arr in (("act", act), ("wt", wt), ("acc", acc)):
        sim.spads[name][:] = arr
    words = [] if loop is None else [isa.encode(isa.Opcode.LOOP, **loop)]
    words += [isa.encode(isa.Opcode.MATMUL, **cmd), isa.encode(isa.Opcode.HALT)]
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    code = np.frombuffer(to_bytes(words, cfg), np.uint8)
    mem[:code.size] = code
    try:
        ctr = sim.run(mem, 0)
        err = None
    except DeviceError as e:
        ctr, err = e.counters, e.code
    return sim.spads["acc"].copy(), ctr, err


def _run(cfg, cmds, seed, act=None):
    """Run ``cmds`` back to back on random spads; compare each with IsaSim.

    A command is a MatmulArgs dict; an optional ``"loop"`` entry (a LoopArgs dict) is sent on
    ``i_loop`` first, an optional ``"clear": True`` pulses ``loop_clear`` first (both before the
    MATMUL; the LOOP state otherwise carries over, as on the device). Each command is checked
    against IsaSim started from the ACC contents the engine left (so a faulting command, whose ACC
    rows are undefined, does not spoil the next ones): ACC bit-exact, MACs and gated MACs, the
    cycles from acceptance to ``busy`` low (``matmul_cycles``) and ``fault`` against IsaSim's
    ``SPAD_RANGE``. Returns the measured cycles of each command.

    A zero-skipping ``ws`` configuration gets random ACT contents (unless ``act`` is given) of
    which half the rows hold one of the commands' zero points in every lane; its skipped MACs
    are checked also for a faulting command (it never skips a row beyond the ACT depth).
    """
    rng = np.random.default_rng(seed)
    msg = f"seed={seed} cfg={cfg}"
    if act is None:
        act = _int8(rng, (cfg.act_spad_depth, cfg.rows))
        if _ws_skip(cfg):
            act = _zero_rows(rng, act, {cmd["zp"] for cmd in cmds})
    wt = _int8(rng, (cfg.wt_spad_depth, cfg.cols))
    acc0 = rng.integers(golden.INT32_MIN, golden.INT32_MAX + 1,
                        size=(cfg.acc_spad_depth, cfg.cols), dtype=np.int64).astype(np.int32)
    dut = _Harness(cfg)
    results = []

    def read_acc(ctx):
        return np.array([[int(v) for v in ctx.get(dut.mems["acc"][i])]
                         for i in range(cfg.acc_spad_depth)], dtype=np.int32)

    async def tb(ctx):
        for name, arr in (("act", act), ("wt", wt), ("acc", acc0)):
            for i, row in enumerate(arr):
                ctx.set(dut.mems[name][i], [int(v) for v in row])
        acc = acc0
        loop = dict(isa.LOOP_RESET)
        for cmd in cmds:
            args = {k: v for k, v in cmd.items() if k not in ("loop", "clear")}
            loop = dict(isa.LOOP_RESET) if cmd.get("clear") else loop
            loop = cmd.get("loop", loop)
            if cmd.get("clear"):
                ctx.set(dut.loop_clear, 1)
                await ctx.tick()
                ctx.set(dut.loop_clear, 0)
            if "loop" in cmd:
                await amsim.put(ctx, dut.i_loop, cmd["loop"], timeout=10)
            counts = {"macs": 0, "gated": 0, "skipped": 0}
            await amsim.put(ctx, dut.i_cmd, args, timeout=10)
            limit = 4 * _want_cycles(cfg, args, loop, act) + 100
            n = 1                                       # cycles since acceptance
            while ctx.get(dut.busy):
                counts["macs"] += ctx.get(dut.macs_inc)
                counts["gated"] += ctx.get(dut.gated_inc)
                counts["skipped"] += ctx.get(dut.skipped_inc)
                await ctx.tick()
                n += 1
                if n > limit:
                    raise TimeoutError(f"MATMUL {cmd} still busy after {n} cycles; {msg}")
            got = read_acc(ctx)
            results.append((acc, got, n, counts, ctx.get(dut.fault)))
            acc = got

    amsim.run(dut, tb)

    loop = dict(isa.LOOP_RESET)
    for cmd, (before, got, n, cnt, fault) in zip(cmds, results):
        args = {k: v for k, v in cmd.items() if k not in ("loop", "clear")}
        if cmd.get("clear"):
            loop = dict(isa.LOOP_RESET)
        loop = cmd.get("loop", loop)
        want, ctr, err = _isasim(cfg, act, wt, before, args, loop)
        where = f"{msg} cmd={cmd} loop={loop}"
        want_n = _want_cycles(cfg, args, loop, act)
        assert n == want_n, f"{where} cycles={n} model={want_n}"
        if err is None or not cfg.zero_skip or _ws_skip(cfg):   # rs: a fault leaves skipping
            # unmodelled
            assert cnt["macs"] == ctr["macs"], where
            assert cnt["skipped"] == ctr["skipped_macs"], where
        assert fault == (err == isa.ErrorCode.SPAD_RANGE), f"{where} fault={fault} err={err}"
        if err is None:
            np.testing.assert_array_equal(got, want, err_msg=where)
            assert cnt["gated"] == ctr["gated_macs"], where
        else:
            assert err == isa.ErrorCode.SPAD_RANGE, where
            rows = slice(args["acc_addr"], args["acc_addr"] + args["m"])
            untouched = np.ones(cfg.acc_spad_depth, bool)
            untouched[rows] = False                      # only the MATMUL's ACC rows change
            np.testing.assert_array_equal(got[untouched], before[untouched], err_msg=where)
    return [n for _, _, n, _, _ in results]


def _ws_skip(cfg):
    return cfg.dataflow == "ws" and cfg.zero_skip


def _want_cycles(cfg, args, loop, act):
    """The cycle model's MATMUL cycles (isasim's; rs and zero-skipping ws: with the ACT spad
    contents)."""
    if cfg.dataflow == "rs":
        return rs_matmul_cycles(cfg, args, loop, act)
    if _ws_skip(cfg):
        return matmul_cycles_of(cfg, args, loop, act)
    return matmul_cycles(cfg, args["m"], args["k_tiles"])


def _cmd(act_addr=0, wt_addr=0, acc_addr=0, m=1, k_tiles=1, act_stride=0, zp=0, accumulate=0,
         acc_max=0, wt_repeat=0, **extra):
    return dict(act_addr=act_addr, wt_addr=wt_addr, acc_addr=acc_addr, m=m, k_tiles=k_tiles,
                act_stride=act_stride, zp=zp, accumulate=accumulate, acc_max=acc_max,
                wt_repeat=wt_repeat, **extra)


def _loop(**fields):
    return dict(isa.LOOP_RESET) | fields


def _cfg_id(x):
    if not isinstance(x, AccelConfig):
        return str(x)
    return f"{x.name}-gate{int(x.zero_gate)}" + ("-skip" if x.zero_skip else "")


@pytest.mark.parametrize("cfg,seed", [(CFG_1x2, 10), (CFG_2x4, 11), (CFG_4x4, 12),
                                      (CFG_4x4.replace(zero_gate=False), 13), (CFG_8x8, 14),
                                      (_os(CFG_1x2), 15), (_os(CFG_2x4), 16), (_os(CFG_4x4), 17),
                                      (_os(CFG_4x4).replace(zero_gate=False), 18),
                                      (_os(CFG_8x8), 19), (CFG_4x2_OS, 20), (CFG_3x5_OS, 22),
                                      (_rs(CFG_1x2), 23), (_rs(CFG_2x4), 24), (_rs(CFG_4x4), 25),
                                      (_rs(CFG_4x4, zero_gate=False), 26),
                                      (_rs(CFG_4x4, zero_skip=True), 27), (CFG_3x5_RS, 28),
                                      (_skip(CFG_1x2), 80), (_skip(CFG_2x4), 81),
                                      (_skip(CFG_4x4), 82), (_skip(CFG_4x4, zero_gate=False), 83),
                                      (_skip(CFG_8x8), 84)],
                         ids=_cfg_id)
def test_matmul_matches_isasim(cfg, seed):
    R = cfg.rows
    cmds = [
        _cmd(m=1, k_tiles=1),                                               # smallest
        _cmd(m=1, k_tiles=1, acc_addr=3, accumulate=1, zp=INT8_MIN),        # onto pre-filled ACC
        _cmd(act_addr=5, wt_addr=R, acc_addr=7, m=1, k_tiles=5, act_stride=3, zp=INT8_MAX),
        _cmd(act_addr=20, wt_addr=1, acc_addr=7, m=2, k_tiles=6, act_stride=2, zp=-3,
             accumulate=1),                                                 # back-to-back RMW
        _cmd(act_addr=40, wt_addr=2 * R, acc_addr=0, m=3, k_tiles=4, act_stride=5, zp=17),
        _cmd(act_addr=60, wt_addr=0, acc_addr=10, m=2 * R + cfg.cols - 3, k_tiles=3,
             act_stride=2 * R + cfg.cols - 3, zp=1),                        # exactly no bubbles
        _cmd(act_addr=0, wt_addr=3, acc_addr=1, m=17, k_tiles=3, act_stride=0, zp=-128,
             accumulate=1),                                                 # stride 0: reuse
        _cmd(act_addr=9, wt_addr=2, acc_addr=4, m=5, k_tiles=4, act_stride=7, zp=-9,
             acc_max=1),                                                    # max over tiles
        _cmd(act_addr=30, wt_addr=5, acc_addr=4, m=5, k_tiles=3, act_stride=1, zp=3,
             acc_max=1, accumulate=1, wt_repeat=1),                         # max onto ACC
    ]
    _run(cfg, cmds, seed)


@pytest.mark.parametrize("cfg", [CFG_2x4, _os(CFG_2x4), _rs(CFG_2x4),
                                 _rs(CFG_2x4, zero_skip=True), _skip(CFG_2x4)], ids=_cfg_id)
def test_matmul_all_zero_activations(cfg):
    seed = 21
    act = np.full((cfg.act_spad_depth, cfg.rows), -5, dtype=np.int8)      # a - zp == 0
    cmds = [_cmd(act_addr=4, acc_addr=2, m=6, k_tiles=3, act_stride=6, zp=-5),
            _cmd(act_addr=4, acc_addr=2, m=6, k_tiles=2, act_stride=6, zp=-5, accumulate=1),
            _cmd(act_addr=4, acc_addr=2, m=6, k_tiles=2, act_stride=6, zp=0, accumulate=1),
            _cmd(act_addr=4, acc_addr=2, m=6, k_tiles=2, act_stride=6, zp=-5, acc_max=1)]
    _run(cfg, cmds, seed, act=act)


@pytest.mark.parametrize("cfg", [_rs(CFG_4x4, zero_skip=True), _rs(CFG_4x4)], ids=_cfg_id)
def test_rs_rows_run_apart(cfg):
    """Convolution MATMULs (window mode) whose busiest lane changes from image row to image
    row, so with zero skipping each PE row is the slow one in some passes and runs ahead in
    others (up to ``RS_PASS_QUEUE`` passes, ``hw/rs_matmul.py``): 3x3 and stride-2 convs on a
    10x10 image, and one row of 70 outputs (a full segment of 64 and the FIFOs' widest runs).
    Cycles exact against the model, ACC bit-exact and counters against IsaSim (``_run``)."""
    seed = 70
    rng = np.random.default_rng(seed)
    R, W = cfg.rows, 10
    act = _int8(rng, (cfg.act_spad_depth, R), zeros=0.0)
    lane = (np.arange(cfg.act_spad_depth) // W) % R              # the dense lane of each row
    sparse = (rng.random(act.shape) < 0.85) & (np.arange(R)[None, :] != lane[:, None])
    act = np.where(sparse, np.int8(3), act).astype(np.int8)        # zp = 3: the zero
    conv = _loop(k_wrap0=3, k_stride1=W, m_wrap=8, m_stride=1, m_stride1=W)
    cmds = [_cmd(m=64, k_tiles=9, act_stride=1, zp=3, loop=conv),
            _cmd(acc_addr=64, m=16, k_tiles=9, act_stride=1, zp=3, accumulate=1,
                 loop=conv | dict(m_wrap=4, m_stride=2, m_stride1=2 * W)),      # stride 2
            _cmd(act_addr=100, m=70, k_tiles=3, act_stride=1, zp=3,
                 loop=_loop(k_wrap0=3, m_stride=1))]
    _run(cfg, cmds, seed, act=act)


def _random_cmd(rng, cfg, fault: bool):
    """Return a random MATMUL with a random LOOP; its act rows stay inside the ACT spad unless
    ``fault``, when at least one is beyond it (possibly only through a 16-bit wrap)."""
    R = cfg.rows
    depth = cfg.act_spad_depth
    probe = IsaSim(cfg)
    for _ in range(1000):
        m = int(rng.choice([1, 2, 3, int(rng.integers(1, 12))]))
        kt = int(rng.choice([1, 2, int(rng.integers(1, 9))]))

        def wrap(n):
            return int(rng.choice([0, 1, n, n + 1, int(rng.integers(1, n + 2))]))

        def stride():
            return int(rng.choice([0, 1, int(rng.integers(0, 6)), int(rng.integers(0, 20))]))
        loop = {"k_wrap0": wrap(kt), "k_wrap1": wrap(kt), "k_stride1": stride(),
                "k_stride2": stride(), "m_wrap": wrap(m), "m_stride": stride(),
                "m_stride1": stride()}
        act_stride = stride()
        act_addr = int(rng.integers(0, depth // 2))
        if fault:                       # push one term so far that it overflows or wraps 16 bits
            name = rng.choice(["act_addr", "act_stride", *loop])
            if name == "act_addr":
                act_addr = int(rng.integers(depth - 3, depth + 3))
            elif name == "act_stride":
                act_stride = int(rng.choice([depth, STRIDE_MAX, STRIDE_MAX - act_addr + 1]))
            elif "stride" in name:
                loop[name] = int(rng.choice([depth - act_addr, STRIDE_MAX,
                                             (1 << 16) - act_addr]))
        repeat = int(rng.random() < 0.3)
        wt_rows = R if repeat else kt * R
        if wt_rows > cfg.wt_spad_depth:
            continue
        cmd = _cmd(act_addr=act_addr, wt_addr=int(rng.integers(0, cfg.wt_spad_depth - wt_rows + 1)),
                   acc_addr=int(rng.integers(0, cfg.acc_spad_depth - m + 1)), m=m, k_tiles=kt,
                   act_stride=act_stride, zp=int(rng.integers(INT8_MIN, INT8_MAX + 1)),
                   accumulate=int(rng.random() < 0.5), acc_max=int(rng.random() < 0.4),
                   wt_repeat=repeat, loop=loop)
        probe.loop = loop
        last = int(probe.act_rows(cmd).max())
        if (last >= depth) == fault:
            return cmd
    raise AssertionError("no random MATMUL found")   # pragma: no cover


@pytest.mark.parametrize("cfg,seed", [(CFG_2x4, 40), (CFG_1x2, 41), (CFG_ODD, 42),
                                      (CFG_4x4, 43), (_os(CFG_2x4), 44), (_os(CFG_1x2), 45),
                                      (_os(CFG_ODD), 46), (_os(CFG_4x4), 47), (CFG_4x2_OS, 48),
                                      (CFG_3x5_OS, 49), (_rs(CFG_2x4), 50), (_rs(CFG_ODD), 51),
                                      (_rs(CFG_1x2), 52), (_rs(CFG_4x4, zero_skip=True), 53),
                                      (CFG_3x5_RS, 54), (_skip(CFG_2x4), 85), (_skip(CFG_1x2), 86),
                                      (_skip(CFG_ODD), 87), (_skip(CFG_4x4), 88)], ids=_cfg_id)
def test_matmul_random_loops(cfg, seed):
    """Random MATMULs under random LOOP settings (wraps 0, 1, k_tiles, strides 0, acc_max,
    wt_repeat), some with act rows beyond the ACT depth (the fault), against IsaSim."""
    rng = np.random.default_rng(seed)
    cmds = [_random_cmd(rng, cfg, fault=rng.random() < 0.25) for _ in range(40)]
    cmds[5]["clear"] = True
    del cmds[5]["loop"]                 # after loop_clear: the reset generator
    _run(cfg, cmds, seed)


@pytest.mark.parametrize("cfg", [CFG_ODD, _os(CFG_ODD), _rs(CFG_ODD),
                                 _rs(CFG_ODD, zero_skip=True), _skip(CFG_ODD)], ids=_cfg_id)
def test_matmul_loop_edges(cfg):
    """Hand-picked address-generator edges, checked against IsaSim (see ``_run``)."""
    seed = 50
    depth = cfg.act_spad_depth
    conv = _loop(k_wrap0=3, k_wrap1=3, k_stride1=10, k_stride2=40, m_wrap=3, m_stride=2,
                 m_stride1=20)
    cmds = [
        # a 3x3 stride-2 window walk over a 10-wide image (kernel col / row / channel chunk)
        _cmd(act_addr=0, m=6, k_tiles=9, act_stride=1, loop=conv),
        _cmd(act_addr=1, m=6, k_tiles=18, act_stride=1, accumulate=1, wt_repeat=1,
             loop=_loop(k_wrap0=3, k_wrap1=3, k_stride1=10, k_stride2=40, m_wrap=3, m_stride=2,
                        m_stride1=20)),
        # the last row exactly at depth - 1: no fault; then at depth: fault
        _cmd(act_addr=depth - 6, m=3, k_tiles=2, act_stride=3, loop=_loop()),
        _cmd(act_addr=depth - 5, m=3, k_tiles=2, act_stride=3),
        # a 16-bit wrap of the sum must not hide the overflow (stride + act_addr == 2**16 + 2)
        _cmd(act_addr=4, m=2, k_tiles=2, act_stride=(1 << 16) - 2),
        _cmd(act_addr=4, m=2, k_tiles=3, loop=_loop(k_wrap0=2, k_stride1=STRIDE_MAX)),
        _cmd(act_addr=4, m=4, k_tiles=1, loop=_loop(m_wrap=2, m_stride1=STRIDE_MAX - 1)),
        # huge strides of levels that are never reached (or only after the last tile / row)
        _cmd(act_addr=4, m=2, k_tiles=2, loop=_loop(k_wrap0=2, k_stride1=STRIDE_MAX,
                                                    k_stride2=STRIDE_MAX, m_wrap=2,
                                                    m_stride1=STRIDE_MAX)),
        _cmd(act_addr=4, m=3, k_tiles=4, act_stride=2, clear=True),
        # wrap counts of 1 (every step wraps) and of 0 (never)
        _cmd(act_addr=2, m=4, k_tiles=4, act_stride=50, acc_max=1,
             loop=_loop(k_wrap0=1, k_wrap1=1, k_stride1=50, k_stride2=3, m_wrap=1, m_stride=50,
                        m_stride1=5)),
        _cmd(act_addr=2, m=4, k_tiles=4, act_stride=5, loop=_loop(m_stride=0, k_stride1=99)),
        # act_addr itself beyond the depth
        _cmd(act_addr=depth, m=1, k_tiles=1, loop=_loop()),
        _cmd(act_addr=STRIDE_MAX, m=1, k_tiles=2, act_stride=1),
    ]
    _run(cfg, cmds, seed)


@pytest.mark.parametrize("cfg,seed,share", [(_skip(CFG_2x4), 90, 0.5), (_skip(CFG_2x4), 91, 0.9),
                                            (_skip(CFG_2x4), 92, 0.0), (_skip(CFG_ODD), 93, 0.5),
                                            (_skip(CFG_1x2), 94, 0.5), (_skip(CFG_4x4), 95, 0.7),
                                            (_skip(CFG_4x4, zero_gate=False), 96, 0.5)],
                         ids=_cfg_id)
def test_ws_zero_skip(cfg, seed, share):
    """Zero skipping on the weight-stationary engine: random MATMULs under random LOOPs (some
    faulting) with one zero point, on ACT contents whose rows are all that zero point with
    probability ``share``; ACC bit-exact, cycles, MACs, gated and skipped MACs against IsaSim
    (``_run``). A MATMUL never takes longer than on the dense engine, exactly as long when it
    skips no row, and the whole list is faster when rows are skipped. Also the case where the
    same ACC row of two tiles arrives in
    consecutive cycles (``m = 2``, a pair fed whole, then its first row skipped), which needs
    the transparent ACC read port."""
    rng = np.random.default_rng(seed)
    zp = int(rng.choice([0, -7, INT8_MIN, INT8_MAX]))
    act = _zero_rows(rng, _int8(rng, (cfg.act_spad_depth, cfg.rows)), {zp}, share)
    cmds = [_random_cmd(rng, cfg, fault=rng.random() < 0.2) | {"zp": zp} for _ in range(30)]
    # rows 2t, 2t + 1 of tile t: fed, fed; skipped, fed; fed, fed; ...
    pattern = np.arange(16) % 4 != 2
    act[200 % cfg.act_spad_depth:][:16][~pattern] = zp
    act[200 % cfg.act_spad_depth:][:16][pattern, 0] = zp ^ 1
    cmds.append(_cmd(act_addr=200 % cfg.act_spad_depth, m=2, k_tiles=8, act_stride=2, zp=zp,
                     accumulate=1, clear=True))
    cycles = _run(cfg, cmds, seed, act=act)
    dense = cfg.replace(zero_skip=False)
    loop = dict(isa.LOOP_RESET)
    skipped = []
    for cmd in cmds:
        loop = dict(isa.LOOP_RESET) if cmd.get("clear") else cmd.get("loop", loop)
        skipped.append(int(ws_skipped_rows(cfg, cmd, loop, act).sum()))
    dense_cycles = [matmul_cycles(dense, cmd["m"], cmd["k_tiles"]) for cmd in cmds]
    msg = f"seed={seed} cfg={cfg} cycles={cycles} dense={dense_cycles} skipped={skipped}"
    assert all(n <= d for n, d in zip(cycles, dense_cycles)), msg
    assert all(n == d for n, d, k in zip(cycles, dense_cycles, skipped) if not k), msg
    assert sum(cycles) < sum(dense_cycles), msg


@pytest.mark.parametrize("cfg,seed", [(CFG_2x4, 60), (CFG_ODD, 61)], ids=_cfg_id)
def test_address_generator_rows(cfg, seed):
    """Every row the generator makes: ``addr`` is the exact row when it is inside the ACT spad,
    ``over`` is set exactly when it is not (however far beyond, 16-bit wraps included)."""
    rng = np.random.default_rng(seed)
    depth = cfg.act_spad_depth
    dut = ActAddressGenerator(cfg)
    probe = IsaSim(cfg)
    big = [depth - 1, depth, STRIDE_MAX, (1 << 16) - 40]

    def pick(n):
        return int(rng.choice([0, 1, n, int(rng.integers(1, n + 2))]))

    def span():
        return int(rng.choice([0, 1, int(rng.integers(0, 30)), *big]))
    runs = []
    for _ in range(30):
        m, kt = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        loop = {"k_wrap0": pick(kt), "k_wrap1": pick(kt), "k_stride1": span(),
                "k_stride2": span(), "m_wrap": pick(m), "m_stride": span(), "m_stride1": span()}
        cmd = _cmd(act_addr=int(rng.choice([0, int(rng.integers(0, depth + 8)), STRIDE_MAX])),
                   m=m, k_tiles=kt, act_stride=span())
        probe.loop = loop
        runs.append((loop, cmd, probe.act_rows(cmd)))

    async def tb(ctx):
        for loop, cmd, want in runs:
            ctx.set(dut.loop, loop)
            ctx.set(dut.loop_set, 1)
            await ctx.tick()
            ctx.set(dut.loop_set, 0)
            ctx.set(dut.args, cmd)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.step, 1)
            for t in range(cmd["k_tiles"]):
                for i in range(cmd["m"]):
                    ctx.set(dut.tile_end, i == cmd["m"] - 1)
                    row = ctx.get(dut.row)
                    exact = int(want[t, i])
                    where = f"seed={seed} loop={loop} cmd={cmd} kt={t} i={i} row={exact}"
                    assert row.over == (exact >= depth), where
                    if exact < depth:
                        assert row.addr == exact, where
                    await ctx.tick()
            ctx.set(dut.step, 0)

    amsim.run(dut, tb)


@pytest.mark.parametrize("cfg,seed", [(CFG_8x8, 31)], ids=_cfg_id)
def test_matmul_double_buffering_cycles(cfg, seed):
    """A long MATMUL streams one activation row per cycle, with no bubbles between tiles."""
    m, k_tiles = 64, 8
    R, C = cfg.rows, cfg.cols
    cycles = _run(cfg, [_cmd(act_addr=3, wt_addr=5, acc_addr=9, m=m, k_tiles=k_tiles,
                             act_stride=m + 1, zp=-7, accumulate=1)], seed)
    # Fill (R weight reads) + drain (act read, array, ACC read-modify-write) on top of m*k_tiles.
    bound = k_tiles * m + 4 * (R + C)
    assert cycles[0] <= bound, f"seed={seed} cycles={cycles[0]} bound={bound}"
    assert cycles[0] == k_tiles * m + 2 * R + C + 3, f"seed={seed} cycles={cycles[0]}"


def test_matmul_rejects_bad_config():
    with pytest.raises(TypeError, match="must be an AccelConfig"):
        MatmulEngine({"rows": 8})
