"""AccelConfig validation and presets; ISA encode/decode checks."""
import dataclasses

import pytest

from stamen.hw import isa
from stamen.hw.params import PRESETS, AccelConfig


def test_presets():
    assert (AccelConfig.preset("tiny").rows, AccelConfig.preset("tiny").cols) == (4, 2)
    assert (AccelConfig.preset("small").rows, AccelConfig.preset("small").cols) == (8, 8)
    assert (AccelConfig.preset("large").rows, AccelConfig.preset("large").cols) == (16, 16)
    hashes = {cfg.config_hash for cfg in PRESETS.values()}
    assert len(hashes) == len(PRESETS)
    with pytest.raises(ValueError, match="Preset must be one of"):
        AccelConfig.preset("huge")


def test_replace_revalidates_and_rehashes():
    small = AccelConfig.preset("small")
    four = dataclasses.replace(small, rows=4)
    assert four.rows == 4 and four.mem_bus_bytes == 4 and four.mem_bytes == small.mem_bytes
    assert four.config_hash != small.config_hash
    assert dataclasses.replace(small, name="renamed").config_hash == small.config_hash
    with pytest.raises(ValueError, match="bus_bytes \\(8\\) must divide both rows \\(4\\)"):
        dataclasses.replace(small, rows=4, bus_bytes=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.rows = 3


def test_small_device_options():
    small = AccelConfig.preset("small")
    # At their defaults the later fields stay out of the hash (small/large keep their hashes).
    assert small.config_hash == 0x320c03de
    assert AccelConfig.preset("large").config_hash == 0x55972b29
    assert not small.requant_serial and small.requant_row_cycles == 1 and small.check_cycles == 0
    for f, v in (("requant_lanes", 2), ("requant_mul_bits", 8), ("check_mul_bits", 2),
                 ("counter_bits", 32)):
        assert small.replace(**{f: v}).config_hash != small.config_hash, f
    tiny = AccelConfig.preset("tiny")
    assert tiny.requant_serial and tiny.requant_lane_count == 1
    assert tiny.requant_group_cycles == max(3, 1 + 32 // tiny.requant_mul_bits)
    assert tiny.requant_row_cycles == tiny.cols * tiny.requant_group_cycles
    assert small.requant_group_cycles == 1
    assert small.replace(requant_lanes=2, requant_mul_bits=32).requant_row_cycles == 4 * 3
    assert tiny.check_count_bits == 9 and tiny.check_cycles == -(-9 // tiny.check_mul_bits)
    assert small.replace(requant_lanes=8).requant_serial is False   # lanes == cols
    assert small.counter_bits == 48 and tiny.counter_bits == 32
    # the row-stationary spads: Eyeriss v1's by default, out of the hash at their defaults
    for f, v in (("rs_wt_depth", 40), ("rs_ifmap_depth", 8), ("rs_psum_depth", 4)):
        assert small.replace(**{f: v}).config_hash != small.config_hash, f
    rs = AccelConfig.preset("small-rs")
    assert (rs.rs_wt_depth, rs.rs_ifmap_depth, rs.rs_psum_depth) == (224, 12, 24)
    assert rs.rs_max_taps == 10 and rs.rs_max_width == 63 * 2 + 10
    assert AccelConfig.preset("small-rs-skip") == rs.replace(name="small-rs-skip", zero_skip=True,
                                                             compress_acts=True)
    # zero skipping: rs (zero activations) and ws (all-zero act rows), never os
    skip = AccelConfig.preset("small-skip")
    assert skip.zero_skip and skip.dataflow == "ws" and not small.zero_skip
    # ... and moves its all-zero act rows through the zero-row directory
    assert skip == small.replace(zero_skip=True, compress_acts=True)
    assert skip.config_hash != small.config_hash
    assert AccelConfig(dataflow="ws", zero_skip=True).zero_skip


@pytest.mark.parametrize("changes,error,match", [
    ({"rows": 0}, TypeError, "rows must be a positive integer"),
    ({"cols": 2.5}, TypeError, "cols must be a positive integer"),
    ({"dataflow": "xy"}, ValueError, "dataflow must be one of"),
    ({"dataflow": "os", "zero_skip": True}, ValueError,
     "zero_skip needs dataflow 'rs' .* or 'ws' .*; the 'os' array .* cannot skip"),
    ({"zero_skip": 1}, TypeError, "zero_skip must be a bool"),
    ({"dataflow": "rs", "rs_ifmap_depth": 2}, ValueError, "rs_ifmap_depth must exceed"),
    ({"dataflow": "rs", "rs_wt_depth": 19}, ValueError, "rs_wt_depth must hold two filter rows"),
    ({"dataflow": "rs", "rs_psum_depth": 0}, TypeError, "rs_psum_depth must be a positive"),
    ({"rs_wt_depth": True}, TypeError, "rs_wt_depth must be a positive integer"),
    ({"bus_bytes": 3}, ValueError, "power of two"),
    ({"mem_bytes": 1000}, ValueError, "multiple of 16"),
    ({"wt_spad_depth": 4}, ValueError, "two weight tiles"),
    ({"act_spad_depth": 1 << 17}, ValueError, "at most 65536"),
    ({"zero_gate": 1}, TypeError, "zero_gate must be a bool"),
    ({"requant_lanes": 3}, ValueError, "requant_lanes must be 0 \\(all cols\\) or a divisor"),
    ({"requant_lanes": -1}, ValueError, "requant_lanes must be 0"),
    ({"requant_lanes": True}, TypeError, "requant_lanes must be an integer"),
    ({"requant_mul_bits": 3}, ValueError, "requant_mul_bits must be one of"),
    ({"check_mul_bits": 17}, ValueError, "check_mul_bits must be in 0..16"),
    ({"check_mul_bits": "4"}, TypeError, "check_mul_bits must be an integer"),
    ({"counter_bits": 15}, ValueError, "counter_bits must be in 16..48"),
    ({"counter_bits": 64}, ValueError, "counter_bits must be in 16..48"),
    ({"counter_bits": 32.0}, TypeError, "counter_bits must be an integer"),
    ({"compress_acts": 1}, TypeError, "compress_acts must be a bool"),
    ({"compress_acts": True, "cols": 16}, ValueError,
     "compress_acts needs ACT and OUT rows of one size \\(rows == cols\\), not 8x16"),
    ({"compress_acts": True, "rows": 24, "cols": 24}, ValueError,
     "compress_acts needs a power-of-two number of memory words per act row, not 3"),
    ({"compress_acts": True, "mem_bytes": 16, "rows": 16, "cols": 16}, ValueError,
     "the zero-row directory \\(1 words\\) must fit in half of memory"),
])
def test_bad_configs(changes, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(AccelConfig.preset("small"), **changes)


def test_zero_dir_config():
    small = AccelConfig.preset("small")
    # Off by default, out of the hash then: every earlier hash stays valid.
    assert small.compress_acts is False
    assert small.replace(compress_acts=False).config_hash == small.config_hash == 0x320c03de
    assert (small.zero_dir_words, small.zero_dir_base) == (0, small.mem_words)
    z = small.replace(compress_acts=True)
    assert z.config_hash != small.config_hash
    assert AccelConfig.from_dict(z.to_dict()) == z
    # 8x8, 8-byte words: 1 word per row slot, 64 slots per directory word.
    assert z.zero_row_words == 1 and z.zero_dir_words == z.mem_words // 64
    assert z.zero_dir_base == z.mem_words - z.zero_dir_words
    # 16x16 with 4-byte words: 4 words per slot, 32 slots (128 words) per directory word.
    big = AccelConfig(rows=16, cols=16, bus_bytes=4, compress_acts=True)
    assert big.zero_row_words == 4
    assert big.zero_dir_words == -(-big.mem_words // 4 // 32)


def test_encode_decode_dma_compress_fields():
    plain = dict(spad=isa.Spad.OUT, spad_addr=3, rows=7, dram_addr=0x1234, dram_stride=9)
    # The new fields default to 0 and leave the earlier encodings unchanged.
    word = isa.encode(isa.Opcode.STORE, **plain)
    assert word == isa.encode(isa.Opcode.STORE, **plain, compress=0, zp=0)
    assert isa.Args.as_shape().size == 112 and isa.Instr.as_shape().size == isa.INSTR_BITS
    assert isa.DmaArgs.as_shape().size <= isa.Args.as_shape().size
    for compress, zp in ((1, -128), (1, 127), (0, -1), (1, 0)):
        word = isa.encode(isa.Opcode.STORE, **plain, compress=compress, zp=zp)
        d = isa.decode(word).args.dma
        assert (d.compress, d.zp, d.rows, d.dram_addr, d.dram_stride) == (
            compress, zp, 7, 0x1234, 9)
        # the earlier fields sit where they did: clearing the new bits gives the plain word
        base = isa.Instr.as_shape()["args"].offset + isa.Args.as_shape()["dma"].offset
        dma = isa.DmaArgs.as_shape()
        mask = sum(((1 << dma[f].width) - 1) << (base + dma[f].offset) for f in ("compress", "zp"))
        assert word & ~mask == isa.encode(isa.Opcode.STORE, **plain)
    with pytest.raises(ValueError, match="compress must be an integer in \\[0, 1\\]"):
        isa.encode(isa.Opcode.LOAD, **plain, compress=2)
    with pytest.raises(ValueError, match="zp must be an integer in \\[-128, 127\\]"):
        isa.encode(isa.Opcode.LOAD, **plain, zp=128)


def test_encode_decode_round_trip_and_errors():
    word = isa.encode(isa.Opcode.MATMUL, act_addr=1, wt_addr=2, acc_addr=3, m=4, k_tiles=5,
                      act_stride=6, zp=-128, accumulate=1)
    d = isa.decode(word)
    assert d.opcode == isa.Opcode.MATMUL
    assert (d.args.matmul.zp, d.args.matmul.k_tiles, d.args.matmul.accumulate) == (-128, 5, 1)
    with pytest.raises(ValueError, match="zp must be an integer in \\[-128, 127\\]"):
        isa.encode(isa.Opcode.MATMUL, act_addr=1, wt_addr=2, acc_addr=3, m=4, k_tiles=5,
                   act_stride=6, zp=200, accumulate=1)
    with pytest.raises(ValueError, match="needs operand 'rows'"):
        isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, dram_addr=0, dram_stride=1)
    with pytest.raises(ValueError, match="takes no operands"):
        isa.encode(isa.Opcode.HALT, rows=1)
    with pytest.raises(ValueError, match="Illegal opcode 15"):
        isa.decode(0xF)
    assert isa.opcode_bits(0xF) == 15


def test_perf_counter_layout():
    # The first eight slots (and bridge CSRs) keep their offsets; new counters are appended.
    assert isa.PERF_COUNTERS[:8] == ("cycles", "compute_cycles", "macs", "gated_macs",
                                     "dram_read_bytes", "dram_write_bytes", "stall_cycles",
                                     "instructions")
    assert isa.PERF_COUNTERS[8:] == ("skipped_macs",)
    assert len(set(isa.PERF_COUNTERS)) == len(isa.PERF_COUNTERS)
    slots = len(isa.PERF_COUNTERS) * isa.PERF_SLOT_BYTES
    for bus in (1, 2, 4, 8, 16):
        cfg = AccelConfig(rows=16, cols=16, bus_bytes=bus)
        words = isa.perf_words(cfg)
        # whole words, rounded up: at most one word of padding after the last slot
        assert words * bus >= slots > (words - 1) * bus, bus
