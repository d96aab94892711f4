"""Board configurations and the bitstream report (the builds themselves: tests/test_fpga_build.py)."""
import pytest

from stamen.hw.board import BOARDS, board_config
from stamen.hw.params import AccelConfig
from stamen.sw.bitstream import BitstreamReport, tool_env


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
    from stamen.sw.bitstream import _platform
    spec = BOARDS[board]
    plan = _platform(spec).prepare(BoardTop(board), name="top")
    text = "\n".join(str(v) for v in plan.files.values() if isinstance(v, str))
    assert ("SB_SPRAM256KA" in text) == spec.spram
    assert "uart" in text.lower()
