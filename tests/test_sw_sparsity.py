"""The sparsity suite (``stamen bench --suite sparsity``): the quick run writes its CSV, JSON and
PNG; its figures obey the zero-skipping invariants, on the devices (``rs``: small-rs against
small-rs-skip, ``ws``: small against small-skip, on isasim) and on the Eyeriss-mapping model
(``rs-eyeriss``); the LeNet densities
and cycles are those of the real activations recomputed here, and a disagreement of the rs
models fails the run."""
import csv
import json

import numpy as np
import pytest

import stamen
from stamen.sw.apps import networks
from stamen.sw.apps.bench import sparsity
from stamen.sw.apps.cli import main
from stamen.sw.analysis.energy import COSTS, rs_conv_energy
from stamen.sw.analysis.eyeriss import RsConvShape, map_conv, rs_conv_cycles


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick sparsity suite, run with an unreachable speedup target: the run must still
    pass (the target is reported, not enforced)."""
    out = tmp_path_factory.mktemp("sparsity")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sparsity, "SPARSITY_TARGET", float("inf"))
        rc = main(["bench", "--quick", "--suite", "sparsity", "--out", str(out)])
    with open(out / "sparsity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rc, out, rows, json.loads((out / "sparsity.json").read_text())


def test_files_written(quick):
    rc, out, rows, data = quick
    assert rc == 0
    assert (out / "sparsity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "gemm.csv").exists() and not (out / "dataflow.csv").exists()
    assert len(rows) == len(data) and list(rows[0]) == list(sparsity.SPARSITY_FIELDS)
    sets = [r["set"] for r in data]
    assert sets.count("sweep") == ((len(sparsity.SKIP_DEVICES) + 1)
                                   * len(sparsity.QUICK_SPARSITY_LAYERS)
                                   * len(sparsity.QUICK_SPARSITY_DENSITIES))
    # the LeNet's four conv layers (conv1-3 and the Linear as a conv) and their total, on the
    # devices and on the model
    for df in ("rs", "ws", "rs-eyeriss"):
        assert [r["layer"] for r in data if r["set"] == "lenet" and r["dataflow"] == df] == [
            "conv1", "conv2", "conv3", "fc", "total"], df
    for r, d in zip(rows, data):
        assert r["error"] == "" and d["error"] == ""
        assert str(d["cycles_dense"]) == r["cycles_dense"]


@pytest.mark.parametrize("dataflow", ["rs", "ws", "rs-eyeriss"])
def test_sweep_invariants(quick, dataflow):
    _, _, _, data = quick
    layer = sparsity.QUICK_SPARSITY_LAYERS[0]
    oh, ow = layer.out_hw
    macs = layer.cout * oh * ow * layer.cin * layer.k * layer.k
    sweep = [r for r in data if r["set"] == "sweep" and r["dataflow"] == dataflow]
    assert [r["density"] for r in sweep] == list(sparsity.QUICK_SPARSITY_DENSITIES)
    for r in sweep:
        msg = f"{dataflow} seed={r['seed']} density={r['density']}"
        rows, cols = map(int, r["array"].split("x"))
        assert r["macs"] == macs and r["images"] == 1, msg
        assert r["speedup"] == pytest.approx(r["cycles_dense"] / r["cycles_skip"], abs=1e-4)
        if dataflow != "rs":     # the rs device's walk may cost a skipping pass a cycle
            assert 0 < r["cycles_skip"] <= r["cycles_dense"], msg
        # every MAC slot is issued with a dense stream; skipping issues the rest
        assert r["issued_macs_dense"] == macs, msg
        assert r["issued_macs_skip"] + r["skipped_macs"] == macs, msg
        assert r["skipped_share"] == pytest.approx(r["skipped_macs"] / macs, abs=1e-4)
        assert r["utilization_dense"] == pytest.approx(macs / (rows * cols * r["cycles_dense"]),
                                                       abs=1e-4)
        if dataflow in sparsity.SKIP_DEVICES:
            # the -skip presets also move act rows through the zero-row directory, whose words
            # may cost more than the few all-zero rows of random activations save
            assert r["energy_skip"] <= 1.05 * r["energy_dense"], msg
            if r["density"] <= 0.1:
                assert r["energy_skip"] < r["energy_dense"], msg
        else:
            assert r["energy_skip"] <= r["energy_dense"], msg
        # the draw's density (no padding: the share of zero MAC slots follows it closely)
        assert abs(r["measured_density"] - r["density"]) < 0.06, msg
        if dataflow == "ws":
            # ws skips whole act rows (R lanes) only; it gates every zero operand when dense
            assert r["skipped_share"] <= 1 - r["measured_density"], msg
            assert r["gated_macs_dense"] >= r["skipped_macs"], msg
        else:
            # rs skips (or gates) exactly the zero activations
            assert r["gated_macs_dense"] == r["skipped_macs"], msg
            assert abs(r["skipped_share"] - (1 - r["measured_density"])) < 0.05, msg
        if r["density"] == sparsity.SPARSITY_TARGET_DENSITY:
            assert r["meets_target"] is False, msg          # the target was made unreachable
            assert r["speedup"] > (1.0 if dataflow == "ws" else 1.05), msg
        else:
            assert r["meets_target"] == "", msg
    # a dense stream's timing does not depend on the values
    assert len({r["cycles_dense"] for r in sweep}) == 1
    full = sweep[-1]
    assert full["density"] == 1.0 and full["measured_density"] == 1.0
    assert full["speedup"] == 1.0 and full["cycles_skip"] == full["cycles_dense"]
    assert full["skipped_macs"] == 0
    if dataflow not in sparsity.SKIP_DEVICES:     # the devices: the directory's words (above)
        assert full["energy_ratio"] == 1.0
    # a lower density zeroes a superset of the positions
    skipped = [r["skipped_macs"] for r in sweep]
    assert skipped == sorted(skipped, reverse=True) and skipped[0] > skipped[-1]
    if dataflow != "rs-eyeriss":
        # the -skip presets load the layer's input through the zero-row directory: fewer DRAM
        # bytes as more of its act rows are all zero (densities ascending)
        dram = [r["dram_bytes_skip"] for r in sweep]
        assert len({r["dram_bytes_dense"] for r in sweep}) == 1
        assert dram == sorted(dram) and dram[0] < sweep[0]["dram_bytes_dense"], dram


@pytest.fixture(scope="module")
def lenet_inputs():
    """The digits LeNet as the suite trains it (fixed seed), its conv ops and their int8 inputs
    for the quick run's held-out images, evaluated here op by op with the golden model."""
    data = networks.digits_data()
    qg = stamen.quantize(networks.train(networks.DigitsLeNet(), data), data[0])
    x = qg.quantize_input(data[2][:sparsity.QUICK_SPARSITY_IMAGES].numpy())
    vals = {"input": x}
    for op in qg.ops:
        vals[op.name] = op.run(*(vals[t] for t in op.inputs))
    return {op.name: (op, vals[op.inputs[0]]) for op in qg.ops if op.kind == "conv"}


def test_lenet_densities_and_cycles_match_the_data(quick, lenet_inputs):
    _, _, _, data = quick
    rows = {r["layer"]: r for r in data if r["set"] == "lenet" and r["dataflow"] == "rs-eyeriss"}
    assert set(rows) == {*lenet_inputs, "total"}
    for name, (op, x) in lenet_inputs.items():
        r, zp = rows[name], op.zp_in[0]
        assert r["images"] == len(x) == sparsity.QUICK_SPARSITY_IMAGES
        assert r["measured_density"] == pytest.approx(np.mean(x != zp), abs=1e-4), name
        assert r["zp"] == zp
        assert r["cycles_skip"] <= r["cycles_dense"], name
        assert r["issued_macs_skip"] + r["skipped_macs"] == r["issued_macs_dense"], name
        # the layer on the array, rebuilt here: padded with its zero point, one image at a time
        (ph, pw), (kh, kw, _, cout) = op.padding, op.w.shape
        xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=zp)
        xp = xp.transpose(0, 3, 1, 2).copy()
        shape = RsConvShape(*xp.shape[1:], cout, kh, kw, op.stride[0])
        assert r["macs"] == op.macs_per_image * len(x) == shape.macs * len(x), name
        mapping = map_conv(shape, *sparsity.RS_ARRAY)
        for skip, tag in ((False, "dense"), (True, "skip")):
            got = [rs_conv_cycles(img, mapping, zp, skip) for img in xp]
            assert r[f"cycles_{tag}"] == sum(g.cycles for g in got), (name, tag)
            assert r[f"energy_{tag}"] == pytest.approx(
                rs_conv_energy(xp, mapping, zp, skip, pad=(ph, pw)).total), (name, tag)
    total = rows["total"]
    for col in ("macs", "cycles_dense", "cycles_skip", "skipped_macs"):
        assert total[col] == sum(rows[n][col] for n in lenet_inputs), col
    assert total["speedup"] == pytest.approx(total["cycles_dense"] / total["cycles_skip"],
                                             abs=1e-4)


def test_energy_rows_per_dataflow(quick, lenet_inputs):
    _, _, _, data = quick
    energy = [r for r in data if r["set"] == "energy"]
    lenet = {(r["layer"], r["dataflow"]): r for r in data if r["set"] == "lenet"}
    arrays = {f"{r}x{c}" for r, c in (sparsity.RS_ARRAY, (8, 8))}
    for name in lenet_inputs:
        mine = [r for r in energy if r["layer"] == name]
        assert {(r["dataflow"], r["array"]) for r in mine} == (
            {(df, "8x8") for df in ("ws", "os", "rs", "ws+skip", "rs+skip")}
            | {(df, a) for df in ("rs-eyeriss", "rs-eyeriss+skip") for a in arrays}), name
        by = {(r["dataflow"], r["array"]): r for r in mine}
        for r in mine:
            assert r["energy"] == pytest.approx(sum(r[f"e_{lv}"] for lv in COSTS)), name
            assert r["energy_vs_ws"] == pytest.approx(r["energy"] / by["ws", "8x8"]["energy"],
                                                      abs=1e-4), name
            assert r["compute_cycles"] > 0 and r["error"] == "", name
        for df in ("ws", "os", "rs", "ws+skip", "rs+skip"):
            assert by[df, "8x8"]["bit_exact"] is True, (name, df)
        rs_array = f"{sparsity.RS_ARRAY[0]}x{sparsity.RS_ARRAY[1]}"
        for dense, skip, array in (("rs", "rs+skip", "8x8"), ("ws", "ws+skip", "8x8"),
                                   ("rs-eyeriss", "rs-eyeriss+skip", rs_array)):
            d, k = by[dense, array], by[skip, array]
            # devices: the zero-row directory's words may cost a layer a little (the sweep)
            assert k["energy"] <= (1.05 if dense in sparsity.SKIP_DEVICES else 1) * d["energy"], \
                (name, dense)
            # the energy rows' cycles are the lenet rows' (one run on the device, one model)
            row = lenet[name, dense]
            assert (d["compute_cycles"], k["compute_cycles"]) == (
                row["cycles_dense"], row["cycles_skip"]), (name, dense)
        # ws and os differ: their rows are not copies
        assert by["ws", "8x8"]["e_rf"] != by["os", "8x8"]["e_rf"], name
    # over the network, the zero-row directory saves DRAM traffic on real activations
    dram = {df: sum(r["dram_bytes"] for r in energy if r["dataflow"] == df and r["array"] == "8x8")
            for df in ("ws", "ws+skip", "rs", "rs+skip")}
    assert dram["ws+skip"] < dram["ws"] and dram["rs+skip"] < dram["rs"], dram


def test_rs_models_that_disagree_fail_the_run(tmp_path, monkeypatch, capsys):
    real = sparsity.rs_conv_energy

    def one_more_mac(*args, **kwargs):
        er = real(*args, **kwargs)
        er.issued_macs += 1
        return er
    monkeypatch.setattr(sparsity, "rs_conv_energy", one_more_mac)
    assert main(["bench", "--quick", "--suite", "sparsity", "--out", str(tmp_path)]) == 1
    assert "the energy model issues" in capsys.readouterr().err
    rows = json.loads((tmp_path / "sparsity.json").read_text())
    assert all(r["error"] for r in rows if r["dataflow"] in ("rs-eyeriss", "rs-eyeriss+skip")
               and r["layer"] != "total")
    assert not any(r["error"] for r in rows
                   if r["dataflow"] in ("ws", "os", "rs", "ws+skip", "rs+skip"))
