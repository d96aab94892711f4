"""Tier 2: the graph compiler's programs on the ISA simulator, bit-exact against golden.

Every case of ``tests/conv_cases.py`` is compiled for every configuration of ``tests/configs.py`` (the presets and non-square
arrays with rows > cols and rows < cols, every dataflow) and run
on the ISA simulator; the output must equal ``QuantizedGraph.reference`` (``sw/golden.py``) element
by element. Also: the compiler's cycle estimate equals the simulator's count, programs survive
save / load, the DRAM traffic is reported against the minimum, and bad graphs get clear errors.
"""
import dataclasses

import numpy as np
import pytest

import configs
import conv_cases
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.asm import fields
from stamen.sw.compiler.driver import Program, compile_model
from stamen.sw.errors import CompileError
from stamen.sw.graph import QOp, QuantizedGraph
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.runtime.device import Device



@pytest.mark.parametrize("preset", configs.ISASIM_CONFIGS)
@pytest.mark.parametrize("case", conv_cases.CONV_CASES, ids=str)
def test_conv_cases_bit_exact_on_isasim(case, preset):
    cfg = configs.config(preset)
    graph, x = conv_cases.make_case(case)
    prog = compile_model(graph, cfg, batch=case.batch)
    y, rep = Device(cfg, "isasim").run(prog, x)
    want = graph.reference(x)
    assert y.dtype == np.int8 and y.shape == want.shape
    np.testing.assert_array_equal(y, want, err_msg=f"case {case} cfg={preset}")
    if cfg.zero_skip and cfg.dataflow == "ws":  # the estimate is the dense stream's: a bound
        assert 0.5 * prog.est_cycles <= rep.total.cycles <= prog.est_cycles, case
    elif cfg.zero_skip:     # the estimate assumes dense rows; the cycles depend on the data
        assert 0.5 * prog.est_cycles <= rep.total.cycles <= 1.2 * prog.est_cycles, case
    else:
        assert rep.total.cycles == prog.est_cycles, f"case {case}: cycle estimate"
    assert [r.name for r in rep.layers] == [op.name for op in graph.ops]
    for r in rep.layers:
        assert r.dram_bytes >= r.min_dram_bytes > 0, f"case {case} {r.name}"
    conv_macs = sum(op.macs_per_image for op in graph.ops) * case.batch
    assert rep.total.macs == conv_macs
    assert rep.total.issued_macs + rep.total.skipped_macs >= conv_macs


@pytest.mark.parametrize("name,seed", [("k3-same", 31), ("lenet", 32), ("resnet", 33)])
def test_ws_zero_skip_skips_zero_pixels(name, seed):
    """small-skip against small on isasim, on inputs whose pixels are all the zero point with
    probability 0.6 (the first conv's all-zero act rows; later layers have their ReLU zeros):
    both bit-exact against golden, every MAC either issued or skipped, skipped MACs counted,
    fewer cycles than the dense stream and never more than the compiler's estimate, and fewer
    DRAM bytes (small-skip moves its activations through the zero-row directory)."""
    graph, x = conv_cases.make_case(conv_cases.ConvCase(name, seed, 2))
    rng = np.random.default_rng(seed)
    zp = graph.ops[0].zp_in[0]
    x = np.where(rng.random(x.shape[:3])[..., None] < 0.6, np.int8(zp), x).astype(np.int8)
    want = graph.reference(x)
    reps = {}
    for preset in ("small", "small-skip"):
        cfg = AccelConfig.preset(preset)
        prog = compile_model(graph, cfg, batch=len(x))
        y, rep = Device(cfg, "isasim").run(prog, x)
        np.testing.assert_array_equal(y, want, err_msg=f"seed={seed} case={name} cfg={preset}")
        assert rep.total.cycles <= prog.est_cycles, f"seed={seed} {preset}"
        reps[preset] = rep.total
    dense, skip = reps["small"], reps["small-skip"]
    msg = f"seed={seed} case={name} dense={dense} skip={skip}"
    assert dense.skipped_macs == 0 and skip.skipped_macs > 0, msg
    assert skip.issued_macs + skip.skipped_macs == dense.issued_macs, msg
    assert skip.cycles < dense.cycles and skip.compute_cycles < dense.compute_cycles, msg
    assert skip.dram_bytes < dense.dram_bytes, msg


def test_zero_row_directory_of_the_memory_image():
    """With ``compress_acts`` the compiler moves the input and the intermediate int8 tensors
    through the zero-row directory (compressed LOADs and STOREs; the output stays plain) and
    the memory image sets the directory bit of exactly their row slots that hold only the
    tensor's zero point (halo rows, padding, zero pixels); every other bit is 0."""
    cfg = AccelConfig.preset("small-skip")
    seed = 34
    graph, x = conv_cases.make_case(conv_cases.ConvCase("lenet", seed, 2))
    rng = np.random.default_rng(seed)
    zp = graph.ops[0].zp_in[0]
    x = np.where(rng.random(x.shape[:3])[..., None] < 0.5, np.int8(zp), x).astype(np.int8)
    prog = compile_graph(graph, cfg, batch=len(x))
    mem = prog.memory_image(x)
    bb, rw = cfg.mem_bus_bytes, cfg.zero_row_words
    directory = np.unpackbits(mem[cfg.zero_dir_base * bb:], bitorder="little")
    want = np.zeros_like(directory)
    compressed = [t for t in prog.layout["fills"] if t["compressed"]]
    assert {t["name"] for t in compressed} == {"input", *[op.name for op in graph.ops[:-1]]}
    assert not prog.layout["output"]["compressed"]
    for t in compressed:
        rows = mem[t["addr"] * bb:(t["addr"] + t["words"]) * bb].reshape(-1, rw * bb)
        want[t["addr"] // rw + np.arange(len(rows))] = (rows == np.uint8(t["zp"] & 0xFF)).all(1)
    np.testing.assert_array_equal(directory, want, err_msg=f"seed={seed}")
    assert 0 < want.sum() < sum(t["words"] for t in compressed) // rw, "zero rows and others"
    dma = [a for op, a in map(fields, prog.words) if op in (isa.Opcode.LOAD, isa.Opcode.STORE)]
    assert any(a["compress"] for a in dma) and not all(a["compress"] for a in dma)


def test_outputs_vary_with_the_input():
    """Guards against a test that passes on constant outputs."""
    graph, x = conv_cases.make_case(conv_cases.ConvCase("resnet", 24, 4))
    y = graph.reference(x)
    assert len({y[i].tobytes() for i in range(len(y))}) == len(y)
    assert np.unique(y).size > 5


def test_save_load_round_trip(tmp_path):
    cfg = AccelConfig.preset("small")
    graph, x = conv_cases.make_case(conv_cases.ConvCase("resnet", 24, 2))
    prog = compile_graph(graph, cfg, batch=2)
    prog.save(tmp_path / "p.npz")
    back = Program.load(tmp_path / "p.npz")
    assert back.words == prog.words
    np.testing.assert_array_equal(back.reference(x), graph.reference(x))
    np.testing.assert_array_equal(back.memory_image(x), prog.memory_image(x))


def test_halo_and_padding_channels_hold_the_zero_point():
    cfg = AccelConfig.preset("small")
    graph, x = conv_cases.make_case(conv_cases.ConvCase("k3-same", 12, 2))
    prog = compile_graph(graph, cfg, batch=2)
    mem = prog.memory_image(x)
    t = prog.layout["input"]
    view = prog._tensor_view(mem, t)
    (hy, hx), (b, h, w, c) = t["halo"], t["shape"]
    assert (hy, hx) == (1, 1) and t["cp"] == 8
    assert (view[:, 0] == graph.input_zp).all() and (view[:, :, 0] == graph.input_zp).all()
    assert (view[..., c:] == graph.input_zp).all()
    np.testing.assert_array_equal(view[:, hy:hy + h, hx:hx + w, :c], x)


def test_convolution_compute_tracks_scale_sim():
    """A 3x3 32->32 convolution on a 16x16 input: compute cycles against SCALE-Sim's
    weight-stationary count for the same layer as a GEMM (T = 256, K = 288, N = 32)."""
    cfg = AccelConfig.preset("small")
    b = conv_cases.GraphBuilder(np.random.default_rng(5), 16, 16, 32, 0)
    b.conv("conv", "input", 32, 3, 1, 1)
    graph = b.graph()
    prog = compile_graph(graph, cfg)
    x = np.random.default_rng(6).integers(-128, 128, (1, 16, 16, 32), dtype=np.int8)
    y, rep = Device(cfg, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, graph.reference(x))
    R, C = cfg.rows, cfg.cols
    scale_sim = -(-288 // R) * -(-32 // C) * (2 * R + C + 256 - 2) - 1
    ratio = rep.layers[0].compute_cycles / scale_sim
    print(f"compute {rep.layers[0].compute_cycles} vs SCALE-Sim {scale_sim}: {ratio:.2f}")
    assert ratio <= 1.2


def _single(op: QOp, shape, zp=0) -> QuantizedGraph:
    return QuantizedGraph([op], shape, 0.1, zp)


def test_padded_max_pool_needs_zero_point_minus_128():
    op = QOp("pool", "maxpool", ["input"], [3], 3, [1.0], 1.0, (4, 4, 8), kernel=(3, 3),
             stride=(2, 2), padding=(1, 1))
    with pytest.raises(CompileError, match="pool.*zero point -128"):
        compile_graph(_single(op, (8, 8, 8), zp=3), AccelConfig.preset("small"))


def test_wrong_output_shape_is_named():
    w = np.ones((3, 3, 4, 4), np.int8)
    op = QOp("c", "conv", ["input"], [0], 0, [1.0], 1.0, (6, 6, 4), w=w,
             bias=np.zeros(4, np.int32), mult=np.ones(4, np.int32), shift=np.zeros(4, np.int32),
             kernel=(3, 3))
    with pytest.raises(CompileError, match="c: output .*expected 4x4"):
        compile_graph(_single(op, (6, 6, 4)), AccelConfig.preset("small"))


def _one_conv_bit_exact(seed: int, shape: tuple, cout: int, k: int, pad: int, **spads) -> dict:
    """Compile one seeded k x k conv on ``shape`` (H, W, C) for ``small`` with ``spads``
    changed, run it on isasim, check it element by element; return its plan."""
    cfg = dataclasses.replace(AccelConfig.preset("small"), **spads)
    rng = np.random.default_rng(seed)
    b = conv_cases.GraphBuilder(rng, *shape, 0)
    b.conv("conv", "input", cout, k, 1, pad)
    prog = compile_graph(b.graph(), cfg)
    x = rng.integers(-128, 128, (1, *shape), dtype=np.int8)
    y, _ = Device(cfg, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, prog.reference(x), err_msg=f"seed={seed}")
    return prog.layout["tensors"][0]


def test_rows_wider_than_the_act_spad_run_in_segments():
    """A band of whole 42-pixel rows needs 126 act rows; with 64 the rows are cut into
    segments, and the result is bit-exact."""
    plan = _one_conv_bit_exact(1, (8, 40, 8), 8, 3, 1, act_spad_depth=64)
    assert 0 < plan["owt"] < 40


def test_kernel_too_big_for_the_wt_spad_runs_in_row_groups():
    """A 5x5 kernel on 8 rows needs 200 weight rows per input chunk; with 64 the MATMULs take
    two kernel rows at a time and accumulate, bit-exact."""
    plan = _one_conv_bit_exact(2, (9, 11, 12), 10, 5, 2, wt_spad_depth=64)
    assert (plan["kr"], plan["kc"]) == (64 // (5 * 8), 0)


def test_kernel_row_too_big_for_the_wt_spad_runs_in_tap_groups():
    """One row of a 9x9 kernel on 8 rows needs 72 weight rows; with 64 each MATMUL takes 8 taps
    of one kernel row, bit-exact."""
    plan = _one_conv_bit_exact(3, (12, 12, 8), 8, 9, 4, wt_spad_depth=64)
    assert (plan["kr"], plan["kc"]) == (1, 8)


def test_layer_too_big_for_the_scratchpads_is_named():
    cfg = dataclasses.replace(AccelConfig.preset("small"), act_spad_depth=8)
    b = conv_cases.GraphBuilder(np.random.default_rng(1), 12, 12, 8, 0)
    b.conv("big", "input", 8, 3, 1, 1)
    with pytest.raises(CompileError, match="big: no tiling fits .* the smallest band of input "
                                           "needs 9 act rows per input chunk"):
        compile_graph(b.graph(), cfg)


def test_device_memory_overflow_is_named():
    cfg = AccelConfig.preset("tiny")
    b = conv_cases.GraphBuilder(np.random.default_rng(1), 64, 64, 16, 0)
    b.conv("big", "input", 16, 3, 1, 1)
    with pytest.raises(CompileError, match="device memory"):
        compile_graph(b.graph(), cfg, batch=4)


def test_bad_batch_and_types():
    graph, _ = conv_cases.make_case(conv_cases.ConvCase("k1", 11))
    with pytest.raises(CompileError, match="Batch size"):
        compile_graph(graph, AccelConfig.preset("small"), batch=0)
    with pytest.raises(TypeError):
        compile_graph("not a graph", AccelConfig.preset("small"))
