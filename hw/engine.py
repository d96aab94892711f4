"""What every MATMUL engine shares, whatever its dataflow: the engine and accumulator base
classes (the members ``hw/top.py`` wires), the ACC write stage, the LOOP state registers and the
port and field helpers. The engines are ``hw/matmul.py`` (ws), ``hw/os_matmul.py`` (os) and
``hw/rs_matmul.py`` (rs)."""
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from . import bus, isa
from .params import ACC_WIDTH, AccelConfig
from .pe_array import psums_layout
from .perf import skipped_inc_shape

__all__ = ["MatmulEngineBase", "AccumulatorBase", "check_cfg", "spad_read_port",
           "spad_write_port", "matmul_field", "act_row_layout", "loop_registers"]


def check_cfg(cfg) -> None:
    """Raise ``TypeError`` unless ``cfg`` is an :class:`AccelConfig`."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Configuration must be an AccelConfig, not {cfg!r}")


def spad_read_port(cfg: AccelConfig, spad: str) -> wiring.Member:
    """Return the ``In`` member of a read port of scratchpad ``spad`` (as the spad's ports are)."""
    return In(memory.ReadPort.Signature(addr_width=bus.spad_addr_width(cfg, spad),
                                        shape=bus.spad_row_layout(cfg, spad)))


def spad_write_port(cfg: AccelConfig, spad: str) -> wiring.Member:
    """Return the ``In`` member of a write port of scratchpad ``spad``."""
    return In(memory.WritePort.Signature(addr_width=bus.spad_addr_width(cfg, spad),
                                         shape=bus.spad_row_layout(cfg, spad)))


def matmul_field(name: str):
    """Return the shape of the ``isa.MatmulArgs`` field ``name``."""
    return isa.MatmulArgs.as_shape()[name].shape


def act_row_layout(cfg: AccelConfig) -> data.StructLayout:
    """Return the layout of an activation row address as the act address generators make it
    (``hw.matmul.ActAddressGenerator``, ``hw.os_matmul.OsActAddressGenerator``): ``addr``,
    the row's low ``bus.spad_addr_width(cfg, "act")`` bits, and ``over``, set when the exact row
    (the sum of ``hw/isa.py``'s ``act_row``, without truncation) is at or beyond the ACT depth
    (``addr`` is then undefined)."""
    check_cfg(cfg)
    return data.StructLayout({"addr": bus.spad_addr_width(cfg, "act"), "over": 1})


def loop_registers(m: Module, cfg: AccelConfig, gen):
    """Add the LOOP state registers of an activation address generator ``gen`` (members ``loop``,
    ``loop_set``, ``clear``) to ``m``; return ``(stride_layout, stride, plus, wraps, strides)``.

    A stride is kept as the sums need it (``stride_layout``): its low act-address bits and
    ``big``, whether it is ``>= 2**aw`` (then any row it is added into is beyond the depth);
    ``stride(value)`` converts a LOOP field. ``plus(base, step)`` adds a stride to an
    :func:`act_row_layout` value, setting ``over`` when the sum reaches the ACT depth. ``wraps``
    and ``strides`` map the LOOP field names to their registers: ``clear`` resets them to
    ``isa.LOOP_RESET``, ``loop_set`` loads ``loop``.
    """
    aw = bus.spad_addr_width(cfg, "act")
    depth = cfg.act_spad_depth
    stride_layout = data.StructLayout({"low": aw, "big": 1})

    def stride(value):
        return Cat(value[:aw], value[aw:].any())

    def stride_const(name):
        value = isa.LOOP_RESET[name]
        return {"low": value & ((1 << aw) - 1), "big": value >> aw != 0}

    def plus(base, step):
        total = base.addr + step.low
        return Cat(total[:aw], base.over | step.big | (total >= depth))

    loop_fields = isa.LoopArgs.as_shape()
    wraps = {n: Signal(loop_fields[n].shape, name=n, init=isa.LOOP_RESET[n])
             for n in ("k_wrap0", "k_wrap1", "m_wrap")}
    strides = {n: Signal(stride_layout, name=n, init=stride_const(n))
               for n in ("k_stride1", "k_stride2", "m_stride", "m_stride1")}
    with m.If(gen.clear):
        m.d.sync += [sig.eq(isa.LOOP_RESET[n]) for n, sig in wraps.items()]
        m.d.sync += [sig.eq(stride_layout.const(stride_const(n)))
                     for n, sig in strides.items()]
    with m.Elif(gen.loop_set):
        m.d.sync += [sig.eq(gen.loop[n]) for n, sig in wraps.items()]
        m.d.sync += [sig.eq(stride(gen.loop[n])) for n, sig in strides.items()]
    return stride_layout, stride, plus, wraps, strides


class AccumulatorBase(wiring.Component):
    """The members of an ACC read-modify-write unit (``hw.matmul.Accumulator`` and
    ``SkipAccumulator``, ``hw.os_matmul.OsAccumulator``, ``hw.rs_matmul.RsAccumulator``) and
    their shared write stage, whose timing is ``hw/timing.py``'s ``ACC_WRITE_LATENCY``.

    Members
    -------
    start : ``In(1)``; ``args`` : ``In(isa.MatmulArgs)``
    i_psums : ``In(stream.Signature(psums_layout(cols), always_ready=True))``
    acc_rd, acc_wr : ``In(memory.ReadPort/WritePort.Signature(...))`` of the ACC spad
    done : ``Out(1)``
    and ``extra_members`` (a subclass's own).
    """

    def __init__(self, cfg: AccelConfig, extra_members: dict | None = None):
        check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "start": In(1), "args": In(isa.MatmulArgs),
            "i_psums": In(stream.Signature(psums_layout(cfg.cols), always_ready=True)),
            "acc_rd": spad_read_port(cfg, "acc"), "acc_wr": spad_write_port(cfg, "acc"),
            "done": Out(1), **(extra_members or {}),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def write_stage(self, m: Module, addr, keep, acc_max, last) -> None:
        """Register the psum row arriving on ``i_psums`` (with ``acc_rd`` reading ``addr`` in that
        cycle) and write it to ``addr`` one cycle later: ``psum + old`` when ``keep`` (the old
        value is used), the per-column signed ``max(old, psum)`` when ``keep & acc_max``, else
        ``psum``; ``done`` marks the write of a row that arrived with ``last``."""
        psums = self.i_psums
        s1_valid = Signal()
        s1_add = Signal()                                 # psum + old
        s1_max = Signal()                                 # max(old, psum)
        s1_last = Signal()
        s1_psum = Signal.like(psums.p)
        s1_addr = Signal.like(addr)
        m.d.sync += s1_valid.eq(psums.valid)
        with m.If(psums.valid):
            m.d.sync += [s1_add.eq(keep & ~acc_max), s1_max.eq(keep & acc_max),
                         s1_last.eq(last), s1_psum.eq(psums.p), s1_addr.eq(addr)]
        m.d.comb += [self.acc_wr.en.eq(s1_valid), self.acc_wr.addr.eq(s1_addr),
                     self.done.eq(s1_valid & s1_last)]
        for c in range(self.cfg.cols):
            # One adder: psum + old, psum + 0, or with acc_max psum - old (its sign picks).
            old, new = self.acc_rd.data[c], s1_psum[c]
            total = Signal(signed(ACC_WIDTH + 1), name=f"total{c}")
            m.d.comb += total.eq(new + Mux(s1_add, old, Mux(s1_max, ~old, 0)) + s1_max)
            m.d.comb += self.acc_wr.data[c].eq(
                Mux(s1_max, Mux(total < 0, old, new), total[:ACC_WIDTH]))


class MatmulEngineBase(wiring.Component):
    """The members every MATMUL engine has, whatever its dataflow (the unit command protocol of
    ``docs/internals.md``; the ``top.py`` wiring depends only on these).

    Members
    -------
    i_cmd : ``In(stream.Signature(isa.MatmulArgs))``
    i_loop : ``In(stream.Signature(isa.LoopArgs))``; loop_clear : ``In(1)``
    busy : ``Out(1)``
    fault : ``Out(1)``; set when the last command read an act row at or beyond the ACT depth
        (valid once ``busy`` is low), cleared when the next command is accepted.
    act_rd, wt_rd, acc_rd : ``In(memory.ReadPort.Signature(...))`` of the ACT, WT, ACC spads
    acc_wr : ``In(memory.WritePort.Signature(...))`` of the ACC spad
    macs_inc, gated_inc : ``Out(range(rows*cols + 1))``; the array's MACs and gated MACs this cycle
    skipped_inc : ``Out(skipped_inc_shape(cfg))``; the MACs the array skipped this cycle
        (zero activations that a ``zero_skip`` row-stationary array never multiplies; the
        ``rows * cols`` MACs of each all-zero act row a ``zero_skip`` weight-stationary engine
        drops). The ``os`` engine, and the others without ``zero_skip``, never skip and leave it
        undriven, so it reads 0.
    and ``extra_members`` (an engine's own, e.g. the zero-skipping ``ws`` engine's second ACT
    read port ``act_rd1``; ``top.py`` connects the ones it knows).
    """

    def __init__(self, cfg: AccelConfig, extra_members: dict | None = None):
        check_cfg(cfg)
        self._cfg = cfg
        pe_count = cfg.rows * cfg.cols
        super().__init__({
            "i_cmd": In(stream.Signature(isa.MatmulArgs)),
            "i_loop": In(stream.Signature(isa.LoopArgs)), "loop_clear": In(1),
            "busy": Out(1), "fault": Out(1),
            "act_rd": spad_read_port(cfg, "act"), "wt_rd": spad_read_port(cfg, "wt"),
            "acc_rd": spad_read_port(cfg, "acc"), "acc_wr": spad_write_port(cfg, "acc"),
            "macs_inc": Out(range(pe_count + 1)), "gated_inc": Out(range(pe_count + 1)),
            "skipped_inc": Out(skipped_inc_shape(cfg)), **(extra_members or {}),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg
