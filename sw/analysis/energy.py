"""Energy estimate per layer from access counts, with the Eyeriss papers' normalized costs.

This is a **model, not a measurement**: it counts the data accesses that a compiled program's
instruction stream implies at each level of the memory hierarchy, and multiplies them by the
normalized energy per access that Eyeriss (Chen et al., ISCA 2016 and JSSC 2017) gives relative to
one MAC. Nothing here comes from a power simulation of Stamen's RTL.

===========  ==========================================================  ======
level        what one access is                                           cost
===========  ==========================================================  ======
``dram``     one byte moved between device memory and a scratchpad          200
``buffer``   one element read or written in a scratchpad (the global        6
             buffer: ACT, WT, ACC, OUT, PARAM)
``array``    one operand hop between PEs (or from the array edge into a      2
             PE, or out of it) through the systolic array / NoC
``rf``       one access of a PE-local register (the PE "scratchpad")         1
``mac``      one multiply-accumulate that is not zero-gated                  1
===========  ==========================================================  ======

Counting: the program's instruction words are replayed in order (decoded with
:func:`stamen.sw.asm.fields`, the operands the ISA simulator sees); PERF instructions split them
into layers exactly as :meth:`~stamen.sw.compiler.driver.Program.read_perf` does (layer ``i`` is the
instructions between the ``i``-th and ``i + 1``-th PERF). ``R, C = cfg.rows, cfg.cols``; an ACT row
holds ``R`` elements and a WT, ACC, OUT or PARAM row ``C`` (ACC and PARAM elements are int32, so
their rows are ``4C`` bytes in device memory).

================================  ==========================  =====================================
instruction                       DRAM bytes                  buffer elements
================================  ==========================  =====================================
``LOAD spad rows``                ``rows * row_bytes(spad)``  ``rows * row_elems(spad)`` writes
``STORE spad rows``               ``rows * row_bytes(spad)``  ``rows * row_elems(spad)`` reads
``REQUANT rows``                  0                           ``rows*C`` ACC reads, ``3*C`` PARAM
                                                              reads (bias, mult, shift rows),
                                                              ``rows*C`` OUT writes
``MATMUL m k_tiles accumulate``   0                           per dataflow, :data:`DATAFLOW_MODELS`
``LOOP``, ``SYNC``, ``PERF``,     0                           0
``HALT``
================================  ==========================  =====================================

The per-dataflow MATMUL access formulas (:data:`DATAFLOW_MODELS`; one entry per dataflow, so
``"rs"`` is one more entry). ``m`` = rows, ``k`` = ``k_tiles``, ``a`` = ``accumulate`` (0/1),
``P = ceil(m / R)`` passes of the output-stationary array, ``N = m*k*R*C`` issued MACs, ``G`` the
zero-gated MACs among them:

==================  ===============================  ===============================
access              ``ws`` (weight-stationary)       ``os`` (output-stationary)
==================  ===============================  ===============================
buffer WT reads     ``k*R*C`` (each tile once)       ``P*k*R*C`` (weights streamed
                                                     once per pass of ``R`` rows)
buffer ACT reads    ``k*m*R``                        ``k*m*R``
buffer ACC reads    ``(k - 1 + a)*m*C`` (a psum row  ``a*m*C`` (once per output)
                    per tile, read-modify-write)
buffer ACC writes   ``k*m*C``                        ``m*C``
array: weights      ``k*R*C`` (shifted in once per   ``N`` (passed PE to PE each MAC)
                    tile)
array: acts         ``N`` (passed PE to PE each MAC) ``N`` (passed PE to PE each MAC)
array: psums        ``N`` (passed PE to PE each MAC) ``m*C`` (drained once per output)
RF per tile         ``k*R*C`` (weight register       0
                    writes)
RF per MAC          1 (stationary weight read)       2 (stationary psum read + write)
==================  ===============================  ===============================

``rs`` (row-stationary, ``hw/rs_matmul.py``) depends on the LOOP state in effect, so the replay
tracks it: a MATMUL runs as the passes of ``sw.rs_model.rs_engine_passes`` (group ``g`` of
``taps`` tiles, ``width`` act rows per pass, ``outputs`` ACC rows per pass). Per MATMUL: buffer WT
reads ``k*R*C`` (each group's filter rows once, whatever the output rows), buffer ACT reads
``R * sum(width)`` (each position once per pass), ACC reads ``C`` per output of a pass that keeps
the old value (``accumulate`` or a later group) and ACC writes ``C * sum(outputs)``; array: a
weight one hop to its PE (``k*R*C``), each activation beat to the ``C`` PEs of its row
(``R*C*sum(width)``), each psum one hop per PE up its column (``R*C*sum(outputs)``); RF fixed:
the filter spad writes (``k*R*C``), the ifmap spad writes (``R*C*sum(width)``) and each PE's psum
FIFO, a write and a read per psum (``2*R*C*sum(outputs)``); RF per MAC 4
(filter, ifmap, psum read and write), 1 per gated MAC (the ifmap read that finds the zero), and
skipped MACs are not issued. With ``zero_skip`` the activation hops and ifmap writes of the
skipped zeros are still charged (an upper bound: the replay does not see the data). On ``ws``
with ``zero_skip`` the run's ``skipped_macs`` remove the act and psum hops (``2*skipped``) and
the ACC read-modify-writes (``2*skipped/R``) of the all-zero act rows the engine drops; their
ACT reads stay (the engine reads every row to find the zero ones).

An ``acc_max`` MATMUL (max pooling) on ``os`` reduces each tile on its own (``hw/os_matmul.py``):
its psums are drained and max-ed into the ACC once per tile, so its ACC reads, ACC writes and
psum drains are those of ``ws`` (``(k - 1 + a)*m*C``, ``k*m*C``, ``k*m*C``).

Then, per layer, ``mac = N - G`` and ``rf = RF per tile + RF per MAC * (N - G)``: a zero-gated MAC
costs nothing at the MAC and the RF (Eyeriss v1 gating holds the multiplier inputs and the
accumulator enable), but its operands still travel through the buffer and the array. The energy is
``200*dram + 6*buffer + 2*array + 1*rf + 1*mac`` (in units of one MAC), and ``per_mac`` is that
total divided by the issued MACs ``N``.

With a run's :class:`~stamen.sw.runtime.device.Report` (any backend but ``"golden"``), the device's
counters replace the static counts where they exist: ``issued_macs`` for ``N``, ``gated_macs`` for
``G`` and ``dram_bytes`` for the DRAM bytes (for the ISA simulator and the RTL they equal the static
counts; a compressed LOAD would make them differ). Without a report, ``G = 0`` (dense).

Assumptions, stated plainly:

* One access per element at the buffer, array and RF, whatever the width (int8 operands, 9-bit
  ``a - zp``, int32 psums); Eyeriss normalizes per 16-bit word and so does not scale by width
  either. DRAM counts bytes (the device counter's unit), so an int32 costs 4 DRAM accesses.
* Instruction fetch (16 bytes per instruction) and the PERF snapshots are not charged: the Eyeriss
  comparison counts data movement only, and the device counters do not include them.
* The ACC is read only when its old value is used (the ISA semantics); the current WS RTL also
  reads it on the first tile of a non-accumulating MATMUL, which this model does not charge.
* A WS weight is charged one array hop per tile, although the RTL's column shift chain passes a
  weight bound for PE row ``r`` through the PEs above it; the skew / de-skew registers, control,
  clocking and leakage are not modelled; a ``wt_repeat`` MATMUL reads its one tile again for
  every ``kt``.
* ``os`` is modelled on the same instruction stream (its ISA and tiling are shared), mapping a
  MATMUL as ``hw/os_matmul.py`` and SCALE-Sim's output-stationary array do: groups of ``R``
  output rows on the PE rows, output channels on the PE columns, the reduction streamed.
* The normalized costs are Eyeriss's 65 nm figures (DRAM 200, global buffer 6, array 2, RF 1,
  relative to a 16-bit MAC); they rank dataflows, they do not predict Joules.

Row-stationary conv layers in the Eyeriss mapping
-------------------------------------------------
The device's ``rs`` engine puts input channels on PE rows and output channels on columns (the
act spad's NHWC rows decide). :func:`rs_conv_energy` counts the accesses of one conv layer in
the Eyeriss mapping instead (kernel rows on PE rows, output rows on columns), from
its mapping (:func:`stamen.sw.sim.rs_model.map_conv`) and its int8 input, pass by pass, with the
same costs. In a pass, ``H`` PE rows hold the items ``(c, ky)``, ``B`` column blocks (one
filter set each) of ``E`` columns (output rows) run ``F`` interleaved filters per PE (a short
last set is padded with zero filters, charged like real ones), ``S = kw``, ``OW = out_w``,
``a`` = the pass's ``acc`` (0/1). A row's *beats* are its ``W = in_w`` values (dense stream) or
its ``nnz`` values ``!= zp`` (``zero_skip``: the compressed stream), plus one end marker in
both streams (``hw/rs_compress.py``):

===================  =====================================================================
access               per pass
===================  =====================================================================
buffer: filters      ``H*B*F*S`` reads: each item's filter row of each set, once
array: filters       ``H*B*F*S*E``: multicast along the PE row, one hop per PE of the block
RF: filter writes    ``H*B*F*S*E``: each PE writes its ``F*S`` weights into its filter spad
buffer: ifmap        the beats of each distinct ``(c, y)`` row the pass needs, read once
array: ifmap         the beats of each used PE's row (multicast: one hop per receiving PE)
RF: ifmap writes     the values (not the marker) of each used PE's row
buffer: psums        ``E*B*F*OW`` writes (each column's top PE) + ``a*E*B*F*OW`` reads (the
                     previous pass's psums, into each column's bottom PE)
array: psums         ``H*E*B*F*OW`` (each PE sends its psums one hop up; the top PE's go to
                     the buffer) + ``a*E*B*F*OW`` (the previous psums into the bottom PE)
RF per MAC           4 per issued MAC that is not gated (filter spad read, ifmap spad read,
                     psum spad read + write); 1 per gated MAC (the ifmap read that finds the
                     zero: ``hw/rs_pe.py`` gates the filter read and the psum write); 0 per
                     skipped MAC (never issued)
MAC                  issued MACs that are not gated
===================  =====================================================================

A PE issues ``F*OW*S`` MACs per row with a dense stream and ``F`` times the present
activations of its windows with ``zero_skip``; with a dense stream and ``zero_gate`` those whose
activation equals ``zp`` are gated. DRAM is charged once per layer, not per pass: the input
without its padding, the weights and the int8 output, each byte once (the layer's minimum, as
:attr:`~stamen.sw.program.LayerInfo.min_dram_bytes`; the weights once per call, however many
images). So the rs figures are a lower bound at DRAM where ws / os count the program's real
traffic; compressed activations in DRAM are not modelled. Each pass reloads its filters, even
when the previous pass ran the same ones (an upper bound at the buffer); the requantization
(bias, multiplier) is not charged.
"""
from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from ..asm import fields
from ..compiler.driver import compile_model
from ..program import Program
from ..sim.rs_model import RsMapping, rs_engine_passes, window_activations
from ..runtime.device import Device, Report

__all__ = ["COSTS", "LEVELS", "DataflowModel", "MatmulAccesses", "DATAFLOW_MODELS", "Accesses",
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


# -- the per-dataflow table ------------------------------------------------------------------------
@dataclass(frozen=True)
class MatmulAccesses:
    """Accesses of one MATMUL before gating (see the module docstring's table)."""
    wt_reads: int
    act_reads: int
    acc_reads: int
    acc_writes: int
    array_wt: int
    array_act: int
    array_psum: int
    rf_fixed: int
    macs: int


@dataclass(frozen=True)
class DataflowModel:
    """The access model of one dataflow: ``matmul(m, k, R, C, a, mx)`` (``a`` = ``accumulate``,
    ``mx`` = ``acc_max``) gives a MATMUL's :class:`MatmulAccesses`, ``rf_per_mac`` the PE
    register accesses of each MAC that is not gated and ``rf_per_gated`` those of a gated one.
    With ``loop_aware`` the call is ``matmul(cfg, args, loop)`` (the MATMUL's operands and the
    LOOP state in effect)."""
    name: str
    matmul: Callable[..., MatmulAccesses]
    rf_per_mac: int
    doc: str
    rf_per_gated: int = 0
    loop_aware: bool = False


def _ws(m: int, k: int, R: int, C: int, a: int, mx: int) -> MatmulAccesses:
    n = m * k * R * C
    return MatmulAccesses(wt_reads=k * R * C, act_reads=k * m * R, acc_reads=(k - 1 + a) * m * C,
                          acc_writes=k * m * C, array_wt=k * R * C, array_act=n, array_psum=n,
                          rf_fixed=k * R * C, macs=n)


def _os(m: int, k: int, R: int, C: int, a: int, mx: int) -> MatmulAccesses:
    n = m * k * R * C
    passes = -(-m // R)
    drains = k if mx else 1                  # acc_max: each tile is its own reduction
    return MatmulAccesses(wt_reads=passes * k * R * C, act_reads=k * m * R,
                          acc_reads=(drains - 1 + a) * m * C, acc_writes=drains * m * C,
                          array_wt=n, array_act=n, array_psum=drains * m * C, rf_fixed=0,
                          macs=n)


def _rs(cfg: AccelConfig, args: dict, loop: dict) -> MatmulAccesses:
    R, C = cfg.rows, cfg.cols
    k = args["k_tiles"]
    passes = rs_engine_passes(cfg, args, loop)
    beats = sum(p.width for p in passes)                 # per PE row
    outs = sum(p.outputs for p in passes)
    kept = sum(p.outputs for p in passes if args["accumulate"] or p.kt)
    return MatmulAccesses(wt_reads=k * R * C, act_reads=beats * R, acc_reads=kept * C,
                          acc_writes=outs * C, array_wt=k * R * C, array_act=beats * R * C,
                          array_psum=outs * C * R,
                          rf_fixed=k * R * C + beats * R * C + 2 * outs * C * R,
                          macs=args["m"] * k * R * C)


#: The MATMUL access formulas of each modelled dataflow (the module docstring's table).
DATAFLOW_MODELS = {
    "ws": DataflowModel("ws", _ws, 1, "weight-stationary: weights shifted in once per tile, "
                        "activations and psums passed PE to PE each MAC"),
    "os": DataflowModel("os", _os, 2, "output-stationary: activations and weights passed PE to "
                        "PE each MAC, psums drained once per output"),
    "rs": DataflowModel("rs", _rs, 4, "row-stationary: filter rows loaded once per group, "
                        "ifmap rows read once per pass and multicast along the PE row, psums "
                        "accumulated in the PE and up the column", rf_per_gated=1,
                        loop_aware=True),
}


def _model(dataflow: str) -> DataflowModel:
    if dataflow not in DATAFLOW_MODELS:
        raise ValueError(f"Energy model dataflow must be one of {tuple(DATAFLOW_MODELS)}, not "
                         f"{dataflow!r}")
    return DATAFLOW_MODELS[dataflow]


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
        The MATMUL access model (:data:`DATAFLOW_MODELS`); ``cfg.dataflow`` when None.

    Raises
    ------
    TypeError
        When ``cfg`` is not an AccelConfig.
    ValueError
        For an illegal instruction word or a dataflow without a model.
    """
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Energy model config must be an AccelConfig, not {cfg!r}")
    model = _model(cfg.dataflow if dataflow is None else dataflow)
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
            mm = (model.matmul(cfg, a, loop) if model.loop_aware else
                  model.matmul(a["m"], a["k_tiles"], R, C, a["accumulate"], a["acc_max"]))
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
    model = _model(dataflow)
    out = EnergyReport(prog.cfg, dataflow, costs, accesses=spans,
                       from_report=counters is not None)
    for i, (info, acc) in enumerate(zip(prog.layers, layer_spans)):
        row = EnergyRow(info.name, info.kind, macs=info.macs, issued_macs=acc.macs,
                        dram=acc.dram, buffer=acc.buffer, array=acc.array)
        if counters is not None:
            c = counters[i]
            row.issued_macs, row.gated_macs = c.issued_macs, c.gated_macs
            row.dram, row.cycles = c.dram_bytes, c.cycles
            if dataflow == "ws" and prog.cfg.dataflow == "ws":
                # an all-zero act row the zero-skipping ws engine drops (R*C skipped MACs)
                # saves its act and psum hops and its ACC read-modify-write (C reads, C writes)
                row.array -= 2 * c.skipped_macs
                row.buffer -= 2 * c.skipped_macs // prog.cfg.rows
        row.mac = row.issued_macs - row.gated_macs
        row.rf = acc.rf_fixed + model.rf_per_mac * row.mac + model.rf_per_gated * row.gated_macs
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
    for df in DATAFLOW_MODELS:
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
        _model(cfg.dataflow)
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


# -- row-stationary conv layer (not in the device yet) ---------------------------------------------
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
        The layer on the array (:func:`~stamen.sw.sim.rs_model.map_conv`).
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
        :func:`~stamen.sw.sim.rs_model.rs_conv_cycles`'), the access counts and their energies.

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
