"""One multiply-accumulate cell of the weight-stationary systolic array."""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import ACC_WIDTH, OPERAND_WIDTH, WT_WIDTH

__all__ = ["PE", "WT_BANKS", "WtBeat", "ActBeat"]

#: Weight registers per PE: one bank computes while the other is reloaded.
WT_BANKS = 2

#: A weight travelling down a column: which bank it shifts into, and the weight.
WtBeat = data.StructLayout({"bank": range(WT_BANKS), "wt": signed(WT_WIDTH)})
#: An activation operand travelling along a row: the weight bank to use, and ``a - zp``.
ActBeat = data.StructLayout({"bank": range(WT_BANKS), "act": signed(OPERAND_WIDTH)})


class PE(wiring.Component):
    """Weight-stationary MAC cell with two weight banks and optional zero gating.

    Weights shift down a column: a valid ``i_wt`` beat loads ``i_wt.wt`` into bank ``i_wt.bank``
    and, in the same cycle, ``o_wt`` presents the value that bank held before (combinationally,
    with ``i_wt``'s ``valid`` and ``bank``), so a column of PEs forms one shift chain per bank.

    Activations move right with a latency of one cycle: a valid ``i_act`` beat appears on ``o_act``
    in the next cycle. The beat's multiply uses the weight that bank ``i_act.bank`` holds in the
    cycle the beat arrives, and ``i_psum`` must carry the matching partial sum one cycle later;
    ``o_psum`` holds ``i_psum + act * weight`` (int32, wrapping) two cycles after the beat arrived,
    and keeps its value while no beat is in this stage. A PE below reads ``o_psum`` together with
    ``o_act`` of its left neighbour one row lower, which is how the systolic skew lines up.

    With ``zero_gate``, a beat whose operand or selected weight is zero is gated: the
    multiplier's input registers keep their previous values (no toggling), ``o_psum`` takes
    ``i_psum`` unchanged, and ``gated`` is 1 in the cycle the beat arrives.

    Parameters
    ----------
    zero_gate : bool
        Gate multiplies with a zero operand.

    Members
    -------
    i_wt : ``In(stream.Signature(WtBeat, always_ready=True))``
    o_wt : ``Out(stream.Signature(WtBeat, always_ready=True))``
    i_act : ``In(stream.Signature(ActBeat, always_ready=True))``
    o_act : ``Out(stream.Signature(ActBeat, always_ready=True))``
    i_psum : ``In(signed(ACC_WIDTH))``; partial sum from above, one cycle after ``i_act``.
    o_psum : ``Out(signed(ACC_WIDTH))``; partial sum to the PE below.
    gated : ``Out(1)``; the arriving beat's multiply is gated.

    Attributes
    ----------
    s1_act, s1_wt : Signal
        The multiplier's input registers (not ports; observable in simulation for power checks).
    """
    i_wt:   In(stream.Signature(WtBeat, always_ready=True))
    o_wt:   Out(stream.Signature(WtBeat, always_ready=True))
    i_act:  In(stream.Signature(ActBeat, always_ready=True))
    o_act:  Out(stream.Signature(ActBeat, always_ready=True))
    i_psum: In(signed(ACC_WIDTH))
    o_psum: Out(signed(ACC_WIDTH))
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
        wts = Array(Signal(signed(WT_WIDTH), name=f"wt{b}") for b in range(WT_BANKS))

        # Weight shift chain: pass the old value of the shifted bank down, load the new one.
        m.d.comb += [self.o_wt.valid.eq(self.i_wt.valid),
                     self.o_wt.p.bank.eq(self.i_wt.p.bank),
                     self.o_wt.p.wt.eq(wts[self.i_wt.p.bank])]
        with m.If(self.i_wt.valid):
            m.d.sync += wts[self.i_wt.p.bank].eq(self.i_wt.p.wt)

        # Activation pass-through to the right (the payload holds while no beat passes).
        m.d.sync += self.o_act.valid.eq(self.i_act.valid)
        with m.If(self.i_act.valid):
            m.d.sync += self.o_act.p.eq(self.i_act.p)

        # Stage 1: multiplier input registers, held while idle or gated.
        wt = wts[self.i_act.p.bank]
        zero = (self.i_act.p.act == 0) | (wt == 0) if self.zero_gate else C(0)
        m.d.comb += self.gated.eq(self.i_act.valid & zero)
        s1_act, s1_wt = self.s1_act, self.s1_wt
        s1_valid = Signal()
        s1_gated = Signal()
        m.d.sync += [s1_valid.eq(self.i_act.valid), s1_gated.eq(zero)]
        with m.If(self.i_act.valid & ~zero):
            m.d.sync += [s1_act.eq(self.i_act.p.act), s1_wt.eq(wt)]

        # Stage 2: accumulate into the outgoing partial sum (or pass it through when gated).
        with m.If(s1_valid):
            with m.If(s1_gated):
                m.d.sync += self.o_psum.eq(self.i_psum)
            with m.Else():
                m.d.sync += self.o_psum.eq(self.i_psum + s1_act * s1_wt)
        return m
