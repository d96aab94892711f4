"""The ``"isasim"`` backend: the ISA simulator (``sw/sim/isasim.py``) and its cycle model."""
from __future__ import annotations

import time

from ..errors import DeviceError
from ..sim.isasim import IsaSim

__all__ = ["IsaSimBackend"]


class IsaSimBackend:
    """Runs each program's memory image on a fresh :class:`~stamen.sw.sim.isasim.IsaSim`."""
    name = "isasim"

    def __init__(self, cfg, log=None):
        self.cfg = cfg

    def run(self, items: list) -> list:
        """Return, per ``(prog, x)``, ``(memory image, counters, seconds)`` or the
        :class:`DeviceError` of its fault."""
        return [self._run_one(prog, x) for prog, x in items]

    def _run_one(self, prog, x):
        image = prog.memory_image(x)
        t0 = time.perf_counter()
        try:
            totals = IsaSim(self.cfg).run(image, prog.prog_addr)
        except DeviceError as e:
            return e
        return image, totals, time.perf_counter() - t0
