"""Post-processing: REQUANT (ACC + bias -> fixed-point requantization -> OUT)."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .params import ACC_WIDTH, ACT_WIDTH, AccelConfig

__all__ = ["PostProc", "Requantizer", "SerialRequantizer"]

_INT_MIN = -(1 << (ACC_WIDTH - 1))
_INT_MAX = (1 << (ACC_WIDTH - 1)) - 1
_PRODUCT = signed(2 * ACC_WIDTH)


def _srdhm(m, prod, sat, name):
    """Return the saturating rounding doubling high multiply of the 64-bit ``prod`` (``sat``: the
    ``-2**31 * -2**31`` case): ``trunc((prod + nudge) / 2**31)``."""
    num = Signal(signed(2 * ACC_WIDTH + 1), name=f"{name}_num")
    m.d.comb += num.eq(prod + Mux(prod >= 0, 1 << 30, 1 - (1 << 30)))
    trunc = (num + Mux(num < 0, (1 << 31) - 1, 0)) >> 31
    return Mux(sat, _INT_MAX, trunc)


def _shift_clamp(m, q, shift, zp, relu, out, name):
    """Drive ``out`` from ``q``: rounding right shift by ``shift`` (ties away from zero),
    ``+ zp``, clamp to ``[zp if relu else -128, 127]``."""
    shift_width = isa.REQUANT_MAX_SHIFT.bit_length()
    sh = shift[:shift_width]
    lo = Mux(relu, zp, -128)
    mask = Signal(ACC_WIDTH, name=f"{name}_mask")
    m.d.comb += mask.eq((Const(1, 1) << sh) - 1)
    remainder = q.as_unsigned() & mask
    threshold = (mask >> 1) + (q < 0)
    y = Signal(signed(ACC_WIDTH + 2), name=f"{name}_y")
    m.d.comb += y.eq((q >> sh) + (remainder > threshold) + zp)
    with m.If(y > 127):
        m.d.comb += out.eq(127)
    with m.Elif(y < lo):
        m.d.comb += out.eq(lo)
    with m.Else():
        m.d.comb += out.eq(y)


def _lean_srdhm(biased):
    """Return srdhm from ``biased = a*b + 2**30`` (64 bits) as 33 signed bits, unsaturated:
    ``trunc((ab + nudge) / 2**31)`` equals ``floor((ab + 2**30) / 2**31)`` for either sign of
    ``ab`` (for ``ab < 0``, ``nudge = 1 - 2**30`` and truncation rounds up by ``2**31 - 1``).
    The only result outside int32, ``2**31`` (the ``-2**31 * -2**31`` case), should saturate
    to ``INT_MAX``; :func:`_lean_shift_clamp` gives the same output for both (a rounding right
    shift by ``sh`` maps ``2**31 - 1`` and ``2**31`` to one value for ``sh >= 1``, and both clamp
    to 127 for ``sh == 0``), so no saturation is needed."""
    return biased[31:].as_signed()                   # 33 bits


def _lean_shift_clamp(m, q, shift, zp, relu, out, name):
    """Drive ``out`` as :func:`_shift_clamp` does, without a rounding constant: a right shift
    by ``sh`` with ties away from zero is ``(q + 2**(sh-1) - neg) >> sh`` (``neg = q < 0``; no
    rounding when ``sh == 0``), which equals ``(t + 1) >> 1`` with ``t = (2*qd) >> sh`` and
    ``qd = q - (neg and sh > 0)``. ``t`` is limited to ``[-513, 510]`` first, which limits the
    shifted value to ``[-256, 255]`` and cannot change the clamped result of ``+ zp``."""
    shift_width = isa.REQUANT_MAX_SHIFT.bit_length()
    sh = shift[:shift_width]
    qd = Signal(signed(len(q) + 1), name=f"{name}_qd")
    m.d.comb += qd.eq(q - ((q < 0) & (sh != 0)))
    t = Signal(signed(len(q) + 2), name=f"{name}_t")
    m.d.comb += t.eq(Cat(C(0, 1), qd).as_signed() >> sh)
    tc = Signal(signed(11), name=f"{name}_tc")
    with m.If(t > 510):
        m.d.comb += tc.eq(510)
    with m.Elif(t < -513):
        m.d.comb += tc.eq(-513)
    with m.Else():
        m.d.comb += tc.eq(t)
    y0c = Signal(signed(10), name=f"{name}_y0c")
    m.d.comb += y0c.eq((tc + 1) >> 1)
    y = Signal(signed(11), name=f"{name}_y")
    m.d.comb += y.eq(y0c + zp)
    lo = Mux(relu, zp, -128)
    with m.If(y > 127):
        m.d.comb += out.eq(127)
    with m.Elif(y < lo):
        m.d.comb += out.eq(lo)
    with m.Else():
        m.d.comb += out.eq(y)


class Requantizer(wiring.Component):
    """Requantize one row, bit-exact with ``golden.requantize`` (three-stage pipeline).

    Stage 1 (combinational in the input cycle): ``x = acc + bias`` (wrapping) and the 64-bit
    product ``x * mult``, registered. Stage 2: the saturating rounding doubling high multiply
    (nudge, truncating division by 2**31, the ``-2**31 * -2**31`` saturation), registered. Stage 3
    (combinational): rounding right shift (ties away from zero), ``+ zp_out`` and the clamp to
    ``[zp_out if relu else -128, 127]``. ``o_row`` is valid two cycles after ``i_valid``.

    ``bias``, ``mult``, ``shift``, ``zp_out`` and ``relu`` must hold steady while rows are in
    flight; ``shift`` must be in ``0..isa.REQUANT_MAX_SHIFT`` (only its low bits are used).

    Members
    -------
    i_valid : ``In(1)``; i_acc : ``In(acc row layout)``
    bias, mult, shift : ``In(param row layout)``
    zp_out : ``In(signed(8))``; relu : ``In(1)``
    o_valid : ``Out(1)``; o_row : ``Out(out row layout)``
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"Requantizer configuration must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        param = bus.spad_row_layout(cfg, "param")
        super().__init__({
            "i_valid": In(1), "i_acc": In(bus.spad_row_layout(cfg, "acc")),
            "bias": In(param), "mult": In(param), "shift": In(param),
            "zp_out": In(isa.RequantArgs.as_shape()["zp_out"].shape), "relu": In(1),
            "o_valid": Out(1), "o_row": Out(bus.spad_row_layout(cfg, "out")),
        })

    def elaborate(self, platform):
        m = Module()
        s2_valid, s3_valid = Signal(), Signal()
        m.d.sync += [s2_valid.eq(self.i_valid), s3_valid.eq(s2_valid)]
        m.d.comb += self.o_valid.eq(s3_valid)
        for c in range(self._cfg.cols):
            # Stage 1: wrapping add, 64-bit product.
            x = Signal(signed(ACC_WIDTH), name=f"s1_x{c}")
            s2_prod = Signal(_PRODUCT, name=f"s2_prod{c}")
            s2_sat = Signal(name=f"s2_sat{c}")
            m.d.comb += x.eq(self.i_acc[c] + self.bias[c])
            m.d.sync += [s2_prod.eq(x * self.mult[c]),
                         s2_sat.eq((x == _INT_MIN) & (self.mult[c] == _INT_MIN))]
            # Stage 2: srdhm = trunc((ab + nudge) / 2**31), saturating.
            s3_q = Signal(signed(ACC_WIDTH), name=f"s3_q{c}")
            m.d.sync += s3_q.eq(_srdhm(m, s2_prod, s2_sat, f"s2_{c}"))
            # Stage 3: rounding shift right (ties away from zero), zero point, clamp.
            _shift_clamp(m, s3_q, self.shift[c], self.zp_out, self.relu, self.o_row[c], f"s3_{c}")
        return m


class SerialRequantizer(Requantizer):
    """Requantize one row in groups of ``L = cfg.requant_lane_count`` lanes, bit-exact with
    ``golden.requantize``; for small devices (``cfg.requant_serial``).

    The row's ``G = cols // L`` groups take turns on the lanes: group ``g`` (columns
    ``g*L .. g*L+L-1``) is loaded in cycle ``g*(N+1)`` after ``i_valid`` (``x = acc + bias``),
    then multiplied in the next ``N = 32 // cfg.requant_mul_bits`` cycles (shift-and-add of
    ``requant_mul_bits`` multiplier bits per cycle from logic, or one hardware multiply when it is
    32), then rounded (srdhm) and shifted, clamped into the row register in two more pipeline
    cycles while the next group multiplies. ``o_valid`` is 1 for one cycle
    ``cfg.requant_row_cycles + 2`` cycles after ``i_valid``, with the row on ``o_row``.

    ``i_valid`` may come every ``cfg.requant_row_cycles`` cycles (the next row's group 0 loads as
    the previous row's last group leaves the multiplier). ``i_acc`` must hold steady from
    ``i_valid`` until the last group has loaded (``(G-1)*(N+1)`` cycles later); ``bias``,
    ``mult``, ``shift``, ``zp_out`` and ``relu`` while rows are in flight.

    Members
    -------
    As :class:`Requantizer`.
    """

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        lanes = cfg.requant_lane_count
        groups = cfg.cols // lanes
        bits = cfg.requant_mul_bits
        steps = ACC_WIDTH // bits

        # Sequencer: group g, step s (0: load, 1..steps: multiply).
        active = Signal()
        g = Signal(range(groups))
        s = Signal(range(steps + 1))
        load = self.i_valid | (active & (s == 0))
        mul_last = active & (s == steps)
        with m.If(self.i_valid):
            m.d.sync += [active.eq(1), g.eq(0), s.eq(1)]
        with m.Elif(active):
            with m.If(s != steps):
                m.d.sync += s.eq(s + 1)
            with m.Elif(g != groups - 1):
                m.d.sync += [g.eq(g + 1), s.eq(0)]
            with m.Else():
                m.d.sync += active.eq(0)
        ld_g = Mux(self.i_valid, 0, g)              # the group loading this cycle

        s2_valid, s3_valid = Signal(), Signal()
        s2_g, s3_g = Signal.like(g), Signal.like(g)
        m.d.sync += [s2_valid.eq(mul_last), s2_g.eq(g), s3_valid.eq(s2_valid), s3_g.eq(s2_g),
                     self.o_valid.eq(s3_valid & (s3_g == groups - 1))]
        row = Signal.like(self.o_row)
        m.d.comb += self.o_row.eq(row)

        def pick(vec, grp, lane, name):
            """Element ``grp*lanes + lane`` of the row ``vec``, as a signal."""
            sig = Signal.like(vec[lane], name=f"{name}{lane}")
            m.d.comb += sig.eq(Array(vec[k * lanes + lane] for k in range(groups))[grp])
            return sig

        for ln in range(lanes):
            x = Signal(signed(ACC_WIDTH), name=f"s1_x{ln}")
            mcand = Signal(signed(ACC_WIDTH), name=f"mcand{ln}")
            m.d.comb += x.eq(pick(self.i_acc, ld_g, ln, "s1_acc")
                             + pick(self.bias, ld_g, ln, "s1_bias"))
            with m.If(load):
                m.d.sync += mcand.eq(x)
            # prod = mcand * mult + 2**30, so that srdhm = prod >> 31 (see _lean_srdhm).
            prod = self._multiplier(m, load, pick(self.mult, ld_g, ln, "s1_mult"), mcand,
                                    mul_last, bits, steps, ln)
            s3_q = Signal(signed(ACC_WIDTH + 1), name=f"s3_q{ln}")   # unsaturated srdhm
            m.d.sync += s3_q.eq(_lean_srdhm(prod))
            y = Signal(signed(ACT_WIDTH), name=f"s3_out{ln}")
            _lean_shift_clamp(m, s3_q, pick(self.shift, s3_g, ln, "s3_shift"), self.zp_out,
                              self.relu, y, f"s3_{ln}")
            with m.If(s3_valid):
                with m.Switch(s3_g):
                    for k in range(groups):
                        with m.Case(k):
                            m.d.sync += row[k * lanes + ln].eq(y)
        return m

    @staticmethod
    def _multiplier(m, load, mult, mcand, last, bits, steps, ln):
        """Return ``mcand * mult + 2**30`` (64 bits; ``mult`` is taken with ``load``), valid
        ``steps`` cycles after ``load`` (``last``: the cycle of the final step)."""
        if steps == 1:
            mplier = Signal(signed(ACC_WIDTH), name=f"mplier{ln}")
            prod = Signal(_PRODUCT, name=f"prod{ln}")
            with m.If(load):
                m.d.sync += mplier.eq(mult)
            with m.Else():
                m.d.sync += prod.eq(mcand * mplier + (1 << 30))
            return prod
        # Radix 2**bits, least significant chunk first: t = hi + mcand * chunk, then
        # {hi, lo} = {t, lo} >> bits; after all steps {hi, lo} = hi_0 + mcand * mult with the
        # initial hi_0 = 2**30. The last chunk is signed (its top bit weighs -2**31).
        mplier = Signal(ACC_WIDTH, name=f"mplier{ln}")
        hi = Signal(signed(ACC_WIDTH + 2), name=f"prod_hi{ln}")
        lo = Signal(ACC_WIDTH, name=f"prod_lo{ln}")
        chunk = mplier[:bits]
        terms = [Mux(chunk[b], mcand << b, 0) for b in range(bits - 1)]
        top = Mux(chunk[bits - 1], mcand << (bits - 1), 0)
        t = Signal(signed(ACC_WIDTH + bits + 2), name=f"prod_t{ln}")
        m.d.comb += t.eq(sum(terms, hi) + Mux(last, -top, top))
        with m.If(load):
            m.d.sync += [mplier.eq(mult), hi.eq(1 << 30)]
        with m.Else():
            m.d.sync += [mplier.eq(mplier >> bits), hi.eq(t >> bits),
                         lo.eq(Cat(lo[bits:], t[:bits]))]
        return Cat(lo, hi[:ACC_WIDTH]).as_signed()


class PostProc(wiring.Component):
    """Execute REQUANT (see ``hw/isa.py``) on the ACC, PARAM and OUT scratchpads.

    Reads the bias, multiplier and shift rows (4 cycles), then one ACC row every
    ``I = cfg.requant_row_cycles`` cycles through the :class:`Requantizer` pipeline (``I = 1``;
    the OUT row is written 3 cycles after its ACC read) or, when ``cfg.requant_serial``, the
    :class:`SerialRequantizer` (the OUT row is written ``I + 3`` cycles after its ACC read).
    A REQUANT of ``n`` rows keeps ``busy`` high for ``n + 7`` cycles, or ``n*I + 8`` when
    serial (``sw.isasim.requant_cycles``). If any shift lane is outside
    ``0..isa.REQUANT_MAX_SHIFT``, nothing is written, ``busy`` drops after 4 cycles and
    ``fault`` is set.

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    i_cmd : ``In(stream.Signature(isa.RequantArgs))``; ``ready`` is ``~busy``.
    busy : ``Out(1)``
    fault : ``Out(1)``
        Set when a command finished because of a bad shift; cleared when the next command is
        accepted.
    acc_rd, param_rd : ``In(memory.ReadPort.Signature(...))``
        Synchronous read ports (data the cycle after ``addr``/``en``).
    out_wr : ``In(memory.WritePort.Signature(...))``
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"PostProc configuration must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg

        def port(kind, name):
            return In(kind.Signature(addr_width=bus.spad_addr_width(cfg, name),
                                     shape=bus.spad_row_layout(cfg, name)))
        super().__init__({
            "i_cmd": In(stream.Signature(isa.RequantArgs)),
            "busy": Out(1),
            "fault": Out(1),
            "acc_rd": port(memory.ReadPort, "acc"),
            "param_rd": port(memory.ReadPort, "param"),
            "out_wr": port(memory.WritePort, "out"),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        serial = cfg.requant_serial
        m.submodules.rq = rq = (SerialRequantizer if serial else Requantizer)(cfg)
        cmd = Signal(isa.RequantArgs)
        param = bus.spad_row_layout(self._cfg, "param")
        bias, mult, shift = (Signal(param, name=n) for n in ("bias", "mult", "shift"))
        m.d.comb += [rq.bias.eq(bias), rq.mult.eq(mult), rq.shift.eq(shift),
                     rq.zp_out.eq(cmd.zp_out), rq.relu.eq(cmd.relu),
                     rq.i_acc.eq(self.acc_rd.data)]
        k = Signal(range(4))                                  # PARAM row being read + 1
        rd_i, wr_i = Signal.like(cmd.rows, name="rd_i"), Signal.like(cmd.rows, name="wr_i")
        bad = Cat(self.param_rd.data[c] < 0 for c in range(cfg.cols)).any() | \
            Cat(self.param_rd.data[c] > isa.REQUANT_MAX_SHIFT for c in range(cfg.cols)).any()

        m.d.comb += [self.i_cmd.ready.eq(~self.busy),
                     self.acc_rd.en.eq(0), self.param_rd.en.eq(0),
                     self.param_rd.addr.eq(cmd.param_addr + k),
                     self.acc_rd.addr.eq(cmd.acc_addr + rd_i),
                     self.out_wr.addr.eq(cmd.out_addr + wr_i),
                     self.out_wr.data.eq(rq.o_row),
                     self.out_wr.en.eq(rq.o_valid)]
        with m.If(rq.o_valid):
            m.d.sync += wr_i.eq(wr_i + 1)
        gap = Signal(range(cfg.requant_row_cycles))           # cycles until the next ACC read
        s1_valid = Signal()                                   # ACC read data valid this cycle
        m.d.sync += s1_valid.eq(0)
        m.d.comb += rq.i_valid.eq(s1_valid)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i_cmd.valid):
                    m.d.sync += [cmd.eq(self.i_cmd.payload), self.busy.eq(1), self.fault.eq(0),
                                 k.eq(0), rd_i.eq(0), wr_i.eq(0), gap.eq(0)]
                    m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += self.param_rd.en.eq(k < 3)
                m.d.sync += k.eq(k + 1)
                with m.Switch(k):
                    with m.Case(1):
                        m.d.sync += bias.eq(self.param_rd.data)
                    with m.Case(2):
                        m.d.sync += mult.eq(self.param_rd.data)
                    with m.Case(3):
                        m.d.sync += shift.eq(self.param_rd.data)
                        with m.If(bad):
                            m.d.sync += [self.fault.eq(1), self.busy.eq(0)]
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "RUN"
            with m.State("RUN"):
                # One ACC read every requant_row_cycles (the ACC read port holds its data
                # between reads, as the SerialRequantizer needs).
                issue = (rd_i != cmd.rows) & (gap == 0)
                m.d.comb += self.acc_rd.en.eq(issue)
                with m.If(issue):
                    m.d.sync += rd_i.eq(rd_i + 1)
                if serial:
                    m.d.sync += gap.eq(Mux(issue, cfg.requant_row_cycles - 1,
                                           Mux(gap == 0, 0, gap - 1)))
                m.d.sync += s1_valid.eq(issue)
                with m.If(rq.o_valid & (wr_i == cmd.rows - 1)):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
        return m
