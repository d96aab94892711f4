"""The ``"golden"`` backend: the NumPy reference of the program (``prog.reference``), no cycles."""
from __future__ import annotations

__all__ = ["GoldenBackend"]


class GoldenBackend:
    """Runs nothing on a device model: the report gets MACs but no counters."""
    name = "golden"

    def __init__(self, cfg, log=None):
        self.cfg = cfg

    def run(self, items: list) -> list:
        """Return, per ``(prog, x)``, ``(None, None, 0.0)``: no memory, no counters."""
        return [(None, None, 0.0) for _ in items]
