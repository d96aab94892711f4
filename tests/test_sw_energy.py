"""Energy model: exact access counts of a hand-built program, the per-dataflow table, the effect of
DRAM traffic and gating, the digits LeNet / bench-layer comparison beside cycles, and the
row-stationary conv layer counts on a hand-checked layer."""
import csv
import dataclasses
import io
import logging

import numpy as np
import pytest

import stamen
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw import asm, golden
from stamen.sw.compiler.driver import compile_gemm
from stamen.sw.apps.bench.dataflow import print_dataflow_comparison
from stamen.sw.analysis.energy import (COSTS, COMPARISON_COLUMNS, comparison_csv, count_accesses,
                                       estimate_energy, implemented_configs, rs_conv_energy)
from stamen.sw.sim.engines import ENGINE_MODELS
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.apps.networks import DigitsLeNet, digits_data, train
from stamen.sw.runtime.device import Device

log = logging.getLogger(__name__)

# R = 2, C = 4, 2-byte memory words: ACT rows 2 B, WT / OUT rows 4 B, ACC / PARAM rows 16 B.
TINY = AccelConfig(name="energy-tiny", rows=2, cols=4, act_spad_depth=64, wt_spad_depth=64,
                   acc_spad_depth=64, out_spad_depth=64, param_spad_depth=12, mem_bytes=1 << 14)
PROG_ADDR = 4096

MAX_MATMUL = ("MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=3 k_tiles=2 act_stride=3 zp=0 accumulate=0 "
              "acc_max=1 wt_repeat=1")
HAND = f"""
PERF dram_addr=0
LOAD spad=WT spad_addr=0 rows=4 dram_addr=0x100 dram_stride=2
LOAD spad=ACT spad_addr=0 rows=6 dram_addr=0x200 dram_stride=1
LOOP k_wrap0=0 k_wrap1=0 k_stride1=0 k_stride2=0 m_wrap=0 m_stride=1 m_stride1=0
MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=3 k_tiles=2 act_stride=3 zp=0 accumulate=0
MATMUL act_addr=0 wt_addr=2 acc_addr=0 m=3 k_tiles=1 act_stride=3 zp=0 accumulate=1
{MAX_MATMUL}
PERF dram_addr=32
LOAD spad=PARAM spad_addr=0 rows=3 dram_addr=0x300 dram_stride=8
REQUANT acc_addr=0 out_addr=0 param_addr=0 rows=3 zp_out=0 relu=0
STORE spad=OUT spad_addr=0 rows=3 dram_addr=0x400 dram_stride=2
STORE spad=ACC spad_addr=0 rows=3 dram_addr=0x500 dram_stride=8
SYNC
PERF dram_addr=64
HALT
LOAD spad=ACT spad_addr=0 rows=9 dram_addr=0 dram_stride=1
"""


def _zero(d):
    return {k: d.get(k, 0) for k in ("dram_read", "dram_write", "act_r", "act_w", "wt_r", "wt_w",
                                     "acc_r", "acc_w", "out_r", "out_w", "param_r", "param_w",
                                     "array_wt", "array_act", "array_psum", "rf_fixed", "macs")}


def _hand_expected(dataflow):
    """Counts of HAND worked out from hw/isa.py's semantics (R=2, C=4)."""
    R, C = 2, 4
    # span 1: LOAD WT 4 rows of C int8, LOAD ACT 6 rows of R int8, LOOP, three MATMULs:
    #   MATMUL 1: m=3, k_tiles=2, overwrite: tile 0 writes the 3 ACC rows, tile 1 adds into them;
    #   MATMUL 2: m=3, k_tiles=1, accumulate: adds into the 3 ACC rows;
    #   MATMUL 3: m=3, k_tiles=2, acc_max, wt_repeat: tile 0 writes, tile 1 maxes into them.
    macs = (3 * 2 + 3 * 1 + 3 * 2) * R * C                      # m * k_tiles * R * C each
    tiles = 2 + 1 + 2
    span1 = {"dram_read": 4 * C + 6 * R, "wt_w": 4 * C, "act_w": 6 * R,
             "act_r": (3 * 2 + 3 * 1 + 3 * 2) * R,              # every tile reads its m act rows
             "macs": macs}
    if dataflow == "ws":                   # a psum row leaves the array per tile and row
        span1.update(wt_r=tiles * R * C,                        # each tile's R weight rows once
                     acc_r=(1 + 1 + 1) * 3 * C,                 # M1 tile 1, M2 tile 0, M3 tile 1
                     acc_w=tiles * 3 * C,
                     array_wt=tiles * R * C, array_act=macs, array_psum=macs,
                     rf_fixed=tiles * R * C)
    else:                                  # outputs stay in the PEs over the whole reduction
        passes = 2                                              # ceil(m / R) = ceil(3 / 2)
        span1.update(wt_r=passes * tiles * R * C,               # the weights stream per pass
                     acc_r=3 * C + 3 * C,                       # M2 (accumulate), M3 tile 1
                     acc_w=(1 + 1 + 2) * 3 * C,                 # once per output; M3 per tile
                     array_wt=macs, array_act=macs, array_psum=(1 + 1 + 2) * 3 * C)
    # span 2: LOAD PARAM 3 rows of C int32; REQUANT reads 3 ACC rows and the 3 param rows,
    # writes 3 OUT rows; STORE OUT 3 rows of C int8; STORE ACC 3 rows of C int32; SYNC.
    span2 = {"dram_read": 3 * 4 * C, "dram_write": 3 * C + 3 * 4 * C, "param_w": 3 * C,
             "param_r": 3 * C, "acc_r": 3 * C + 3 * C, "out_w": 3 * C, "out_r": 3 * C}
    return [_zero({}), _zero(span1), _zero(span2), _zero({})]


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_hand_built_program_exact_counts(dataflow):
    words = asm.assemble(HAND)
    spans = count_accesses(words, TINY, dataflow)
    got = [s.as_dict() for s in spans]
    assert got == _hand_expected(dataflow), f"dataflow={dataflow}"
    assert [s.instructions for s in spans] == [0, 6, 5, 1]      # HALT counted, after it nothing


def test_hand_built_program_matches_the_simulator_counters():
    """The replay's DRAM bytes and MACs equal the ISA simulator's PERF deltas."""
    words = asm.assemble(HAND)
    mem = np.zeros(TINY.mem_bytes, np.uint8)
    code = np.frombuffer(asm.to_bytes(words, TINY), np.uint8)
    bb = TINY.mem_bus_bytes
    mem[PROG_ADDR * bb:PROG_ADDR * bb + code.size] = code
    IsaSim(TINY).run(mem, PROG_ADDR)
    pw = isa.perf_words(TINY)
    snaps = [mem[a * bb:(a + pw) * bb].view("<u8") for a in (0, 32, 64)]
    snaps = [dict(zip(isa.PERF_COUNTERS, map(int, s))) for s in snaps]
    spans = count_accesses(words, TINY)
    for span, a, b in zip(spans[1:], snaps, snaps[1:]):
        assert span.dram_read == b["dram_read_bytes"] - a["dram_read_bytes"]
        assert span.dram_write == b["dram_write_bytes"] - a["dram_write_bytes"]
        assert span.macs == b["macs"] - a["macs"]


def test_rs_matmul_accesses_hand_checked():
    """A 1-D window walk on a 2x2 row-stationary array: one group of 3 taps, then a second
    MATMUL of one-tap passes (tap mode), counted by hand from the rs row of the table."""
    cfg = AccelConfig(name="energy-rs", rows=2, cols=2, dataflow="rs", act_spad_depth=64,
                      wt_spad_depth=64, acc_spad_depth=16, out_spad_depth=16, param_spad_depth=3,
                      mem_bytes=1 << 12)
    words = [isa.encode(isa.Opcode.PERF, dram_addr=0),
             isa.encode(isa.Opcode.LOOP, **(isa.LOOP_RESET | {"k_wrap0": 3, "m_wrap": 4})),
             isa.encode(isa.Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=4, k_tiles=3,
                        act_stride=1, zp=0, accumulate=0, acc_max=0, wt_repeat=0),
             isa.encode(isa.Opcode.LOOP, **isa.LOOP_RESET),
             isa.encode(isa.Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=5, k_tiles=2,
                        act_stride=5, zp=0, accumulate=1, acc_max=0, wt_repeat=0),
             isa.encode(isa.Opcode.HALT)]
    span = count_accesses(words, cfg)[1]
    # window MATMUL: 12 weights, one pass of 6 positions x 2 lanes, 4 outputs x 2 columns.
    # tap MATMUL: 2 groups x 4 weights, 2 passes of 5 positions, 10 output rows of 2, all kept.
    assert span.reads["wt"] == 12 + 8 and span.reads["act"] == 12 + 20
    assert span.reads["acc"] == 0 + 20 and span.writes["acc"] == 8 + 20
    assert span.array_wt == 12 + 8
    assert span.array_act == 6 * 2 * 2 + 10 * 2 * 2        # each beat to the 2 PEs of its row
    assert span.array_psum == 4 * 2 * 2 + 10 * 2 * 2        # one hop per PE per psum
    # filter and ifmap spad writes, and a psum FIFO write and read per PE per psum
    assert span.rf_fixed == (12 + 24 + 2 * 16) + (8 + 40 + 2 * 40)
    assert span.macs == 4 * 3 * 4 + 5 * 2 * 4
    assert ENGINE_MODELS["rs"].RF_PER_MAC == 4 and ENGINE_MODELS["rs"].RF_PER_GATED == 1


def test_dataflow_table_and_refusals():
    assert set(ENGINE_MODELS) == {"ws", "os", "rs"}
    assert ENGINE_MODELS["ws"].RF_PER_MAC == 1 and ENGINE_MODELS["os"].RF_PER_MAC == 2
    assert COSTS == {"dram": 200, "buffer": 6, "array": 2, "rf": 1, "mac": 1}
    with pytest.raises(ValueError, match="dataflow must be one of"):
        count_accesses(asm.assemble(HAND), TINY, "xs")
    with pytest.raises(ValueError, match="Instruction 0"):
        count_accesses([0], TINY)
    with pytest.raises(TypeError, match="AccelConfig"):
        count_accesses([], "small")


def _gemm_run(zero_gate=True, seed=1):
    cfg = AccelConfig.preset("small").replace(zero_gate=zero_gate)
    rng = np.random.default_rng(seed)
    m, k, n, zp = 24, 40, 20, -3
    w = rng.integers(-127, 128, (k, n), dtype=np.int8)
    w[rng.random((k, n)) < 0.5] = 0
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    x[rng.random((m, k)) < 0.5] = zp
    prog = compile_gemm(w, cfg, m, zp=zp)
    y, rep = Device(cfg, "isasim").run(prog, x)
    return prog, rep


def test_energy_rises_with_dram_traffic():
    prog, rep = _gemm_run()
    base = estimate_energy(prog, rep)
    more = dataclasses.replace(rep, layers=[dataclasses.replace(r, dram_bytes=r.dram_bytes + 1000)
                                            for r in rep.layers])
    e = estimate_energy(prog, more)
    assert e.layers[0].total == pytest.approx(base.layers[0].total + 1000 * COSTS["dram"])
    assert e.layers[0].e_dram > base.layers[0].e_dram
    # a real case: an act spad of one tile's rows forces the activations to be re-loaded per N-tile
    cfg = AccelConfig.preset("small").replace(act_spad_depth=24, wt_spad_depth=16)
    w = np.ones((40, 64), np.int8)
    lean, fat = compile_gemm(w, AccelConfig.preset("small"), 24), compile_gemm(w, cfg, 24)
    el, ef = estimate_energy(lean), estimate_energy(fat)
    assert ef.total.dram > el.total.dram and ef.total.total > el.total.total
    assert ef.total.e_mac == el.total.e_mac


def test_gating_lowers_energy():
    prog_g, rep_g = _gemm_run(zero_gate=True)
    prog_n, rep_n = _gemm_run(zero_gate=False)
    eg, en = estimate_energy(prog_g, rep_g), estimate_energy(prog_n, rep_n)
    gated = rep_g.total.gated_macs
    assert gated > 0 and rep_n.total.gated_macs == 0
    assert eg.total.total < en.total.total
    # a gated MAC saves its MAC and its RF access (1 per MAC under ws), nothing else
    assert en.total.total - eg.total.total == pytest.approx(gated * (COSTS["mac"] + COSTS["rf"]))
    assert (eg.total.e_dram, eg.total.e_buffer, eg.total.e_array) == \
        (en.total.e_dram, en.total.e_buffer, en.total.e_array)
    # without a report nothing is gated
    assert estimate_energy(prog_g).total.total == pytest.approx(en.total.total)


def test_ws_zero_skip_saves_the_dropped_rows_hops_and_acc_accesses():
    """The zero-skipping ws engine runs the same program (its estimates are the dense ones);
    each all-zero act row it drops (R*C skipped MACs, rows of the later K tiles here) saves its
    R*C act hops, R*C psum hops and C ACC reads and writes, and the MACs it would have gated."""
    seed = 2
    cfg = AccelConfig.preset("small")
    skip_cfg = cfg.replace(zero_skip=True)
    rng = np.random.default_rng(seed)
    m, k, n, zp = 24, 40, 20, -3
    w = rng.integers(-127, 128, (k, n), dtype=np.int8)
    x = rng.integers(-128, 128, (m, k), dtype=np.int8)
    x[rng.random(m) < 0.5, 8:] = zp                      # all-zero rows of tiles 1..4
    runs = {}
    for c in (cfg, skip_cfg):
        prog = compile_gemm(w, c, m, zp=zp)
        y, rep = Device(c, "isasim").run(prog, x)
        np.testing.assert_array_equal(y, golden.gemm(x, w, zp), err_msg=f"seed={seed}")
        runs[c.zero_skip] = (prog.words, estimate_energy(prog, rep).total, rep.total)
    (words_d, dense, rep_d), (words_s, skip, rep_s) = runs[False], runs[True]
    skipped = rep_s.skipped_macs
    assert words_d == words_s and skipped > 0 and skipped % (cfg.rows * cfg.cols) == 0
    assert rep_d.gated_macs - rep_s.gated_macs == skipped, f"seed={seed}"
    assert dense.array - skip.array == 2 * skipped
    assert dense.buffer - skip.buffer == 2 * skipped // cfg.rows
    assert (dense.dram, dense.mac, dense.rf) == (skip.dram, skip.mac, skip.rf)


def test_ws_and_os_split_array_and_rf_differently():
    prog, rep = _gemm_run()
    ws, os_ = estimate_energy(prog, rep, "ws"), estimate_energy(prog, rep, "os")
    assert ws.dataflow == "ws" and os_.dataflow == "os"
    assert (ws.total.e_dram, ws.total.e_mac) == (os_.total.e_dram, os_.total.e_mac)
    assert os_.total.e_rf > ws.total.e_rf                      # psum RMW in the PE per MAC
    assert os_.total.e_array != ws.total.e_array
    assert os_.total.buffer < ws.total.buffer                  # no per-tile ACC read-modify-write
    log.info("gemm 24x40x20 small: ws %s / os %s",
             {k: round(getattr(ws.total, f'e_{k}')) for k in COSTS},
             {k: round(getattr(os_.total, f'e_{k}')) for k in COSTS})


def test_refusals():
    prog, rep = _gemm_run()
    with pytest.raises(TypeError, match="Program"):
        estimate_energy("prog")
    with pytest.raises(TypeError, match="Report"):
        estimate_energy(prog, {"cycles": 1})
    with pytest.raises(ValueError, match="dataflow must be one of"):
        estimate_energy(prog, rep, dataflow="xs")
    with pytest.raises(ValueError, match="levels"):
        estimate_energy(prog, costs={"dram": 1})
    other = compile_gemm(np.ones((8, 8), np.int8), AccelConfig.preset("tiny"), 4)
    with pytest.raises(ValueError, match="config"):
        estimate_energy(other, rep)


@pytest.fixture(scope="module")
def lenet():
    data = digits_data(0)
    model = train(DigitsLeNet(), data, epochs=10, seed=0)
    qg = stamen.quantize_graph(model, data[0])
    return qg, qg.quantize_input(data[2][:8])


def test_digits_lenet_table(lenet, tmp_path):
    qg, x = lenet
    cfg = AccelConfig.preset("small")
    prog = stamen.compile(qg, cfg, batch=8)
    y, rep = Device(cfg, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, prog.reference(x))
    energy = stamen.estimate_energy(prog, rep)
    static = estimate_energy(prog)
    names = [layer.name for layer in prog.layers]
    assert [r.name for r in energy.layers] == names
    for e, s, r in zip(energy.layers, static.layers, rep.layers):
        # the replay agrees with the simulator's counters
        assert (s.dram, s.issued_macs) == (r.dram_bytes, r.issued_macs), r.name
        assert e.total > 0 and e.total == pytest.approx(
            sum(getattr(e, f"e_{k}") for k in COSTS)), r.name
        assert e.cycles == r.cycles
    table = energy.table()
    for name in [*names, "total", "e_dram", "per_mac"]:
        assert name in table
    rows = list(csv.DictReader(io.StringIO(energy.to_csv(tmp_path / "e.csv"))))
    assert [r["name"] for r in rows] == [*names, "total"]
    assert (tmp_path / "e.csv").read_bytes().decode() == energy.to_csv()
    log.info("digits LeNet, batch 8:\n%s\n%s", energy.table(),
             estimate_energy(prog, rep, "os").table())


def test_compare_dataflows_lenet_and_bench_layers(tmp_path):
    lines = []
    rows = print_dataflow_comparison(batch=4, log=lines.append, csv_path=tmp_path / "cmp.csv")
    got = list(csv.DictReader(io.StringIO((tmp_path / "cmp.csv").read_text())))
    assert list(got[0]) == list(COMPARISON_COLUMNS) and len(got) == len(rows)
    assert comparison_csv(rows) == (tmp_path / "cmp.csv").read_bytes().decode()
    configs = implemented_configs()
    assert [c.dataflow for c in configs][:1] == ["ws"]
    models = {r["model"] for r in rows}
    assert models == {"digits-lenet", "conv3x3-32-16x16", "check-5x5-16-9x9"}
    for cfg in configs:
        mine = [r for r in rows if r["config"] == cfg.name and r["model"] == "digits-lenet"]
        assert [r["layer"] for r in mine] == ["conv1", "pool", "conv2", "conv3", "fc", "total"]
        assert all(r["cycles"] > 0 and r["total"] > 0 and r["dataflow"] == cfg.dataflow
                   for r in mine)
    assert "conv3x3-32-16x16" in lines[0] and "per_mac" in lines[0]
    log.info("dataflow comparison:\n%s", lines[0])
    if len(configs) > 1:        # os hardware present: energies differ per dataflow
        by = {(r["model"], r["layer"], r["dataflow"]): r["total"] for r in rows}
        assert by[("digits-lenet", "total", "ws")] != by[("digits-lenet", "total", "os")]


# -- row-stationary conv layers (sw/analysis/energy.py's rs table) ------------------------------------------
# A tiny layer: 2 input channels of 3x4, 2 filters of 2x2, stride 1 (OH = 2, OW = 3), zp = 5, on a
# 2 x 2 array. Non-zero (!= 5) activations per row: c0: 2, 1, 3; c1: 0, 4, 2.
RS_ZP = 5
RS_X = np.array([[[5, 1, 5, 2], [3, 5, 5, 5], [4, 6, 7, 5]],
                 [[5, 5, 5, 5], [1, 2, 3, 4], [5, 9, 5, 8]]], np.int8)


def _rs_tiny():
    from stamen.sw.analysis.eyeriss import RsConvShape, map_conv
    mapping = map_conv(RsConvShape(2, 3, 4, 2, 2, 2), 2, 2)
    # the mapping the hand counts below assume: two passes, one per input channel, each with
    # PE rows (c, ky=0), (c, ky=1), columns = output rows 0, 1, both filters (F = 2) per PE
    assert [(p.items, p.out_rows, p.filter_sets, p.acc) for p in mapping.passes] == [
        (((0, 0), (0, 1)), (0, 1), ((0, 1),), False),
        (((1, 0), (1, 1)), (0, 1), ((0, 1),), True)]
    return mapping


def _rs_gated():
    """MACs whose activation is the zero point, by brute force over the convolution."""
    return sum(int(RS_X[c, oy + ky, ox + kx] == RS_ZP) for f in range(2) for c in range(2)
               for oy in range(2) for ox in range(3) for ky in range(2) for kx in range(2))


def test_rs_tiny_layer_dense_counts():
    er = rs_conv_energy(RS_X, _rs_tiny(), RS_ZP)
    macs, gated = 2 * 2 * 3 * 2 * 2 * 2, _rs_gated()      # F * OH * OW * C * KH * KW
    # filters, per pass: 2 items x F*S = 4 weights read once, each multicast to the 2 PEs of its
    # PE row (2 hops, 2 filter spad writes)
    wt_buf, wt_hops = 2 * (2 * 4), 2 * (2 * 4 * 2)
    # ifmap, per pass: 3 distinct rows (y = 0, 1, 2) of 4 values + end marker read once; the 4
    # PEs each receive one row (5 beats, 4 spad writes)
    act_buf, act_hops, act_rf = 2 * (3 * 5), 2 * (4 * 5), 2 * (4 * 4)
    # psums: each of the 4 PEs sends F*OW = 6 psums up, the 2 top PEs write 6 each to the
    # buffer; the second pass accumulates: its 2 bottom PEs read 6 each from the buffer
    psum_buf, psum_hops = 2 * (2 * 6) + 2 * 6, 2 * (4 * 6) + 2 * 6
    assert (er.macs, er.issued_macs, er.gated_macs) == (macs, macs, gated)
    assert er.buffer == wt_buf + act_buf + psum_buf
    assert er.array == wt_hops + act_hops + psum_hops
    assert er.rf == wt_hops + act_rf + 4 * (macs - gated) + gated
    assert er.mac == macs - gated
    assert er.dram == 2 * 3 * 4 + 2 * 2 * 2 * 2 + 2 * 2 * 3    # input, weights, output bytes
    # without gating every MAC costs the MAC and 4 RF accesses
    ng = rs_conv_energy(RS_X, _rs_tiny(), RS_ZP, zero_gate=False)
    assert (ng.gated_macs, ng.mac, ng.rf) == (0, macs, wt_hops + act_rf + 4 * macs)
    assert ng.total > er.total


def test_rs_tiny_layer_skipping_counts():
    er = rs_conv_energy(RS_X, _rs_tiny(), RS_ZP, zero_skip=True)
    macs, skipped = 96, _rs_gated()
    # compressed rows: non-zeros + end marker. Pass 0 reads c0 rows 0, 1, 2 (3 + 2 + 4 beats),
    # its PEs receive rows 0, 1, 1, 2 (3 + 2 + 2 + 4 beats, 2 + 1 + 1 + 3 values); pass 1
    # reads c1 rows (1 + 5 + 3), its PEs receive 1 + 5 + 5 + 3 beats (0 + 4 + 4 + 2 values)
    act_buf, act_hops, act_rf = 9 + 9, 11 + 14, 7 + 10
    assert (er.issued_macs, er.gated_macs, er.mac) == (macs - skipped, 0, macs - skipped)
    assert er.buffer == 16 + act_buf + 36
    assert er.array == 32 + act_hops + 60
    assert er.rf == 32 + act_rf + 4 * (macs - skipped)
    assert er.dram == 52


def test_rs_energy_batch_padding_and_costs():
    mapping = _rs_tiny()
    one = rs_conv_energy(RS_X, mapping, RS_ZP)
    two = rs_conv_energy(np.stack([RS_X, RS_X]), mapping, RS_ZP)
    for level in ("buffer", "array", "rf", "mac", "issued_macs", "gated_macs", "macs"):
        assert getattr(two, level) == 2 * getattr(one, level), level
    assert two.dram == 2 * (24 + 12) + 16                      # the weights from DRAM once
    padded = rs_conv_energy(RS_X, mapping, RS_ZP, pad=(1, 0))  # input rows 1 only: 2 x 1 x 4
    assert padded.dram == 8 + 16 + 12 and padded.rf == one.rf
    ones = rs_conv_energy(RS_X, mapping, RS_ZP, costs=dict.fromkeys(COSTS, 1.0))
    assert ones.total == one.dram + one.buffer + one.array + one.rf + one.mac


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_rs_energy_skip_below_dense_and_levels_sum(density):
    from stamen.sw.analysis.eyeriss import RsConvShape, map_conv, rs_conv_cycles
    seed, zp = 7, -20
    rng = np.random.default_rng(seed)
    shape = RsConvShape(6, 9, 9, 10, 3, 3, 2)
    x = rng.integers(-19, 128, (6, 9, 9)).astype(np.int8)    # never the zero point
    x[rng.random(x.shape) >= density] = zp
    mapping = map_conv(shape, 4, 5)
    dense = rs_conv_energy(x, mapping, zp, name="d")
    skip = rs_conv_energy(x, mapping, zp, zero_skip=True)
    msg = f"seed={seed} density={density}"
    assert skip.total <= dense.total, msg
    if density == 1.0:
        assert skip.total == dense.total and dense.gated_macs == 0, msg
    for er in (dense, skip):
        for level in COSTS:
            assert getattr(er, f"e_{level}") == COSTS[level] * getattr(er, level), msg
        assert er.total == pytest.approx(sum(getattr(er, f"e_{lv}") for lv in COSTS)), msg
        assert er.per_mac == pytest.approx(er.total / er.issued_macs), msg
    # the cycle model issues and skips the same MACs; a dense row gates what skipping skips
    cyc_dense, cyc_skip = (rs_conv_cycles(x, mapping, zp, s) for s in (False, True))
    assert dense.issued_macs == cyc_dense.issued_macs == shape.macs, msg
    assert skip.issued_macs == cyc_skip.issued_macs, msg
    assert dense.gated_macs == cyc_skip.skipped_macs, msg
    assert (dense.name, dense.kind) == ("d", "conv")


def test_rs_energy_refusals():
    mapping = _rs_tiny()
    with pytest.raises(TypeError, match="RsMapping"):
        rs_conv_energy(RS_X, mapping.shape, RS_ZP)
    with pytest.raises(ValueError, match="int8 of shape"):
        rs_conv_energy(RS_X.astype(np.int16), mapping, RS_ZP)
    with pytest.raises(ValueError, match="int8 of shape"):
        rs_conv_energy(RS_X[:, :2], mapping, RS_ZP)
    with pytest.raises(ValueError, match="padding"):
        rs_conv_energy(RS_X, mapping, RS_ZP, pad=(2, 0))
    with pytest.raises(ValueError, match="levels"):
        rs_conv_energy(RS_X, mapping, RS_ZP, costs={"dram": 1})
