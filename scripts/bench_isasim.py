#!/usr/bin/env python3
"""Time the ISA simulator, and its peak memory, on single large legal MATMULs.

Usage::

    python scripts/bench_isasim.py                       # every preset and case below
    python scripts/bench_isasim.py --preset small-rs --case rs_k4096
    python scripts/bench_isasim.py --out build/bench/isasim.json --limit-gb 4 --timeout 900

Each (preset, case) runs in a fresh child process (``--one``), so its figures are its own: the
wall time of ``IsaSim.run`` on a program ``LOAD ACT, LOAD WT, [LOOP,] MATMUL, HALT`` and the
peak resident memory the run adds (Linux ``VmHWM`` after the run minus ``VmRSS`` before it, the
high-water mark reset just before the run). The child's address space is capped at
``--limit-gb`` so that a simulator that scales with the trip count fails with ``MemoryError``
rather than taking the machine's memory. Cases (``m`` is capped by the ACC and ACT depths):

* ``deep_k``: ``MATMUL m=512 k_tiles=65535 act_stride=0 wt_repeat=1`` (issue 13: a deep
  reduction over one act tile; 33.5 M device cycles on ``small``);
* ``deep_k_wrap``: the same over 500 distinct act tiles (``LOOP k_wrap0=500``,
  ``act_stride=1``; 256 on ``tiny``, whose ACT spad holds 512 rows);
* ``rs_k4096``: ``MATMUL m=512 k_tiles=4096 act_stride=0 wt_repeat=1``;
* ``conv3``: ``LOOP k_wrap0=3``, ``MATMUL m=512 k_tiles=4095 act_stride=1`` (window mode on the
  row-stationary engine: 3-tap passes whose cycles with ``zero_skip`` follow the data);
  activations are half zero points.

Prints one line per run and writes every result to ``--out`` (JSON). Speed targets live here,
not in timed tests.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig
from stamen.sw.sim.isasim import IsaSim

PRESETS = ("tiny", "small", "small-os", "small-rs", "small-rs-skip", "large")
CASES = ("deep_k", "deep_k_wrap", "rs_k4096", "conv3")
PROG_ADDR = 16
DATA_ADDR = 0x400           # word address of the act rows, then the weight rows


def build(cfg: AccelConfig, case: str, seed: int = 1) -> tuple[np.ndarray, dict]:
    """Return the memory image of the case's program and its MATMUL operands."""
    R, C = cfg.rows, cfg.cols
    m = min(512, cfg.acc_spad_depth, cfg.act_spad_depth - 8)
    zp = -3
    loop = None
    if case == "deep_k":
        mm = dict(m=m, k_tiles=65535, act_stride=0, wt_repeat=1)
    elif case == "deep_k_wrap":
        loop = dict(k_wrap0=min(500, cfg.act_spad_depth - m))
        mm = dict(m=m, k_tiles=65535, act_stride=1, wt_repeat=1)
    elif case == "rs_k4096":
        mm = dict(m=m, k_tiles=4096, act_stride=0, wt_repeat=1)
    elif case == "conv3":
        loop = dict(k_wrap0=3)
        mm = dict(m=m, k_tiles=4095, act_stride=1, wt_repeat=1)
    else:
        raise ValueError(f"case must be one of {CASES}, not {case!r}")
    rng = np.random.default_rng(seed)
    act_rows = min(m + 500, cfg.act_spad_depth)
    acts = rng.integers(-128, 128, (act_rows, R), dtype=np.int8)
    acts[rng.random((act_rows, R)) < 0.5] = zp
    wts = rng.integers(-128, 128, (R, C), dtype=np.int8)
    bb = cfg.mem_bus_bytes
    mem = np.zeros(cfg.mem_bytes, np.uint8)
    act_words = cfg.spad_row_words("act")
    wt_addr = DATA_ADDR + act_rows * act_words
    mem[DATA_ADDR * bb: DATA_ADDR * bb + acts.size] = acts.view(np.uint8).reshape(-1)
    mem[wt_addr * bb: wt_addr * bb + wts.size] = wts.view(np.uint8).reshape(-1)
    words = [isa.encode(isa.Opcode.LOAD, spad=isa.Spad.ACT, spad_addr=0, rows=act_rows,
                        dram_addr=DATA_ADDR, dram_stride=act_words),
             isa.encode(isa.Opcode.LOAD, spad=isa.Spad.WT, spad_addr=0, rows=R,
                        dram_addr=wt_addr, dram_stride=cfg.spad_row_words("wt"))]
    if loop is not None:
        words.append(isa.encode(isa.Opcode.LOOP, **(dict(isa.LOOP_RESET) | loop)))
    args = dict(act_addr=0, wt_addr=0, acc_addr=0, zp=zp, accumulate=0, acc_max=0, **mm)
    words += [isa.encode(isa.Opcode.MATMUL, **args), isa.encode(isa.Opcode.HALT)]
    ib = isa.INSTR_BITS // 8
    for n, w in enumerate(words):
        at = (PROG_ADDR + n * isa.instr_words(cfg)) * bb
        mem[at:at + ib] = np.frombuffer(int(w).to_bytes(ib, "little"), np.uint8)
    return mem, args


def _status(key: str) -> int:
    """Return a ``/proc/self/status`` figure in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def run_one(preset: str, case: str) -> dict:
    """Run one case in this process; return its figures."""
    cfg = AccelConfig.preset(preset)
    mem, args = build(cfg, case)
    sim = IsaSim(cfg)
    res = dict(preset=preset, case=case, m=args["m"], k_tiles=args["k_tiles"])
    try:
        with open("/proc/self/clear_refs", "w") as f:      # reset VmHWM
            f.write("5")
    except OSError:
        pass
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    try:
        ctr = sim.run(mem, PROG_ADDR)
    except MemoryError as e:
        res.update(error=f"MemoryError: {e}")
    else:
        res.update(cycles=ctr["cycles"], macs=ctr["macs"], gated_macs=ctr["gated_macs"],
                   skipped_macs=ctr["skipped_macs"],
                   acc_checksum=int(sim.spads["acc"].astype(np.int64).sum()))
    res["seconds"] = round(time.perf_counter() - t0, 3)
    res["peak_mb"] = round((_status("VmHWM") - rss0) / 2 ** 20, 1)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", choices=PRESETS)
    ap.add_argument("--case", action="append", choices=CASES)
    ap.add_argument("--out", default="build/bench/isasim.json")
    ap.add_argument("--limit-gb", type=float, default=4.0,
                    help="address-space cap of each child (default 4 GB)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per child")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    presets, cases = a.preset or PRESETS, a.case or CASES
    if a.one:
        cap = int(a.limit_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(run_one(presets[0], cases[0])))
        return 0
    results = []
    for preset in presets:
        for case in cases:
            cmd = [sys.executable, __file__, "--one", "--preset", preset, "--case", case,
                   "--limit-gb", str(a.limit_gb)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
                res = (json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0
                       else dict(preset=preset, case=case,
                                 error=(p.stderr.strip().splitlines() or ["?"])[-1]))
            except subprocess.TimeoutExpired:
                res = dict(preset=preset, case=case, error=f"timeout after {a.timeout} s")
            results.append(res)
            fig = (f"{res['seconds']:8.2f} s {res['peak_mb']:8.1f} MB  cycles={res['cycles']}"
                   if "cycles" in res else f"{res.get('seconds', '-')} s  {res['error']}")
            print(f"{preset:14s} {case:9s} {fig}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(host=os.uname().nodename, results=results), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
