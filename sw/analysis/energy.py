"""Energy estimate per layer from access counts, with the Eyeriss papers' normalized costs.

A model, not a measurement: the instruction stream is replayed, the accesses it implies at each
level (DRAM, scratchpad, array hop, PE register, MAC) are counted, each MATMUL's by its engine
model's ``accesses`` (``sim/engines.py``), and weighted by :data:`COSTS`. docs/energy.md gives
the tables, the calling conventions and the row-stationary array's counts.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..asm import fields
from ..compiler.driver import compile_model
from ..program import Program
from ..runtime.device import Device, Report
from ..sim.engines import ENGINE_MODELS, engine_model
from .eyeriss import RsMapping, window_activations

__all__ = ["COSTS", "LEVELS", "Accesses",
           "count_accesses", "EnergyRow", "EnergyReport", "estimate_energy",
           "compare_dataflows", "comparison_table", "comparison_csv", "COMPARISON_COLUMNS",
           "implemented_configs", "rs_conv_energy"]

#: Normalized energy per access relative to one MAC (Eyeriss): DRAM byte, global buffer
#: (scratchpad) element, array / NoC hop, PE register-file access, MAC.
COSTS = {"dram": 200.0, "buffer": 6.0, "array": 2.0, "rf": 1.0, "mac": 1.0}
#: The levels of :data:`COSTS`, outermost first.
LEVELS = tuple(COSTS)

_SPADS = ("act", "wt", "acc", "out", "param")
_SPAD_OF = {isa.Spad.ACT.value: "act", isa.Spad.WT.value: "wt", isa.Spad.ACC.value: "acc",
            isa.Spad.OUT.value: "out", isa.Spad.PARAM.value: "param"}


# -- counting --------------------------------------------------------------------------------------
@dataclass
class Accesses:
    """Access counts of a span of instructions (dense: gating is applied by
    :func:`estimate_energy`). ``reads`` / ``writes`` are scratchpad elements by spad name;
    ``instructions`` counts the span's instructions (its closing HALT included, PERFs not)."""
    dram_read: int = 0
    dram_write: int = 0
    reads: dict = field(default_factory=lambda: dict.fromkeys(_SPADS, 0))
    writes: dict = field(default_factory=lambda: dict.fromkeys(_SPADS, 0))
    array_wt: int = 0
    array_act: int = 0
    array_psum: int = 0
    rf_fixed: int = 0
    macs: int = 0
    instructions: int = 0

    @property
    def dram(self) -> int:
        """DRAM bytes read and written."""
        return self.dram_read + self.dram_write

    @property
    def buffer(self) -> int:
        """Scratchpad element reads and writes."""
        return sum(self.reads.values()) + sum(self.writes.values())

    @property
    def array(self) -> int:
        """Operand hops through the array."""
        return self.array_wt + self.array_act + self.array_psum

    def as_dict(self) -> dict:
        """Return the counts as a flat dict (``act_r``, ``act_w``, ... for the scratchpads)."""
        d = {"dram_read": self.dram_read, "dram_write": self.dram_write}
        for s in _SPADS:
            d[f"{s}_r"], d[f"{s}_w"] = self.reads[s], self.writes[s]
        d.update(array_wt=self.array_wt, array_act=self.array_act, array_psum=self.array_psum,
                 rf_fixed=self.rf_fixed, macs=self.macs)
        return d


def count_accesses(words, cfg: AccelConfig, dataflow: str | None = None) -> list[Accesses]:
    """Replay the instruction ``words`` and return their access counts per PERF-delimited span.

    Span 0 holds the instructions before the first PERF; span ``j`` those after the ``j``-th PERF
    up to the next PERF or HALT (the rest is not executed). A compiled program starts with a PERF
    and has one after each layer, so span ``i + 1`` is layer ``i``, as in
    :meth:`~stamen.sw.compiler.driver.Program.read_perf`.

    Parameters
    ----------
    words : list of int
        Instruction words.
    cfg : AccelConfig
    dataflow : str or None
        The engine model whose accesses are counted (``sim.engines.ENGINE_MODELS``);
        ``cfg.dataflow`` when None.

    Raises
    ------
    TypeError
        When ``cfg`` is not an AccelConfig.
    ValueError
        For an illegal instruction word or a dataflow without a model.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Energy model config must be an AccelConfig, not {cfg!r}")
    model = engine_model(cfg if dataflow is None else dataflow)
    R, C = cfg.rows, cfg.cols
    elems = {"act": R, "wt": C, "acc": C, "out": C, "param": C}
    spans = [Accesses()]
    loop = dict(isa.LOOP_RESET)
    for i, word in enumerate(words):
        try:
            op, a = fields(int(word))
        except ValueError as e:
            raise ValueError(f"Instruction {i}: {e}") from None
        cur = spans[-1]
        if op == isa.Opcode.HALT:
            cur.instructions += 1
            break
        if op == isa.Opcode.PERF:
            spans.append(Accesses())
            continue
        cur.instructions += 1
        if op in (isa.Opcode.LOAD, isa.Opcode.STORE):
            spad = _SPAD_OF.get(a["spad"])
            if spad is None:
                raise ValueError(f"Instruction {i}: illegal spad selector {a['spad']}")
            nbytes = a["rows"] * cfg.spad_row_bytes(spad)
            if op == isa.Opcode.LOAD:
                cur.dram_read += nbytes
                cur.writes[spad] += a["rows"] * elems[spad]
            else:
                cur.dram_write += nbytes
                cur.reads[spad] += a["rows"] * elems[spad]
        elif op == isa.Opcode.REQUANT:
            cur.reads["acc"] += a["rows"] * C
            cur.reads["param"] += 3 * C
            cur.writes["out"] += a["rows"] * C
        elif op == isa.Opcode.LOOP:
            loop = {n: a[n] for n in isa.LOOP_RESET}
        elif op == isa.Opcode.MATMUL:
            mm = model.accesses(cfg, a, loop)
            cur.reads["wt"] += mm.wt_reads
            cur.reads["act"] += mm.act_reads
            cur.reads["acc"] += mm.acc_reads
            cur.writes["acc"] += mm.acc_writes
            cur.array_wt += mm.array_wt
            cur.array_act += mm.array_act
            cur.array_psum += mm.array_psum
            cur.rf_fixed += mm.rf_fixed
            cur.macs += mm.macs
    return spans


# -- energy ----------------------------------------------------------------------------------------
@dataclass
class EnergyRow:
    """Accesses and normalized energy (units of one MAC) of one layer, or of the total.

    ``macs`` are the useful MACs, ``issued_macs`` / ``gated_macs`` the array's (from the run's
    counters when a report was given), ``cycles`` the run's (0 without a report); ``dram``,
    ``buffer``, ``array``, ``rf`` and ``mac`` are access counts, ``e_*`` their energies, ``total``
    the sum and ``per_mac`` the total per issued MAC.
    """
    name: str
    kind: str = ""
    macs: int = 0
    issued_macs: int = 0
    gated_macs: int = 0
    cycles: int = 0
    dram: int = 0
    buffer: int = 0
    array: int = 0
    rf: int = 0
    mac: int = 0
    e_dram: float = 0.0
    e_buffer: float = 0.0
    e_array: float = 0.0
    e_rf: float = 0.0
    e_mac: float = 0.0
    total: float = 0.0
    per_mac: float = 0.0


_COLUMNS = tuple(f.name for f in dataclasses.fields(EnergyRow))
_TABLE_COLUMNS = ("name", "kind", "cycles", "issued_macs", "gated_macs", "e_dram", "e_buffer",
                  "e_array", "e_rf", "e_mac", "total", "per_mac")


def _energize(row: EnergyRow, costs: dict) -> EnergyRow:
    for level in LEVELS:
        setattr(row, f"e_{level}", costs[level] * getattr(row, level))
    row.total = sum(getattr(row, f"e_{level}") for level in LEVELS)
    row.per_mac = row.total / row.issued_macs if row.issued_macs else 0.0
    return row


@dataclass
class EnergyReport:
    """Per-layer energy estimate of one program (see the module docstring for the model)."""
    cfg: AccelConfig
    dataflow: str
    costs: dict
    layers: list[EnergyRow] = field(default_factory=list)
    total: EnergyRow = field(default_factory=lambda: EnergyRow("total"))
    accesses: list[Accesses] = field(default_factory=list)
    from_report: bool = False

    def rows(self) -> list[dict]:
        """Return one dict per layer plus the total, with every :class:`EnergyRow` field."""
        return [dataclasses.asdict(r) for r in [*self.layers, self.total]]

    def table(self) -> str:
        """Return the per-layer energies as an aligned text table (energies in MAC units)."""
        head = (f"energy model ({self.dataflow}, {self.cfg.name} {self.cfg.rows}x{self.cfg.cols}"
                f", {'run counters' if self.from_report else 'static counts, no gating'}); "
                f"units of one MAC: " + ", ".join(f"{k} {v:g}" for k, v in self.costs.items()))
        return head + "\n" + _format([{c: r[c] for c in _TABLE_COLUMNS} for r in self.rows()])

    def __str__(self) -> str:
        return self.table()

    def to_csv(self, path: str | Path | None = None) -> str:
        """Return every row as CSV text, and write it to ``path`` when given."""
        return _to_csv(self.rows(), _COLUMNS, path)


def _check_costs(costs: dict | None) -> dict:
    costs = dict(COSTS if costs is None else costs)
    if set(costs) != set(LEVELS):
        raise ValueError(f"Energy costs must give exactly the levels {LEVELS}, not "
                         f"{tuple(costs)}")
    return costs


def _format(rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    cols = list(rows[0]) if rows else []
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _to_csv(rows: list[dict], columns, path) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(buf.getvalue())
    return buf.getvalue()


def estimate_energy(prog, report=None, dataflow: str | None = None,
                    costs: dict | None = None) -> EnergyReport:
    """Return the per-layer energy estimate of a compiled program.

    Parameters
    ----------
    prog : Program
        A compiled program (``stamen.compile``).
    report : Report or None
        A run of ``prog`` (not ``"golden"``): its issued / gated MACs, DRAM bytes and cycles
        replace the static counts. Without it, no MAC is gated.
    dataflow : str or None
        The access model; ``prog.cfg.dataflow`` when None (another value models the same
        instruction stream on that dataflow's array).
    costs : dict or None
        Energy per access by level (:data:`LEVELS`); :data:`COSTS` when None.

    Raises
    ------
    TypeError
        When ``prog`` is not a Program or ``report`` not a Report.
    ValueError
        For a dataflow without a model, a report of another program or configuration, or costs
        that miss a level.
    """
    if not isinstance(prog, Program):
        raise TypeError(f"Energy estimate needs a compiled Program, not {type(prog).__name__}")
    costs = _check_costs(costs)
    dataflow = prog.cfg.dataflow if dataflow is None else dataflow
    spans = count_accesses(prog.words, prog.cfg, dataflow)
    n = len(prog.layers)
    if len(spans) < n + 1:
        raise ValueError(f"Program must have a PERF before and after each of its {n} layers, "
                         f"not {len(spans) - 1} PERF instructions")
    layer_spans = spans[1:n + 1]
    counters = None
    if report is not None:
        if not isinstance(report, Report):
            raise TypeError(f"Energy estimate report must be a runtime Report, not "
                            f"{type(report).__name__}")
        if report.cfg.config_hash != prog.config_hash:
            raise ValueError(f"Report is of config {report.cfg.name!r} but the program was "
                             f"compiled for {prog.cfg.name!r}")
        if [r.name for r in report.layers] != [li.name for li in prog.layers]:
            raise ValueError(f"Report layers {[r.name for r in report.layers]} are not the "
                             f"program's {[li.name for li in prog.layers]}")
        if report.backend != "golden":
            counters = report.layers
    model = engine_model(dataflow)
    out = EnergyReport(prog.cfg, dataflow, costs, accesses=spans,
                       from_report=counters is not None)
    for i, (info, acc) in enumerate(zip(prog.layers, layer_spans)):
        row = EnergyRow(info.name, info.kind, macs=info.macs, issued_macs=acc.macs,
                        dram=acc.dram, buffer=acc.buffer, array=acc.array)
        if counters is not None:
            c = counters[i]
            row.issued_macs, row.gated_macs = c.issued_macs, c.gated_macs
            row.dram, row.cycles = c.dram_bytes, c.cycles
            if model is engine_model(prog.cfg):         # what a skipped MAC saves
                array, buffer = model.skip_savings(prog.cfg, c.skipped_macs)
                row.array -= array
                row.buffer -= buffer
        row.mac = row.issued_macs - row.gated_macs
        row.rf = acc.rf_fixed + model.RF_PER_MAC * row.mac + model.RF_PER_GATED * row.gated_macs
        out.layers.append(_energize(row, costs))
    tot = EnergyRow("total")
    for name in ("macs", "issued_macs", "gated_macs", "cycles", *LEVELS):
        setattr(tot, name, sum(getattr(r, name) for r in out.layers))
    out.total = _energize(tot, costs)
    return out


# -- dataflow comparison ---------------------------------------------------------------------------
#: The columns of :func:`compare_dataflows` rows.
COMPARISON_COLUMNS = ("model", "config", "dataflow", "layer", "kind", "cycles",
                      "compute_cycles", "utilization", "issued_macs", "gated_macs", "dram",
                      "buffer", "array", "rf", "mac", "e_dram", "e_buffer", "e_array", "e_rf",
                      "e_mac", "total", "per_mac")


def implemented_configs(preset: str = "small") -> list[AccelConfig]:
    """Return ``preset`` with each modelled dataflow that :class:`AccelConfig` accepts (those
    whose hardware exists), named ``<preset>-<dataflow>``."""
    base = AccelConfig.preset(preset)
    out = []
    for df in ENGINE_MODELS:
        try:
            out.append(base.replace(dataflow=df, name=f"{preset}-{df}"))
        except ValueError:
            continue
    return out


def compare_dataflows(graph, configs, batch: int = 1, x: np.ndarray | None = None,
                      seed: int = 0, name: str = "") -> list[dict]:
    """Compile ``graph`` for each configuration, run it on the ISA simulator and return one row
    per (configuration, layer) plus a total row per configuration: measured cycles beside the
    energy estimate of that configuration's dataflow.

    Parameters
    ----------
    graph : QuantizedGraph or QuantizedNet
        What ``stamen.compile`` accepts.
    configs : iterable of AccelConfig
    batch : int
        Images (or rows) per run.
    x : int8 array or None
        The input (``prog.input_shape``); seeded random int8 when None.
    seed : int
        Seed of the random input.
    name : str
        Written to every row's ``model`` column.

    Raises
    ------
    ValueError
        When a configuration's dataflow has no access model.
    RuntimeError
        When the device result is not bit-exact with the program's golden reference.
    """
    rows = []
    for cfg in configs:
        engine_model(cfg)
        prog = compile_model(graph, cfg, batch)
        xin = x
        if xin is None:
            rng = np.random.default_rng(seed)
            xin = rng.integers(-128, 128, prog.input_shape, dtype=np.int8)
        y, rep = Device(cfg, "isasim").run(prog, xin)
        if not np.array_equal(y, prog.reference(xin)):
            raise RuntimeError(f"{name or 'model'} on {cfg.name}: device output differs from the "
                             f"golden reference")
        energy = estimate_energy(prog, rep)
        for lr, er in zip([*rep.layers, rep.total], [*energy.layers, energy.total]):
            row = {"model": name, "config": cfg.name, "dataflow": cfg.dataflow, "layer": er.name,
                   "kind": er.kind, "cycles": lr.cycles, "compute_cycles": lr.compute_cycles,
                   "utilization": lr.utilization}
            row.update({k: getattr(er, k) for k in COMPARISON_COLUMNS if k not in row and
                        k not in ("model", "config", "dataflow", "layer")})
            rows.append(row)
    return rows


def comparison_table(rows: list[dict]) -> str:
    """Return rows of :func:`compare_dataflows` as an aligned text table (energies in MAC
    units)."""
    cols = ("model", "config", "layer", "cycles", "utilization", "gated_macs", "e_dram",
            "e_buffer", "e_array", "e_rf", "e_mac", "total", "per_mac")
    return _format([{c: r[c] for c in cols} for r in rows])


def comparison_csv(rows: list[dict], path: str | Path | None = None) -> str:
    """Return rows of :func:`compare_dataflows` as CSV text (columns
    :data:`COMPARISON_COLUMNS`), and write it to ``path`` when given."""
    return _to_csv(rows, COMPARISON_COLUMNS, path)


# -- row-stationary conv layer in the Eyeriss mapping (analysis/eyeriss.py) --------------------------
#: RF accesses of an issued MAC that is not gated (filter spad read, ifmap spad read, psum spad
#: read + write) and of a gated one (the ifmap spad read that finds the zero).
_RS_RF_PER_MAC, _RS_RF_PER_GATED = 4, 1


def rs_conv_energy(x: np.ndarray, mapping, zp: int, zero_skip: bool = False, *,
                   zero_gate: bool = True, pad: tuple[int, int] = (0, 0),
                   costs: dict | None = None, name: str = "") -> EnergyRow:
    """Return the energy estimate of a conv layer on the row-stationary array, counted pass by
    pass from its mapping (the module docstring's row-stationary table).

    Parameters
    ----------
    x : int8 array
        The input, already padded with ``zp``: ``(in_ch, in_h, in_w)`` of ``mapping.shape``, or
        a batch ``(N, in_ch, in_h, in_w)`` (counts summed over the images, the weights read
        from DRAM once).
    mapping : RsMapping
        The layer on the array (:func:`~stamen.sw.analysis.eyeriss.map_conv`).
    zp : int
        The activation zero point.
    zero_skip : bool
        Compressed (True) or dense (False) activation streams.
    zero_gate : bool
        With a dense stream, gate the MACs whose activation equals ``zp`` (as ``RsPE`` does
        by default).
    pad : (int, int)
        The conv's padding (rows, columns on each side) included in ``x``: not read from DRAM.
    costs : dict or None
        Energy per access by level (:data:`LEVELS`); :data:`COSTS` when None.
    name : str
        The row's name.

    Returns
    -------
    EnergyRow
        ``kind`` ``"conv"``, ``macs`` the layer's (times the images), ``issued_macs`` and
        ``gated_macs`` the array's, ``cycles`` 0 (the cycles are
        :func:`~stamen.sw.analysis.eyeriss.rs_conv_cycles`'), the access counts and their energies.

    Raises
    ------
    TypeError
        When ``mapping`` is not an RsMapping.
    ValueError
        For an input of another shape or dtype, a padding that leaves no input, or costs that
        miss a level.
    """
    if not isinstance(mapping, RsMapping):
        raise TypeError(f"Row-stationary energy needs an RsMapping, not {type(mapping).__name__}")
    costs = _check_costs(costs)
    shape = mapping.shape
    dims = (shape.in_ch, shape.in_h, shape.in_w)
    xs = np.asarray(x)
    xs = xs[None] if xs.ndim == 3 else xs
    if xs.dtype != np.int8 or xs.ndim != 4 or xs.shape[1:] != dims:
        raise ValueError(f"Row-stationary energy input must be int8 of shape {dims} or "
                         f"(N, {', '.join(map(str, dims))}), not {xs.dtype} {np.shape(x)}")
    ph, pw = pad
    if not (0 <= 2 * ph < shape.in_h and 0 <= 2 * pw < shape.in_w):
        raise ValueError(f"Row-stationary energy padding must leave an input of "
                         f"{shape.in_h}x{shape.in_w}, not {pad!r}")
    s, ow, n_img = shape.kw, shape.out_w, len(xs)
    values = (xs != zp).sum(axis=3) if zero_skip else np.full(xs.shape[:3], shape.in_w)
    in_windows = window_activations(xs, shape, zp)          # present acts over a row's windows
    buffer = array = rf = issued = gated = 0
    for p in mapping.passes:
        f, e, b, h = p.filters, len(p.out_rows), len(p.filter_sets), p.used_rows
        psums = e * b * f * ow                              # per PE row: one per column's PE
        buffer += n_img * (h * b * f * s + psums * (1 + p.acc))
        array += n_img * (h * b * f * s * e + h * psums + p.acc * psums)
        rf += n_img * h * b * f * s * e
        cs, ys = np.array([(c, y) for _, _, c, y, _, _ in p.pe_rows(shape)]).T
        dc, dy = np.array(sorted(set(zip(cs.tolist(), ys.tolist())))).T
        buffer += int((values[:, dc, dy] + 1).sum())         # each row once, plus its marker
        array += int((values[:, cs, ys] + 1).sum())          # to every PE that needs it
        rf += int(values[:, cs, ys].sum())
        ops = n_img * len(cs) * f * ow * s
        live = f * int(in_windows[:, cs, ys].sum())
        if zero_skip:
            issued += live
        else:
            issued += ops
            gated += ops - live if zero_gate else 0
    mac = issued - gated
    rf += _RS_RF_PER_MAC * mac + _RS_RF_PER_GATED * gated
    in_bytes = shape.in_ch * (shape.in_h - 2 * ph) * (shape.in_w - 2 * pw)
    out_bytes = shape.out_ch * shape.out_h * shape.out_w
    w_bytes = shape.out_ch * (shape.in_ch // shape.groups) * shape.kh * shape.kw
    row = EnergyRow(name, "conv", macs=shape.macs * n_img, issued_macs=issued, gated_macs=gated,
                    dram=n_img * (in_bytes + out_bytes) + w_bytes, buffer=buffer, array=array,
                    rf=rf, mac=mac)
    return _energize(row, costs)
