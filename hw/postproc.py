"""Post-processing: REQUANT (ACC + bias -> fixed-point requantization -> OUT)."""
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .params import ACC_WIDTH, AccelConfig

__all__ = ["PostProc", "Requantizer"]

_INT_MIN = -(1 << (ACC_WIDTH - 1))
_INT_MAX = (1 << (ACC_WIDTH - 1)) - 1
_PRODUCT = signed(2 * ACC_WIDTH)


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
        shift_width = isa.REQUANT_MAX_SHIFT.bit_length()
        s2_valid, s3_valid = Signal(), Signal()
        m.d.sync += [s2_valid.eq(self.i_valid), s3_valid.eq(s2_valid)]
        m.d.comb += self.o_valid.eq(s3_valid)
        zp = self.zp_out
        lo = Mux(self.relu, zp, -128)
        for c in range(self._cfg.cols):
            # Stage 1: wrapping add, 64-bit product.
            x = Signal(signed(ACC_WIDTH), name=f"s1_x{c}")
            s2_prod = Signal(_PRODUCT, name=f"s2_prod{c}")
            s2_sat = Signal(name=f"s2_sat{c}")
            m.d.comb += x.eq(self.i_acc[c] + self.bias[c])
            m.d.sync += [s2_prod.eq(x * self.mult[c]),
                         s2_sat.eq((x == _INT_MIN) & (self.mult[c] == _INT_MIN))]
            # Stage 2: srdhm = trunc((ab + nudge) / 2**31), saturating.
            num = Signal(signed(2 * ACC_WIDTH + 1), name=f"s2_num{c}")
            m.d.comb += num.eq(s2_prod + Mux(s2_prod >= 0, 1 << 30, 1 - (1 << 30)))
            trunc = (num + Mux(num < 0, (1 << 31) - 1, 0)) >> 31
            s3_q = Signal(signed(ACC_WIDTH), name=f"s3_q{c}")
            m.d.sync += s3_q.eq(Mux(s2_sat, _INT_MAX, trunc))
            # Stage 3: rounding shift right (ties away from zero), zero point, clamp.
            sh = self.shift[c][:shift_width]
            mask = Signal(ACC_WIDTH, name=f"s3_mask{c}")
            m.d.comb += mask.eq((Const(1, 1) << sh) - 1)
            remainder = s3_q.as_unsigned() & mask
            threshold = (mask >> 1) + (s3_q < 0)
            y = Signal(signed(ACC_WIDTH + 2), name=f"s3_y{c}")
            m.d.comb += y.eq((s3_q >> sh) + (remainder > threshold) + zp)
            with m.If(y > 127):
                m.d.comb += self.o_row[c].eq(127)
            with m.Elif(y < lo):
                m.d.comb += self.o_row[c].eq(lo)
            with m.Else():
                m.d.comb += self.o_row[c].eq(y)
        return m


class PostProc(wiring.Component):
    """Execute REQUANT (see ``hw/isa.py``) on the ACC, PARAM and OUT scratchpads.

    Reads the bias, multiplier and shift rows (4 cycles), then one ACC row per cycle through the
    :class:`Requantizer` pipeline; the last OUT row is written 3 cycles after its ACC read.
    A REQUANT of ``n`` rows keeps ``busy`` high for ``n + 7`` cycles. If any shift lane is
    outside ``0..isa.REQUANT_MAX_SHIFT``, nothing is written, ``busy`` drops after 4 cycles and
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
        m.submodules.rq = rq = Requantizer(self._cfg)
        cmd = Signal(isa.RequantArgs)
        param = bus.spad_row_layout(self._cfg, "param")
        bias, mult, shift = (Signal(param, name=n) for n in ("bias", "mult", "shift"))
        m.d.comb += [rq.bias.eq(bias), rq.mult.eq(mult), rq.shift.eq(shift),
                     rq.zp_out.eq(cmd.zp_out), rq.relu.eq(cmd.relu),
                     rq.i_acc.eq(self.acc_rd.data)]
        k = Signal(range(4))                                  # PARAM row being read + 1
        rd_i, wr_i = Signal.like(cmd.rows, name="rd_i"), Signal.like(cmd.rows, name="wr_i")
        bad = Cat(self.param_rd.data[c] < 0 for c in range(self._cfg.cols)).any() | \
            Cat(self.param_rd.data[c] > isa.REQUANT_MAX_SHIFT for c in range(self._cfg.cols)).any()

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
                issue = rd_i != cmd.rows
                m.d.comb += self.acc_rd.en.eq(issue)
                with m.If(issue):
                    m.d.sync += rd_i.eq(rd_i + 1)
                # The read issued now is written 3 cycles later (read latency + 2 stages).
                m.d.sync += s1_valid.eq(issue)
                with m.If(rq.o_valid & (wr_i == cmd.rows - 1)):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
        return m
