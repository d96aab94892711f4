"""The ``stamen`` command line."""
import json

import pytest

import cases
from stamen.hw.params import AccelConfig
from stamen.sw.apps.cli import main
from stamen.sw.compiler.driver import compile_gemm


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("verilog", "demo", "disasm", "bench"):
        assert cmd in out


def test_verilog_writes_build_folder(tmp_path, capsys):
    assert main(["verilog", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    cfg = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert cfg["rows"] == 4 and cfg["cols"] == 2
    assert cfg["config_hash"] == AccelConfig.preset("tiny").config_hash
    text = (tmp_path / "tiny" / "stamen_accel.v").read_text()
    assert "module stamen_accel" in text


def test_disasm_prints_program(tmp_path, capsys):
    cfg = AccelConfig.preset("tiny")
    x, w, zp = cases.make_gemm(cases.CASES[6])
    prog = compile_gemm(w, cfg, m=x.shape[0], zp=zp)
    prog.save(tmp_path / "p.prog")
    assert main(["disasm", str(tmp_path / "p.prog")]) == 0
    out = capsys.readouterr().out
    assert "MATMUL" in out and "HALT" in out and "LOAD" in out
    assert out.count("\n") >= len(prog.words)


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    (tmp_path / "junk.prog").write_bytes(b"not a program")
    assert main(["disasm", str(tmp_path / "junk.prog")]) == 2
    assert "not a Stamen program" in capsys.readouterr().err
    assert main(["verilog", "--preset", "tiny", "--rows", "100", "--out", str(tmp_path)]) == 2
    assert "at most 64x64" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["lenet", "resnet"])
def test_cnn_demo_on_isasim(tmp_path, capsys, model):
    assert main(["demo", "--model", model, "--backend", "isasim", "--images", "24",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bit-exact vs golden         100.0%" in out
    for row in ("float accuracy", "PyTorch quantized accuracy", "Stamen accuracy"):
        assert row in out
    assert (tmp_path / f"{model}.prog").exists()
    csv_text = (tmp_path / f"{model}_report.csv").read_text()
    assert csv_text.splitlines()[0].startswith("name,kind,shape,macs,cycles")
    assert "conv" in csv_text and "total" in csv_text


# -- errors: one line, exit 2 for the command line and its surroundings, 1 for a failed run -----
def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_training(monkeypatch):
    """Make the demo fail loudly if it ever gets as far as training."""
    import stamen.sw.apps.demo as demo

    def boom(*args, **kwargs):
        raise AssertionError("the demo started before its checks were done")

    monkeypatch.setattr(demo, "run_demo", boom)
    monkeypatch.setattr(demo, "run_cnn_demo", boom)


@pytest.fixture
def fake_board(monkeypatch):
    """Return a function that installs a FakeBoard behind every port the fpga code opens."""
    from fake_board import FakeBoard
    from stamen.sw.runtime import fpga

    def install(cfg, **knobs):
        fake = FakeBoard(cfg, **knobs)
        monkeypatch.setattr(fpga, "open_port", lambda port, baud: fake)
        return fake
    return install


@pytest.mark.parametrize("cmd", [["verilog", "--preset", "tiny"], ["demo"], ["bitstream"],
                                 ["bench", "--quick"]])
def test_unwritable_out_is_one_line(capsys, no_training, cmd):
    assert main([*cmd, "--out", "/dev/null/x"]) == 2
    _one_line_error(capsys, f"stamen {cmd[0]}: error: --out", "/dev/null is not a folder")


def test_unwritable_out_in_a_subprocess(tmp_path):
    """The real command, as a user runs it: no traceback, one line, exit 2, in well under the
    time training would take."""
    import subprocess
    import sys
    import time
    t0 = time.perf_counter()
    for cmd in (["verilog"], ["demo"], ["bitstream"], ["demo", "--backend", "fpga", "--port",
                                                       "/dev/ttyNOPE0"]):
        out = subprocess.run([sys.executable, "-m", "stamen.sw.apps.cli", *cmd, "--out",
                              "/dev/null/x" if cmd[-1] != "/dev/ttyNOPE0" else str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, (cmd, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
    assert "/dev/ttyNOPE0" in out.stderr and "No such file or directory" in out.stderr
    assert time.perf_counter() - t0 < 30


def test_demo_checks_the_port_before_training(capsys, no_training, tmp_path):
    assert main(["demo", "--backend", "fpga", "--port", "/dev/ttyNOPE0",
                 "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "cannot open the board's serial port '/dev/ttyNOPE0'",
                    "No such file or directory")
    assert main(["demo", "--backend", "fpga", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "--backend fpga needs --port")
    assert main(["demo", "--port", "/dev/ttyUSB1", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "--port applies only with --backend fpga")


def test_demo_refuses_a_silent_or_foreign_board(capsys, monkeypatch, no_training, fake_board,
                                                tmp_path):
    from stamen.hw.board import board_config
    tiny = board_config("icebreaker")
    fake_board(tiny, config_id=AccelConfig.preset("small").config_hash)
    assert main(["demo", "--backend", "fpga", "--port", "fake", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "reports config hash", "(configuration small)",
                    "--board icebreaker implements tiny")

    class Silent:
        port = "fake"

        def read(self, n):
            return b""

        def write(self, data):
            return len(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    from stamen.sw.runtime import fpga
    monkeypatch.setattr(fpga, "open_port", lambda port, baud: Silent())
    assert main(["demo", "--backend", "fpga", "--port", "fake", "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "no Stamen board answers on fake at 115200 Bd")


def test_demo_preset_must_match_the_board(capsys, no_training, tmp_path):
    assert main(["demo", "--backend", "fpga", "--board", "icebreaker", "--preset", "small",
                 "--port", "/dev/ttyNOPE0", "--out", str(tmp_path)]) == 2
    line = _one_line_error(capsys, "--preset small gives configuration small (8x8 ws",
                           "the icebreaker board implements tiny (4x2 ws")
    assert "rows 8 vs 4" in line and "/dev/ttyNOPE0" not in line   # before the port check
    assert main(["demo", "--backend", "fpga", "--board", "ulx3s", "--preset", "small",
                 "--port", "x", "--out", str(tmp_path)]) == 2
    assert "mem_bytes 1048576 vs 131072" in _one_line_error(capsys, "small-ulx3s")


def test_demo_uses_the_board_s_config(monkeypatch, fake_board, tmp_path):
    import stamen.sw.apps.demo as demo
    from stamen.hw.board import board_config
    seen = {}

    def fake_demo(cfg, backend, **kwargs):
        seen.update(cfg=cfg, backend=backend, **kwargs)
        return 0

    monkeypatch.setattr(demo, "run_demo", fake_demo)
    fake_board(board_config("icebreaker"))
    for preset in ([], ["--preset", "tiny"]):
        assert main(["demo", "--backend", "fpga", *preset, "--port", "fake",
                     "--out", str(tmp_path)]) == 0
        assert seen["cfg"] == board_config("icebreaker") and seen["port"] == "fake"


def test_failed_run_exits_1(monkeypatch, capsys, tmp_path):
    import stamen.sw.apps.demo as demo
    from stamen.hw import isa
    from stamen.sw.errors import DeviceError, DeviceTimeoutError, TransportError
    from stamen.verif.vlrun import TestFailure
    for error in (DeviceError(isa.ErrorCode.BAD_ARG, 0x40, "DMA rows must be non-zero"),
                  TestFailure("1 cocotb test(s) of stamen.verif.tb_device failed; log: x.log"),
                  DeviceTimeoutError("the board did not finish\nwithin max_cycles=10",
                                     "max_cycles"),
                  TransportError("lost the link to the board on fake during STATUS")):
        def failing(*args, **kwargs):
            raise error
        monkeypatch.setattr(demo, "run_demo", failing)
        assert main(["demo", "--backend", "isasim", "--out", str(tmp_path)]) == 1
        _one_line_error(capsys, "stamen demo: error:", str(error).split()[-1])
