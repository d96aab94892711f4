"""The ``stamen`` command line."""
import json

import pytest

import cases
from stamen.hw.params import AccelConfig
from stamen.sw.cli import main
from stamen.sw.compiler import compile_gemm


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
