"""Assembler / disassembler round trips and the in-memory form."""
import numpy as np
import pytest

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw import asm
from stamen.sw.compiler.driver import compile_linear

import cases


def _random_words(seed: int, n: int) -> list[int]:
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(n):
        op = isa.Opcode(int(rng.choice([o.value for o in isa.Opcode])))
        kind = isa.OPCODE_ARGS[op]
        args = {}
        if kind is not None:
            for name, (lo, hi) in isa.ARG_RANGES[kind].items():
                args[name] = int(rng.integers(lo, hi, endpoint=True))
            if kind == "dma":
                args["spad"] = isa.Spad(int(rng.integers(0, len(isa.Spad))))
        words.append(isa.encode(op, **args))
    return words


@pytest.mark.parametrize("seed", range(3))
def test_round_trip_random_instructions(seed):
    words = _random_words(seed, 200)
    text = asm.disassemble(words)
    assert len(text.splitlines()) == len(words)
    assert asm.assemble(text) == words, f"seed={seed}"


def test_round_trip_compiled_program():
    cfg = AccelConfig.preset("tiny")
    lin = cases.make_linear(cases.CASES[7])
    prog = compile_linear(lin["w"], lin["bias"], lin["mult"], lin["shift"], lin["zp_in"],
                          lin["zp_out"], lin["relu"], cfg, cases.CASES[7].m)
    text = prog.disassemble()
    assert asm.assemble(text) == prog.words
    first = text.splitlines()[0].split()
    assert int(first[0], 16) == prog.prog_addr and first[1] == "PERF"
    assert text.splitlines()[-1].split()[1] == "HALT"


def test_line_format():
    w = isa.encode(isa.Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=64, k_tiles=8,
                   act_stride=64, zp=-3, accumulate=0)
    assert asm.disassemble([w]) == ("0000  MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=64 k_tiles=8 "
                                    "act_stride=64 zp=-3 accumulate=0\n")
    w = isa.encode(isa.Opcode.LOAD, spad=isa.Spad.PARAM, spad_addr=3, rows=3, dram_addr=0x40,
                   dram_stride=2)
    assert asm.disassemble_word(w) == ("LOAD spad=PARAM spad_addr=3 rows=3 dram_addr=0x40 "
                                       "dram_stride=2")


@pytest.mark.parametrize("opcode", [0, 9, 15])
def test_illegal_opcode_prints_as_word(opcode):
    word = opcode | (0xABC << 40)
    text = asm.disassemble([word])
    assert ".word" in text and f"illegal opcode {opcode}" in text
    assert asm.assemble(text) == [word]


def test_reserved_bits_and_bad_spad_print_as_word():
    good = isa.encode(isa.Opcode.SYNC)
    with_deps = good | (1 << 4)                                    # a dependency token bit
    with_pad = good | (1 << (isa.INSTR_BITS - 1))                  # a reserved bit
    bad_spad = isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, rows=1, dram_addr=0,
                          dram_stride=0) | (7 << 8)
    words = [with_deps, with_pad, bad_spad]
    text = asm.disassemble(words)
    assert all(line.split()[1] == ".word" for line in text.splitlines())
    assert asm.assemble(text) == words


def test_assemble_errors_name_the_line():
    with pytest.raises(ValueError, match="line 2: unknown mnemonic 'FROB'"):
        asm.assemble("SYNC\nFROB x=1\n")
    with pytest.raises(ValueError, match="line 1: .*needs operand 'wt_addr'"):
        asm.assemble("MATMUL act_addr=0 acc_addr=0 m=1 k_tiles=1 act_stride=1 zp=0 accumulate=0")
    with pytest.raises(ValueError, match="line 3: .*zp must be an integer in"):
        asm.assemble("; comment\n\nMATMUL act_addr=0 wt_addr=0 acc_addr=0 m=1 k_tiles=1 "
                     "act_stride=1 zp=200 accumulate=0")
    with pytest.raises(ValueError, match="line 1: spad must be one of"):
        asm.assemble("LOAD spad=FOO spad_addr=0 rows=1 dram_addr=0 dram_stride=0")
    with pytest.raises(ValueError, match="line 1: operand must be name=value"):
        asm.assemble("HALT now")


def test_bytes_round_trip():
    for name in ("tiny", "small", "large"):
        cfg = AccelConfig.preset(name)
        words = _random_words(7, 20)
        data = asm.to_bytes(words, cfg)
        assert len(data) == len(words) * isa.instr_words(cfg) * cfg.mem_bus_bytes
        assert asm.from_bytes(data, cfg) == words
        # least significant word first, little-endian bytes: byte 0 holds the opcode bits
        assert data[0] & 0xF == isa.opcode_bits(words[0])
    with pytest.raises(ValueError, match="multiple of 16"):
        asm.from_bytes(b"\0" * 17, AccelConfig.preset("small"))
