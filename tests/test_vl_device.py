"""Tier 4: compiled programs on the whole device's generated Verilog under Verilator, vs golden.

Every case of ``tests/cases.py`` runs as a raw GEMM and as a quantized Linear layer on two array sizes,
once with an ideal memory and once with extra latency and random backpressure. Outputs are compared
element by element with ``sw.golden``; the exact counters (MACs, gated MACs, DRAM bytes, instructions)
must equal the ISA simulator's. The hand-built LOOP programs of ``tests/cases.py`` (window walks,
``acc_max`` pooling, ``wt_repeat`` adds, an act-range fault) are compared with the ISA simulator
word for word and counter for counter, and with ``sw.golden``.
"""
import copy

import numpy as np
import pytest

import cases
import configs
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.asm import assemble, to_bytes
from stamen.sw.compiler.driver import compile_gemm, compile_linear
from stamen.sw.errors import CompileError, ConfigMismatchError, DeviceError
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.runtime.device import Device
from stamen.verif.device_job import Job, run_jobs

pytestmark = pytest.mark.verilator

#: ``small-rs-skip`` stands for the row-stationary dataflow (its Verilator build is the slowest;
#: the dense ``small-rs`` engine's exact cycles are checked in ``tests/test_hw_matmul.py``);
#: ``small-skip`` is the weight-stationary engine that skips all-zero act rows.
PRESETS = configs.VERILATOR_CONFIGS
MEMORIES = {"ideal-mem": (0, 0), "slow-mem": (5, 3)}
EXACT_COUNTERS = ("macs", "gated_macs", "dram_read_bytes", "dram_write_bytes", "instructions",
                  "skipped_macs")


def _programs(cfg: AccelConfig):
    items, labels, wants = [], [], []
    for case in cases.CASES:
        x, w, zp = cases.make_gemm(case)
        lin = cases.make_linear(case)
        try:
            gemm = compile_gemm(w, cfg, m=case.m, zp=zp)
            linear = compile_linear(lin["w"], lin["bias"], lin["mult"], lin["shift"],
                                    lin["zp_in"], lin["zp_out"], lin["relu"], cfg, m=case.m)
        except CompileError:
            continue                      # a case sized for another preset's memory
        items += [(gemm, x), (linear, lin["x"])]
        labels += [f"gemm {case}", f"linear {case}"]
        wants += [golden.gemm(x, w, zp),
                  golden.linear(lin["x"], lin["w"], lin["bias"], lin["mult"], lin["shift"],
                                lin["zp_in"], lin["zp_out"], lin["relu"])]
    return items, labels, wants


@pytest.mark.parametrize("memory", list(MEMORIES))
@pytest.mark.parametrize("preset", PRESETS)
def test_cases_bit_exact(preset, memory):
    cfg = configs.config(preset)
    latency, stall = MEMORIES[memory]
    items, labels, wants = _programs(cfg)
    assert len(items) >= 40, f"only {len(items)} programs compiled for {preset}"
    got = Device(cfg, "verilator", mem_latency=latency, mem_stall=stall).run_many(items)
    ref = Device(cfg, "isasim").run_many(items)
    for label, want, (y, rep), (_, iref) in zip(labels, wants, got, ref):
        np.testing.assert_array_equal(y, want, err_msg=f"{label} cfg={preset} {memory}")
        for name, layer, ilayer in zip(("total",), [rep.total], [iref.total]):
            assert (layer.issued_macs, layer.gated_macs, layer.skipped_macs, layer.dram_bytes) == \
                (ilayer.issued_macs, ilayer.gated_macs, ilayer.skipped_macs, ilayer.dram_bytes), \
                f"{label} cfg={preset} {memory}: device counters differ from isasim's"
        assert rep.compute_cycles > 0 and rep.cycles >= rep.compute_cycles, label
        if memory == "ideal-mem":
            assert rep.stall_cycles == 0, label
            # isasim's cycle model is exact for an ideal memory: totals and every PERF delta
            cyc = [(r.cycles, r.compute_cycles) for r in [rep.total, *rep.layers]]
            icyc = [(r.cycles, r.compute_cycles) for r in [iref.total, *iref.layers]]
            assert cyc == icyc, \
                f"{label} cfg={preset}: (cycles, compute_cycles) of total and layers differ " \
                f"from isasim's: {cyc} vs {icyc}"
    if memory == "slow-mem":
        assert sum(rep.stall_cycles for _, rep in got) > 0, "backpressure never stalled"


def _patched(prog, index: int, word: int):
    bad = copy.copy(prog)
    bad.words = list(prog.words)
    bad.words[index] = word
    return bad


def _first(prog, opcode):
    return next(i for i, w in enumerate(prog.words) if isa.opcode_bits(w) == opcode.value)


@pytest.mark.parametrize("preset", PRESETS)
def test_faults_are_reported(preset):
    cfg = configs.config(preset)
    x, w, zp = cases.make_gemm(cases.CASES[6])
    prog = compile_gemm(w, cfg, m=x.shape[0], zp=zp)
    load = _first(prog, isa.Opcode.LOAD)
    mm = _first(prog, isa.Opcode.MATMUL)
    rows = cfg.spad_depth("act")
    faults = {
        "illegal opcode": (_patched(prog, mm, 0xF), isa.ErrorCode.ILLEGAL_OPCODE, mm),
        "zero opcode": (_patched(prog, mm, 0), isa.ErrorCode.ILLEGAL_OPCODE, mm),
        "dram overrun": (_patched(prog, load, isa.encode(
            isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, rows=2, dram_addr=cfg.mem_words - 1,
            dram_stride=1)), isa.ErrorCode.DRAM_RANGE, load),
        "spad overrun": (_patched(prog, load, isa.encode(
            isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=rows - 1, rows=2, dram_addr=0,
            dram_stride=1)), isa.ErrorCode.SPAD_RANGE, load),
        "zero count": (_patched(prog, mm, isa.encode(
            isa.Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=0, k_tiles=1, act_stride=0,
            zp=0, accumulate=0)), isa.ErrorCode.BAD_ARG, mm),
        # found while the MATMUL reads its rows: it runs, then halts at its own pc
        "act row overrun": (_patched(prog, mm, isa.encode(
            isa.Opcode.MATMUL, act_addr=rows - 2, wt_addr=0, acc_addr=0, m=3, k_tiles=1,
            act_stride=0, zp=0, accumulate=0)), isa.ErrorCode.SPAD_RANGE, mm),
    }
    outcomes = Device(cfg, "verilator").run_many([(p, x) for p, _, _ in faults.values()],
                                                 return_exceptions=True)
    iw = isa.instr_words(cfg)
    for (name, (prog_, code, index)), out in zip(faults.items(), outcomes):
        assert isinstance(out, DeviceError), f"{name}: expected a DeviceError, got {out!r}"
        assert out.code == code, f"{name}: {out}"
        assert out.pc == prog_.prog_addr + index * iw, f"{name}: fault pc {out.pc:#x}"
        assert code.name in str(out)
        with pytest.raises(DeviceError) as isasim_err:
            Device(cfg, "isasim").run(prog_, x)
        assert isasim_err.value.code == code, f"{name}: isasim disagrees"


@pytest.mark.parametrize("memory", list(MEMORIES))
@pytest.mark.parametrize("preset", PRESETS)
def test_loop_programs_match_isasim(preset, memory):
    cfg = configs.config(preset)
    latency, stall = MEMORIES[memory]
    progs = [cases.make_loop_program(case, cfg) for case in cases.LOOP_CASES]
    jobs = [Job(p.image, p.prog_addr, p.used_words, p.read_ranges, latency, stall) for p in progs]
    results = run_jobs(cfg, jobs, name="loop")
    iw, bb = isa.instr_words(cfg), cfg.mem_bus_bytes
    exact = [n for n in isa.PERF_COUNTERS
             if memory == "ideal-mem" or n not in ("cycles", "stall_cycles")]
    for case, prog, res in zip(cases.LOOP_CASES, progs, results):
        msg = f"{case} cfg={preset} {memory}"
        mem = prog.image.copy()
        try:
            ctr, err, pc = IsaSim(cfg).run(mem, prog.prog_addr), isa.ErrorCode.NONE, 0
        except DeviceError as e:
            ctr, err, pc = e.counters, e.code, e.pc
        assert res.done and not res.timeout, msg
        assert (isa.ErrorCode(res.error), res.fault_pc) == (err, pc), msg
        if prog.fault_index is None:
            assert err == isa.ErrorCode.NONE, msg
            got = prog.decode(res.reads)
            np.testing.assert_array_equal(got, prog.want, err_msg=msg)
        else:
            assert (err, pc) == (isa.ErrorCode.SPAD_RANGE, prog.prog_addr + prog.fault_index * iw)
        for (addr, count), got in zip(prog.read_ranges, res.reads):
            np.testing.assert_array_equal(got, mem[addr * bb:(addr + count) * bb], err_msg=msg)
        names = [n for n in exact if err == isa.ErrorCode.NONE or n != "gated_macs"]
        if cfg.zero_skip and err != isa.ErrorCode.NONE:    # a fault leaves skipping unmodelled
            names = [n for n in names if n not in ("macs", "skipped_macs")]
        assert {n: res.perf[n] for n in names} == {n: ctr[n] for n in names}, msg
    if memory == "slow-mem":
        assert sum(r.perf["stall_cycles"] for r in results) > 0, "backpressure never stalled"


def _raw_image(cfg, text: str, prog_addr: int, data: dict[int, bytes]):
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    code = np.frombuffer(to_bytes(assemble(text), cfg), np.uint8)
    mem[prog_addr * cfg.mem_bus_bytes:][:code.size] = code
    for addr, blob in data.items():
        mem[addr * cfg.mem_bus_bytes:][:len(blob)] = np.frombuffer(blob, np.uint8)
    return mem


def test_bad_param_and_fetch_range():
    cfg = AccelConfig.preset("tiny")
    iw = isa.instr_words(cfg)
    # params: bias row, mult row, shift row with one shift of 40 (> 31)
    params = np.zeros((3, cfg.cols), np.int32)
    params[1] = 1 << 30
    params[2] = [3, 40, 0, 1][:cfg.cols]
    bad_param = _raw_image(cfg, f"""
        LOAD spad=PARAM spad_addr=0 rows=3 dram_addr=0x10 dram_stride={cfg.spad_row_words("param")}
        REQUANT acc_addr=0 out_addr=0 param_addr=0 rows=1 zp_out=0 relu=0
        HALT
    """, 0x100, {0x10: params.tobytes()})
    last = cfg.mem_words - iw                     # one SYNC at the very end of memory
    fetch = _raw_image(cfg, "SYNC", last, {})
    halt = _raw_image(cfg, "SYNC\nHALT", 0x40, {})
    jobs = [Job(bad_param, 0x100, cfg.mem_words, [(0, 0)]),
            Job(fetch, last, cfg.mem_words, [(0, 0)]),
            Job(halt, 0x40, cfg.mem_words, [(0, 0)])]
    res = run_jobs(cfg, jobs)
    assert (res[0].done, isa.ErrorCode(res[0].error)) == (True, isa.ErrorCode.BAD_PARAM)
    assert res[0].fault_pc == 0x100 + iw
    assert (res[1].done, isa.ErrorCode(res[1].error)) == (True, isa.ErrorCode.FETCH_RANGE)
    assert (res[2].done, res[2].error) == (True, 0)
    assert res[2].perf["instructions"] == 2


def test_program_for_another_config_is_refused():
    small, tiny = AccelConfig.preset("small"), AccelConfig.preset("tiny")
    x, w, zp = cases.make_gemm(cases.CASES[4])
    prog = compile_gemm(w, small, m=x.shape[0], zp=zp)
    with pytest.raises(ConfigMismatchError, match="compiled for config 'small'"):
        Device(tiny, "verilator").run(prog, x)
