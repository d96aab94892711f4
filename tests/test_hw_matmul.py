# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of ``hw.matmul.MatmulEngine`` with real scratchpad memories."""
import numpy as np
import pytest
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from stamen.hw import bus, isa
from stamen.hw.matmul import MatmulEngine, acc_read_transparent
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.isasim import matmul_cycles
from stamen.verif import amsim

INT8_MIN, INT8_MAX = -128, 127

CFG_1x2 = AccelConfig(name="t1x2", rows=1, cols=2, act_spad_depth=128, wt_spad_depth=32,
                      acc_spad_depth=32, bus_bytes=1)
CFG_2x4 = AccelConfig(name="t2x4", rows=2, cols=4, act_spad_depth=128, wt_spad_depth=32,
                      acc_spad_depth=32, bus_bytes=2)
CFG_4x4 = AccelConfig(name="t4x4", rows=4, cols=4, act_spad_depth=256, wt_spad_depth=64,
                      acc_spad_depth=128, bus_bytes=4)
CFG_8x8 = AccelConfig(name="t8x8", rows=8, cols=8, act_spad_depth=1024, wt_spad_depth=128,
                      acc_spad_depth=128)


class _Harness(wiring.Component):
    """MatmulEngine with its ACT, WT and ACC scratchpads (ACC read port as in hw/top.py)."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        pe_count = cfg.rows * cfg.cols
        super().__init__({
            "i_cmd": In(stream.Signature(isa.MatmulArgs)),
            "busy": Out(1),
            "macs_inc": Out(range(pe_count + 1)),
            "gated_inc": Out(range(pe_count + 1)),
        })
        self.mems = {name: memory.MemoryData(shape=bus.spad_row_layout(cfg, name),
                                             depth=cfg.spad_depth(name), init=[])
                     for name in ("act", "wt", "acc")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = MatmulEngine(self.cfg)
        mems = {}
        for name, mem_data in self.mems.items():
            m.submodules[f"{name}_mem"] = mems[name] = memory.Memory(data=mem_data)
        acc_wr = mems["acc"].write_port()
        wiring.connect(m, mems["act"].read_port(), engine.act_rd)
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
        m.d.comb += [self.busy.eq(engine.busy), self.macs_inc.eq(engine.macs_inc),
                     self.gated_inc.eq(engine.gated_inc)]
        return m


def _int8(rng, shape, zeros=0.2):
    x = rng.integers(INT8_MIN, INT8_MAX + 1, size=shape)
    pick = rng.random(shape)
    x = np.where(pick < 0.1, INT8_MIN, np.where(pick < 0.2, INT8_MAX, x))
    return np.where(rng.random(shape) < zeros, 0, x).astype(np.int8)


def _reference(cfg, act, wt, acc, cmd):
    """Execute one MATMUL on NumPy copies of the spads, literally as ``hw/isa.py`` states it."""
    R = cfg.rows
    acc = acc.copy()
    for kt in range(cmd["k_tiles"]):
        w = wt[cmd["wt_addr"] + kt * R: cmd["wt_addr"] + (kt + 1) * R]
        a0 = cmd["act_addr"] + kt * cmd["act_stride"]
        p = golden.gemm(act[a0: a0 + cmd["m"]], w, cmd["zp"])
        rows = slice(cmd["acc_addr"], cmd["acc_addr"] + cmd["m"])
        keep = cmd["accumulate"] or kt > 0
        acc[rows] = golden.wrap_int32(p.astype(np.int64) + (acc[rows] if keep else 0))
    return acc


def _gated(cfg, act, wt, cmd):
    """Return the MACs the array gates for one MATMUL (zero operand or zero weight)."""
    R, total = cfg.rows, 0
    for kt in range(cmd["k_tiles"]):
        w = wt[cmd["wt_addr"] + kt * R: cmd["wt_addr"] + (kt + 1) * R]
        a0 = cmd["act_addr"] + kt * cmd["act_stride"]
        ops = act[a0: a0 + cmd["m"]].astype(np.int64) - cmd["zp"]
        total += int(((ops[:, :, None] == 0) | (w[None, :, :] == 0)).sum())
    return total


def _run(cfg, cmds, seed, act=None):
    """Run ``cmds`` back to back on fresh random spads; check ACC, counters and cycle counts.

    Returns the measured cycles (acceptance to ``busy`` low) of each command.
    """
    rng = np.random.default_rng(seed)
    msg = f"seed={seed} cfg={cfg}"
    if act is None:
        act = _int8(rng, (cfg.act_spad_depth, cfg.rows))
    wt = _int8(rng, (cfg.wt_spad_depth, cfg.cols))
    acc0 = rng.integers(golden.INT32_MIN, golden.INT32_MAX + 1,
                        size=(cfg.acc_spad_depth, cfg.cols), dtype=np.int64).astype(np.int32)
    dut = _Harness(cfg)
    cycles, results = [], []
    counts = {"macs": 0, "gated": 0}

    async def tb(ctx):
        for name, arr in (("act", act), ("wt", wt), ("acc", acc0)):
            for i, row in enumerate(arr):
                ctx.set(dut.mems[name][i], [int(v) for v in row])
        for cmd in cmds:
            counts.update(macs=0, gated=0)
            await amsim.put(ctx, dut.i_cmd, cmd, timeout=10)
            n = 1                                       # cycles since acceptance
            while ctx.get(dut.busy):
                counts["macs"] += ctx.get(dut.macs_inc)
                counts["gated"] += ctx.get(dut.gated_inc)
                await ctx.tick()
                n += 1
                if n > 4 * matmul_cycles(cfg, cmd["m"], cmd["k_tiles"]) + 100:
                    raise TimeoutError(f"MATMUL {cmd} still busy after {n} cycles; {msg}")
            cycles.append(n)
            got = np.array([[int(v) for v in ctx.get(dut.mems["acc"][i])]
                            for i in range(cfg.acc_spad_depth)], dtype=np.int32)
            results.append((got, dict(counts)))

    amsim.run(dut, tb)

    acc = acc0
    for cmd, n, (got, cnt) in zip(cmds, cycles, results):
        acc = _reference(cfg, act, wt, acc, cmd)
        np.testing.assert_array_equal(got, acc, err_msg=f"{msg} cmd={cmd}")
        assert cnt["macs"] == cmd["m"] * cmd["k_tiles"] * cfg.rows * cfg.cols, f"{msg} cmd={cmd}"
        exp_gated = _gated(cfg, act, wt, cmd) if cfg.zero_gate else 0
        assert cnt["gated"] == exp_gated, f"{msg} cmd={cmd}"
        assert n == matmul_cycles(cfg, cmd["m"], cmd["k_tiles"]), f"{msg} cmd={cmd} cycles={n}"
    return cycles


def _cmd(act_addr=0, wt_addr=0, acc_addr=0, m=1, k_tiles=1, act_stride=0, zp=0, accumulate=0):
    return dict(act_addr=act_addr, wt_addr=wt_addr, acc_addr=acc_addr, m=m, k_tiles=k_tiles,
                act_stride=act_stride, zp=zp, accumulate=accumulate)


def _cfg_id(x):
    return f"{x.name}-gate{int(x.zero_gate)}" if isinstance(x, AccelConfig) else str(x)


@pytest.mark.parametrize("cfg,seed", [(CFG_1x2, 10), (CFG_2x4, 11), (CFG_4x4, 12),
                                      (CFG_4x4.replace(zero_gate=False), 13), (CFG_8x8, 14)],
                         ids=_cfg_id)
def test_matmul_matches_golden(cfg, seed):
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
    ]
    _run(cfg, cmds, seed)


def test_matmul_all_zero_activations():
    cfg, seed = CFG_2x4, 21
    act = np.full((cfg.act_spad_depth, cfg.rows), -5, dtype=np.int8)      # a - zp == 0
    cmds = [_cmd(act_addr=4, acc_addr=2, m=6, k_tiles=3, act_stride=6, zp=-5),
            _cmd(act_addr=4, acc_addr=2, m=6, k_tiles=2, act_stride=6, zp=-5, accumulate=1),
            _cmd(act_addr=4, acc_addr=2, m=6, k_tiles=2, act_stride=6, zp=0, accumulate=1)]
    _run(cfg, cmds, seed, act=act)


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
