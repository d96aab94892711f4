"""The row-stationary PE array (Eyeriss): ``rows`` x ``cols`` :class:`~.rs_pe.RsPE` with filter
rows multicast along PE rows and psums accumulated up the columns.

One *pass* (``sw.analysis.eyeriss.RsPass``; ``sw.analysis.eyeriss.map_conv`` maps a conv layer to passes) runs
one row command on every used PE, all started in the same cycle:

* **Filters.** PE row ``i`` holds one filter row (``F`` interleaved filters of ``S`` taps) of
  one input channel. ``wt_write[i]`` writes the filter spads of row ``i``'s PEs whose bit is
  set in ``cols``, column ``j`` with ``data[j]``: one buffer read reaches every PE of the row
  (multicast: the same weight in every ``data[j]``), and column blocks that run different
  filter sets (horizontal replication) get theirs through the mask. The device engine
  (``hw/rs_matmul.py``) writes a different filter to every column.
* **Ifmap rows.** ``i_acts[i][j]`` carries PE ``(i, j)``'s ifmap row, dense or compressed
  (``zero_skip``). The mapping gives PE ``(i, j)`` row ``out_row(j)*stride + ky(i)``, so one
  ifmap row goes to every PE of a diagonal; the global buffer that reads each row once and
  multicasts it is the feeder's job (a stream per PE here keeps the array independent of it).
* **Psums.** Used PEs are rows ``0 .. used_rows - 1`` and columns ``0 .. used_cols - 1``.
  PE ``(i, j)`` adds the psums of PE ``(i + 1, j)`` (vertical accumulation); the bottom used
  PE adds ``i_psums[j]`` (the previous pass's psums from the psum buffer) when the command's
  ``acc`` is set, else 0; the top PE's psums leave on ``o_psums[j]``, output column outer and
  filter inner.

A command is accepted (``i_cmd.ready``) only when every PE is ``idle``, so a pass's psums have
all left before the next pass changes ``used_rows``.

With ``psum_fifo_depth = D > 0`` the psums do not climb through the PEs and the rows run
apart: every PE computes its own psums, puts them into a ``D``-deep FIFO beside it, and a
column of adder stages sums the FIFO heads, bottom to top, one psum per cycle, onto
``o_psums[j]`` (``rows + 1`` cycles after the slowest PE's psum). A PE then never waits for the
PE below, and each PE row takes its own row commands: ``i_row_cmds[i]`` (a PE row command,
``acc`` ignored) is accepted when the PEs of row ``i`` are idle and goes to all of them
(``i_cmd`` and ``i_psums`` are absent). So a row starts its next pass as soon as it has
finished its last one, and the psums of a pass meet in the adder however far apart the rows
ran; the user keeps every FIFO from filling up (or the PE waits for room), and every pass
must use all rows and columns. The device engine (``hw/rs_matmul.py``) uses this.

Parameters
----------
cfg : RsPEConfig
rows, cols : int
zero_gate, zero_skip : bool
    As for :class:`~.rs_pe.RsPE`.
psum_fifo_depth : int
    0: psums climb through the PEs' MAC stages, one command for the array; ``D > 0``: FIFOs
    beside the PEs, a column adder and a command stream per PE row (above).

Members
-------
i_cmd : ``In(stream.Signature(rs_array_cmd_layout(cfg, rows, cols)))``; without psum FIFOs.
i_row_cmds : ``In(stream.Signature(cfg.cmd_layout)).array(rows)``; with psum FIFOs.
i_acts : ``In(stream.Signature(cfg.act_layout)).array(rows, cols)``
i_psums : ``In(stream.Signature(signed(ACC_WIDTH))).array(cols)``; without psum FIFOs.
o_psums : ``Out(stream.Signature(signed(ACC_WIDTH))).array(cols)``
wt_write : ``In(rs_wt_write_layout(cfg, cols)).array(rows)``; ``en``, ``cols`` (mask),
    ``addr``, ``data[j]``: written in the cycle ``en`` is high.
idle : ``Out(1)``; every PE is idle.
watermark : ``In(range(cfg.max_width + 1))``; to every PE (:class:`~.rs_pe.RsWindow`; 0: unused).
macs_inc, gated_inc, skipped_inc : the PEs' counters summed, this cycle.
"""
from __future__ import annotations

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .params import ACC_WIDTH, WT_WIDTH
from .rs_pe import RsPE, RsPEConfig, check_bool

__all__ = ["RsArray", "rs_array_cmd_layout", "rs_wt_write_layout"]


def rs_array_cmd_layout(cfg: RsPEConfig, rows: int, cols: int) -> data.StructLayout:
    """Layout of a pass command: the PE row command (``acc`` applies to the bottom used PE;
    the PEs above always add the psums from below) and the used rows and columns."""
    fields = dict(cfg.cmd_layout.members)
    fields.update({"used_rows": range(1, rows + 1), "used_cols": range(1, cols + 1)})
    return data.StructLayout(fields)


def rs_wt_write_layout(cfg: RsPEConfig, cols: int) -> data.StructLayout:
    """Layout of a filter spad write to one PE row: the columns it reaches (``cols`` mask) and
    the weight of each column (``data[j]``; a multicast repeats one weight)."""
    return data.StructLayout({"en": 1, "cols": cols, "addr": range(cfg.wt_depth),
                              "data": data.ArrayLayout(signed(WT_WIDTH), cols)})


class RsArray(wiring.Component):
    """The row-stationary PE array; see the module docstring."""

    def __init__(self, cfg: RsPEConfig, rows: int, cols: int, *, zero_gate: bool = True,
                 zero_skip: bool = False, psum_fifo_depth: int = 0):
        if not isinstance(cfg, RsPEConfig):
            raise TypeError(f"Row-stationary array PE configuration must be an RsPEConfig, "
                            f"not {cfg!r}")
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Row-stationary array {name} must be a positive integer, "
                                 f"not {v!r}")
        check_bool("zero_gate", zero_gate)
        check_bool("zero_skip", zero_skip)
        if not isinstance(psum_fifo_depth, int) or psum_fifo_depth < 0:
            raise ValueError(f"Row-stationary array psum_fifo_depth must be a non-negative "
                             f"integer, not {psum_fifo_depth!r}")
        self._fifo_depth = psum_fifo_depth
        self._cfg, self._rows, self._cols = cfg, rows, cols
        self._zero_gate, self._zero_skip = zero_gate, zero_skip
        pes = rows * cols
        if psum_fifo_depth:
            cmds = {"i_row_cmds": In(stream.Signature(cfg.cmd_layout)).array(rows)}
        else:
            cmds = {"i_cmd": In(stream.Signature(rs_array_cmd_layout(cfg, rows, cols))),
                    "i_psums": In(stream.Signature(signed(ACC_WIDTH))).array(cols)}
        super().__init__({
            **cmds,
            "i_acts": In(stream.Signature(cfg.act_layout)).array(rows, cols),
            "o_psums": Out(stream.Signature(signed(ACC_WIDTH))).array(cols),
            "wt_write": In(rs_wt_write_layout(cfg, cols)).array(rows),
            "idle": Out(1), "watermark": In(range(cfg.max_width + 1)),
            "macs_inc": Out(range(pes + 1)), "gated_inc": Out(range(pes + 1)),
            "skipped_inc": Out(range(pes * cfg.max_taps + 1)),
        })

    @property
    def cfg(self) -> RsPEConfig:
        return self._cfg

    @property
    def shape(self) -> tuple[int, int]:
        return self._rows, self._cols

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        pe = [[RsPE(self._cfg, zero_gate=self._zero_gate, zero_skip=self._zero_skip)
               for _ in range(cols)] for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                m.submodules[f"pe_{i}_{j}"] = pe[i][j]
        m.d.comb += self.idle.eq(Cat(p.idle for r in pe for p in r).all())
        for i in range(rows):
            wt = self.wt_write[i]
            for j in range(cols):
                p = pe[i][j]
                wiring.connect(m, wiring.flipped(self.i_acts[i][j]), p.i_acts)
                m.d.comb += [
                    p.wt_write.en.eq(wt.en & wt.cols[j]), p.wt_write.addr.eq(wt.addr),
                    p.wt_write.data.eq(wt.data[j]), p.watermark.eq(self.watermark),
                ]
        if self._fifo_depth:
            self._row_commands(m, pe)
            self._reduce_columns(m, pe)
        else:
            self._chain_columns(m, pe, self._array_command(m, pe))

        flat = [p for r in pe for p in r]
        m.d.comb += [self.macs_inc.eq(sum(p.macs_inc for p in flat)),
                     self.gated_inc.eq(sum(p.gated_inc for p in flat)),
                     self.skipped_inc.eq(sum(p.skipped_inc for p in flat))]
        return m

    def _array_command(self, m, pe):
        """Without psum FIFOs: one command for the array, accepted when every PE is idle (so
        a pass's psums have all left before the next pass changes ``used_rows``), to the used
        PEs; the bottom used PE takes the command's ``acc``, the PEs above add the psums from
        below. Returns the running pass's used rows."""
        cmd = self.i_cmd
        used_rows = Signal(range(1, self._rows + 1), init=1)
        m.d.comb += cmd.ready.eq(self.idle)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += used_rows.eq(cmd.p.used_rows)
        for i, row in enumerate(pe):
            for j, p in enumerate(row):
                m.d.comb += p.i_cmd.valid.eq(cmd.valid & cmd.ready & (i < cmd.p.used_rows)
                                             & (j < cmd.p.used_cols))
                for name in p.i_cmd.p.shape().members:
                    if name != "acc":
                        m.d.comb += getattr(p.i_cmd.p, name).eq(getattr(cmd.p, name))
                m.d.comb += p.i_cmd.p.acc.eq(Mux(i == cmd.p.used_rows - 1, cmd.p.acc, 1))
        return used_rows

    def _row_commands(self, m, pe):
        """With psum FIFOs: row ``i``'s command is accepted when its PEs are idle and goes to
        all of them, without ``acc``."""
        for i, row in enumerate(pe):
            cmd = self.i_row_cmds[i]
            m.d.comb += cmd.ready.eq(Cat(p.idle for p in row).all())
            for p in row:
                m.d.comb += [p.i_cmd.valid.eq(cmd.valid & cmd.ready), p.i_cmd.p.eq(cmd.p),
                             p.i_cmd.p.acc.eq(0)]

    def _reduce_columns(self, m, pe):
        """``psum_fifo_depth > 0``: each PE's psums go into a FIFO beside it; adder stage ``i``
        of column ``j`` adds the head of PE ``(i, j)``'s FIFO to stage ``i + 1``'s sum (0 below
        the bottom row) into its register, when both are there and the register is free or
        taken; stage 0's register is ``o_psums[j]``."""
        rows, cols = self._rows, self._cols
        for j in range(cols):
            taken = self.o_psums[j].ready
            below_valid, below = [None] * rows, [None] * rows
            stages = []
            for i in range(rows):
                fifo = SyncFIFO(width=ACC_WIDTH, depth=self._fifo_depth)
                m.submodules[f"psum_fifo_{i}_{j}"] = fifo
                o = pe[i][j].o_psums
                m.d.comb += [fifo.w_en.eq(o.valid), fifo.w_data.eq(o.p), o.ready.eq(fifo.w_rdy),
                             pe[i][j].i_psums.valid.eq(0)]
                sv = Signal(name=f"sum_valid_{i}_{j}")
                sd = Signal(signed(ACC_WIDTH), name=f"sum_{i}_{j}")
                stages.append((fifo, sv, sd))
            for i in range(rows):                        # top first: taken flows down
                fifo, sv, sd = stages[i]
                if i + 1 < rows:
                    _, bv, bd = stages[i + 1]
                else:
                    bv, bd = C(1), C(0)
                fire = Signal(name=f"sum_fire_{i}_{j}")
                m.d.comb += [fire.eq(fifo.r_rdy & bv & (~sv | taken)), fifo.r_en.eq(fire)]
                with m.If(fire):
                    m.d.sync += [sv.eq(1), sd.eq(fifo.r_data.as_signed() + bd)]
                with m.Elif(taken):
                    m.d.sync += sv.eq(0)
                taken = fire
            m.d.comb += [self.o_psums[j].valid.eq(stages[0][1]),
                         self.o_psums[j].p.eq(stages[0][2])]

    def _chain_columns(self, m, pe, used_rows):
        """``psum_fifo_depth == 0``: psums climb each column through the PEs' MAC stages; the
        bottom used PE takes ``i_psums[j]``."""
        rows, cols = self._rows, self._cols
        for j in range(cols):
            ext = self.i_psums[j]
            ext_ready = []
            for i in range(rows):
                p, bottom = pe[i][j], used_rows == i + 1
                if i + 1 < rows:
                    below = pe[i + 1][j].o_psums
                    m.d.comb += [p.i_psums.valid.eq(Mux(bottom, ext.valid, below.valid)),
                                 p.i_psums.p.eq(Mux(bottom, ext.p, below.p)),
                                 below.ready.eq(~bottom & p.i_psums.ready)]
                else:
                    m.d.comb += [p.i_psums.valid.eq(ext.valid), p.i_psums.p.eq(ext.p)]
                ext_ready.append(bottom & p.i_psums.ready)
            m.d.comb += ext.ready.eq(Cat(ext_ready).any())
            wiring.connect(m, pe[0][j].o_psums, wiring.flipped(self.o_psums[j]))
