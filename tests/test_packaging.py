"""The package as a user installs it: every subpackage is listed in pyproject.toml, and a regular
(non-editable) install runs a compiled model on isasim from outside the checkout."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed():
    table = _setuptools_table()
    listed = set(table["packages"])
    found = set()
    for pkg, folder in table["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((pkg, *rel)))
    assert found == listed, (f"pyproject.toml [tool.setuptools] packages: missing "
                             f"{sorted(found - listed)}, stale {sorted(listed - found)}")


_RUN = """
import sys
import numpy as np
import stamen
assert stamen.__file__.startswith(sys.argv[1]), stamen.__file__
from stamen.sw.compiler.driver import compile_gemm
from stamen.sw import golden
cfg = stamen.AccelConfig.preset("tiny")
rng = np.random.default_rng(int(sys.argv[2]))
w = rng.integers(-128, 128, (12, 5), dtype=np.int8)
x = rng.integers(-128, 128, (3, 12), dtype=np.int8)
prog = compile_gemm(w, cfg, m=3, zp=0)
y, report = stamen.Device(cfg, "isasim").run(prog, x)
assert np.array_equal(y, golden.gemm(x, w)), (y, golden.gemm(x, w))
print("ok", report.total.cycles)
"""


def test_regular_install_runs_from_outside_the_checkout(tmp_path):
    """``pip install .`` (not editable, no dependencies: they are this venv's) into a folder,
    then a process started elsewhere imports that copy and runs a GEMM bit-exact on isasim."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, cwd=tmp_path, capture_output=True, text=True)
    seed = 2026
    print(f"seed={seed}")
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", _RUN, str(target), str(seed)], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok "), out.stdout
