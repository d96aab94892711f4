"""The benchmark suites (``stamen bench``): the quick convolution and dataflow benches on the ISA
simulator write their CSV, JSON and PNG with ratios and energies computed from the measured runs,
and a wrong output fails."""
import csv
import json
import math

import numpy as np
import pytest

from stamen.hw import params
from stamen.hw.params import AccelConfig
from stamen.sw.apps.bench import common, conv, dataflow
from stamen.sw.apps.cli import main
from stamen.sw.analysis.energy import COSTS, estimate_energy
from stamen.sw.graph import QuantizedGraph
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.runtime.device import Device


def _scalesim_ws(t, k, n, rows, cols):
    """SCALE-Sim 3.0 weight-stationary compute cycles, restated here from its definition."""
    folds = math.ceil(k / rows) * math.ceil(n / cols)
    return folds * (2 * rows + cols + t - 2) - 1


def _scalesim_os(t, k, n, rows, cols):
    """SCALE-Sim 3.0 output-stationary compute cycles, restated here from its definition."""
    return math.ceil(t / rows) * math.ceil(n / cols) * (k + rows + cols - 2) - 1


def test_scalesim_ws_cycles_closed_form():
    # one fold of an 8x8 array streaming 64 rows: fill 2R+C-2 = 22 plus 64
    assert common.scalesim_ws_cycles(64, 8, 8, 8, 8) == 22 + 64 - 1
    assert common.scalesim_ws_cycles(256, 288, 32, 8, 8) == 36 * 4 * (22 + 256) - 1


def test_conv_layer_gemm_view():
    layer = common.ConvLayer("l", 28, 28, 128, 256, 3, 2, 1)
    assert layer.out_hw == (14, 14)
    assert layer.gemm == (196, 9 * 128, 256)
    conv2 = conv.CONV_LAYERS[0]
    assert conv2.out_hw == (27, 27) and conv2.gemm == (729, 2400, 256)


def test_quick_conv_bench_on_isasim(tmp_path, capsys):
    assert main(["bench", "--backend", "isasim", "--quick", "--suite", "conv",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "conv.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = json.loads((tmp_path / "conv.json").read_text())
    assert (tmp_path / "conv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "gemm.csv").exists()
    assert len(rows) == len(data) == len(common.CONV_PRESETS) * len(conv.QUICK_CONV_LAYERS)
    assert [r["array"] for r in rows] == ["8x8", "16x16"]
    for r, d in zip(rows, data):
        cfg = AccelConfig.preset(r["preset"])
        layer = conv.QUICK_CONV_LAYERS[0]
        t, k, n = (int(r[c]) for c in ("gemm_t", "gemm_k", "gemm_n"))
        assert (t, k, n) == (64, 9 * layer.cin, layer.cout) == (d["gemm_t"], d["gemm_k"],
                                                                d["gemm_n"])
        assert r["set"] == "layer" and r["backend"] == "isasim" and r["error"] == ""
        assert r["bit_exact"] == "True"
        assert int(r["mem_bytes"]) == common.BIG_MEM_BYTES
        ss = int(r["scalesim_ws_cycles"])
        assert ss == _scalesim_ws(t, k, n, cfg.rows, cfg.cols)
        compute, total = int(r["compute_cycles"]), int(r["total_cycles"])
        assert 0 < compute < total
        # the ratios come from the measured cycles, and are sane
        assert float(r["compute_ratio"]) == pytest.approx(compute / ss, abs=1e-4)
        assert float(r["e2e_ratio"]) == pytest.approx(total / ss, abs=1e-4)
        assert 0.3 < float(r["compute_ratio"]) <= conv.COMPUTE_TARGET
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
    assert "compute_ratio" in out and conv.QUICK_CONV_LAYERS[0].name in out


def test_scalesim_os_cycles_closed_form():
    # one group of 8 output rows, one column fold: the K-step reduction plus fill R+C-2 = 14
    assert common.scalesim_os_cycles(8, 64, 8, 8, 8) == 64 + 14 - 1
    assert common.scalesim_os_cycles(64, 288, 32, 8, 8) == _scalesim_os(64, 288, 32, 8, 8)
    assert common.SCALESIM_FORMS == {"ws": common.scalesim_ws_cycles,
                                     "os": common.scalesim_os_cycles}


def test_dataflow_configs_come_from_the_config_code(monkeypatch):
    configs = dataflow.dataflow_configs()
    assert [c.dataflow for c in configs][:2] == ["ws", "os"]
    assert [c.name for c in configs][:2] == ["small", "small-os"]
    for cfg in configs:
        # the 8x8 small preset, only the dataflow differs
        assert cfg == AccelConfig.preset("small").replace(dataflow=cfg.dataflow)
    # a dataflow whose hardware appears joins the suite without a change in
    # sw/apps/bench/dataflow.py
    monkeypatch.setattr(params, "_IMPLEMENTED_DATAFLOWS", params.DATAFLOWS)
    assert [c.dataflow for c in dataflow.dataflow_configs()] == list(params.DATAFLOWS)


def test_quick_dataflow_bench_on_isasim(tmp_path, capsys):
    assert main(["bench", "--backend", "isasim", "--quick", "--suite", "dataflow",
                 "--out", str(tmp_path)]) == 0
    with open(tmp_path / "dataflow.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = json.loads((tmp_path / "dataflow.json").read_text())
    assert (tmp_path / "dataflow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "conv.csv").exists() and not (tmp_path / "gemm.csv").exists()
    configs = dataflow.dataflow_configs()
    layer = conv.QUICK_CONV_LAYERS[0]
    assert len(rows) == len(data) == len(configs)
    assert [r["dataflow"] for r in rows] == [c.dataflow for c in configs]
    by_df = {r["dataflow"]: r for r in rows}
    for r, d, cfg in zip(rows, data, configs):
        assert r["workload"] == r["layer"] == layer.name
        assert r["backend"] == "isasim" and r["error"] == "" and r["bit_exact"] == "True"
        assert r["array"] == f"{cfg.rows}x{cfg.cols}"
        assert int(r["mem_bytes"]) == common.BIG_MEM_BYTES
        t, k, n = (int(r[c]) for c in ("gemm_t", "gemm_k", "gemm_n"))
        assert (t, k, n) == layer.gemm
        macs, compute, total = (int(r[c]) for c in ("macs", "compute_cycles", "total_cycles"))
        assert macs == t * k * n and 0 < compute < total
        # SCALE-Sim's form of the row's own dataflow, and ratios from the measured cycles
        if r["dataflow"] == "rs":                 # SCALE-Sim models ws, os and is only
            assert r["scalesim_cycles"] == "" and "no rs form" in r["note"]
        else:
            form = {"ws": _scalesim_ws, "os": _scalesim_os}[r["dataflow"]]
            ss = int(r["scalesim_cycles"])
            assert ss == form(t, k, n, cfg.rows, cfg.cols)
            assert float(r["compute_ratio"]) == pytest.approx(compute / ss, abs=1e-4)
            assert 0.3 < float(r["compute_ratio"]) <= conv.COMPUTE_TARGET
        assert float(r["utilization"]) == pytest.approx(macs / (compute * cfg.rows * cfg.cols),
                                                        abs=1e-4)
        # the energy split recomputed from the CSV's own access columns and Eyeriss's costs
        dram = int(r["dram_bytes"])
        assert dram >= int(r["min_dram_bytes"]) > 0
        assert float(r["e_dram"]) == pytest.approx(COSTS["dram"] * dram)
        for level in ("buffer", "array", "rf", "mac"):
            assert float(r[f"e_{level}"]) == pytest.approx(
                COSTS[level] * int(r[f"{level}_accesses"])), level
        energy = float(r["energy"])
        assert energy == pytest.approx(sum(float(r[f"e_{lv}"]) for lv in COSTS))
        assert float(r["energy_per_mac"]) == pytest.approx(energy / int(r["issued_macs"]),
                                                           abs=1e-4)
        assert int(r["mac_accesses"]) == int(r["issued_macs"]) - int(r["gated_macs"])
        # relative to the ws row of the same layer
        ws = by_df["ws"]
        assert float(r["cycles_vs_ws"]) == pytest.approx(total / int(ws["total_cycles"]),
                                                         abs=1e-4)
        assert float(r["energy_vs_ws"]) == pytest.approx(energy / float(ws["energy"]),
                                                         abs=1e-4)
        assert d["compute_cycles"] == compute and d["energy"] == pytest.approx(energy)
        assert d["bit_exact"] is True
    # the same figures from an independent run of the layer on the os device
    graph, x = common.conv_layer_graph(layer, common.layer_seed(layer))
    cfg = AccelConfig.preset("small-os").replace(mem_bytes=common.BIG_MEM_BYTES)
    prog = compile_graph(graph, cfg)
    y, rep = Device(cfg, "isasim").run(prog, x)
    np.testing.assert_array_equal(y, graph.reference(x), err_msg=f"cfg={cfg}")
    os_row = by_df["os"]
    assert int(os_row["compute_cycles"]) == rep.layers[0].compute_cycles
    assert float(os_row["energy"]) == pytest.approx(estimate_energy(prog, rep).layers[0].total)
    # the dataflows differ: nothing is copied from one row to the other
    assert by_df["ws"]["compute_cycles"] != os_row["compute_cycles"]
    assert by_df["ws"]["e_rf"] != os_row["e_rf"]
    out = capsys.readouterr().out
    assert "RTL counters" in out and layer.name in out and "E/MAC" in out


@pytest.mark.parametrize("suite", ["conv", "dataflow"])
def test_wrong_output_fails_loudly(suite, tmp_path, monkeypatch, capsys):
    real = QuantizedGraph.reference

    def off_by_one(self, x):
        return (real(self, x).astype(np.int16) + 1).clip(-128, 127).astype(np.int8)
    monkeypatch.setattr(QuantizedGraph, "reference", off_by_one)
    assert main(["bench", "--backend", "isasim", "--quick", "--suite", suite,
                 "--out", str(tmp_path)]) == 1
    assert "not bit-exact" in capsys.readouterr().err
    rows = json.loads((tmp_path / f"{suite}.json").read_text())
    assert rows and not any(r["bit_exact"] for r in rows)


def test_bench_help_explains_every_suite(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("gemm", "conv", "dataflow", "sparsity", "isasim", "model_check", "SCALE-Sim",
                 "--quick", "small-os", "energy", "Eyeriss", "skipping"):
        assert word in out
