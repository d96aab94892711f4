"""The package's import rules, read from the source with ``ast`` (function-level imports count):

* ``stamen.hw`` imports only Amaranth, the standard library and itself;
* ``stamen.sw.golden`` imports only NumPy and the standard library;
* the compiler (``sw.compiler.*``) imports from ``hw`` only ``isa``, ``params`` and
  ``timing``, and takes its cost model from ``sw.sim.cycles``, never from ``sw.sim.isasim``;
* each layer of ``stamen.sw`` imports only the layers :data:`LAYERS` allows (the modules at the
  top of ``sw/`` are the ``core`` layer);
* no ``<x>.dataflow`` comparison in ``sw/`` outside the engine models (``sw/sim/engines.py``,
  ``sw/sim/*_engine.py``): behaviour that depends on the dataflow lives in them;
* no module imports ``tests``;
* no private name (``_x``) is imported from another module;
* no import cycles between modules.

``KNOWN`` lists what breaks these rules (empty since issue 14's first steps). The test fails on a
new violation and on a listed one that is gone, so the list only shrinks and stays true.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"stamen": ROOT / "stamen", "stamen.hw": ROOT / "hw", "stamen.sw": ROOT / "sw",
            "stamen.verif": ROOT / "verif"}
STDLIB = set(sys.stdlib_module_names)
COMPILER = "stamen.sw.compiler"
COMPILER_HW = {"stamen.hw.isa", "stamen.hw.params", "stamen.hw.timing"}

#: The layers of ``stamen.sw`` (and ``stamen.verif``) and the layers each may import, bottom up.
LAYERS = {
    "core": set(),
    "frontend": {"core"},
    "sim": {"core"},
    "compiler": {"core", "sim"},
    "verif": {"core"},
    "runtime": {"core", "sim", "verif"},
    "analysis": {"core", "sim", "compiler", "runtime"},
    "apps": {"core", "frontend", "sim", "compiler", "verif", "runtime", "analysis"},
}
#: The modules that may compare ``.dataflow`` (see the module docstring).
ENGINE_MODELS = ("stamen.sw.sim.engines", "stamen.sw.sim.ws_engine", "stamen.sw.sim.os_engine",
                 "stamen.sw.sim.rs_engine")

#: Accepted violations, as the strings :func:`violations` makes.
KNOWN: set[str] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join((pkg, *parts))] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]):
    """Yield ``(target, names)``: every module ``name`` imports (absolute, resolved) and the
    names it takes from it."""
    is_pkg = path.stem == "__init__"
    pkg = name if is_pkg else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{base}.{n}" in mods]
            for n in subs:
                yield f"{base}.{n}", []
            yield base, [n for n in names if n not in subs]


def layer(module: str) -> str | None:
    """Return the :data:`LAYERS` entry of a module, None outside ``stamen.sw`` and ``verif``."""
    parts = module.split(".")
    if parts[:2] == ["stamen", "verif"]:
        return "verif"
    if parts[:2] != ["stamen", "sw"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in LAYERS else "core"


def _dataflow_tests(name: str, path: Path) -> list[str]:
    """Return a violation per comparison with a ``.dataflow`` attribute in module ``name``."""
    if not name.startswith("stamen.sw.") or name in ENGINE_MODELS:
        return []
    return [f"{name}:{node.lineno} compares .dataflow"
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Compare)
            and any(isinstance(x, ast.Attribute) and x.attr == "dataflow"
                    for x in (node.left, *node.comparators))]


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    """Return the module graph (stamen modules only) and the rule violations other than cycles."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    bad = []
    for name, path in mods.items():
        for target, names in _imports(name, path, mods):
            top = target.split(".")[0]
            if top == "__future__":
                continue
            if top in ("tests", "conftest") or target in ("cases", "conv_cases", "configs"):
                bad.append(f"{name} imports tests ({target})")
            inside = target in mods
            if inside and target != name:
                edges[name].add(target)
            if name.startswith("stamen.hw") and not (
                    top in STDLIB or top == "amaranth" or target.startswith("stamen.hw")):
                bad.append(f"{name} (hw) imports {target}")
            if name == "stamen.sw.golden" and not (top in STDLIB or top == "numpy"):
                bad.append(f"{name} imports {target}")
            if name.startswith(COMPILER) and target.startswith("stamen.hw.") and \
                    target not in COMPILER_HW:
                bad.append(f"{name} (compiler) imports {target}")
            if name.startswith(COMPILER) and target == "stamen.sw.sim.isasim":
                bad.append(f"{name} (compiler) imports {target}")
            src, dst = layer(name), layer(target)
            if src and dst and src != dst and dst not in LAYERS[src]:
                bad.append(f"{name} ({src}) imports {target} ({dst})")
            if inside and target != name:
                for n in names:
                    if n.startswith("_") and not n.startswith("__"):
                        bad.append(f"{name} imports private {target}.{n}")
        bad += _dataflow_tests(name, path)
    return edges, bad


def _cycles(edges: dict[str, set[str]]) -> list[str]:
    """Return each strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append("import cycle: " + " <-> ".join(sorted(comp)))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def violations() -> set[str]:
    edges, bad = _graph()
    return set(bad) | set(_cycles(edges))


def test_import_rules():
    found = violations()
    new, gone = sorted(found - KNOWN), sorted(KNOWN - found)
    assert not new, "new import-rule violations:\n  " + "\n  ".join(new)
    assert not gone, "fixed, so remove from KNOWN in tests/test_layers.py:\n  " + "\n  ".join(gone)


def test_the_rules_can_fail(tmp_path, monkeypatch):
    """A module that breaks each rule is caught (the checker is not vacuous)."""
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("from stamen.sw.runtime.device import Device\nfrom .b import _x\n")
    (tmp_path / "b.py").write_text("def f():\n    from . import a\n_x = 1\n")
    monkeypatch.setitem(PACKAGES, "stamen.hw", tmp_path)
    edges, bad = _graph()
    assert "stamen.hw.a (hw) imports stamen.sw.runtime.device" in bad
    assert "stamen.hw.a imports private stamen.hw.b._x" in bad
    assert "import cycle: stamen.hw.a <-> stamen.hw.b" in _cycles(edges)


def test_the_layer_rules_can_fail(tmp_path, monkeypatch):
    """A sim module that imports the runtime and a compiler module that branches on the dataflow
    are caught."""
    for sub in ("sim", "compiler"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    (tmp_path / "sim" / "x.py").write_text("from ..runtime.device import Device\n")
    (tmp_path / "compiler" / "y.py").write_text("def f(cfg):\n    return cfg.dataflow == 'rs'\n")
    monkeypatch.setitem(PACKAGES, "stamen.sw", tmp_path)
    _, bad = _graph()
    assert "stamen.sw.sim.x (sim) imports stamen.sw.runtime.device (runtime)" in bad
    assert "stamen.sw.compiler.y:2 compares .dataflow" in bad
