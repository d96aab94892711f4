"""What a run reports: per-layer and total figures from the device's PERF snapshots."""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

from stamen.hw import isa
from stamen.hw.params import AccelConfig

__all__ = ["LayerReport", "Report", "make_report"]


@dataclass
class LayerReport:
    """Figures of one layer (or of the whole run, for ``Report.total``).

    ``macs`` counts useful multiply-accumulates (M*K*N; for a convolution output pixels x
    kernel taps x input channels per group x output channels; 0 for pooling and adds);
    ``issued_macs`` counts PE-cycles the array spent on MACs, padding included, ``gated_macs``
    those of them with a gated multiplier and ``skipped_macs`` the MACs a ``zero_skip`` array
    never issued because their activation was zero (the device counters ``macs``,
    ``gated_macs``, ``skipped_macs``; ``issued_macs + skipped_macs`` is the MATMULs' total);
    ``utilization`` is ``macs / (compute_cycles * rows * cols)``; ``dram_bytes`` is the
    device-memory traffic and ``min_dram_bytes`` what it would be if every input, weight and
    output byte moved once.
    """
    name: str
    kind: str = ""
    shape: str = ""
    macs: int = 0
    cycles: int = 0
    compute_cycles: int = 0
    issued_macs: int = 0
    gated_macs: int = 0
    skipped_macs: int = 0
    dram_bytes: int = 0
    min_dram_bytes: int = 0
    stall_cycles: int = 0
    utilization: float = 0.0
    busy_share: float = 0.0


_COLUMNS = ("name", "kind", "shape", "macs", "cycles", "compute_cycles", "utilization",
            "busy_share", "issued_macs", "gated_macs", "skipped_macs", "dram_bytes",
            "min_dram_bytes", "stall_cycles")


@dataclass
class Report:
    """Per-layer and total figures of one run, printable as a table and savable as CSV."""
    backend: str
    cfg: AccelConfig
    layers: list[LayerReport] = field(default_factory=list)
    total: LayerReport = field(default_factory=lambda: LayerReport("total"))
    wall_s: float = 0.0
    sim_wall_s: float = 0.0

    def __getattr__(self, name):
        # report.cycles, report.macs, ... are the totals
        if name in {f.name for f in dataclasses.fields(LayerReport)}:
            return getattr(self.total, name)
        raise AttributeError(name)

    @property
    def sim_cycles_per_s(self) -> float:
        """Simulated device cycles per wall-clock second of the simulation proper."""
        return self.total.cycles / self.sim_wall_s if self.sim_wall_s else 0.0

    def rows(self) -> list[dict]:
        """Return one dict per layer plus the total, with the table's columns."""
        return [{c: getattr(r, c) for c in _COLUMNS} for r in [*self.layers, self.total]]

    def table(self) -> str:
        """Return the report as an aligned text table."""
        def fmt(v):
            return f"{v:.1%}" if isinstance(v, float) else str(v)
        rows = [[fmt(v) for v in r.values()] for r in self.rows()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(_COLUMNS, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        head = (f"backend={self.backend} config={self.cfg.name} "
                f"({self.cfg.rows}x{self.cfg.cols} {self.cfg.dataflow})")
        if self.sim_wall_s:
            head += f" sim={self.sim_cycles_per_s:,.0f} cycles/s"
        return "\n".join([head, *lines])

    def __str__(self) -> str:
        return self.table()

    @classmethod
    def combine(cls, reports: list["Report"]) -> "Report":
        """Return one report whose counts are the sums of ``reports`` (runs of the same program
        on one device), with utilization and busy share recomputed."""
        first = reports[0]
        out = cls(first.backend, first.cfg, wall_s=sum(r.wall_s for r in reports),
                  sim_wall_s=sum(r.sim_wall_s for r in reports))
        summed = [f.name for f in dataclasses.fields(LayerReport)
                  if f.type in ("int", int)]
        def add(rows):
            r = dataclasses.replace(rows[0])
            for name in summed:
                setattr(r, name, sum(getattr(x, name) for x in rows))
            pes = first.cfg.rows * first.cfg.cols
            r.utilization = r.macs / (r.compute_cycles * pes) if r.compute_cycles else 0.0
            r.busy_share = r.compute_cycles / r.cycles if r.cycles else 0.0
            return r
        out.layers = [add(list(rows)) for rows in zip(*(r.layers for r in reports))]
        out.total = add([r.total for r in reports])
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        """Return the report as CSV text, and write it to ``path`` when given."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows())
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(buf.getvalue())
        return buf.getvalue()


def _layer_report(cfg: AccelConfig, info, counters: dict | None) -> LayerReport:
    r = LayerReport(name=info.name, kind=info.kind,
                    shape=info.desc or f"{info.m}x{info.k}x{info.n}", macs=info.macs,
                    min_dram_bytes=info.min_dram_bytes)
    if counters:
        _fill(cfg, r, counters)
    return r


def _fill(cfg: AccelConfig, r: LayerReport, c: dict) -> None:
    r.cycles = c["cycles"]
    r.compute_cycles = c["compute_cycles"]
    r.issued_macs = c["macs"]
    r.gated_macs = c["gated_macs"]
    r.skipped_macs = c["skipped_macs"]
    r.dram_bytes = c["dram_read_bytes"] + c["dram_write_bytes"]
    r.stall_cycles = c["stall_cycles"]
    pes = cfg.rows * cfg.cols
    r.utilization = r.macs / (r.compute_cycles * pes) if r.compute_cycles else 0.0
    r.busy_share = r.compute_cycles / r.cycles if r.cycles else 0.0


def _deltas(snaps: list[dict]) -> list[dict]:
    return [{k: b[k] - a[k] for k in isa.PERF_COUNTERS} for a, b in zip(snaps, snaps[1:])]


def make_report(backend: str, cfg: AccelConfig, prog, mem, totals: dict | None,
                sim_wall_s: float) -> Report:
    """Return the report of one run of ``prog``: from the PERF snapshots in the memory image
    ``mem`` and the run's ``totals``, or with MACs only when ``mem`` is None (golden)."""
    report = Report(backend, cfg, sim_wall_s=sim_wall_s)
    snaps = [None] * len(prog.layers) if mem is None else _deltas(prog.read_perf(mem))
    report.layers = [_layer_report(cfg, info, c) for info, c in zip(prog.layers, snaps)]
    report.total.macs = sum(r.macs for r in report.layers)
    report.total.min_dram_bytes = sum(r.min_dram_bytes for r in report.layers)
    if totals is not None:
        _fill(cfg, report.total, totals)
    return report
