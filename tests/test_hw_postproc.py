# amaranth: UnusedElaboratable=no
"""PostProc (REQUANT) against golden.requantize, in the Amaranth simulator."""
import numpy as np
import pytest
from amaranth import *
from amaranth.lib import memory

from stamen.hw import bus, isa, timing
from stamen.hw.params import AccelConfig
from stamen.hw.postproc import PostProc
from stamen.sw import golden
from stamen.sw.sim.cycles import requant_cycles
from stamen.verif import amsim

CFG = AccelConfig(rows=2, cols=4, bus_bytes=2, act_spad_depth=8, wt_spad_depth=8,
                  acc_spad_depth=64, out_spad_depth=64, param_spad_depth=8, mem_bytes=2 * 256)
I32 = np.iinfo(np.int32)
#: The one-row-per-cycle Requantizer, and SerialRequantizer variants (lanes, multiplier bits).
CFGS = {"wide": CFG,
        "lanes1_bits4": CFG.replace(requant_lanes=1, requant_mul_bits=4),
        "lanes2_bits1": CFG.replace(requant_lanes=2, requant_mul_bits=1),
        "lanes1_bits32": CFG.replace(requant_lanes=1),
        "lanes4_bits16": CFG.replace(requant_mul_bits=16)}


class Harness(Elaboratable):
    """PostProc with its ACC, PARAM and OUT scratchpads."""

    def __init__(self, cfg):
        self.pp = PostProc(cfg)
        self.data = {s: memory.MemoryData(shape=bus.spad_row_layout(cfg, s),
                                          depth=cfg.spad_depth(s), init=[])
                     for s in ("acc", "param", "out")}

    def elaborate(self, platform):
        m = Module()
        m.submodules.pp = pp = self.pp
        for s in self.data:
            m.submodules[s] = mem = memory.Memory(data=self.data[s])
            if s == "out":
                port = mem.write_port()
                m.d.comb += [port.addr.eq(pp.out_wr.addr), port.data.eq(pp.out_wr.data),
                             port.en.eq(pp.out_wr.en)]
            else:
                port = mem.read_port()
                rd = getattr(pp, f"{s}_rd")
                m.d.comb += [port.addr.eq(rd.addr), port.en.eq(rd.en), rd.data.eq(port.data)]
        return m


def random_params(rng, cols):
    bias = rng.integers(I32.min, I32.max, cols, endpoint=True, dtype=np.int64)
    mult = rng.integers(I32.min, I32.max, cols, endpoint=True, dtype=np.int64)
    shift = rng.integers(0, isa.REQUANT_MAX_SHIFT, cols, endpoint=True)
    # Special lanes: saturation case, extremes, shifts 0 and 31.
    choice = rng.integers(0, 4)
    if choice == 0:
        bias[0], mult[0], shift[0] = 0, I32.min, 0
    elif choice == 1:
        mult[1], shift[1] = I32.max, 31
    elif choice == 2:
        mult[:] = rng.integers(1 << 30, 1 << 31, cols)      # realistic Q31 multipliers
        shift[:] = rng.integers(0, 12, cols)
        bias[:] = rng.integers(-1000, 1000, cols)
    return bias.astype(np.int32), mult.astype(np.int32), shift.astype(np.int32)


def random_acc(rng, n, cols):
    acc = rng.integers(I32.min, I32.max, (n, cols), endpoint=True, dtype=np.int64)
    small = rng.integers(-(1 << 16), 1 << 16, (n, cols))
    acc = np.where(rng.random((n, cols)) < 0.5, small, acc)
    acc[0, :] = I32.min
    acc[1, :] = I32.max
    acc[2, :] = 0
    return acc.astype(np.int32)


async def run_requant(ctx, h, args, timeout=200):
    await amsim.put(ctx, h.pp.i_cmd, args, timeout=10)
    return await amsim.wait_until(ctx, h.pp.busy, timeout=timeout, value=0)   # busy cycles


def read_rows(ctx, memdata, start, n, cols):
    rows = [ctx.get(memdata[start + i]) for i in range(n)]
    return np.array([[r[c] for c in range(cols)] for r in rows], dtype=np.int64)


@pytest.mark.parametrize("cfg_name, seed",
                         [("wide", s) for s in range(20)] +
                         [(n, s) for n in CFGS if n != "wide" for s in range(4)])
def test_requant_matches_golden(cfg_name, seed):
    rng = np.random.default_rng(seed)
    cfg = CFGS[cfg_name]
    h = Harness(cfg)
    cases = []
    for k in range(4):
        n = int(rng.integers(3, 12))
        acc = random_acc(rng, n, cfg.cols)
        bias, mult, shift = random_params(rng, cfg.cols)
        zp_out = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
        relu = bool(rng.integers(0, 2))
        acc_addr = int(rng.integers(0, cfg.acc_spad_depth - n + 1))
        out_addr = int(rng.integers(0, cfg.out_spad_depth - n + 1))
        param_addr = int(rng.integers(0, cfg.param_spad_depth - 3 + 1))
        cases.append((acc, bias, mult, shift, zp_out, relu, acc_addr, out_addr, param_addr))

    async def testbench(ctx):
        for acc, bias, mult, shift, zp_out, relu, acc_addr, out_addr, param_addr in cases:
            n = acc.shape[0]
            for i in range(n):
                ctx.set(h.data["acc"][acc_addr + i], [int(v) for v in acc[i]])
            for j, row in enumerate((bias, mult, shift)):
                ctx.set(h.data["param"][param_addr + j], [int(v) for v in row])
            args = {"acc_addr": acc_addr, "out_addr": out_addr, "param_addr": param_addr,
                    "rows": n, "zp_out": zp_out, "relu": relu}
            cycles = await run_requant(ctx, h, args, timeout=n * cfg.requant_row_cycles + 50)
            got = read_rows(ctx, h.data["out"], out_addr, n, cfg.cols)
            expected = golden.requantize(acc, bias, mult, shift, zp_out, relu)
            msg = f"seed={seed} cfg={cfg} args={args} bias={bias} mult={mult} shift={shift}"
            np.testing.assert_array_equal(got, expected, err_msg=msg)
            assert ctx.get(h.pp.fault) == 0, msg
            assert cycles == requant_cycles(cfg, n) - timing.RETIRE_CYCLES, msg

    amsim.run(h, testbench)


@pytest.mark.parametrize("cfg_name", ["wide", "lanes1_bits4"])
@pytest.mark.parametrize("bad_shift", [32, -1, I32.min, I32.max])
def test_bad_shift_faults_and_writes_nothing(bad_shift, cfg_name):
    seed = 100
    rng = np.random.default_rng(seed)
    cfg = CFGS[cfg_name]
    h = Harness(cfg)
    n = 5
    acc = random_acc(rng, n, cfg.cols)
    bias, mult, shift = random_params(rng, cfg.cols)
    shift[2] = bad_shift
    sentinel = [1, -2, 3, -4]

    async def testbench(ctx):
        for i in range(n):
            ctx.set(h.data["acc"][i], [int(v) for v in acc[i]])
            ctx.set(h.data["out"][i], sentinel)
        for j, row in enumerate((bias, mult, shift)):
            ctx.set(h.data["param"][j], [int(v) for v in row])
        args = {"acc_addr": 0, "out_addr": 0, "param_addr": 0, "rows": n, "zp_out": 0,
                "relu": 0}
        await run_requant(ctx, h, args, timeout=20)
        assert ctx.get(h.pp.fault) == 1, f"seed={seed} shift={shift}"
        got = read_rows(ctx, h.data["out"], 0, n, cfg.cols)
        np.testing.assert_array_equal(got, np.tile(sentinel, (n, 1)), err_msg=f"seed={seed}")
        # Sticky until the next command, which clears it.
        await ctx.tick().repeat(3)
        assert ctx.get(h.pp.fault) == 1
        shift[2] = 5
        ctx.set(h.data["param"][2], [int(v) for v in shift])
        await run_requant(ctx, h, args, timeout=n * cfg.requant_row_cycles + 50)
        assert ctx.get(h.pp.fault) == 0
        got = read_rows(ctx, h.data["out"], 0, n, cfg.cols)
        np.testing.assert_array_equal(got, golden.requantize(acc, bias, mult, shift, 0, False),
                                      err_msg=f"seed={seed}")

    amsim.run(h, testbench)
