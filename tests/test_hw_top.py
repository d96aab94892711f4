# amaranth: UnusedElaboratable=no
"""Whole device (SimDevice, tiny preset) running hand-built programs (GEMM + requant; the LOOP
programs of tests/cases.py) vs golden and IsaSim."""
import numpy as np
import pytest

import cases
from stamen.hw import isa
from stamen.hw.isa import ErrorCode, Opcode, Spad
from stamen.hw.params import AccelConfig
from stamen.hw.simdevice import SimDevice
from stamen.sw import golden
from stamen.sw.errors import DeviceError
from stamen.sw.sim.isasim import IsaSim
from stamen.verif import amsim

CFG = AccelConfig.preset("tiny")


def to_words(cfg, arr):
    """Pack a C-contiguous integer array into little-endian memory words."""
    raw = np.ascontiguousarray(arr).tobytes()
    b = cfg.mem_bus_bytes
    return [int.from_bytes(raw[j:j + b], "little") for j in range(0, len(raw), b)]


def from_words(cfg, words, dtype, shape):
    raw = b"".join(int(w).to_bytes(cfg.mem_bus_bytes, "little") for w in words)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


@pytest.mark.parametrize("seed,latency,stall", [(1, 0, 0), (2, 7, 3)])
def test_gemm_requant_program(seed, latency, stall):
    rng = np.random.default_rng(seed)
    cfg = CFG
    R, C, B = cfg.rows, cfg.cols, cfg.mem_bus_bytes
    M, KT = 5, 3
    K = KT * R
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    a[1, :] = int(rng.integers(-128, 128))                  # a row equal to the zero point
    w = rng.integers(-128, 128, (K, C), dtype=np.int8)
    w[:, 0] = 0
    zp = int(a[1, 0])
    bias = rng.integers(-5000, 5000, C).astype(np.int32)
    mult = rng.integers(1 << 30, 1 << 31, C).astype(np.int32)
    shift = rng.integers(5, 12, C).astype(np.int32)
    zp_out = int(rng.integers(-20, 20))
    relu = True
    params = np.stack([bias, mult, shift]).astype("<i4")

    A_AT, W_AT, P_AT, OUT_AT, ACC_AT = 0x100, 0x200, 0x300, 0x400, 0x500
    PERF_AT, PROG = 0x600, 0x700
    prog = [isa.encode(Opcode.LOAD, spad=Spad.ACT, spad_addr=kt * M, rows=M,
                       dram_addr=A_AT + kt * R // B, dram_stride=K // B) for kt in range(KT)]
    prog += [
        isa.encode(Opcode.LOAD, spad=Spad.WT, spad_addr=0, rows=K, dram_addr=W_AT,
                   dram_stride=C // B),
        isa.encode(Opcode.LOAD, spad=Spad.PARAM, spad_addr=0, rows=3, dram_addr=P_AT,
                   dram_stride=4 * C // B),
        isa.encode(Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=M, k_tiles=KT,
                   act_stride=M, zp=zp, accumulate=0),
        isa.encode(Opcode.REQUANT, acc_addr=0, out_addr=0, param_addr=0, rows=M, zp_out=zp_out,
                   relu=relu),
        isa.encode(Opcode.STORE, spad=Spad.OUT, spad_addr=0, rows=M, dram_addr=OUT_AT,
                   dram_stride=C // B),
        isa.encode(Opcode.STORE, spad=Spad.ACC, spad_addr=0, rows=M, dram_addr=ACC_AT,
                   dram_stride=4 * C // B),
        isa.encode(Opcode.PERF, dram_addr=PERF_AT),
        isa.encode(Opcode.HALT),
    ]
    iw = isa.instr_words(cfg)
    dut = SimDevice(cfg, max_latency=8)
    msg = f"seed={seed} cfg={cfg} latency={latency} stall={stall}"

    async def testbench(ctx):
        ctx.set(dut.mem_latency, latency)
        ctx.set(dut.mem_stall, stall)
        image = {A_AT: to_words(cfg, a), W_AT: to_words(cfg, w), P_AT: to_words(cfg, params)}
        for k, word in enumerate(prog):
            image[PROG + k * iw] = [(word >> (cfg.mem_bus_bits * i)) & ((1 << cfg.mem_bus_bits) - 1)
                                    for i in range(iw)]
        for base, words in image.items():
            for i, v in enumerate(words):
                ctx.set(dut.mem_data[base + i], v)
        ctx.set(dut.prog_addr, PROG)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await amsim.wait_until(ctx, dut.status.done, timeout=20000)
        assert ErrorCode(ctx.get(dut.status.error)) == ErrorCode.NONE, msg

        def read(base, n):
            return [ctx.get(dut.mem_data[base + i]) for i in range(n)]
        acc = golden.gemm(a, w, zp)
        got_acc = from_words(cfg, read(ACC_AT, M * 4 * C // B), "<i4", (M, C))
        np.testing.assert_array_equal(got_acc, acc, err_msg=msg)
        got_out = from_words(cfg, read(OUT_AT, M * C // B), np.int8, (M, C))
        np.testing.assert_array_equal(got_out, golden.requantize(acc, bias, mult, shift, zp_out,
                                                                 relu), err_msg=msg)
        perf = from_words(cfg, read(PERF_AT, isa.perf_words(cfg)), "<u8", (-1,))
        perf = dict(zip(isa.PERF_COUNTERS, perf.tolist()))
        assert perf["instructions"] == len(prog) - 2, msg
        assert perf["macs"] == M * KT * R * C, (msg, perf)
        gated = int(np.sum(((a - zp) == 0)[:, :, None] | (w == 0)[None, :, :]))
        if cfg.zero_gate:
            assert perf["gated_macs"] == gated, (msg, perf)
        assert perf["skipped_macs"] == 0, (msg, perf)           # ws / os never skip
        assert perf["dram_read_bytes"] == a.size + w.size + params.nbytes, (msg, perf)
        assert perf["dram_write_bytes"] == M * C * 5, (msg, perf)
        assert 0 < perf["compute_cycles"] < perf["cycles"], (msg, perf)
        assert (perf["stall_cycles"] > 0) == (stall > 0), (msg, perf)
        final_cycles = ctx.get(dut.perf.cycles)
        assert final_cycles > perf["cycles"], msg

    amsim.run(dut, testbench)


@pytest.mark.parametrize("name,latency,stall", [("conv3x3s2", 0, 0), ("maxpool2x2s2", 3, 2),
                                                ("add", 0, 0), ("conv_overrun", 0, 0)])
def test_loop_program(name, latency, stall):
    """A hand-built LOOP program of tests/cases.py on the tiny device vs golden and IsaSim."""
    cfg = CFG
    case = next(c for c in cases.LOOP_CASES if c.name == name)
    prog = cases.make_loop_program(case, cfg)
    msg = f"{case} cfg={cfg} latency={latency} stall={stall}"
    mem = prog.image.copy()
    try:
        ctr, err, pc = IsaSim(cfg).run(mem, prog.prog_addr), ErrorCode.NONE, 0
    except DeviceError as e:
        ctr, err, pc = e.counters, e.code, e.pc
    bb = cfg.mem_bus_bytes
    image = np.ascontiguousarray(prog.image[:prog.used_words * bb]).view(f"<u{bb}")
    dut = SimDevice(cfg, max_latency=8)

    async def testbench(ctx):
        ctx.set(dut.mem_latency, latency)
        ctx.set(dut.mem_stall, stall)
        for i in np.flatnonzero(image):
            ctx.set(dut.mem_data[int(i)], int(image[i]))
        ctx.set(dut.prog_addr, prog.prog_addr)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await amsim.wait_until(ctx, dut.status.done, timeout=20000)
        assert (ErrorCode(ctx.get(dut.status.error)), ctx.get(dut.fault_pc)) == (err, pc), msg
        reads = [np.array([ctx.get(dut.mem_data[a + i]) for i in range(n)], f"<u{bb}")
                 .view(np.uint8) for a, n in prog.read_ranges]
        if prog.want is None:
            assert (err, pc) == (ErrorCode.SPAD_RANGE,
                                 prog.prog_addr + prog.fault_index * isa.instr_words(cfg)), msg
        else:
            np.testing.assert_array_equal(prog.decode(reads), prog.want, err_msg=msg)
        for (a, n), got in zip(prog.read_ranges, reads):
            np.testing.assert_array_equal(got, mem[a * bb:(a + n) * bb], err_msg=msg)
        perf = {n: ctx.get(dut.perf[n]) for n in isa.PERF_COUNTERS}
        names = [n for n in isa.PERF_COUNTERS
                 if (latency, stall) == (0, 0) or n not in ("cycles", "stall_cycles")]
        names = [n for n in names if err == ErrorCode.NONE or n != "gated_macs"]
        assert {n: perf[n] for n in names} == {n: ctr[n] for n in names}, msg

    amsim.run(dut, testbench)
