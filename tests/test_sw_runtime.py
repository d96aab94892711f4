"""The runtime's golden and isasim backends, its report, and its refusals."""
import csv

import numpy as np
import pytest

import cases
import stamen
from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import compile_gemm, compile_linear
from stamen.sw.errors import ConfigMismatchError, DeviceError
from stamen.sw.runtime.device import Device


def _linear(case, cfg):
    lin = cases.make_linear(case)
    prog = compile_linear(lin["w"], lin["bias"], lin["mult"], lin["shift"], lin["zp_in"],
                          lin["zp_out"], lin["relu"], cfg, m=case.m)
    want = golden.linear(lin["x"], lin["w"], lin["bias"], lin["mult"], lin["shift"],
                         lin["zp_in"], lin["zp_out"], lin["relu"])
    return prog, lin["x"], want


@pytest.mark.parametrize("backend", ["golden", "isasim"])
def test_backends_agree_with_golden(backend):
    cfg = AccelConfig.preset("tiny")
    for case in cases.SMALL_CASES:
        prog, x, want = _linear(case, cfg)
        y, report = Device(cfg, backend).run(prog, x)
        np.testing.assert_array_equal(y, want, err_msg=f"{case} backend={backend}")
        assert report.macs == case.m * case.k * case.n
        if backend == "isasim":
            assert report.cycles >= report.compute_cycles > 0
            assert 0 < report.utilization <= 1.0


def test_report_table_and_csv(tmp_path):
    cfg = AccelConfig.preset("small")
    case = cases.CASES[9]
    prog, x, _ = _linear(case, cfg)
    _, report = Device(cfg, "isasim").run(prog, x)
    text = report.table()
    assert "utilization" in text and "total" in text and "linear" in text
    report.to_csv(tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["name"] for r in rows] == ["linear", "total"]
    assert int(rows[-1]["macs"]) == case.m * case.k * case.n
    assert int(rows[0]["cycles"]) <= int(rows[-1]["cycles"])
    assert report.issued_macs == report.total.issued_macs


def test_wrong_config_is_refused_before_running():
    small = AccelConfig.preset("small")
    x, w, zp = cases.make_gemm(cases.CASES[4])
    prog = compile_gemm(w, small, m=x.shape[0], zp=zp)
    for backend in ("golden", "isasim"):
        with pytest.raises(ConfigMismatchError, match="recompile"):
            Device(small.replace(rows=16), backend).run(prog, x)


def test_isasim_fault_becomes_device_error():
    cfg = AccelConfig.preset("tiny")
    x, w, zp = cases.make_gemm(cases.CASES[4])
    prog = compile_gemm(w, cfg, m=x.shape[0], zp=zp)
    prog.words[1] = 0xF
    with pytest.raises(DeviceError, match="ILLEGAL_OPCODE") as err:
        Device(cfg, "isasim").run(prog, x)
    assert err.value.code == isa.ErrorCode.ILLEGAL_OPCODE


def test_bad_device_arguments():
    cfg = AccelConfig.preset("tiny")
    with pytest.raises(ValueError, match="backend must be one of"):
        Device(cfg, "gpu")
    with pytest.raises(TypeError, match="AccelConfig"):
        Device("tiny")
    x, w, zp = cases.make_gemm(cases.CASES[4])
    prog = compile_gemm(w, cfg, m=x.shape[0], zp=zp)
    with pytest.raises(ValueError):
        Device(cfg, "isasim").run(prog, x[:, :-1])


def test_public_api_names():
    for name in stamen.__all__:
        assert getattr(stamen, name) is not None
    assert stamen.compile.__name__ == "compile_model"
    with pytest.raises(AttributeError):
        stamen.no_such_thing
