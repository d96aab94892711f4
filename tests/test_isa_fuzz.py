"""The random instruction-stream fuzzer (``tests/isa_fuzz.py``), fast slice.

On every preset and on ``wide`` (4x8, more columns than rows; ``tiny`` is 4x2), seeded random,
structured and mutated programs must end the ISA simulator in ``HALT`` or a named device fault
(``DeviceError`` with an ``ErrorCode``) within the cycle bound: never another exception, never a
hang. A failure names the preset and seed and the command that replays it
(``python tests/isa_fuzz.py --preset P --replay SEED``); ``--n`` runs thousands.
"""
import collections

import numpy as np
import pytest

from stamen.hw import isa
from stamen.sw.asm import fields
import isa_fuzz
from isa_fuzz import FUZZ_CONFIGS, KINDS, check_isasim, make_case

#: Programs per configuration in the fast slice (8 configurations: about 400 programs).
N_FAST = 50
#: First seed of the fast slice; any other gives another slice.
SEED = 20261207


@pytest.mark.parametrize("preset", FUZZ_CONFIGS)
def test_isasim_ends_in_halt_or_named_fault(preset):
    outcomes = collections.Counter()
    kinds = collections.Counter()
    for seed in range(SEED, SEED + N_FAST):
        case = make_case(preset, seed)
        out = check_isasim(case)              # raises with the seed and replay command
        outcomes[out.status] += 1
        kinds[case.kind] += 1
    assert set(kinds) == set(KINDS), f"{preset}: kinds {dict(kinds)}"
    # the slice reaches both ends: programs that finish and programs that fault, several ways
    assert outcomes["HALT"] >= 5, f"{preset}: outcomes {dict(outcomes)}"
    assert len(outcomes) >= 4, f"{preset}: outcomes {dict(outcomes)}"


def _targeted_want(note: str) -> tuple[str, int | None]:
    """Return the status and faulting instruction index a targeted program must end with."""
    if note.startswith("REQUANT rows="):
        return "BAD_PARAM", 1
    if note.startswith("STORE zeros over"):
        return "ILLEGAL_OPCODE", 1
    if note.startswith("STORE zeros two"):
        return "ILLEGAL_OPCODE", 2
    if note.startswith("PERF over"):          # runs the counters' bytes: wherever they fault
        return "ILLEGAL_OPCODE", None
    if note.startswith("LOAD the program"):
        return "HALT", None
    if note.startswith("LOOP"):
        return "SPAD_RANGE", 1
    return ("DRAM_RANGE" if "dram" in note or "PERF" in note else "SPAD_RANGE"), 0


@pytest.mark.parametrize("preset", FUZZ_CONFIGS)
def test_targeted_programs_fault_by_name(preset):
    """Operand sums past a field's width or the memory's end fault, never wrap into range; a
    program that overwrites its next instructions runs what it wrote."""
    iw = isa.instr_words(isa_fuzz.fuzz_config(preset))
    for case in isa_fuzz.targeted_cases(preset):
        out = check_isasim(case)
        status, index = _targeted_want(case.note)
        assert out.status == status, f"{preset} {case.note}: {out.status} {out.detail}"
        if index is not None:
            assert out.pc == case.prog_addr + index * iw, f"{preset} {case.note}: pc {out.pc}"


def test_bad_param_counts_the_postproc_check():
    """A REQUANT that halts with BAD_PARAM costs its PostProc check (the RTL: busy 4 cycles, 2
    when serial, then the fault); found by the fuzzer's Verilator sample on ``wide``."""
    from stamen.sw.sim.cycles import fetch_cycles, load_cycles, requant_fault_cycles
    for preset, busy in (("small", 4), ("tiny", 2), ("wide", 2)):
        case = [c for c in isa_fuzz.targeted_cases(preset) if c.note.startswith("REQUANT rows=")][0]
        out = check_isasim(case)
        cfg = case.cfg
        assert requant_fault_cycles(cfg) == busy + 1
        assert out.counters["cycles"] == \
            2 * fetch_cycles(cfg) + load_cycles(cfg, "param", 3) + busy + 1, preset


def test_cases_are_replayable():
    for preset in ("tiny", "small-rs-skip"):
        for seed in range(40):
            a, b = make_case(preset, seed), make_case(preset, seed)
            assert (a.kind, a.words, a.prog_addr, a.used_words) == \
                (b.kind, b.words, b.prog_addr, b.used_words), f"{preset} seed={seed}"
            np.testing.assert_array_equal(a.image, b.image, err_msg=f"{preset} seed={seed}")
            a_out, b_out = isa_fuzz.run_isasim(a), isa_fuzz.run_isasim(b)
            assert (a_out.status, a_out.pc, a_out.counters) == \
                (b_out.status, b_out.pc, b_out.counters), f"{preset} seed={seed}"


def test_generated_words_cover_the_isa():
    """Every opcode, illegal opcodes and each fault code appear; structured words decode to
    the operands they were built from (hw/isa.py's layout, no hand-shifted bits)."""
    ops, codes = collections.Counter(), collections.Counter()
    legal = {o.value for o in isa.Opcode}
    for seed in range(300):
        case = make_case("small-skip", seed)
        for w in case.words:
            raw = isa.opcode_bits(w)
            ops[isa.Opcode(raw).name if raw in legal else "illegal"] += 1
        codes[isa_fuzz.run_isasim(case).status] += 1
    assert set(ops) == {o.name for o in isa.Opcode} | {"illegal"}, dict(ops)
    want = {"HALT"} | {c.name for c in isa.ErrorCode if c != isa.ErrorCode.NONE}
    assert want - {"FETCH_RANGE"} <= set(codes), dict(codes)


def test_field_setter_matches_encode():
    word = isa.encode(isa.Opcode.MATMUL, act_addr=1, wt_addr=2, acc_addr=3, m=4, k_tiles=5,
                      act_stride=6, zp=-7, accumulate=1)
    word2 = isa_fuzz._set_field(word, ("args", "matmul", "m"), 40000)
    word2 = isa_fuzz._set_field(word2, ("args", "matmul", "zp"), -128)
    op, f = fields(word2)
    assert op == isa.Opcode.MATMUL and (f["m"], f["zp"], f["k_tiles"]) == (40000, -128, 5)
    assert isa_fuzz._set_field(word2, ("opcode",), 0xF) >> 4 == word2 >> 4


def test_prologue_clears_every_spad():
    from stamen.sw.sim.isasim import IsaSim
    case = isa_fuzz.with_prologue(make_case("wide", 3))
    words = case.words[:5] + [isa.encode(isa.Opcode.HALT)]
    mem = case.image.copy()
    isa_fuzz._put_code(case.cfg, mem, case.prog_addr, words)
    sim = IsaSim(case.cfg)
    for arr in sim.spads.values():
        arr[...] = 1
    sim.run(mem, case.prog_addr)
    assert not any(arr.any() for arr in sim.spads.values())


def test_cli_summary_and_replay(capsys):
    assert isa_fuzz.main(["--preset", "tiny", "--n", "12", "--seed", "5"]) == 0
    text = capsys.readouterr().out
    assert "programs run: 12" in text and "violations: 0" in text
    assert isa_fuzz.main(["--preset", "wide", "--replay", "7"]) == 0
    text = capsys.readouterr().out
    assert "seed=7" in text and "isasim: " in text


def test_violation_names_seed_and_replay(monkeypatch):
    """A simulator exception other than DeviceError is reported as a violation with its seed."""
    from stamen.sw.sim import isasim

    def broken(self, *a, **k):
        raise IndexError("boom")
    monkeypatch.setattr(isasim.IsaSim, "run", broken)
    case = make_case("small", 11)
    with pytest.raises(AssertionError, match=r"seed=11.*IndexError: boom(.|\n)*--replay 11"):
        check_isasim(case)
