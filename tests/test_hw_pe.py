# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the weight-stationary MAC cell ``hw.pe.PE``."""
import numpy as np
import pytest

from stamen.hw.params import ACC_WIDTH, OPERAND_WIDTH, WT_WIDTH
from stamen.hw.pe import PE, WT_BANKS
from stamen.sw import golden
from stamen.verif import amsim

OP_MIN, OP_MAX = -(1 << (OPERAND_WIDTH - 1)), (1 << (OPERAND_WIDTH - 1)) - 1
WT_MIN, WT_MAX = -(1 << (WT_WIDTH - 1)), (1 << (WT_WIDTH - 1)) - 1
ACC_MIN, ACC_MAX = golden.INT32_MIN, golden.INT32_MAX


def test_pe_rejects_bad_zero_gate():
    with pytest.raises(TypeError, match="zero_gate must be a bool"):
        PE(zero_gate=1)


def _drive(ctx, dut, wt=None, act=None, psum=0):
    """Set one cycle's inputs: ``wt``/``act`` are ``(bank, value)`` or None (not valid)."""
    ctx.set(dut.i_wt.valid, wt is not None)
    if wt is not None:
        ctx.set(dut.i_wt.p.bank, wt[0])
        ctx.set(dut.i_wt.p.wt, wt[1])
    ctx.set(dut.i_act.valid, act is not None)
    if act is not None:
        ctx.set(dut.i_act.p.bank, act[0])
        ctx.set(dut.i_act.p.act, act[1])
    ctx.set(dut.i_psum, psum)


def test_pe_mac_and_bank_select():
    dut = PE(zero_gate=True)

    async def tb(ctx):
        _drive(ctx, dut, wt=(0, 5))
        assert ctx.get(dut.o_wt.p.wt) == 0              # old content of bank 0 goes down
        await ctx.tick()
        _drive(ctx, dut, wt=(1, -7))
        await ctx.tick()
        _drive(ctx, dut, wt=(0, 9))                     # shifts 5 out of bank 0
        assert ctx.get(dut.o_wt.valid) and ctx.get(dut.o_wt.p.wt) == 5
        await ctx.tick()
        # Beat on bank 0 (weight 9), then on bank 1 (weight -7); psums one cycle after each beat.
        _drive(ctx, dut, act=(0, OP_MAX))
        await ctx.tick()
        assert ctx.get(dut.o_act.valid) and ctx.get(dut.o_act.p.act) == OP_MAX
        _drive(ctx, dut, act=(1, OP_MIN), psum=100)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == 100 + 9 * OP_MAX
        _drive(ctx, dut, psum=ACC_MAX)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == golden.wrap_int32(ACC_MAX + OP_MIN * -7)
        _drive(ctx, dut, psum=1234)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == golden.wrap_int32(ACC_MAX + OP_MIN * -7)  # held

    amsim.run(dut, tb)


@pytest.mark.parametrize("zero_gate", [True, False])
@pytest.mark.parametrize("seed", [1, 2])
def test_pe_random_against_model(zero_gate, seed):
    """Drive random weight shifts, beats and psums; check every output against a cycle model."""
    rng = np.random.default_rng(seed)
    n = 300
    msg = f"seed={seed} zero_gate={zero_gate}"
    dut = PE(zero_gate=zero_gate)
    gated_flags, expected_flags = [], []

    def rand_val(lo, hi):
        return int(rng.choice([0, 0, lo, hi, int(rng.integers(lo, hi + 1))]))

    async def tb(ctx):
        w = [0] * WT_BANKS
        s1 = dict(valid=0, gated=0, act=0, wt=0)
        o_psum, o_act = 0, None
        for _ in range(n):
            wt = (int(rng.integers(WT_BANKS)), rand_val(WT_MIN, WT_MAX)) \
                if rng.random() < 0.3 else None
            act = (int(rng.integers(WT_BANKS)), rand_val(OP_MIN, OP_MAX)) \
                if rng.random() < 0.6 else None
            psum = int(rng.integers(ACC_MIN, ACC_MAX + 1))
            _drive(ctx, dut, wt, act, psum)
            # Combinational outputs.
            if wt is not None:
                assert ctx.get(dut.o_wt.valid) and ctx.get(dut.o_wt.p.wt) == w[wt[0]], msg
            zero = act is not None and zero_gate and (act[1] == 0 or w[act[0]] == 0)
            gated_flags.append(ctx.get(dut.gated))
            expected_flags.append(int(zero))
            # Registered outputs and the multiplier's input registers.
            assert ctx.get(dut.o_psum) == o_psum, msg
            assert ctx.get(dut.s1_act) == s1["act"] and ctx.get(dut.s1_wt) == s1["wt"], msg
            if o_act is not None:
                assert ctx.get(dut.o_act.valid) and ctx.get(dut.o_act.p.act) == o_act[1], msg
                assert ctx.get(dut.o_act.p.bank) == o_act[0], msg
            else:
                assert not ctx.get(dut.o_act.valid), msg
            # Model the clock edge.
            if s1["valid"]:
                prod = 0 if s1["gated"] else s1["act"] * s1["wt"]
                o_psum = int(golden.wrap_int32(psum + prod))
            if act is not None and not zero:
                s1.update(act=act[1], wt=w[act[0]])
            s1.update(valid=int(act is not None), gated=int(zero))
            o_act = act
            if wt is not None:
                w[wt[0]] = wt[1]
            await ctx.tick()

    amsim.run(dut, tb)
    np.testing.assert_array_equal(gated_flags, expected_flags, err_msg=msg)
    if zero_gate:
        assert sum(expected_flags) > 0, msg


def test_pe_gating_holds_operands_and_passes_psum():
    dut = PE(zero_gate=True)

    async def tb(ctx):
        _drive(ctx, dut, wt=(0, 3))
        await ctx.tick()
        _drive(ctx, dut, act=(0, 11))                   # real multiply: 11 * 3
        await ctx.tick()
        _drive(ctx, dut, act=(0, 0), psum=7)            # zero operand: gated
        assert ctx.get(dut.gated)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == 7 + 33
        assert (ctx.get(dut.s1_act), ctx.get(dut.s1_wt)) == (11, 3)
        _drive(ctx, dut, act=(1, 5), psum=-20)          # bank 1 weight is zero: gated
        assert ctx.get(dut.gated)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == -20               # passed through unchanged
        assert (ctx.get(dut.s1_act), ctx.get(dut.s1_wt)) == (11, 3)
        _drive(ctx, dut, psum=41)
        assert not ctx.get(dut.gated)
        await ctx.tick()
        assert ctx.get(dut.o_psum) == 41
        assert (ctx.get(dut.s1_act), ctx.get(dut.s1_wt)) == (11, 3)

    amsim.run(dut, tb)
