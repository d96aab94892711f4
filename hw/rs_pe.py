"""The row-stationary PE (Eyeriss): 1-D convolution primitives with zero gating or zero skipping.

A PE computes, for one ifmap row ``a`` of width ``W``, ``F`` filter rows ``w[f]`` of ``S`` taps and
a stride ``U``, the psum rows::

    p[x, f] = i_psum[x, f] + sum_s (a[x*U + s] - zp) * w[f][s]     for x < OW = (W - S) // U + 1

(int32, wrapping), emitted on ``o_psums`` in the order ``x`` outer, ``f`` inner (the filters are
interleaved as in Eyeriss v1). ``i_psums`` carries the psum rows of the PE above (the vertical
accumulation input) in the same order; a row command with ``acc == 0`` takes none and adds 0.

The scratchpads, the output-major walk, zero gating and skipping, the counters and the exact
cycle behaviour (which ``sw/sim/rs_pe.py`` implements) are in docs/internals.md
("Row-stationary PE"). Row command fields out of range (``taps`` not in ``1..max_taps``,
``stride`` not in ``1..max_stride``, ``filters`` not in ``1..psum_depth``, ``wt_base +
filters*taps > wt_depth``, rows wider than ``max_width``) give undefined results.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .params import ACC_WIDTH, ACT_WIDTH, OPERAND_WIDTH, WT_WIDTH

__all__ = ["RsPEConfig", "RsPE", "RsWindow", "RsMac", "rs_act_layout", "check_bool"]


def rs_act_layout(max_width: int) -> data.StructLayout:
    """Return the layout of one activation beat of a row of at most ``max_width`` activations.

    ``end == 0``: the activation ``value`` (int8) at position ``offset`` of the row.
    ``end == 1``: the end-of-row marker; ``value`` is ignored and ``offset`` is the row width.
    In a dense stream the offsets are implicit (the PE counts beats) and ignored.
    """
    return data.StructLayout({"value": signed(ACT_WIDTH), "offset": range(max_width + 1),
                              "end": 1})


@dataclass(frozen=True)
class RsPEConfig:
    """Sizes of a row-stationary PE (the device engine builds it from ``AccelConfig.rs_wt_depth``,
    ``rs_ifmap_depth`` and ``rs_psum_depth``).

    Parameters
    ----------
    wt_depth, ifmap_depth, psum_depth : int
        Filter, ifmap and psum scratchpad entries (Eyeriss v1: 224, 12, 24).
    max_width : int
        Widest ifmap row (the offset range).
    max_stride : int
        Largest stride.

    Raises
    ------
    TypeError, ValueError
        When a field is not a positive integer, or ``ifmap_depth <= max_stride``.
    """
    wt_depth: int = 224
    ifmap_depth: int = 12
    psum_depth: int = 24
    max_width: int = 256
    max_stride: int = 2

    def __post_init__(self):
        for f in ("wt_depth", "ifmap_depth", "psum_depth", "max_width", "max_stride"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TypeError(f"RsPEConfig.{f} must be a positive integer, not {v!r}")
        if self.ifmap_depth <= self.max_stride:
            raise ValueError(f"RsPEConfig.ifmap_depth must exceed max_stride "
                             f"({self.max_stride}), not {self.ifmap_depth!r}")

    @property
    def max_taps(self) -> int:
        """Longest filter row: the ifmap spad holds a window and the next window's new beats."""
        return self.ifmap_depth - self.max_stride

    @property
    def act_layout(self) -> data.StructLayout:
        """Layout of an ``i_acts`` beat (:func:`rs_act_layout`)."""
        return rs_act_layout(self.max_width)

    @property
    def cmd_layout(self) -> data.StructLayout:
        """Layout of a row command: filter rows at ``wt_base``, ``taps``, ``stride``,
        ``filters`` (interleaved), the activation zero point ``zp``, and ``acc`` (add
        ``i_psums``)."""
        return data.StructLayout({
            "wt_base": range(self.wt_depth), "taps": range(self.max_taps + 1),
            "stride": range(self.max_stride + 1), "filters": range(self.psum_depth + 1),
            "zp": signed(ACT_WIDTH), "acc": 1})

    @property
    def op_layout(self) -> data.StructLayout:
        """Layout of an op from :class:`RsWindow` to :class:`RsMac`: ``act`` (``a - zp``) times the
        weight at ``addr`` (when ``mul``) into accumulator ``filter``; ``first`` clears it,
        ``last`` emits it (plus an ``i_psums`` beat when ``acc``)."""
        return data.StructLayout({
            "act": signed(OPERAND_WIDTH), "addr": range(self.wt_depth),
            "filter": range(self.psum_depth), "mul": 1, "first": 1, "last": 1, "acc": 1})


def _check_cfg(cfg):
    if not isinstance(cfg, RsPEConfig):
        raise TypeError(f"Row-stationary PE configuration must be an RsPEConfig, not {cfg!r}")


def check_bool(name: str, v) -> None:
    """Raise ``TypeError`` unless the row-stationary PE (or array) parameter ``name`` is a bool."""
    if not isinstance(v, bool):
        raise TypeError(f"Row-stationary PE {name} must be a bool, not {v!r}")


class RsWindow(wiring.Component):
    """The sequencer of :class:`RsPE`: the ifmap spad and the window walk, one op per cycle.

    Accepts a row command when idle, then consumes the row's ``i_acts`` beats up to and
    including its end marker and issues its ops on ``o_ops`` with the timing of the module
    docstring. Beats between windows (stride > taps) are consumed and dropped.

    Parameters
    ----------
    cfg : RsPEConfig
    zero_gate, zero_skip : bool
        Gate ops with a zero activation; take a compressed (True) or dense (False) stream.

    Members
    -------
    i_cmd : ``In(stream.Signature(cfg.cmd_layout))``
    i_acts : ``In(stream.Signature(cfg.act_layout))``
    o_ops : ``Out(stream.Signature(cfg.op_layout))``
    macs_inc, gated_inc : ``Out(1)``; skipped_inc : ``Out(range(cfg.max_taps + 1))``; for the op
        handed over this cycle (see the module docstring).
    busy : ``Out(1)``; a row command runs (a register: ``i_cmd.ready`` is its inverse).
    watermark : ``In(range(cfg.max_width + 1))``; with ``zero_skip``, the positions below it
        have all been put on ``i_acts`` (0 when unknown): when no beat is waiting, a window
        ending before ``watermark - 1`` is complete without the beat beyond it.
    """

    def __init__(self, cfg: RsPEConfig, *, zero_gate: bool = True, zero_skip: bool = False):
        _check_cfg(cfg)
        check_bool("zero_gate", zero_gate)
        check_bool("zero_skip", zero_skip)
        self._cfg, self._zero_gate, self._zero_skip = cfg, zero_gate, zero_skip
        super().__init__({
            "i_cmd": In(stream.Signature(cfg.cmd_layout)),
            "i_acts": In(stream.Signature(cfg.act_layout)),
            "o_ops": Out(stream.Signature(cfg.op_layout)),
            "macs_inc": Out(1), "gated_inc": Out(1),
            "skipped_inc": Out(range(cfg.max_taps + 1)), "busy": Out(1),
            "watermark": In(range(cfg.max_width + 1)),
        })

    @property
    def cfg(self) -> RsPEConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg, depth = self._cfg, self._cfg.ifmap_depth
        pos_shape = range(cfg.max_width + cfg.max_taps + 2 * cfg.max_stride + 1)
        cmd = Signal(cfg.cmd_layout)
        busy = self.busy
        spad_act = Array(Signal(signed(OPERAND_WIDTH), name=f"ifmap_act{i}") for i in range(depth))
        spad_off = Array(Signal(range(cfg.max_width + 1), name=f"ifmap_off{i}")
                         for i in range(depth))
        rd, cnt = Signal(range(depth)), Signal(range(depth + 1))    # oldest entry, entries held
        pos = Signal(range(cfg.max_width + 1))                      # dense: beats consumed
        base, end = Signal(pos_shape), Signal(pos_shape)            # window x*U .. x*U + S - 1
        active = Signal()                                           # inside a window's ops
        k = Signal(range(cfg.max_taps))                             # activation within window
        f = Signal(range(cfg.psum_depth))
        foff = Signal(range(cfg.psum_depth * cfg.max_taps))         # f * S
        ndead = Signal(range(cfg.max_stride + 1))                   # window's entries to pop

        def wrap(v):
            return Mux(v >= depth, v - depth, v)

        acts, ops = self.i_acts, self.o_ops
        head_pos = acts.p.offset if self._zero_skip else pos
        it, nxt = wrap(rd + k), wrap(rd + k + 1)
        has = (k < cnt) & (spad_off[it] <= end)                     # the op has an activation
        last = ~has | ~((k + 1 < cnt) & (spad_off[nxt] <= end))     # ... the window's last one
        gated = has & (spad_act[it] == 0) if self._zero_gate else C(0)
        seen = acts.valid & (head_pos > end)                        # the beat beyond it
        if self._zero_skip:                                         # or the walk passed it
            seen |= ~acts.valid & (self.watermark > end + 1)
        issue = busy & (active | seen)                              # window complete: go
        done = busy & ~active & acts.valid & acts.p.end & (head_pos <= end)
        load = busy & acts.valid & ~acts.p.end & (head_pos <= end + cmd.stride)
        keep = head_pos >= base + Mux(head_pos > end, cmd.stride, 0)  # not between windows
        go = ~issue | ops.ready
        fire = issue & ops.ready
        tap = Signal(range(cfg.max_taps))
        m.d.comb += [
            tap.eq(spad_off[it] - base),
            ops.valid.eq(issue),
            ops.p.act.eq(spad_act[it]), ops.p.addr.eq(cmd.wt_base + foff + tap),
            ops.p.filter.eq(f), ops.p.mul.eq(has & ~gated), ops.p.first.eq(k == 0),
            ops.p.last.eq(last), ops.p.acc.eq(cmd.acc),
            self.macs_inc.eq(fire & has), self.gated_inc.eq(fire & gated),
            self.skipped_inc.eq(Mux(fire & last, cmd.taps - Mux(has, k + 1, 0), 0)),
        ]

        with m.If(~busy):
            m.d.comb += self.i_cmd.ready.eq(1)
            with m.If(self.i_cmd.valid):
                m.d.sync += [cmd.eq(self.i_cmd.p), busy.eq(1), base.eq(0),
                             end.eq(self.i_cmd.p.taps - 1), rd.eq(0), cnt.eq(0), pos.eq(0)]
        with m.Elif(go):                # an op waiting for o_ops holds i_acts too
            m.d.comb += acts.ready.eq(load | done)
            with m.If(done):
                m.d.sync += busy.eq(0)
            # ifmap spad: push a loaded beat; pop the window's dead prefix when it ends
            push = load & keep
            dead = has & (spad_off[it] < base + cmd.stride)
            pop = Mux(fire & last & (f == cmd.filters - 1), ndead + dead, 0)
            with m.If(push):
                m.d.sync += [spad_act[wrap(rd + cnt)].eq(acts.p.value - cmd.zp),
                             spad_off[wrap(rd + cnt)].eq(head_pos)]
            m.d.sync += [rd.eq(wrap(rd + pop)), cnt.eq(cnt + push - pop)]
            with m.If(load):
                m.d.sync += pos.eq(pos + 1)
            # window walk: filters inner, activations outer, then the next window
            with m.If(fire & (f == cmd.filters - 1)):
                m.d.sync += [f.eq(0), foff.eq(0)]
                with m.If(last):
                    m.d.sync += [active.eq(0), k.eq(0), ndead.eq(0),
                                 base.eq(base + cmd.stride), end.eq(end + cmd.stride)]
                with m.Else():
                    m.d.sync += [active.eq(1), k.eq(k + 1), ndead.eq(ndead + dead)]
            with m.Elif(fire):
                m.d.sync += [active.eq(1), f.eq(f + 1), foff.eq(foff + cmd.taps)]
        return m


class RsMac(wiring.Component):
    """The arithmetic of :class:`RsPE`: filter spad, multiplier, psum spad and psum ports.

    An op handed over on ``i_ops`` in cycle ``t`` reads the filter spad (when ``mul``) in
    ``t``; in ``t + 1`` its product ``act * w`` (0 without ``mul``) is added to accumulator
    ``filter`` (to 0 when ``first``); when ``last`` the sum, plus an ``i_psums`` beat taken in
    ``t + 1`` when ``acc``, is valid on ``o_psums`` from ``t + 2``. Ops stall (``i_ops.ready``
    low) while a ``last`` op waits for ``o_psums`` to be free or for an ``i_psums`` beat.

    Parameters
    ----------
    cfg : RsPEConfig
    wt_spad : ``memory.MemoryData`` of ``cfg.wt_depth`` ``signed(WT_WIDTH)``; the filter spad.

    Members
    -------
    i_ops : ``In(stream.Signature(cfg.op_layout))``
    wt_write : ``Out(memory.WritePort.Signature(...))``; the filter spad's write port.
    i_psums, o_psums : ``In/Out(stream.Signature(signed(ACC_WIDTH)))``
    busy : ``Out(1)``; an op is in the MAC stage or a psum waits on ``o_psums`` (from registers).

    Attributes
    ----------
    s1_act : Signal
        The multiplier's activation input register (the weight input is the spad's read data);
        both hold through ops without ``mul``.
    """

    def __init__(self, cfg: RsPEConfig, wt_spad: memory.MemoryData):
        _check_cfg(cfg)
        if not isinstance(wt_spad, memory.MemoryData) or wt_spad.depth != cfg.wt_depth:
            raise TypeError(f"Filter spad must be a MemoryData of depth {cfg.wt_depth}, "
                            f"not {wt_spad!r}")
        self._cfg, self._wt_spad = cfg, wt_spad
        super().__init__({
            "i_ops": In(stream.Signature(cfg.op_layout)),
            "wt_write": Out(memory.WritePort.Signature(addr_width=ceil_log2(cfg.wt_depth),
                                                       shape=signed(WT_WIDTH))),
            "i_psums": In(stream.Signature(signed(ACC_WIDTH))),
            "o_psums": Out(stream.Signature(signed(ACC_WIDTH))),
            "busy": Out(1),
        })
        self.s1_act = Signal(signed(OPERAND_WIDTH))

    def elaborate(self, platform):
        m = Module()
        m.submodules.wt_spad = mem = memory.Memory(self._wt_spad)
        wiring.connect(m, wiring.flipped(self.wt_write), mem.write_port())
        rp = mem.read_port()
        psum_spad = Array(Signal(signed(ACC_WIDTH), name=f"psum{i}")
                          for i in range(self._cfg.psum_depth))
        ops, i_ps, o_ps = self.i_ops, self.i_psums, self.o_psums
        s1_valid, s1_mul, s1_first, s1_last, s1_acc = (Signal(name=f"s1_{n}") for n in
                                                       ("valid", "mul", "first", "last", "acc"))
        s1_filter = Signal.like(ops.p.filter, name="s1_filter")

        out_busy = o_ps.valid & ~o_ps.ready
        stall = s1_valid & s1_last & (out_busy | (s1_acc & ~i_ps.valid))
        m.d.comb += [self.busy.eq(s1_valid | o_ps.valid), ops.ready.eq(~stall),
                     rp.addr.eq(ops.p.addr),
                     rp.en.eq(ops.valid & ops.p.mul & ~stall)]
        with m.If(~stall):
            m.d.sync += [s1_valid.eq(ops.valid), s1_mul.eq(ops.p.mul), s1_first.eq(ops.p.first),
                         s1_last.eq(ops.p.last), s1_acc.eq(ops.p.acc), s1_filter.eq(ops.p.filter)]
            with m.If(ops.valid & ops.p.mul):
                m.d.sync += self.s1_act.eq(ops.p.act)

        # Stage 1: multiply-accumulate into the psum spad; emit a finished psum.
        prod = Mux(s1_mul, self.s1_act * rp.data, 0)
        part = Mux(s1_first, 0, psum_spad[s1_filter]) + prod
        with m.If(o_ps.ready):
            m.d.sync += o_ps.valid.eq(0)
        with m.If(s1_valid & ~stall):
            with m.If(s1_mul | s1_first):
                m.d.sync += psum_spad[s1_filter].eq(part)
            with m.If(s1_last):
                m.d.comb += i_ps.ready.eq(s1_acc)
                m.d.sync += [o_ps.valid.eq(1), o_ps.p.eq(part + Mux(s1_acc, i_ps.p, 0))]
        return m


class RsPE(wiring.Component):
    """Eyeriss-style row-stationary PE: :class:`RsWindow` feeding :class:`RsMac`.

    See the module docstring for the computation, the scratchpads, gating and skipping, the
    counters and the exact cycle behaviour. Row commands run one after another; each consumes
    its activation beats up to its end marker, its ``i_psums`` beats (when ``acc``) and
    produces ``OW * filters`` ``o_psums`` beats. ``wt_write`` writes the filter spad in the
    cycle ``en`` is high; writing an address that a running row reads gives undefined psums.

    Parameters
    ----------
    cfg : RsPEConfig
    zero_gate : bool
        Gate (and count) ops whose activation equals the zero point.
    zero_skip : bool
        ``i_acts`` carries the compressed row (non-zero activations with offsets) instead of
        the dense one.

    Members
    -------
    i_cmd : ``In(stream.Signature(cfg.cmd_layout))``
    i_acts : ``In(stream.Signature(cfg.act_layout))``
    i_psums, o_psums : ``In/Out(stream.Signature(signed(ACC_WIDTH)))``
    wt_write : ``Out(memory.WritePort.Signature(addr_width=ceil_log2(cfg.wt_depth),
        shape=signed(WT_WIDTH)))``
    macs_inc, gated_inc : ``Out(1)``; skipped_inc : ``Out(range(cfg.max_taps + 1))``
    idle : ``Out(1)``; no row command runs, no op is in the MAC and no psum waits on
        ``o_psums`` (from registers only).
    watermark : ``In(range(cfg.max_width + 1))``; see :class:`RsWindow` (0: unused).

    Attributes
    ----------
    wt_spad : ``memory.MemoryData``
        The filter spad contents (backdoor access in simulation).
    """

    def __init__(self, cfg: RsPEConfig = RsPEConfig(), *, zero_gate: bool = True,
                 zero_skip: bool = False):
        _check_cfg(cfg)
        check_bool("zero_gate", zero_gate)
        check_bool("zero_skip", zero_skip)
        self._cfg, self._zero_gate, self._zero_skip = cfg, zero_gate, zero_skip
        super().__init__({
            "i_cmd": In(stream.Signature(cfg.cmd_layout)),
            "i_acts": In(stream.Signature(cfg.act_layout)),
            "i_psums": In(stream.Signature(signed(ACC_WIDTH))),
            "o_psums": Out(stream.Signature(signed(ACC_WIDTH))),
            "wt_write": Out(memory.WritePort.Signature(addr_width=ceil_log2(cfg.wt_depth),
                                                       shape=signed(WT_WIDTH))),
            "macs_inc": Out(1), "gated_inc": Out(1),
            "skipped_inc": Out(range(cfg.max_taps + 1)),
            "idle": Out(1), "watermark": In(range(cfg.max_width + 1)),
        })
        self.wt_spad = memory.MemoryData(shape=signed(WT_WIDTH), depth=cfg.wt_depth, init=[])

    @property
    def cfg(self) -> RsPEConfig:
        return self._cfg

    @property
    def zero_gate(self) -> bool:
        return self._zero_gate

    @property
    def zero_skip(self) -> bool:
        return self._zero_skip

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = win = RsWindow(self._cfg, zero_gate=self._zero_gate,
                                             zero_skip=self._zero_skip)
        m.submodules.mac = mac = RsMac(self._cfg, self.wt_spad)
        wiring.connect(m, wiring.flipped(self.i_cmd), win.i_cmd)
        wiring.connect(m, wiring.flipped(self.i_acts), win.i_acts)
        m.d.comb += win.watermark.eq(self.watermark)
        wiring.connect(m, win.o_ops, mac.i_ops)
        wiring.connect(m, wiring.flipped(self.i_psums), mac.i_psums)
        wiring.connect(m, mac.o_psums, wiring.flipped(self.o_psums))
        wiring.connect(m, wiring.flipped(self.wt_write), mac.wt_write)
        m.d.comb += [self.macs_inc.eq(win.macs_inc), self.gated_inc.eq(win.gated_inc),
                     self.skipped_inc.eq(win.skipped_inc),
                     self.idle.eq(~win.busy & ~mac.busy)]
        return m
