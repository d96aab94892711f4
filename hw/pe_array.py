"""The weight-stationary systolic array: a grid of :class:`PE` with skew and de-skew."""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import ACC_WIDTH, OPERAND_WIDTH, WT_WIDTH
from .pe import PE, WT_BANKS
from .timing import array_latency

__all__ = ["SystolicArray", "wts_layout", "acts_layout", "psums_layout"]


def wts_layout(cols: int) -> data.StructLayout:
    """Return the layout of one weight beat: a bank and one weight row of ``cols`` int8."""
    return data.StructLayout({"bank": range(WT_BANKS),
                              "row": data.ArrayLayout(signed(WT_WIDTH), cols)})


def acts_layout(rows: int) -> data.StructLayout:
    """Return the layout of one activation beat: a bank and ``rows`` operands ``a - zp``."""
    return data.StructLayout({"bank": range(WT_BANKS),
                              "row": data.ArrayLayout(signed(OPERAND_WIDTH), rows)})


def psums_layout(cols: int) -> data.ArrayLayout:
    """Return the layout of one output row of ``cols`` int32 partial sums."""
    return data.ArrayLayout(signed(ACC_WIDTH), cols)


def _delay(m, sig, n, name):
    """Return ``sig`` delayed by ``n`` cycles through a chain of registers."""
    for i in range(n):
        reg = Signal.like(sig, name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(sig)
        sig = reg
    return sig


class SystolicArray(wiring.Component):
    """A ``rows x cols`` weight-stationary systolic array with two weight banks.

    PE row ``r`` multiplies activation element ``r``; column ``c`` produces output channel ``c``.
    Activations enter unskewed and are skewed internally (row ``r`` by ``r`` cycles), partial sums
    flow down the columns and are de-skewed at the bottom, so that ``o_psums`` carries the product
    ``act @ W[bank]`` of each activation beat, all columns at once, in beat order, exactly
    ``hw/timing.py``'s :func:`array_latency` ``= rows + cols`` cycles after the beat was valid
    on ``i_acts``.

    Each valid ``i_wts`` beat shifts ``row`` into the top of bank ``bank``'s weight chain: after
    ``rows`` beats the bank holds them with the first beat in PE row ``rows - 1`` and the last in
    row 0. A bank read by an activation beat must hold its final weights from the cycle the beat is
    valid on ``i_acts`` (so its last weight beat is at least one cycle earlier), and must not be
    shifted into until ``rows + cols - 2`` (``timing.array_bank_hold``) cycles after the last
    beat that uses it was on ``i_acts`` (a weight beat in that cycle is fine).

    Parameters
    ----------
    rows, cols : int
        Array size.
    zero_gate : bool
        Gate (and count) multiplies whose operand or weight is zero.

    Members
    -------
    i_wts : ``In(stream.Signature(wts_layout(cols), always_ready=True))``
    i_acts : ``In(stream.Signature(acts_layout(rows), always_ready=True))``
    o_psums : ``Out(stream.Signature(psums_layout(cols), always_ready=True))``
    macs_inc, gated_inc : ``Out(range(rows * cols + 1))``; MACs issued and zero-gated by the beat
        valid on ``i_acts`` this cycle (combinational).
    """

    def __init__(self, rows: int, cols: int, zero_gate: bool = True):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TypeError(f"Systolic array {name} must be a positive integer, not {v!r}")
        if not isinstance(zero_gate, bool):
            raise TypeError(f"Systolic array zero_gate must be a bool, not {zero_gate!r}")
        self._rows, self._cols, self._zero_gate = rows, cols, zero_gate
        super().__init__({
            "i_wts": In(stream.Signature(wts_layout(cols), always_ready=True)),
            "i_acts": In(stream.Signature(acts_layout(rows), always_ready=True)),
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
        """Cycles from a beat on ``i_acts`` to its row on ``o_psums``."""
        return array_latency(self.rows, self.cols)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        pes = [[PE(self.zero_gate) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        acts, wts = self.i_acts, self.i_wts
        for r in range(rows):
            # Skew: row r sees the beat r cycles late.
            valid = _delay(m, acts.valid, r, f"skew{r}_valid")
            bank = _delay(m, acts.p.bank, r, f"skew{r}_bank")
            act = _delay(m, acts.p.row[r], r, f"skew{r}_act")
            m.d.comb += [pes[r][0].i_act.valid.eq(valid), pes[r][0].i_act.p.bank.eq(bank),
                         pes[r][0].i_act.p.act.eq(act)]
            for c in range(cols):
                if c > 0:
                    wiring.connect(m, pes[r][c - 1].o_act, pes[r][c].i_act)
                if r > 0:
                    wiring.connect(m, pes[r - 1][c].o_wt, pes[r][c].i_wt)
                    m.d.comb += pes[r][c].i_psum.eq(pes[r - 1][c].o_psum)
                else:
                    m.d.comb += [pes[0][c].i_wt.valid.eq(wts.valid),
                                 pes[0][c].i_wt.p.bank.eq(wts.p.bank),
                                 pes[0][c].i_wt.p.wt.eq(wts.p.row[c])]
                    m.d.comb += pes[0][c].i_psum.eq(0)

        # De-skew: column c is ready cols-1-c cycles before the last one.
        for c in range(cols):
            m.d.comb += self.o_psums.p[c].eq(
                _delay(m, pes[rows - 1][c].o_psum, cols - 1 - c, f"deskew{c}"))
        m.d.comb += self.o_psums.valid.eq(_delay(m, acts.valid, self.latency, "out_valid"))

        # Counting at entry; per-row zero-weight counts shift along with the weights.
        zeros = [[Signal(range(cols + 1), name=f"zeros_b{b}_r{r}") for r in range(rows)]
                 for b in range(WT_BANKS)]
        for b in range(WT_BANKS):
            with m.If(wts.valid & (wts.p.bank == b)):
                m.d.sync += zeros[b][0].eq(sum(wts.p.row[c] == 0 for c in range(cols)))
                m.d.sync += [zeros[b][r].eq(zeros[b][r - 1]) for r in range(1, rows)]
        zrows = Array(Array(row) for row in zeros)[acts.p.bank]
        gated = sum(Mux(acts.p.row[r] == 0, cols, zrows[r]) for r in range(rows))
        m.d.comb += self.macs_inc.eq(Mux(acts.valid, rows * cols, 0))
        if self.zero_gate:
            m.d.comb += self.gated_inc.eq(Mux(acts.valid, gated, 0))
        return m
