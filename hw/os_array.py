"""The output-stationary systolic array: :class:`OsPE` cells that each keep one output's partial
sum, with activations entering from the left, weights from the top and a drain to the bottom."""
import functools
import operator

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import ACC_WIDTH, OPERAND_WIDTH, WT_WIDTH
from .pe_array import psums_layout
from .timing import os_array_latency

__all__ = ["OsPE", "OsSystolicArray", "OsActBeat", "os_wts_layout"]

#: An activation operand travelling along a PE row: ``a - zp`` and whether it is the last operand
#: of a reduction (a ``last`` beat completes the partial sum; the next beat starts a new one).
OsActBeat = data.StructLayout({"act": signed(OPERAND_WIDTH), "last": 1})


def os_wts_layout(cols: int) -> data.ArrayLayout:
    """Return the layout of one weight beat of the output-stationary array: ``cols`` int8, the
    weights of one reduction index ``k`` for every output column."""
    return data.ArrayLayout(signed(WT_WIDTH), cols)


def _delay(m, sig, n, name):
    """Return ``sig`` delayed by ``n`` cycles through a chain of registers."""
    for i in range(n):
        reg = Signal.like(sig, name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(sig)
        sig = reg
    return sig


class OsPE(wiring.Component):
    """Output-stationary MAC cell with a drain register and optional zero gating.

    Activations move right and weights move down, each with a latency of one cycle: a valid beat
    on ``i_act`` (``i_wt``) appears on ``o_act`` (``o_wt``) in the next cycle; the payloads hold
    while no beat passes. A valid ``i_act`` beat multiplies ``i_act.act`` by the ``i_wt`` weight
    of the same cycle. The products of the beats since the previous ``last`` beat (or reset),
    this ``last`` beat included, are summed (int32, wrapping); two cycles after the ``last`` beat
    arrived the sum is on ``o_sum`` and ``o_done`` is 1 for that one cycle, and the partial sum
    restarts from 0. ``o_sum`` holds the sum until the next ``last`` beat's replaces it, so the
    next reduction runs while this one is drained (the partial sum and ``o_sum`` form a double
    buffer). The partial sum is one adder into a register that a ``last`` beat clears (no
    restart multiplexer), which iCE40 DSPs absorb.

    With ``zero_gate``, a beat whose operand or weight is zero is gated: the multiplier's input
    registers keep their previous values (no toggling), the partial sum is not written (a gated
    ``last`` beat still completes it), and ``gated`` is 1 in the cycle the beat arrives.

    Parameters
    ----------
    zero_gate : bool
        Gate multiplies with a zero operand.

    Members
    -------
    i_act : ``In(stream.Signature(OsActBeat, always_ready=True))``
    o_act : ``Out(stream.Signature(OsActBeat, always_ready=True))``
    i_wt : ``In(stream.Signature(signed(WT_WIDTH), always_ready=True))``
    o_wt : ``Out(stream.Signature(signed(WT_WIDTH), always_ready=True))``
    o_sum : ``Out(signed(ACC_WIDTH))``; the last completed sum.
    o_done : ``Out(1)``; ``o_sum`` has just been replaced.
    gated : ``Out(1)``; the arriving beat's multiply is gated.

    Attributes
    ----------
    s1_act, s1_wt : Signal
        The multiplier's input registers (not ports; observable in simulation for power checks).
    """
    i_act:  In(stream.Signature(OsActBeat, always_ready=True))
    o_act:  Out(stream.Signature(OsActBeat, always_ready=True))
    i_wt:   In(stream.Signature(signed(WT_WIDTH), always_ready=True))
    o_wt:   Out(stream.Signature(signed(WT_WIDTH), always_ready=True))
    o_sum:  Out(signed(ACC_WIDTH))
    o_done: Out(1)
    gated:  Out(1)

    def __init__(self, zero_gate: bool = True):
        if not isinstance(zero_gate, bool):
            raise TypeError(f"PE zero_gate must be a bool, not {zero_gate!r}")
        self._zero_gate = zero_gate
        super().__init__()
        self.s1_act = Signal(signed(OPERAND_WIDTH))
        self.s1_wt = Signal(signed(WT_WIDTH))

    @property
    def zero_gate(self) -> bool:
        return self._zero_gate

    def elaborate(self, platform):
        m = Module()
        act, wt = self.i_act, self.i_wt

        # Pass-through to the right and down (the payloads hold while no beat passes).
        m.d.sync += [self.o_act.valid.eq(act.valid), self.o_wt.valid.eq(wt.valid)]
        with m.If(act.valid):
            m.d.sync += self.o_act.p.eq(act.p)
        with m.If(wt.valid):
            m.d.sync += self.o_wt.p.eq(wt.p)

        # Stage 1: multiplier input registers, held while idle or gated.
        zero = (act.p.act == 0) | (wt.p == 0) if self.zero_gate else C(0)
        m.d.comb += self.gated.eq(act.valid & zero)
        s1_act, s1_wt = self.s1_act, self.s1_wt
        s1_valid, s1_gated, s1_last = (Signal(name=n) for n in ("s1_valid", "s1_gated", "s1_last"))
        m.d.sync += [s1_valid.eq(act.valid), s1_gated.eq(zero), s1_last.eq(act.p.last)]
        with m.If(act.valid & ~zero):
            m.d.sync += [s1_act.eq(act.p.act), s1_wt.eq(wt.p)]

        # Stage 2: the partial sum (not written while gated); a last beat's sum goes to the drain
        # register (the held partial sum when the last beat is gated) and clears the partial sum.
        s2_psum = Signal(signed(ACC_WIDTH))
        total = Signal(signed(ACC_WIDTH))
        m.d.comb += total.eq(s2_psum + s1_act * s1_wt)
        m.d.sync += self.o_done.eq(s1_valid & s1_last)
        with m.If(s1_valid & s1_last):
            m.d.sync += [s2_psum.eq(0), self.o_sum.eq(Mux(s1_gated, s2_psum, total))]
        with m.Elif(s1_valid & ~s1_gated):
            m.d.sync += s2_psum.eq(total)
        return m


class OsSystolicArray(wiring.Component):
    """A ``rows x cols`` output-stationary systolic array.

    PE ``(r, c)`` computes output ``c`` of the activation stream of PE row ``r``: the sum over a
    reduction (the beats up to and including a ``last`` beat, see :class:`OsPE`) of
    ``act * w[c]``. Row ``r``'s activations enter on ``i_acts[r]`` already skewed: the beat of
    reduction step ``u`` must be valid on ``i_acts[r]`` exactly ``r`` cycles after the weight
    row of step ``u`` is valid on ``i_wts`` (a row may have no beats for a reduction, e.g. a row
    beyond the matrix). The array skews the weights itself (column ``c`` by ``c`` cycles) and
    moves them down one row per cycle, so PE ``(r, c)`` sees step ``u``'s operands together.

    A completed reduction of row ``r`` leaves on ``o_psums`` (all columns at once, de-skewed)
    ``hw/timing.py``'s :func:`os_array_latency` (``cols + 1``: two PE pipeline stages, ``cols -
    1`` columns, the de-skew) cycles after its ``last`` beat was on ``i_acts[r]``. The rows of a
    reduction step (skewed like its beats) therefore leave in order, one per cycle; reductions must
    be at least ``rows`` steps apart (two ``last`` beats of one PE row), so outputs never collide,
    and the drain overlaps the next reductions.

    Parameters
    ----------
    rows, cols : int
        Array size.
    zero_gate : bool
        Gate (and count) multiplies whose operand or weight is zero.

    Members
    -------
    i_acts : ``In(stream.Signature(OsActBeat, always_ready=True)).array(rows)``
    i_wts : ``In(stream.Signature(os_wts_layout(cols), always_ready=True))``
    o_psums : ``Out(stream.Signature(psums_layout(cols), always_ready=True))``
    macs_inc, gated_inc : ``Out(range(rows * cols + 1))``; MACs issued and zero-gated by the
        beats valid on ``i_acts`` this cycle (combinational).
    """

    def __init__(self, rows: int, cols: int, zero_gate: bool = True):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TypeError(f"Systolic array {name} must be a positive integer, not {v!r}")
        if not isinstance(zero_gate, bool):
            raise TypeError(f"Systolic array zero_gate must be a bool, not {zero_gate!r}")
        self._rows, self._cols, self._zero_gate = rows, cols, zero_gate
        super().__init__({
            "i_acts": In(stream.Signature(OsActBeat, always_ready=True)).array(rows),
            "i_wts": In(stream.Signature(os_wts_layout(cols), always_ready=True)),
            "o_psums": Out(stream.Signature(psums_layout(cols), always_ready=True)),
            "macs_inc": Out(range(rows * cols + 1)),
            "gated_inc": Out(range(rows * cols + 1)),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def zero_gate(self) -> bool:
        return self._zero_gate

    @property
    def latency(self) -> int:
        """Cycles from a ``last`` beat on ``i_acts[r]`` to its row on ``o_psums``."""
        return os_array_latency(self.rows, self.cols)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        pes = [[OsPE(self.zero_gate) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        wts = self.i_wts
        for r in range(rows):
            for c in range(cols):
                if c > 0:
                    wiring.connect(m, pes[r][c - 1].o_act, pes[r][c].i_act)
                else:
                    wiring.connect(m, wiring.flipped(self.i_acts[r]), pes[r][0].i_act)
                if r > 0:
                    wiring.connect(m, pes[r - 1][c].o_wt, pes[r][c].i_wt)
                else:
                    # Skew: column c sees the weight row c cycles late.
                    m.d.comb += [
                        pes[0][c].i_wt.valid.eq(_delay(m, wts.valid, c, f"skew{c}_valid")),
                        pes[0][c].i_wt.p.eq(_delay(m, wts.p[c], c, f"skew{c}_wt"))]

        # Drain: PE (r, c) finishes r + c cycles after PE (0, 0); in each column one PE at a
        # time has o_done, so an AND-OR picks it; then column c is de-skewed by cols-1-c cycles.
        for c in range(cols):
            col = Signal(signed(ACC_WIDTH), name=f"drain{c}")
            m.d.comb += col.eq(functools.reduce(operator.or_, (
                Mux(pes[r][c].o_done, pes[r][c].o_sum, 0) for r in range(rows))))
            m.d.comb += self.o_psums.p[c].eq(_delay(m, col, cols - 1 - c, f"deskew{c}"))
        m.d.comb += self.o_psums.valid.eq(
            Cat(*(pes[r][cols - 1].o_done for r in range(rows))).any())

        # Counting at entry: a zero operand gates its cols MACs, else the zero weights of its
        # step, whose count row r sees r cycles after the weight row entered.
        zeros = [Signal(range(cols + 1), name=f"zeros_r{r}") for r in range(rows)]
        m.d.comb += zeros[0].eq(Mux(wts.valid, sum(wts.p[c] == 0 for c in range(cols)), 0))
        m.d.sync += [zeros[r].eq(zeros[r - 1]) for r in range(1, rows)]
        acts = self.i_acts
        m.d.comb += self.macs_inc.eq(sum(Mux(acts[r].valid, cols, 0) for r in range(rows)))
        if self.zero_gate:
            m.d.comb += self.gated_inc.eq(sum(
                Mux(acts[r].valid, Mux(acts[r].p.act == 0, cols, zeros[r]), 0)
                for r in range(rows)))
        return m
