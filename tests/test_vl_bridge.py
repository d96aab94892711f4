# amaranth: UnusedElaboratable=no
"""FpgaDevice (Accelerator + memory + UART host bridge) as Verilog under Verilator.

The board core is driven only through its UART pins by a cocotb UART model (``verif/tb_bridge.py``):
the bridge scenarios run against the real Verilog, and the host's real protocol code
(``Device(cfg, backend="fpga", port="socket://...")``, pyserial) talks to the simulated board over
a TCP socket relayed to the pins, running a compiled Linear layer bit-exact against golden.
"""
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest

import cases
from stamen.hw.fpga_device import FpgaDevice
from stamen.hw.params import AccelConfig
from stamen.sw import golden
from stamen.sw.compiler.driver import compile_linear
from stamen.sw.errors import ConfigMismatchError
from stamen.sw.runtime.device import Device
from stamen.verif import vlrun
from stamen.verif.device_job import hw_digest

pytestmark = pytest.mark.verilator
log = logging.getLogger(__name__)

TOP = "stamen_fpga"
#: 16 clock cycles per UART bit keeps the simulated UART cheap.
CLK_FREQ, BAUD = 1_600_000, 100_000
TIMEOUT_S = 0.02                          # 32000 cycles
CFG = AccelConfig.preset("tiny")
EXACT_COUNTERS = ("macs", "gated_macs", "dram_read_bytes", "dram_write_bytes", "instructions",
                  "skipped_macs")


@pytest.fixture(scope="module")
def board():
    """Build the board core once (cached by the Verilog and the RTL sources)."""
    dev = FpgaDevice(CFG, CLK_FREQ, BAUD, timeout_s=TIMEOUT_S)
    out = vlrun.BUILD_ROOT / "vl" / f"bridge-{CFG.name}-{CFG.config_hash:08x}"
    out.mkdir(parents=True, exist_ok=True)
    vpath, stamp = out / f"{TOP}.v", out / "hw.stamp"
    key = f"{hw_digest()} {CLK_FREQ} {BAUD} {TIMEOUT_S}"
    if not (vpath.exists() and stamp.exists() and stamp.read_text() == key):
        vpath = vlrun.write_verilog(dev, TOP, out)
        stamp.write_text(key)
    sim = vlrun.build(vpath, TOP, out / "sim", log=log.info)
    env = {"STAMEN_UART_DIVISOR": str(dev.divisor),
           "STAMEN_BRIDGE_TIMEOUT": str(dev.timeout_cycles),
           "STAMEN_CONFIG": json.dumps(CFG.to_dict())}
    return sim, env


def test_bridge_scenarios(board):
    sim, env = board
    vlrun.run_test(sim, TOP, "stamen.verif.tb_bridge", testcase="bridge_scenarios",
                   extra_env=env, seed=1234)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _linear(case, cfg):
    lin = cases.make_linear(case)
    prog = compile_linear(lin["w"], lin["bias"], lin["mult"], lin["shift"], lin["zp_in"],
                          lin["zp_out"], lin["relu"], cfg, m=case.m)
    want = golden.linear(lin["x"], lin["w"], lin["bias"], lin["mult"], lin["shift"],
                         lin["zp_in"], lin["zp_out"], lin["relu"])
    return prog, lin["x"], want


def test_linear_over_socket(board, tmp_path):
    sim, env = board
    port = _free_port()
    ready, stats = tmp_path / "ready", tmp_path / "stats.json"
    env = env | {"STAMEN_BRIDGE_PORT": str(port), "STAMEN_BRIDGE_READY": str(ready),
                 "STAMEN_BRIDGE_STATS": str(stats), "STAMEN_BRIDGE_SESSIONS": "2"}
    failures = []

    def simulate():
        try:
            vlrun.run_test(sim, TOP, "stamen.verif.tb_bridge", testcase="host_link", extra_env=env)
        except BaseException as e:              # reported by the main thread
            failures.append(e)

    thread = threading.Thread(target=simulate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not ready.exists():
        assert thread.is_alive() or not failures, f"simulation failed to start: {failures}"
        assert time.monotonic() < deadline, "the simulated board did not start listening"
        time.sleep(0.05)
    url = f"socket://127.0.0.1:{port}"

    # session 1: a program for another configuration is refused before anything is uploaded
    other = CFG.replace(zero_gate=not CFG.zero_gate, name="other")
    prog_o, x_o, _ = _linear(cases.CASES[0], other)
    with pytest.raises(ConfigMismatchError, match="the board reports config id"):
        Device(other, "fpga", port=url, baud=BAUD, timeout=30).run(prog_o, x_o)

    # session 2: compiled Linear layers, bit-exact against golden, counters as isasim's
    picked = [c for c in cases.CASES if c.name in ("odd", "sparse50")]
    items, wants = [], []
    for case in picked:
        prog, x, want = _linear(case, CFG)
        items.append((prog, x))
        wants.append(want)
    dev = Device(CFG, "fpga", port=url, baud=BAUD, timeout=30)
    t0 = time.perf_counter()
    got = dev.run_many(items)
    wall = time.perf_counter() - t0
    thread.join(timeout=120)
    assert not thread.is_alive(), "the simulation did not end after the host closed the port"
    if failures:
        raise failures[0]
    ref = Device(CFG, "isasim").run_many(items)
    for case, want, (y, report), (_, iref) in zip(picked, wants, got, ref):
        np.testing.assert_array_equal(y, want, err_msg=f"{case} cfg={CFG.name} over the bridge")
        # the board's memory answers a read the next cycle, like the ideal simulated memory
        assert (report.cycles, report.compute_cycles, report.issued_macs, report.gated_macs,
                report.dram_bytes) == (iref.cycles, iref.compute_cycles, iref.issued_macs,
                                       iref.gated_macs, iref.dram_bytes), str(case)
    figures = json.loads(stats.read_text())["sessions"][-1]
    log.info("%d Linear layers (%s) over the bridge: %d bytes host->board, %d bytes board->host, "
             "%.1f s wall, %d simulated cycles (%d device cycles)",
             len(items), ", ".join(map(str, picked)), figures["bytes_to_device"],
             figures["bytes_from_device"], wall, figures["sim_cycles"],
             sum(r.cycles for _, r in got))
    res = dev.runner.last_bridge_result                        # the last run's own counts
    assert 0 < res.bytes_sent < figures["bytes_to_device"]
    (vlrun.BUILD_ROOT / "vl" / "bridge-e2e.json").write_text(json.dumps(
        {"cases": [str(c) for c in picked], "wall_s": wall, "sim": figures,
         "last_run": {"bytes_sent": res.bytes_sent, "bytes_received": res.bytes_received,
                      "polls": res.polls, "phases": res.phases},
         "device_cycles": [r.cycles for _, r in got]}, indent=2))
