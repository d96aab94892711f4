"""Board configurations, the bitstream report, and the iCEBreaker build itself (``fpga``: Yosys
and nextpnr from PyPI place the whole board top; about 2 minutes on 2 cores)."""
import logging
import time
from pathlib import Path

import pytest

from stamen.hw.board import BOARDS, board_config
from stamen.hw.params import AccelConfig
from stamen.sw.apps.bitstream import BitstreamReport, build_bitstream, collision_free_script, tool_env


def test_board_configs():
    assert board_config("icebreaker") == AccelConfig.preset("tiny")
    ulx3s = board_config("ulx3s")
    assert (ulx3s.rows, ulx3s.cols, ulx3s.mem_bytes) == (8, 8, 1 << 17)
    assert ulx3s.name == "small-ulx3s"
    assert ulx3s.config_hash != AccelConfig.preset("small").config_hash
    with pytest.raises(ValueError, match="Board must be one of"):
        board_config("de0")
    assert set(BOARDS) == {"icebreaker", "ulx3s"}


def test_tools_come_from_pypi():
    env = tool_env()
    assert all("yowasp" in path for path in env.values())


def test_report_names_each_problem():
    report = BitstreamReport(board="icebreaker", device="iCE40UP5K", config="tiny",
                             resources={"logic cells": {"used": 6000, "available": 5280},
                                        "DSPs": {"used": 8, "available": 8}},
                             fmax_mhz=10.5, clock_mhz=12.0)
    assert not report.fits and not report.meets_timing
    problems = report.problems()
    assert problems[0] == "logic cells: 6000 used, only 5280 available"
    assert "Fmax 10.5 MHz is below the 12.0 MHz board clock" in problems[1]
    assert "FAILED" in report.table()
    ok = BitstreamReport(board="icebreaker", device="iCE40UP5K", config="tiny",
                         resources={"DSPs": {"used": 8, "available": 8}}, fmax_mhz=30.0,
                         clock_mhz=12.0)
    assert ok.problems() == [] and "fits and meets timing" in ok.table()


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s"])
def test_board_top_elaborates_for_its_platform(board, tmp_path):
    from stamen.hw.board import BoardTop
    from stamen.sw.apps.bitstream import build_platform
    spec = BOARDS[board]
    plan = build_platform(spec).prepare(BoardTop(board), name="top")
    text = "\n".join(str(v) for v in plan.files.values() if isinstance(v, str))
    assert ("SB_SPRAM256KA" in text) == spec.spram
    assert "uart" in text.lower()


def test_collision_free_script_names_every_spad_and_the_rx_fifo():
    tiny = AccelConfig.preset("tiny")
    script = collision_free_script(tiny)
    for s in ("act", "wt", "acc", "out", "param"):
        assert f"MEMID=\\{s}_spad" in script
    assert "*.rx_fifo/t:$memrd_v2" in script
    # a 1-row array reads the ACC row being written (transparent port): left alone
    assert "acc_spad" not in collision_free_script(tiny.replace(rows=1, bus_bytes=1))


@pytest.mark.fpga
def test_icebreaker_bitstream_fits_and_meets_timing(tmp_path):
    """The whole iCEBreaker top (tiny, UART bridge, SPRAM device memory) fits the iCE40UP5K and
    meets its 12 MHz clock."""
    try:
        tool_env()
    except RuntimeError as e:
        pytest.skip(str(e))
    log = logging.getLogger(__name__)
    t0 = time.perf_counter()
    report = build_bitstream("icebreaker", out_dir=tmp_path, log=log.info)
    log.info("icebreaker build in %.0f s:\n%s", time.perf_counter() - t0, report.table())
    assert not report.problems(), report.table()
    assert report.fits and report.meets_timing, report.table()
    assert Path(report.bitstream).stat().st_size > 0
    assert report.resources["logic cells"]["used"] <= 5280
    assert report.resources["DSPs"]["used"] == 8


def test_lone_flip_flops_counts_registers_without_their_own_lut():
    import importlib.util
    path = Path(__file__).parents[1] / "scripts" / "synth_ice40.py"
    spec = importlib.util.spec_from_file_location("synth_ice40", path)
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)

    def cell(kind, **conns):
        dirs = {p: "output" if p in ("O", "Q") else "input" for p in conns}
        return {"type": kind, "connections": conns, "port_directions": dirs}
    # bit 2: a LUT feeding only ff_a (packable); ff_b fed by ff_a (alone); bit 4 from a LUT that
    # also drives another LUT (ff_c alone); ff_d fed by a module input (alone)
    netlist = {"modules": {"top": {"ports": {"i": {"direction": "input", "bits": [9]}},
                                   "cells": {
        "lut_a": cell("SB_LUT4", I0=[1], O=[2]), "ff_a": cell("SB_DFF", D=[2], Q=[3]),
        "ff_b": cell("SB_DFFE", D=[3], Q=[5]), "lut_c": cell("SB_LUT4", I0=[5], O=[4]),
        "lut_d": cell("SB_LUT4", I0=[4], O=[6]), "ff_c": cell("SB_DFF", D=[4], Q=[7]),
        "ff_d": cell("SB_DFF", D=[9], Q=[8])}}}}
    assert synth.lone_flip_flops(netlist) == {"top": 3}
