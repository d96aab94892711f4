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


class PostProc(wiring.Component):
    """Execute REQUANT (see ``hw/isa.py``) on the ACC, PARAM and OUT scratchpads.

    Reads the bias, multiplier and shift rows (4 cycles), then one ACC row per cycle through the
    :class:`Requantizer` pipeline (the OUT row is written 3 cycles after its ACC read); a
    REQUANT of ``n`` rows keeps ``busy`` high for ``n + 7`` cycles. When ``cfg.requant_serial``
    the command runs on a :class:`SerialRequantizer` instead (``n * cfg.requant_row_cycles +
    cfg.requant_group_cycles + 5`` cycles). ``sw.sim.cycles.requant_cycles`` is the cycle model. If
    any shift lane is outside ``0..isa.REQUANT_MAX_SHIFT``, nothing is written, ``busy`` drops
    after 4 cycles (2 when serial) and ``fault`` is set. The 7, 5, 4 and 2 are ``hw/timing.py``'s
    ``REQUANT_LATENCY``, ``REQUANT_SERIAL_LATENCY``, ``REQUANT_FAULT_BUSY`` and
    ``REQUANT_SERIAL_FAULT_BUSY`` (``tests/test_hw_postproc.py``, ``tests/test_hw_controller.py``).

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
        if cfg.requant_serial:
            m.submodules.serial = serial = SerialRequantizer(cfg)
            for name in ("i_cmd", "acc_rd", "param_rd", "out_wr"):
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(serial, name))
            m.d.comb += [self.busy.eq(serial.busy), self.fault.eq(serial.fault)]
            return m
        m.submodules.rq = rq = Requantizer(cfg)
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
        s1_valid = Signal()                                   # ACC read data valid this cycle
        m.d.sync += s1_valid.eq(0)
        m.d.comb += rq.i_valid.eq(s1_valid)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i_cmd.valid):
                    m.d.sync += [cmd.eq(self.i_cmd.payload), self.busy.eq(1), self.fault.eq(0),
                                 k.eq(0), rd_i.eq(0), wr_i.eq(0)]
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
                issue = rd_i != cmd.rows                      # one ACC row per cycle
                m.d.comb += self.acc_rd.en.eq(issue)
                with m.If(issue):
                    m.d.sync += rd_i.eq(rd_i + 1)
                m.d.sync += s1_valid.eq(issue)
                with m.If(rq.o_valid & (wr_i == cmd.rows - 1)):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
        return m


def _bad_shift(row, cols):
    """Return 1 when any of the ``cols`` lanes of a shift ``row`` is outside
    ``0..isa.REQUANT_MAX_SHIFT``."""
    return Cat((row[c] < 0) | (row[c] > isa.REQUANT_MAX_SHIFT) for c in range(cols)).any()


class SerialRequantizer(PostProc):
    """Execute REQUANT as :class:`PostProc` does, for small devices (``cfg.requant_serial``):
    ``L = cfg.requant_lane_count`` lanes requantize a row in ``G = cols // L`` groups, each lane
    multiplying by shift-and-add from logic (``requant_mul_bits`` multiplier bits per cycle, or
    one hardware multiply when that is 32) and shifting by a few bits per cycle. Bit-exact with
    ``golden.requantize``.

    No parameter row is held: every group reads the bias, multiplier and shift rows again from
    the PARAM read port and takes its own lanes, and the ACC row stays on the ACC read port
    (which holds its data between reads) while its groups load. Each group has a slot of
    ``S = cfg.requant_group_cycles`` cycles (``max(N + 1, 3)``, ``N = 32 // requant_mul_bits``):
    in its first cycle the bias row is read (and, for group 0, the ACC row), in the second the
    multiplier row while the lanes load ``x = acc + bias`` (wrapping), in the third the shift
    row while they load the multiplier, then the ``N`` multiply steps run. The product, with
    ``2**30`` added, holds the srdhm ``q`` in its bits 31 and up. In the third cycle of the next
    slot ``q`` moves to the lane's rounding shifter, which shifts it right by up to
    ``ceil(31 / (S - 1))`` bits per cycle, keeping the last bit shifted out and whether any
    earlier one was set, until it has shifted by the lane's shift; in the third cycle of the
    slot after that the lane rounds (ties away from zero), adds ``zp_out`` and clamps, into a row
    register or, for the last group, straight into the OUT write.

    The last OUT write of ``n`` rows comes ``(n*G + 1)*S + 5`` cycles after the command is taken,
    in the last cycle ``busy`` is high: ``busy`` is high for ``n*G*S + S + 5`` cycles
    (``sw.sim.cycles.requant_cycles``). A bad shift is seen 2 cycles after the command (``busy`` high
    for 2 cycles).
    """

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        lanes = cfg.requant_lane_count
        groups = cfg.cols // lanes
        slot = cfg.requant_group_cycles
        args = self.i_cmd.payload

        acc_ptr, out_ptr = Signal.like(self.acc_rd.addr), Signal.like(self.out_wr.addr)
        param_addr = Signal.like(self.param_rd.addr)
        rows_left = Signal(range(max(cfg.acc_spad_depth, cfg.out_spad_depth) + 1))
        zp_out, relu = Signal(signed(ACT_WIDTH)), Signal()
        p = Signal(range(slot), name="slot_cycle")          # cycle within the slot
        g = Signal(range(groups), name="group")             # this slot's group
        live = rows_left != 0                 # this slot holds a group (else a final one)
        # The group of the previous slot (its product is ready) and of the one before (its
        # shifted result is ready), if any.
        prod_ok, prod_g = Signal(), Signal.like(g, name="prod_group")
        res_ok, res_g = Signal(), Signal.like(g, name="res_group")
        load_x = Signal()                     # lanes load x = acc + bias
        load_mult = Signal()                  # lanes load the multiplier; the steps start
        load_shift = Signal()                 # lanes take their shift from the shift row
        load_q = Signal()                     # the product moves to the rounding shifter
        emit = Signal()                       # res_g's results are ready

        m.d.comb += [self.i_cmd.ready.eq(~self.busy), self.acc_rd.addr.eq(acc_ptr),
                     self.out_wr.addr.eq(out_ptr)]
        m.d.sync += load_shift.eq(load_mult)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i_cmd.valid):
                    m.d.sync += [acc_ptr.eq(args.acc_addr), out_ptr.eq(args.out_addr),
                                 param_addr.eq(args.param_addr), rows_left.eq(args.rows),
                                 zp_out.eq(args.zp_out), relu.eq(args.relu),
                                 self.busy.eq(1), self.fault.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += [self.param_rd.en.eq(1), self.param_rd.addr.eq(param_addr + 2)]
                m.next = "VERIFY"
            with m.State("VERIFY"):
                with m.If(_bad_shift(self.param_rd.data, cfg.cols)):
                    m.d.sync += [self.fault.eq(1), self.busy.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [p.eq(0), g.eq(0), prod_ok.eq(0), res_ok.eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                third = p == 2
                m.d.comb += [self.param_rd.en.eq(live & (p < 3)),
                             self.param_rd.addr.eq(param_addr + p),
                             self.acc_rd.en.eq(live & (p == 0) & (g == 0)),
                             load_x.eq(live & (p == 1)), load_mult.eq(live & third),
                             load_q.eq(prod_ok & third), emit.eq(res_ok & third)]
                with m.If(self.acc_rd.en):
                    m.d.sync += acc_ptr.eq(acc_ptr + 1)
                with m.If(third):
                    m.d.sync += [prod_ok.eq(live), prod_g.eq(g), res_ok.eq(prod_ok),
                                 res_g.eq(prod_g)]
                    with m.If(~live & ~prod_ok):
                        m.d.sync += self.busy.eq(0)
                        m.next = "IDLE"
                with m.If(p == slot - 1):
                    m.d.sync += [p.eq(0), g.eq(Mux(g == groups - 1, 0, g + 1))]
                    with m.If(live & (g == groups - 1)):
                        m.d.sync += rows_left.eq(rows_left - 1)
                with m.Else():
                    m.d.sync += p.eq(p + 1)

        row = [Signal(signed(ACT_WIDTH), name=f"out_row{c}") for c in range(cfg.cols - lanes)]
        last_out = emit & (res_g == groups - 1)
        m.d.comb += self.out_wr.en.eq(last_out)
        with m.If(last_out):
            m.d.sync += out_ptr.eq(out_ptr + 1)
        for ln in range(lanes):
            def pick(vec, sel, name):
                sig = Signal.like(vec[ln], name=f"{name}{ln}")
                m.d.comb += sig.eq(Array(vec[k * lanes + ln] for k in range(groups))[sel])
                return sig
            pdata = pick(self.param_rd.data, Mux(load_shift, prod_g, g), "param")
            x = Signal(signed(ACC_WIDTH), name=f"lane_x{ln}")
            m.d.comb += x.eq(pick(self.acc_rd.data, g, "acc") + pdata)
            q = self._multiplier(m, ln, x, pdata, load_x, load_mult)
            sh = Signal(isa.REQUANT_MAX_SHIFT.bit_length(), name=f"lane_shift{ln}")
            with m.If(load_shift):
                m.d.sync += sh.eq(pdata)
            y = self._round_clamp(m, ln, q, sh, load_q, zp_out, relu)
            m.d.comb += self.out_wr.data[(groups - 1) * lanes + ln].eq(y)
            for k in range(groups - 1):
                m.d.comb += self.out_wr.data[k * lanes + ln].eq(row[k * lanes + ln])
                with m.If(emit & (res_g == k)):
                    m.d.sync += row[k * lanes + ln].eq(y)
        return m

    def _multiplier(self, m, ln, x, mult, load_x, load_mult):
        """Build one lane's multiplier: ``x`` is taken with ``load_x``, ``mult`` with
        ``load_mult``, then ``N`` steps run. Return the srdhm ``q`` of ``x * mult`` (33 bits,
        unsaturated), valid from the cycle after the last step until the next ``load_mult``.

        ``q`` is bits 31 and up of ``x * mult + 2**30``: ``trunc((ab + nudge) / 2**31)`` equals
        ``floor((ab + 2**30) / 2**31)`` for either sign of ``ab`` (for ``ab < 0``,
        ``nudge = 1 - 2**30`` and truncation rounds up by ``2**31 - 1``). Its only value outside
        int32, ``2**31`` (the ``-2**31 * -2**31`` case, which should saturate to ``INT_MAX``),
        gives the same output as ``2**31 - 1`` after the rounding shift and the clamp (both map
        to one value for a shift of 1 or more, and clamp to 127 for a shift of 0)."""
        bits = self._cfg.requant_mul_bits
        steps = ACC_WIDTH // bits
        left = Signal(range(steps + 1), name=f"mul_left{ln}")     # steps still to run
        with m.If(load_mult):
            m.d.sync += left.eq(steps)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        if steps == 1:
            a = Signal(signed(ACC_WIDTH), name=f"mplier{ln}")
            b = Signal(signed(ACC_WIDTH), name=f"mcand{ln}")
            prod = Signal(_PRODUCT, name=f"prod{ln}")
            with m.If(load_x):
                m.d.sync += a.eq(x)
            with m.If(load_mult):
                m.d.sync += b.eq(mult)
            with m.If(left != 0):
                m.d.sync += prod.eq(a * b + (1 << 30))
            return prod[31:].as_signed()
        # Radix 2**bits, least significant chunk of x first: t = hi + mult * chunk, then
        # {hi, lo} = {t, lo} >> bits; after all steps {hi, lo} = 2**30 + x * mult (hi starts at
        # 2**30). The last chunk is signed (its top bit weighs -2**31). Of lo only bit 31 is
        # kept.
        a = Signal(ACC_WIDTH, name=f"mplier{ln}")
        b = Signal(signed(ACC_WIDTH), name=f"mcand{ln}")
        hi = Signal(signed(ACC_WIDTH + 2), name=f"prod_hi{ln}")
        lo31 = Signal(name=f"prod_lo31_{ln}")
        chunk = a[:bits]
        last = left == 1
        terms = [Mux(chunk[k], b << k, 0) for k in range(bits - 1)]
        # The top term, negated in the last step as ~top + 1 (the +1 a carry into the sum).
        top = Mux(chunk[bits - 1], b, 0)
        top = Mux(last, ~top, top)
        t = Signal(signed(ACC_WIDTH + bits + 2), name=f"prod_t{ln}")
        m.d.comb += t.eq(sum(terms, hi) + (top << (bits - 1)) + (last << (bits - 1)))
        with m.If(load_x):
            m.d.sync += a.eq(x)
        with m.Elif(left != 0):
            m.d.sync += a.eq(a >> bits)
        with m.If(load_mult):
            m.d.sync += [b.eq(mult), hi.eq(1 << 30)]
        with m.Elif(left != 0):
            m.d.sync += [hi.eq(t >> bits), lo31.eq(t[bits - 1])]
        return Cat(lo31, hi[:ACC_WIDTH]).as_signed()

    def _round_clamp(self, m, ln, q, sh, load, zp, relu):
        """Build one lane's rounding shifter: ``q`` and the shift ``sh`` are taken with
        ``load``; ``S - 1`` cycles later return ``clamp(round(q / 2**sh) + zp, lo, 127)``
        (ties away from zero, ``lo = zp if relu else -128``), held until the next ``load``.

        The register ``r`` shifts right (arithmetic) by up to ``step`` bits per cycle; ``rb`` is
        the last bit shifted out and ``st`` whether any earlier one was set, so that after
        shifting by ``sh`` ``r = floor(q / 2**sh)``, ``rb`` is bit ``sh - 1`` of ``q`` and the
        rounding adds ``rb & (st | r >= 0)``."""
        step = -(-isa.REQUANT_MAX_SHIFT // (self._cfg.requant_group_cycles - 1))
        r = Signal(signed(len(q)), name=f"rnd{ln}")
        rb, st = Signal(name=f"rnd_bit{ln}"), Signal(name=f"rnd_sticky{ln}")
        left = Signal.like(sh, name=f"rnd_left{ln}")
        k = Signal(range(step + 1), name=f"rnd_k{ln}")
        m.d.comb += k.eq(Mux(left >= step, step, left))
        with m.If(load):
            m.d.sync += [r.eq(q), rb.eq(0), st.eq(0), left.eq(sh)]
        with m.Elif(k != 0):
            m.d.sync += [r.eq(r >> k), left.eq(left - k)]
            if step == 1:
                m.d.sync += [rb.eq(r[0]), st.eq(st | rb)]
            else:
                k1 = Signal(range(step), name=f"rnd_k1_{ln}")    # k - 1
                m.d.comb += k1.eq(k - 1)
                below = r.as_unsigned()[:step - 1] & ((C(1, step) << k1) - 1)
                m.d.sync += [rb.eq(r.as_unsigned().bit_select(k1, 1)),
                             st.eq(st | rb | below.any())]
        # Round, saturated to 11 bits first (enough to clamp the same after + zp).
        sat = 1 << 10
        high = r[10:]
        rs = Signal(signed(11), name=f"rnd_sat{ln}")
        m.d.comb += rs.eq(Mux(high.all() | ~high.any(), r, Mux(r < 0, -sat, sat - 1)))
        y = Signal(signed(ACT_WIDTH + 5), name=f"rnd_y{ln}")
        m.d.comb += y.eq(rs + (rb & (st | (r >= 0))) + zp)
        lo = Mux(relu, zp, -128)
        out = Signal(signed(ACT_WIDTH), name=f"lane_y{ln}")
        with m.If(y > 127):
            m.d.comb += out.eq(127)
        with m.Elif(y < lo):
            m.d.comb += out.eq(lo)
        with m.Else():
            m.d.comb += out.eq(y)
        return out
