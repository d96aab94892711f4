"""The ``"fpga"`` backend: a board running ``hw.fpga_device.FpgaDevice``, driven over its UART host
bridge (``sw/runtime/fpga.py``) through pyserial."""
from __future__ import annotations

from ..errors import BoardError, DeviceTimeoutError
from . import fpga
from .common import check_option, is_real, run_outcome

__all__ = ["FpgaBackend"]


class FpgaBackend:
    """Options: ``port`` (required: a serial device such as ``/dev/ttyUSB1`` or a pyserial URL
    such as ``socket://host:port``, opened at run time), ``baud``, ``timeout`` (seconds of
    silence after which a bridge command fails), ``timeout_s`` (wall-clock limit of one run,
    start to halt; None: ``60 + 30 * timeout``; ``math.inf``: none) and ``max_cycles``."""
    name = "fpga"

    def __init__(self, cfg, log=None, port: str | None = None, baud: int = 115200,
                 timeout: float = 2.0, timeout_s: float | None = None, max_cycles: int = 10**8):
        if not isinstance(port, str):
            raise TypeError(f"Device backend 'fpga' needs port, a serial port or pyserial URL "
                            f"string such as '/dev/ttyUSB1', not {port!r}")
        if timeout_s is None:
            timeout_s = 60 + 30 * timeout if is_real(timeout) else timeout
        check_option("max_cycles", max_cycles, "integer")
        check_option("timeout", timeout, "number of seconds")
        check_option("timeout_s", timeout_s, "number of seconds")
        self.cfg, self.log = cfg, log
        self.port, self.baud, self.timeout = port, baud, timeout
        self.timeout_s, self.max_cycles = timeout_s, max_cycles
        #: The last run's bridge result (bytes moved, phases, polls).
        self.last_bridge_result = None

    def run(self, items: list) -> list:
        """Upload and run every ``(prog, x)`` in turn over one open port; return their outcomes.
        After a timeout the board is still busy, so the rest of the batch is not run."""
        if self.log:
            self.log(f"opening {self.port} at {self.baud} Bd")
        outcomes = []
        with fpga.open_port(self.port, self.baud) as stream:
            client = fpga.BridgeClient(stream, self.cfg, timeout=self.timeout)
            for i, (prog, x) in enumerate(items):
                if outcomes and isinstance(outcomes[-1], DeviceTimeoutError):
                    outcomes.append(BoardError(
                        f"not run: the board is still running program {i - 1} of this batch, "
                        f"which did not finish in time; reset the board"))
                    continue
                ranges = prog.result_ranges()
                if self.log:
                    self.log(f"uploading {prog.used_words} words and running on the board")
                image = prog.memory_image(x)
                res = fpga.run_on_bridge(client, self.cfg, image, prog.prog_addr,
                                         prog.used_words, ranges, max_cycles=self.max_cycles,
                                         timeout_s=self.timeout_s)
                self.last_bridge_result = res
                outcomes.append(run_outcome(self.cfg, prog, res, ranges, "the board", image,
                                            self.max_cycles, self.timeout_s, board=True))
        return outcomes
