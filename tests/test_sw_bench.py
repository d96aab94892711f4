"""The benchmark suites (``stamen bench``): the quick convolution bench on the ISA simulator writes
its CSV, JSON and PNG with ratios computed from the measured cycles, and a wrong output fails."""
import csv
import json
import math

import numpy as np
import pytest

from stamen.hw.params import AccelConfig
from stamen.sw import bench
from stamen.sw.cli import main
from stamen.sw.graph import QuantizedGraph


def _scalesim_ws(t, k, n, rows, cols):
    """SCALE-Sim 3.0 weight-stationary compute cycles, restated here from its definition."""
    folds = math.ceil(k / rows) * math.ceil(n / cols)
    return folds * (2 * rows + cols + t - 2) - 1


def test_scalesim_ws_cycles_closed_form():
    # one fold of an 8x8 array streaming 64 rows: fill 2R+C-2 = 22 plus 64
    assert bench.scalesim_ws_cycles(64, 8, 8, 8, 8) == 22 + 64 - 1
    assert bench.scalesim_ws_cycles(256, 288, 32, 8, 8) == 36 * 4 * (22 + 256) - 1


def test_conv_layer_gemm_view():
    layer = bench.ConvLayer("l", 28, 28, 128, 256, 3, 2, 1)
    assert layer.out_hw == (14, 14)
    assert layer.gemm == (196, 9 * 128, 256)
    conv2 = bench.CONV_LAYERS[0]
    assert conv2.out_hw == (27, 27) and conv2.gemm == (729, 2400, 256)


def test_quick_conv_bench_on_isasim(tmp_path, capsys):
    assert main(["bench", "--backend", "isasim", "--quick", "--suite", "conv",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "conv.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = json.loads((tmp_path / "conv.json").read_text())
    assert (tmp_path / "conv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "gemm.csv").exists()
    assert len(rows) == len(data) == len(bench.CONV_PRESETS) * len(bench.QUICK_CONV_LAYERS)
    assert [r["array"] for r in rows] == ["8x8", "16x16"]
    for r, d in zip(rows, data):
        cfg = AccelConfig.preset(r["preset"])
        layer = bench.QUICK_CONV_LAYERS[0]
        t, k, n = (int(r[c]) for c in ("gemm_t", "gemm_k", "gemm_n"))
        assert (t, k, n) == (64, 9 * layer.cin, layer.cout) == (d["gemm_t"], d["gemm_k"],
                                                                d["gemm_n"])
        assert r["set"] == "layer" and r["backend"] == "isasim" and r["error"] == ""
        assert r["bit_exact"] == "True"
        assert int(r["mem_bytes"]) == bench.BIG_MEM_BYTES
        ss = int(r["scalesim_ws_cycles"])
        assert ss == _scalesim_ws(t, k, n, cfg.rows, cfg.cols)
        compute, total = int(r["compute_cycles"]), int(r["total_cycles"])
        assert 0 < compute < total
        # the ratios come from the measured cycles, and are sane
        assert float(r["compute_ratio"]) == pytest.approx(compute / ss, abs=1e-4)
        assert float(r["e2e_ratio"]) == pytest.approx(total / ss, abs=1e-4)
        assert 0.3 < float(r["compute_ratio"]) <= bench.COMPUTE_TARGET
        assert float(r["e2e_ratio"]) > float(r["compute_ratio"])
        macs = t * k * n
        assert float(r["utilization"]) == pytest.approx(
            macs / (compute * cfg.rows * cfg.cols), abs=1e-4)
        assert 0 < float(r["utilization"]) <= 1
        dram, least = int(r["dram_bytes"]), int(r["min_dram_bytes"])
        assert dram >= least > 0 and float(r["dram_ratio"]) == pytest.approx(dram / least,
                                                                         abs=1e-3)
        assert d["compute_cycles"] == compute and d["bit_exact"] is True
    # the two arrays give different counts: nothing is copied from one row to the other
    assert rows[0]["compute_cycles"] != rows[1]["compute_cycles"]
    out = capsys.readouterr().out
    assert "compute_ratio" in out and bench.QUICK_CONV_LAYERS[0].name in out


def test_wrong_output_fails_loudly(tmp_path, monkeypatch, capsys):
    real = QuantizedGraph.reference

    def off_by_one(self, x):
        return (real(self, x).astype(np.int16) + 1).clip(-128, 127).astype(np.int8)
    monkeypatch.setattr(QuantizedGraph, "reference", off_by_one)
    assert main(["bench", "--backend", "isasim", "--quick", "--suite", "conv",
                 "--out", str(tmp_path)]) == 1
    assert "not bit-exact" in capsys.readouterr().err
    rows = json.loads((tmp_path / "conv.json").read_text())
    assert rows and not any(r["bit_exact"] for r in rows)


def test_bench_help_explains_both_suites(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("gemm", "conv", "isasim", "model_check", "SCALE-Sim", "--quick"):
        assert word in out
