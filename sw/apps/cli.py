"""The ``stamen`` command: generate Verilog, run the demo, disassemble programs, benchmark.

Every failure ends in one line on stderr, ``stamen <command>: error: <what happened>``, and an
exit status: 2 for a problem with the command line or its surroundings (a bad option value, an
``--out`` folder that cannot be written, a serial port that cannot be opened or where no board of
the expected configuration answers, a model that does not compile), found before any long work
where it can be (the demo checks its output folder and its board before training); 1 for a run
that failed (a device fault, a run over its limits, a link that broke, results that are not
bit-exact).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from stamen.hw.params import PRESETS, AccelConfig
from stamen.sw.apps.bench import SUITES as BENCH_SUITES, VERILATOR_BUDGET
from stamen.sw.errors import StamenError
from stamen.verif.vlrun import TestFailure

__all__ = ["main", "config_from_args", "UsageError", "DEFAULT_PRESET"]

#: The preset used when ``--preset`` is not given (for ``demo --backend fpga``: the board's).
DEFAULT_PRESET = "small"


class UsageError(Exception):
    """A problem with the command line or its surroundings, found before any work (exit 2)."""

_EPILOG = """examples:
  stamen demo                          digits MLP on the Verilator-simulated 8x8 device
  stamen demo --backend isasim         the same on the fast ISA simulator
  stamen verilog --preset tiny         write build/tiny/ (Verilog + config.json)
  stamen disasm build/demo/mlp.prog    print a compiled program as text
  stamen bench                         GEMMs and CNN conv layers vs SCALE-Sim, the ws / os / rs
                                       dataflows compared (cycles, energy), zero skipping on
                                       the rs device: CSV + PNG under build/bench/ (--help)
  stamen demo --model lenet --preset small-rs-skip --backend isasim
                                       the digits LeNet on the row-stationary device, skipping
                                       zero activations
  stamen bitstream --board icebreaker  iCE40UP5K bitstream + resource/Fmax report (YoWASP tools)
"""


def _log(msg: str) -> None:
    print(f"[stamen {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="configuration preset (default: small, an 8x8 weight-stationary array, "
                   "or with demo --backend fpga the board's configuration; "
                   "small-os / small-rs: output- / row-stationary; small-skip: small skipping "
                   "all-zero act rows; small-rs-skip: row-stationary skipping zero "
                   "activations; both -skip presets also keep all-zero act rows out of DRAM "
                   "traffic (the zero-row directory); tiny: 4x2 for the iCE40; large: 16x16)")
    p.add_argument("--rows", type=int, help="override the PE array rows")
    p.add_argument("--cols", type=int, help="override the PE array columns")
    p.add_argument("--no-zero-gate", action="store_true", help="disable zero gating")


def config_from_args(args: argparse.Namespace, base: AccelConfig | None = None) -> AccelConfig:
    """Return the preset named by ``--preset`` (when not given: ``base``, or else
    :data:`DEFAULT_PRESET`) with any ``--rows``/``--cols``/``--no-zero-gate`` overrides applied."""
    if args.preset is not None:
        cfg = AccelConfig.preset(args.preset)
    else:
        cfg = base if base is not None else AccelConfig.preset(DEFAULT_PRESET)
    changes = {}
    if args.rows is not None:
        changes["rows"] = args.rows
    if args.cols is not None:
        changes["cols"] = args.cols
    if getattr(args, "no_zero_gate", False):
        changes["zero_gate"] = False
    if changes:
        name = cfg.name + "-" + "-".join(f"{k}{v}" for k, v in changes.items())
        cfg = dataclasses.replace(cfg, name=name, **changes)
    return cfg


def _config_given(args: argparse.Namespace) -> bool:
    return (args.preset is not None or args.rows is not None or args.cols is not None
            or getattr(args, "no_zero_gate", False))


def _out_dir(path: str | Path, option: str) -> Path:
    """Create the output folder ``path`` (named ``option`` on the command line) and check that it
    can be written; return it.

    Raises
    ------
    UsageError
        When the folder cannot be created or written.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = e.strerror or str(e)
        for above in [path, *path.parents]:
            if above.exists():
                if not above.is_dir():
                    why = f"{above} is not a folder"
                break
        raise UsageError(f"{option}: cannot create the folder {str(path)!r}: {why}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option}: the folder {str(path)!r} is not writable")
    return path


def _describe(cfg: AccelConfig) -> str:
    return (f"{cfg.name} ({cfg.rows}x{cfg.cols} {cfg.dataflow}, {cfg.mem_bytes // 1024} KiB "
            f"device memory, config hash {cfg.config_hash:#010x})")


def _known_config(config_id: int) -> str:
    """Return the name of the preset or board configuration with hash ``config_id``, or ""."""
    from stamen.hw.board import BOARDS, board_config
    for cfg in [*PRESETS.values(), *(board_config(b) for b in BOARDS)]:
        if cfg.config_hash == config_id:
            return cfg.name
    return ""


def _fpga_config(args: argparse.Namespace) -> AccelConfig:
    """Return the configuration of ``--board``; an explicit ``--preset`` (or override) must give
    the same configuration."""
    from stamen.hw.board import board_config
    board_cfg = board_config(args.board)
    if not _config_given(args):
        return board_cfg
    want = config_from_args(args, base=board_cfg)
    if want.config_hash == board_cfg.config_hash:
        return board_cfg
    a, b = want.to_dict(), board_cfg.to_dict()
    diff = ", ".join(f"{k} {a[k]} vs {b[k]}" for k in a if k != "name" and a[k] != b[k])
    given = f"--preset {args.preset}" if args.preset is not None else "the options"
    raise UsageError(f"{given} gives configuration {_describe(want)}, but the {args.board} "
                     f"board implements {_describe(board_cfg)} (they differ in {diff}); leave "
                     f"out --preset to use the board's configuration")


def _check_board(args: argparse.Namespace, cfg: AccelConfig) -> None:
    """Open ``--port``, check that a board answers and implements ``cfg``, and close it again.

    Raises
    ------
    UsageError
        When the port cannot be opened, nothing answers, or the board reports another
        configuration.
    """
    from stamen.sw.runtime.fpga import BridgeError, probe_board
    from stamen.sw.errors import TransportError
    try:
        config_id = probe_board(args.port, args.baud, cfg)
    except TransportError as e:
        raise UsageError(f"--port: {e}") from None
    except BridgeError as e:
        raise UsageError(f"--port: no Stamen board answers on {args.port} at {args.baud} Bd "
                         f"({e}); is its bitstream loaded, and is --baud right?") from None
    if config_id != cfg.config_hash:
        known = _known_config(config_id)
        known = f" (configuration {known})" if known else ""
        raise UsageError(f"the board on {args.port} reports config hash {config_id:#010x}"
                         f"{known}, but --board {args.board} implements {_describe(cfg)}; pick "
                         f"the --board it was built for, or rebuild it with `stamen bitstream "
                         f"--board {args.board}`")


def _cmd_verilog(args) -> int:
    cfg = config_from_args(args)
    _out_dir(args.out, "--out")
    out = _out_dir(Path(args.out) / cfg.name, "--out")
    from amaranth.back import verilog

    from stamen.hw.top import Accelerator
    _log(f"generating Verilog for {cfg.name} ({cfg.rows}x{cfg.cols} {cfg.dataflow})")
    path = out / "stamen_accel.v"
    path.write_text(verilog.convert(Accelerator(cfg), name="stamen_accel", emit_src=False))
    (out / "config.json").write_text(json.dumps(cfg.to_dict() | {"config_hash": cfg.config_hash},
                                                indent=2) + "\n")
    print(f"wrote {path} and {out / 'config.json'} (config hash {cfg.config_hash:#010x})")
    return 0


def _cmd_disasm(args) -> int:
    from stamen.sw.compiler.driver import Program
    prog = Program.load(args.program)
    print(f"; config {prog.cfg.name} {prog.cfg.rows}x{prog.cfg.cols} hash {prog.config_hash:#010x}"
          f", {len(prog.words)} instructions at word {prog.prog_addr:#x}")
    print(prog.disassemble())
    return 0


def _cmd_demo(args) -> int:
    # every check that can fail comes before training
    opts = {}
    if args.backend == "fpga":
        if args.port is None:
            raise UsageError("--backend fpga needs --port, the board's serial port or a pyserial "
                             "URL (e.g. /dev/ttyUSB1)")
        cfg = _fpga_config(args)
        opts = {"port": args.port, "baud": args.baud}
    else:
        if args.port is not None:
            raise UsageError(f"--port applies only with --backend fpga, not --backend "
                             f"{args.backend}")
        cfg = config_from_args(args)
    if args.images < 0:
        raise UsageError(f"--images must be 0 (all) or a positive count, not {args.images}")
    if args.backend == "fpga":
        _check_board(args, cfg)
    save_dir = _out_dir(args.out, "--out")
    from stamen.sw.apps.demo import run_cnn_demo, run_demo
    if args.model == "mlp":
        return run_demo(cfg, backend=args.backend, images=args.images, save_dir=save_dir,
                        log=_log, **opts)
    return run_cnn_demo(cfg, args.model, backend=args.backend, images=args.images,
                        save_dir=save_dir, log=_log, **opts)


_BENCH_HELP = """Four suites. gemm and conv run on the small (8x8) and large (16x16)
weight-stationary presets, against SCALE-Sim 3.0's weight-stationary cycles
ceil(K/R)*ceil(N/C)*(2R+C+T-2)-1:

gemm      GEMMs M x K x N (T = M) on --backend: OUT/gemm.csv, gemm.json, gemm.png.
conv      AlexNet conv2-conv5, a 3x3 32->32 conv on 16x16, ResNet-18's 3x3 layers at 28x28
          and below (stride 1 and 2), each compiled by the graph compiler and compared as the
          GEMM T = output pixels, K = KH*KW*Cin, N = Cout (compute target <= 1.2):
          OUT/conv.csv, conv.json, conv.png with compute and end-to-end (with DMA) ratios,
          utilization and DRAM bytes against the minimum. Full-size layers need millions of
          cycles and more than the presets' 1 MiB, so they run on the ISA simulator (its cycle
          model equals the RTL counters for an ideal memory) with 16 MiB of device memory; the
          "backend" column says which backend produced each row. With --backend verilator,
          layers that fit 1 MiB and --verilator-budget cycles run on Verilator, and
          scaled-down layers run on both Verilator and isasim: the "model_check" rows record
          whether their counters agree.
dataflow  The Eyeriss comparison of dataflows with Stamen's own numbers: every implemented
          dataflow of the 8x8 array (ws = preset small, os = small-os, rs = small-rs) on
          the same layers, the conv suite's layers (16 MiB) and the
          digits LeNet and ResNet (trained, quantized, 16 held-out images), always on the ISA
          simulator (its cycle model equals the RTL counters for every dataflow; --backend
          does not apply). Per layer: compute and total cycles, SCALE-Sim's closed form of
          that dataflow (os: ceil(T/R)*ceil(N/C)*(K+R+C-2)-1; none for rs) and the ratio,
          utilization,
          DRAM bytes, and the energy model of sw/analysis/energy.py (access counts x Eyeriss costs
          DRAM 200, buffer 6, array 2, RF 1, MAC 1: total, split, per MAC), cycles and
          energy relative to ws: OUT/dataflow.csv, dataflow.json, dataflow.png.
sparsity  Zero gating vs zero skipping on the devices (ISA simulator, whose cycle model is
          the RTL's): rs (small-rs vs small-rs-skip: every zero activation of a convolution
          window) and ws (small vs small-skip: act rows whose every lane is zero), and on
          the Eyeriss mapping of the 12x14 array (rs-eyeriss:
          the models of sw/analysis/eyeriss.py and sw/analysis/energy.py): cycles, speedup, utilization,
          skipped MACs and energy against activation density 0.1..1.0 on seeded random
          layers (the target 1.7x at density 0.4 is reported, never a failure), on the
          digits LeNet's real conv inputs (20 held-out images, measured density), and per
          LeNet layer the energy of ws, os, rs, ws+skip and rs+skip (isasim runs) beside
          rs-eyeriss: OUT/sparsity.csv, sparsity.json, sparsity.png.

all (the default) runs the four. --quick runs the smallest GEMM and one small conv layer
(conv and dataflow suites; for sparsity one small layer at three densities and 4 images).
Every output is compared bit for bit with the golden model; a mismatch, a compile or device
error, a model check that disagrees or rs cycle and energy models that disagree on the MACs
exit with status 1 (after writing the files).
"""


def _cmd_bench(args) -> int:
    out = _out_dir(args.out, "--out")
    from stamen.sw.apps.bench import run_bench
    return run_bench(out_dir=out, backend=args.backend, log=_log, quick=args.quick,
                     suite=args.suite, verilator_budget=args.verilator_budget)


def _cmd_bitstream(args) -> int:
    out = _out_dir(args.out, "--out")
    from stamen.sw.apps.bitstream import build_bitstream
    report = build_bitstream(args.board, out_dir=out, log=_log)
    print(report.table())
    print(f"bitstream: {report.bitstream}; report: {Path(args.out) / args.board / 'report.json'}")
    return 0 if not report.problems() else 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``stamen`` command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="stamen", description="Stamen: an open int8 DNN accelerator (Amaranth RTL, Verilator "
        "simulation, PyTorch front end).", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verilog", help="write the accelerator's Verilog and config.json")
    _add_config_args(p)
    p.add_argument("--out", default="build", help="output folder (default: build)")
    p.set_defaults(func=_cmd_verilog)

    p = sub.add_parser("demo", help="digits MLP or CNN: PyTorch -> quantize -> compile -> run on "
                                    "the device")
    _add_config_args(p)
    p.add_argument("--model", default="mlp", choices=["mlp", "lenet", "resnet"],
                   help="mlp: 64-32-10 MLP (default); lenet: convolutions, BatchNorm, max "
                   "pooling, Linear; resnet: a residual block, a depthwise-separable block, "
                   "global average pooling (both from their torch.fx graphs)")
    p.add_argument("--backend", default="verilator",
                   choices=["verilator", "isasim", "golden", "fpga"],
                   help="where to run (default: verilator; fpga: a board built by `stamen "
                   "bitstream`, over its UART)")
    p.add_argument("--board", default="icebreaker", choices=["icebreaker", "ulx3s"],
                   help="with --backend fpga: which board; its configuration is used, and an "
                   "explicit --preset must be the same configuration")
    p.add_argument("--port", help="with --backend fpga: serial port or pyserial URL; checked, "
                   "with the board's configuration, before training")
    p.add_argument("--baud", type=int, default=115200, help="with --backend fpga: UART baud")
    p.add_argument("--images", type=int, default=0,
                   help="held-out images to run (default: all 360)")
    p.add_argument("--out", default="build/demo", help="where the program and report go")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("disasm", help="print a compiled program (.prog file) as text")
    p.add_argument("program", help="a program saved by Program.save (e.g. build/demo/mlp.prog)")
    p.set_defaults(func=_cmd_disasm)

    p = sub.add_parser("bench", help="GEMM and convolution benchmarks against SCALE-Sim's "
                       "closed forms; dataflows compared", description=_BENCH_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="verilator", choices=["verilator", "isasim"],
                   help="where the GEMMs, the model checks and the small conv layers run "
                   "(default: verilator; the dataflow suite always runs on isasim)")
    p.add_argument("--suite", default="all", choices=["all", *BENCH_SUITES],
                   help="which suite to run (default: all)")
    p.add_argument("--out", default="build/bench", help="where CSV, JSON and PNG go")
    p.add_argument("--quick", action="store_true",
                   help="only the smallest GEMM and one small conv layer (per dataflow in "
                   "the dataflow suite, no digits networks there; sparsity: three densities, "
                   "4 LeNet images)")
    p.add_argument("--verilator-budget", type=int, default=VERILATOR_BUDGET, metavar="CYCLES",
                   help="with --backend verilator: a full-size conv layer that fits the "
                   "preset's memory runs on Verilator when its estimated cycles are at most "
                   "this (default: %(default)s; 0: every full-size layer on isasim)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("bitstream", help="build an FPGA bitstream with open tools (YoWASP) and "
                       "report resources and Fmax")
    p.add_argument("--board", default="icebreaker", choices=["icebreaker", "ulx3s"],
                   help="icebreaker (iCE40UP5K, preset tiny) or ulx3s (ECP5-85F, preset small)")
    p.add_argument("--out", default="build/fpga", help="build folder (default: build/fpga)")
    p.set_defaults(func=_cmd_bitstream)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error(args, "interrupted")
        return 130
    except UsageError as e:
        _error(args, e)
        return 2
    except StamenError as e:
        # CompileError, ConfigMismatchError and the quantizer's errors are ValueErrors: a model
        # or configuration that does not fit. The rest are runs that failed: a device fault, a
        # run over its limits, a broken link, a board that answered nonsense.
        _error(args, e)
        return 2 if isinstance(e, (ValueError, TypeError)) else 1
    except TestFailure as e:            # the Verilator simulation itself failed: a failed run
        _error(args, e)
        return 1
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        _error(args, e)
        return 2


def _error(args: argparse.Namespace, e) -> None:
    """Print ``e`` as one line: ``stamen <command>: error: <message>``."""
    text = " ".join(str(e).split()) or type(e).__name__
    print(f"stamen {args.command}: error: {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
