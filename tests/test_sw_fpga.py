"""Host-side failures of the fpga and Verilator backends, without hardware and without Verilator.

A port that cannot be opened, a link that breaks mid-run, a fault code the host does not know and
a board that never finishes each become a Stamen error that says what happened (``sw/errors.py``);
a ``BAD_ARG`` fault reported by a device is explained with the rule the faulting instruction
breaks, in the ISA simulator's words (``sw/faults.py``). The board is ``tests/fake_board.py``, an
in-process stand-in that speaks the bridge protocol and runs programs on the ISA simulator; the
Verilator backend's job runner is replaced the same way.
"""
import socket
import threading
import time

import numpy as np
import pytest

import cases
from fake_board import FakeBoard
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw.runtime import fpga
from stamen.sw.compiler.driver import compile_gemm
from stamen.sw.errors import (BoardError, DeviceError, DeviceTimeoutError, StamenError,
                              TransportError)
from stamen.sw.faults import FAULT_TEXT, bad_arg_reason, explain_fault
from stamen.sw.run_result import RunResult
from stamen.sw.sim.isasim import IsaSim
from stamen.sw.runtime.device import Device

TINY = AccelConfig.preset("tiny")
SKIP = AccelConfig.preset("small-skip")         # compress_acts


def _gemm(cfg):
    x, w, zp = cases.make_gemm(cases.CASES[4])
    return compile_gemm(w, cfg, m=x.shape[0], zp=zp), x


def _first(prog, opcode) -> int:
    return next(i for i, w in enumerate(prog.words) if isa.opcode_bits(w) == opcode.value)


def _patched(prog, index, word):
    out = _gemm(prog.cfg)[0]
    out.words = list(prog.words)
    out.words[index] = word
    return out


@pytest.fixture
def board(monkeypatch):
    """Return a function that installs a FakeBoard as the port every fpga Device opens."""
    def install(cfg, **knobs):
        fake = FakeBoard(cfg, **knobs)
        monkeypatch.setattr(fpga, "open_port", lambda port, baud: fake)
        return fake
    return install


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the fake board itself ---------------------------------------------------------------------
def test_fake_board_runs_like_isasim(board):
    prog, x = _gemm(TINY)
    board(TINY)
    y, report = Device(TINY, "fpga", port="fake").run(prog, x)
    y_ref, ref = Device(TINY, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, y_ref)
    assert report.cycles == ref.cycles > 0


# -- transport -------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["missing device", "refused socket", "unknown url"])
def test_unopenable_port_is_a_transport_error(where):
    port = {"missing device": "/dev/ttyNOPE0", "unknown url": "nope://board",
            "refused socket": f"socket://127.0.0.1:{_free_port()}"}[where]
    reason = {"missing device": "No such file or directory", "refused socket": "refused",
              "unknown url": "protocol 'nope' not known"}[where]
    prog, x = _gemm(TINY)
    with pytest.raises(TransportError, match="cannot open the board's serial port") as e:
        Device(TINY, "fpga", port=port).run(prog, x)
    assert port in str(e.value) and reason in str(e.value)
    assert isinstance(e.value, StamenError) and isinstance(e.value, OSError)
    assert type(e.value) is TransportError          # not pyserial's SerialException


@pytest.mark.parametrize("during", ["READ_CSR", "WRITE_MEM", "STATUS", "READ_MEM"])
def test_link_lost_mid_run(board, during):
    """The board disappears while the host reads its config ID, uploads, polls, reads back."""
    prog, x = _gemm(TINY)
    n_upload = -(-prog.used_words // fpga.DEFAULT_CHUNK_WORDS)
    # frames: config ID, the upload, START, STATUS, the counters, then the reads
    board(TINY, disconnect_after={"READ_CSR": 0, "WRITE_MEM": 1, "STATUS": 2 + n_upload,
                                  "READ_MEM": 4 + n_upload}[during])
    with pytest.raises(TransportError, match=f"lost the link to the board on fake://board during "
                                             f"{during}: device reports readiness"):
        Device(TINY, "fpga", port="fake").run(prog, x)


def test_socket_closed_mid_run():
    """A real pyserial socket whose far end closes after the first request."""
    prog, x = _gemm(TINY)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        conn.recv(64)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(TransportError, match=f"lost the link to the board on {url} during "
                                                 f"READ_CSR"):
            Device(TINY, "fpga", port=url, timeout=5).run(prog, x)
    finally:
        thread.join(timeout=5)
        server.close()


# -- what the board reports --------------------------------------------------------------------
def test_unknown_fault_code_is_a_board_error(board):
    prog, x = _gemm(TINY)
    board(TINY, fault_code=9, fault_pc=0x42)
    with pytest.raises(BoardError, match=r"fault code 9 at instruction word 0x42, which is not a "
                                         r"Stamen fault code \(known: 0 NONE, 1 ILLEGAL_OPCODE"):
        Device(TINY, "fpga", port="fake").run(prog, x)
    status = fpga.BoardStatus.from_bits((15 << 2) | 0b10)
    assert status == fpga.BoardStatus(busy=False, done=True, error=15)


def test_cycle_limit_names_max_cycles(board):
    prog, x = _gemm(TINY)
    board(TINY, hang=True, cycles_per_poll=600)
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeoutError) as e:
        Device(TINY, "fpga", port="fake", max_cycles=1000, timeout_s=30).run(prog, x)
    assert time.perf_counter() - t0 < 5
    assert e.value.limit == "max_cycles" and e.value.cycles == 1200
    msg = str(e.value)
    assert "did not finish within max_cycles=1,000 device cycles" in msg
    assert "cycle counter read 1,200" in msg and "reset it" in msg
    assert "wall-clock" not in msg
    assert isinstance(e.value, TimeoutError)


def test_wall_clock_limit_names_timeout_s(board):
    """A board whose cycle counter is stuck: the wall-clock limit ends the wait, and says so."""
    prog, x = _gemm(TINY)
    board(TINY, hang=True, cycles_per_poll=0)
    t0 = time.perf_counter()
    with pytest.raises(DeviceTimeoutError) as e:
        Device(TINY, "fpga", port="fake", max_cycles=1000, timeout_s=0.2).run(prog, x)
    assert time.perf_counter() - t0 < 5
    assert e.value.limit == "timeout_s" and e.value.cycles == 0
    msg = str(e.value)
    assert "did not finish within timeout_s=0.2 s of wall-clock time" in msg
    assert "cycle counter read 0, below max_cycles=1,000" in msg


def test_batch_stops_after_a_timeout(board):
    """The board keeps running a program that timed out: the rest of the batch is not sent."""
    prog, x = _gemm(TINY)
    fake = board(TINY, hang=True, cycles_per_poll=600)
    out = Device(TINY, "fpga", port="fake", max_cycles=1000).run_many(
        [(prog, x), (prog, x)], return_exceptions=True)
    assert isinstance(out[0], DeviceTimeoutError)
    assert isinstance(out[1], BoardError) and "not run: the board is still running" in str(out[1])
    assert fake.busy


def test_limits_are_checked():
    for bad in ({"timeout_s": 0}, {"timeout_s": -1.0}, {"max_cycles": 0}, {"timeout": 0}):
        with pytest.raises(ValueError, match="must be a positive"):
            Device(TINY, "fpga", port="fake", **bad)
    for bad in ({"timeout_s": "5"}, {"max_cycles": 1.5}, {"max_cycles": True}):
        with pytest.raises(TypeError, match="must be a positive"):
            Device(TINY, "fpga", port="fake", **bad)
    assert Device(TINY, "fpga", port="fake", timeout=2).runner.timeout_s == 120
    assert Device(TINY, "fpga", port="fake", timeout_s=float("inf")).runner.timeout_s == float("inf")


# -- BAD_ARG explained as the ISA simulator explains it -------------------------------------
def bad_arg_programs(cfg):
    prog, x = _gemm(cfg)
    load, mm = _first(prog, isa.Opcode.LOAD), _first(prog, isa.Opcode.MATMUL)
    rq = _first(prog, isa.Opcode.REQUANT) if any(
        isa.opcode_bits(w) == isa.Opcode.REQUANT.value for w in prog.words) else mm
    dma = dict(spad_addr=0, rows=1, dram_addr=0, dram_stride=1)
    progs = {
        "bad spad selector": (load, isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, **dma)
                              | (7 << _spad_offset())),
        "load rows 0": (load, isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT,
                                         **(dma | {"rows": 0}))),
        "matmul m 0": (mm, isa.encode(isa.Opcode.MATMUL, act_addr=0, wt_addr=0, acc_addr=0, m=0,
                                      k_tiles=1, act_stride=1, zp=0, accumulate=0)),
        "requant rows 0": (rq, isa.encode(isa.Opcode.REQUANT, acc_addr=0, out_addr=0,
                                          param_addr=0, rows=0, zp_out=0, relu=0)),
    }
    if cfg.compress_acts:
        progs["compress load into wt"] = (load, isa.encode(
            isa.Opcode.LOAD, spad=isa.Spad.WT, compress=1, zp=0, **dma))
        progs["compress store from act"] = (load, isa.encode(
            isa.Opcode.STORE, spad=isa.Spad.ACT, compress=1, zp=0, **dma))
    else:
        progs["compress without compress_acts"] = (load, isa.encode(
            isa.Opcode.LOAD, spad=isa.Spad.ACT, compress=1, zp=0, **dma))
    return {name: (_patched(prog, i, word), i) for name, (i, word) in progs.items()}, x


def _spad_offset() -> int:
    args = isa.Instr.as_shape()["args"]
    dma = isa.Args.as_shape()["dma"]
    return args.offset + dma.offset + isa.DmaArgs.as_shape()["spad"].offset


@pytest.mark.parametrize("cfg", [TINY, SKIP], ids=lambda c: c.name)
def test_bad_arg_reason_on_the_board_is_isasim_s(board, cfg):
    progs, x = bad_arg_programs(cfg)
    iw = isa.instr_words(cfg)
    for name, (prog, index) in progs.items():
        board(cfg)
        with pytest.raises(DeviceError) as on_board:
            Device(cfg, "fpga", port="fake").run(prog, x)
        with pytest.raises(DeviceError) as on_isasim:
            Device(cfg, "isasim").run(prog, x)
        assert on_board.value.code == on_isasim.value.code == isa.ErrorCode.BAD_ARG, name
        assert on_board.value.pc == prog.prog_addr + index * iw, name
        assert str(on_board.value) == str(on_isasim.value), name
        assert "loop count" not in str(on_board.value)


def test_bad_arg_reason_on_verilator_is_isasim_s(monkeypatch):
    """The Verilator backend's results go through the same explanation (its job runner is
    replaced by the ISA simulator here: no build)."""
    from stamen.verif import device_job

    def fake_run_jobs(cfg, jobs, log=None, name="job"):
        out = []
        for job in jobs:
            mem = np.array(job.image, np.uint8)
            res = dict(error=0, fault_pc=0, perf=dict.fromkeys(isa.PERF_COUNTERS, 0))
            try:
                res["perf"] = IsaSim(cfg).run(mem, job.prog_addr)
            except DeviceError as e:
                res.update(error=e.code.value, fault_pc=e.pc, perf=e.counters)
            out.append(RunResult(done=True, ran=True, timeout=False,
                                 config_id=cfg.config_hash, reads=[], wall_s=0.0,
                                 total_s=0.0, **res))
        return out

    monkeypatch.setattr(device_job, "run_jobs", fake_run_jobs)
    progs, x = bad_arg_programs(SKIP)
    items = [(p, x) for p, _ in progs.values()]
    got = Device(SKIP, "verilator").run_many(items, return_exceptions=True)
    want = Device(SKIP, "isasim").run_many(items, return_exceptions=True)
    for name, g, w in zip(progs, got, want):
        assert isinstance(g, DeviceError) and isinstance(w, DeviceError), name
        assert str(g) == str(w), name


def test_verilator_timeout_names_max_cycles(monkeypatch):
    from stamen.verif import device_job

    def never_done(cfg, jobs, log=None, name="job"):
        return [RunResult(done=False, error=0, fault_pc=0, timeout=True,
                          config_id=cfg.config_hash, ran=True,
                          perf=dict.fromkeys(isa.PERF_COUNTERS, 0) | {"cycles": 501},
                          reads=[], wall_s=0.1, total_s=0.1) for _ in jobs]

    monkeypatch.setattr(device_job, "run_jobs", never_done)
    prog, x = _gemm(TINY)
    with pytest.raises(DeviceTimeoutError, match="the simulated device did not finish within "
                                                 "max_cycles=500 device cycles") as e:
        Device(TINY, "verilator", max_cycles=500).run(prog, x)
    assert e.value.limit == "max_cycles" and "reset it" not in str(e.value)


_ARG_STRUCTS = {"dma": isa.DmaArgs, "matmul": isa.MatmulArgs, "requant": isa.RequantArgs,
                "loop": isa.LoopArgs, "perf": isa.PerfArgs}


def _random_word(rng, op) -> int:
    """An instruction of opcode ``op`` whose operands are often zero or small, and whose ``spad``
    selector may name no scratchpad."""
    word = op.value << isa.Instr.as_shape()["opcode"].offset
    kind = isa.OPCODE_ARGS[op]
    if kind is None:
        return word
    base = isa.Instr.as_shape()["args"].offset + isa.Args.as_shape()[kind].offset
    for _, f in _ARG_STRUCTS[kind].as_shape():
        r = rng.random()
        v = 0 if r < 0.25 else int(rng.integers(4)) if r < 0.6 else int(rng.integers(1 << f.width))
        word |= v << (base + f.offset)
    return word


@pytest.mark.parametrize("cfg", [TINY, SKIP], ids=lambda c: c.name)
def test_bad_arg_reason_agrees_with_isasim_on_random_words(cfg):
    """Random instructions: the host's reason is given exactly when the ISA simulator faults
    BAD_ARG on the instruction, and in the same words."""
    rng = np.random.default_rng(13)
    ops = [op for op in isa.Opcode if op != isa.Opcode.HALT]
    nbytes = isa.INSTR_BITS // 8
    rules = set()
    for i in range(600):
        word = _random_word(rng, ops[i % len(ops)])
        mem = np.zeros(cfg.mem_bytes, np.uint8)
        mem[:nbytes] = np.frombuffer(word.to_bytes(nbytes, "little"), np.uint8)
        reason = bad_arg_reason(cfg, word)
        try:
            IsaSim(cfg).run(mem.copy(), 0, max_instructions=2)
            fault = None
        except DeviceError as e:
            fault = e
        except TimeoutError:
            fault = None
        if reason is not None:
            assert fault is not None and fault.code == isa.ErrorCode.BAD_ARG, f"{word:#x}: {reason}"
            assert fault.pc == 0
            assert str(fault) == f"device fault BAD_ARG at instruction word 0x0: {reason}"
            assert explain_fault(cfg, isa.ErrorCode.BAD_ARG, 0, mem) == reason
            rules.add(reason.split(" must")[0].split(" needs")[0])
        elif fault is not None and fault.pc == 0:
            assert fault.code != isa.ErrorCode.BAD_ARG, f"{word:#x}: {fault}"
    want = {"DMA rows", "REQUANT rows", "Illegal spad selector in instruction"}
    assert want <= {r.split(" 0x")[0] for r in rules}, rules
    assert any(r.startswith("MATMUL m=") for r in rules), rules
    assert any("compress=1" in r for r in rules), rules


def test_explain_fault_falls_back_to_the_general_text():
    mem = np.zeros(TINY.mem_bytes, np.uint8)
    assert explain_fault(TINY, isa.ErrorCode.SPAD_RANGE, 0, mem) == \
        FAULT_TEXT[isa.ErrorCode.SPAD_RANGE]
    assert explain_fault(TINY, isa.ErrorCode.BAD_ARG, None) == FAULT_TEXT[isa.ErrorCode.BAD_ARG]
    assert explain_fault(TINY, isa.ErrorCode.BAD_ARG, TINY.mem_words, mem) == \
        FAULT_TEXT[isa.ErrorCode.BAD_ARG]
    legal = isa.encode(isa.Opcode.SYNC)
    mem[:16] = np.frombuffer(legal.to_bytes(16, "little"), np.uint8)
    assert "breaks none of these rules" in explain_fault(TINY, isa.ErrorCode.BAD_ARG, 0, mem)
