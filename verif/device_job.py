"""Run memory images on the whole device under Verilator: build once per config, then one job per run.

This is the Verilator backend of ``stamen.Device``: it generates ``SimDevice``'s Verilog into
``build/<config>-<hash>/``, builds it (cached), and runs :mod:`stamen.verif.tb_device` on a job file.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.lib import data

from stamen.hw import isa
from stamen.hw.params import COUNTER_WIDTH, AccelConfig
from stamen.sw.run_result import RunResult
from stamen.verif import vlrun

__all__ = ["TOP", "perf_layout", "write_job", "read_job", "write_result", "read_result",
           "build_dir_for", "hw_digest", "build_device", "run_jobs", "Job", "MAX_LATENCY"]

#: Verilog module name of the simulated device.
TOP = "stamen_device"
#: Largest extra memory latency the simulated device memory supports.
MAX_LATENCY = 16


def perf_layout(counter_bits: int = COUNTER_WIDTH) -> data.StructLayout:
    """Return the layout of the ``perf`` port: one ``counter_bits`` field per PERF counter (the
    device's ``cfg.counter_bits``; ``hw.perf.perf_layout(cfg)``)."""
    return data.StructLayout({name: counter_bits for name in isa.PERF_COUNTERS})


def _words(image: np.ndarray, bus_bytes: int, start: int, count: int) -> dict[int, int]:
    """Return {word address: value} of the non-zero words ``start .. start + count - 1`` of
    ``image``."""
    view = np.ascontiguousarray(image[start * bus_bytes:(start + count) * bus_bytes])
    view = view.reshape(count, bus_bytes)
    nz = np.flatnonzero(view.any(axis=1))
    return {start + int(a): int.from_bytes(view[a].tobytes(), "little") for a in nz}


def write_job(path: Path, cfg: AccelConfig, image: np.ndarray, prog_addr: int, used_words: int,
              read_ranges: list[tuple[int, int]], mem_latency: int = 0, mem_stall: int = 0,
              max_cycles: int = 10**8) -> None:
    """Write a job file for :mod:`stamen.verif.tb_device`: the image's words below
    ``used_words`` and, with ``cfg.compress_acts``, its zero-row directory (the top of memory),
    the two regions the device may write (``regions``)."""
    regions = [(0, used_words)]
    if cfg.compress_acts:
        regions.append((cfg.zero_dir_base, cfg.zero_dir_words))
    words = {}
    for start, count in regions:
        words |= _words(image, cfg.mem_bus_bytes, start, count)
    meta = {"config_id": cfg.config_hash, "prog_addr": prog_addr, "mem_latency": mem_latency,
            "mem_stall": mem_stall, "max_cycles": max_cycles, "read_ranges": read_ranges,
            "bus_bytes": cfg.mem_bus_bytes, "regions": regions}
    addrs = np.array(list(words), dtype=np.int64)
    vals = np.frombuffer(b"".join(v.to_bytes(cfg.mem_bus_bytes, "little") for v in words.values()),
                         dtype=np.uint8)
    np.savez(path, meta=json.dumps(meta), addrs=addrs, vals=vals)


def read_job(path: str) -> dict:
    """Read a job file into a dict (``words`` maps address to value)."""
    with np.load(path if str(path).endswith(".npz") else f"{path}.npz") as f:
        job = json.loads(str(f["meta"]))
        bb = job["bus_bytes"]
        vals = f["vals"].reshape(-1, bb) if len(f["vals"]) else np.zeros((0, bb), np.uint8)
        job["words"] = {int(a): int.from_bytes(v.tobytes(), "little")
                        for a, v in zip(f["addrs"], vals)}
    return job


def _result_path(job_path) -> str:
    base = str(job_path)
    return (base[:-4] if base.endswith(".npz") else base) + ".result.npz"


def write_result(job_path, result: dict, reads: list[list[int]]) -> None:
    """Write the testbench's result next to the job."""
    bb = read_job(job_path)["bus_bytes"]
    blobs = {f"read{i}": np.frombuffer(b"".join(w.to_bytes(bb, "little") for w in r),
                                       dtype=np.uint8) for i, r in enumerate(reads)}
    np.savez(_result_path(job_path), meta=json.dumps({k: v for k, v in result.items()
                                                        if k != "perf"}),
             perf=np.asarray(result["perf"], np.uint64), **blobs)


def read_result(job_path) -> tuple[dict, list[np.ndarray]]:
    """Read a result: (meta dict with ``perf`` as a dict, list of byte arrays per read range)."""
    with np.load(_result_path(job_path)) as f:
        meta = json.loads(str(f["meta"]))
        meta["perf"] = dict(zip(isa.PERF_COUNTERS, (int(v) for v in f["perf"])))
        reads = [f[k] for k in sorted((k for k in f.files if k.startswith("read")),
                                      key=lambda k: int(k[4:]))]
    return meta, reads


def build_dir_for(cfg: AccelConfig) -> Path:
    """Return ``build/<name>-<hash>/``, the home of this config's Verilog and simulator."""
    return vlrun.BUILD_ROOT / f"{cfg.name}-{cfg.config_hash:08x}"


def hw_digest() -> str:
    """Return a digest of the RTL generator's sources (``hw/*.py``): a cached build is stale when
    it changes."""
    import hashlib

    import stamen.hw
    h = hashlib.sha256()
    for path in sorted(Path(stamen.hw.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build_device(cfg: AccelConfig, log=None) -> Path:
    """Generate the device's Verilog and config.json, and build it with Verilator (cached).

    The Verilog is regenerated when the configuration or the RTL sources change.
    """
    out = build_dir_for(cfg)
    with vlrun.dir_lock(out):
        vpath = _write_device_verilog(cfg, out, log)
    return vlrun.build(vpath, TOP, out / "sim", log=log)


def _write_device_verilog(cfg: AccelConfig, out: Path, log) -> Path:
    from stamen.hw.simdevice import SimDevice
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict() | {"config_hash": cfg.config_hash},
                                                indent=2) + "\n")
    vpath = out / f"{TOP}.v"
    stamp = out / "hw.stamp"
    digest = hw_digest()
    if not (vpath.exists() and stamp.exists() and stamp.read_text() == digest):
        if log:
            log(f"generating Verilog for config {cfg.name} ({cfg.rows}x{cfg.cols})")
        vpath = vlrun.write_verilog(SimDevice(cfg, max_latency=MAX_LATENCY), TOP, out)
        stamp.write_text(digest)
    return vpath


@dataclass
class Job:
    """One memory image to run: what to load, where the program starts, what to read back."""
    image: np.ndarray
    prog_addr: int
    used_words: int
    read_ranges: list
    mem_latency: int = 0
    mem_stall: int = 0
    max_cycles: int = 10**8


def run_jobs(cfg: AccelConfig, jobs: list[Job], log=None, name: str = "job") -> list[RunResult]:
    """Run memory images one after another in one Verilator process; return one result each."""
    for job in jobs:
        if not 0 <= job.mem_latency <= MAX_LATENCY:
            raise ValueError(f"Memory latency must be in [0, {MAX_LATENCY}], "
                             f"not {job.mem_latency!r}")
        if not 0 <= job.mem_stall <= 7:
            raise ValueError(f"Memory stall level must be in [0, 7] (eighths), "
                             f"not {job.mem_stall!r}")
    t0 = time.perf_counter()
    sim_dir = build_device(cfg, log=log)
    folder = build_dir_for(cfg) / "jobs"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, job in enumerate(jobs):
        path = folder / f"{name}-{os.getpid()}-{i}.npz"
        write_job(path, cfg, job.image, job.prog_addr, job.used_words, job.read_ranges,
                  job.mem_latency, job.mem_stall, job.max_cycles)
        paths.append(path)
    if log:
        log(f"running {len(jobs)} program(s) on the Verilator-simulated device")
    vlrun.run_test(sim_dir, TOP, "stamen.verif.tb_device",
                   extra_env={"STAMEN_JOBS": os.pathsep.join(map(str, paths))})
    results = []
    for path in paths:
        meta, reads = read_result(path)
        results.append(RunResult(done=bool(meta["done"]), error=meta["error"],
                                 fault_pc=meta["fault_pc"], timeout=bool(meta["timeout"]),
                                 config_id=meta["config_id"], ran=bool(meta["ran"]),
                                 perf=meta["perf"], reads=reads, wall_s=meta["wall_s"],
                                 total_s=time.perf_counter() - t0))
        path.unlink()
        Path(_result_path(path)).unlink()
    return results
