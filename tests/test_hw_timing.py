# amaranth: UnusedElaboratable=no
"""``hw/timing.py`` is the one source of the pipeline latencies: it stays importable without
Amaranth (the host's models import it), and the RTL builds its delay lines from it. The RTL is
checked against each latency by the tests its docstrings name (``test_hw_matmul``,
``test_hw_os``, ``test_hw_array``, ``test_hw_dma``, ``test_hw_postproc``, ``test_hw_rs_pe``,
``test_hw_controller``)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from stamen.hw import rs_matmul, timing
from stamen.hw.params import AccelConfig
from stamen.hw.rs_matmul import RsMatmulEngine, rs_pe_config

ROOT = Path(__file__).resolve().parent.parent


def test_timing_imports_no_amaranth():
    """hw/timing.py imports only the standard library (and, for type hints, hw.params), and
    importing it loads no Amaranth module."""
    tree = ast.parse((ROOT / "hw" / "timing.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.module == "params", ast.dump(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(m.split(".")[0] in sys.stdlib_module_names for m in mods), ast.dump(node)
    code = ("import sys, stamen.hw.timing; "
            "sys.exit(any(m.split('.')[0] == 'amaranth' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_timing_exports_documented():
    """Every name in hw/timing.py's __all__ exists and has a docstring or a ``#:`` comment."""
    text = (ROOT / "hw" / "timing.py").read_text()
    for name in timing.__all__:
        value = getattr(timing, name)
        if callable(value):
            assert value.__doc__, name
        else:
            before = text.split(f"\n{name} = ")[0]
            assert before != text and "#: " in before[-300:], name


@pytest.mark.parametrize("cfg", [AccelConfig.preset(n) for n in ("tiny", "small", "large")],
                         ids=lambda c: c.name)
def test_bank_release_delay(cfg):
    """The ws bank release is the array's bank hold seen from the act and weight reads."""
    assert timing.bank_release_delay(cfg) == (timing.ACT_READ_LATENCY + cfg.rows + cfg.cols - 2
                                              - timing.WT_READ_LATENCY)


def test_rs_engine_refuses_unhandled_stride(monkeypatch):
    """The rs engine handles window strides 1 and 2: another RS_MAX_STRIDE raises at
    construction, not at import."""
    cfg = AccelConfig.preset("small-rs")
    RsMatmulEngine(cfg)
    monkeypatch.setattr(rs_matmul, "RS_MAX_STRIDE", 3)
    with pytest.raises(ValueError, match="maximum window stride must be 2, not RS_MAX_STRIDE = 3"):
        RsMatmulEngine(cfg)
    with pytest.raises(ValueError, match="maximum window stride"):
        rs_pe_config(cfg)
