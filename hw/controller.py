"""Controller: instruction fetch, decode, range checks, dispatch, PERF writes and status."""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from . import bus, isa
from .dma import DmaCmd
from .isa import ErrorCode, Opcode
from .params import CHECK_COUNT_WIDTH, AccelConfig
from .perf import perf_layout

__all__ = ["Fetcher", "Checker", "SpanMultiplier", "PerfWriter", "Controller", "sum_exceeds"]


def _check_cfg(owner: str, cfg) -> AccelConfig:
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"{owner} configuration must be an AccelConfig, not {cfg!r}")
    return cfg


class Fetcher(wiring.Component):
    """Fetch one instruction: ``instr_words(cfg)`` word reads, least significant word first.

    Accepts a pc on ``i_pc`` when idle, issues the reads back to back, and presents the assembled
    instruction on ``o_instr`` until taken; the payload keeps it after that, until the next
    fetch's first response arrives. Without backpressure, the instruction is valid
    ``instr_words + memory latency + 1`` cycles after the pc handshake.

    Members
    -------
    i_pc : ``In(stream.Signature(cfg.mem_addr_width))``
    o_instr : ``Out(stream.Signature(isa.Instr))``
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    i_mem_rsp : ``In(stream.Signature(bus.mem_rsp_layout(cfg)))``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = _check_cfg("Fetcher", cfg)
        super().__init__({
            "i_pc": In(stream.Signature(cfg.mem_addr_width)),
            "o_instr": Out(stream.Signature(isa.Instr)),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(self._cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(self._cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        n = isa.instr_words(self._cfg)
        width = self._cfg.mem_bus_bits
        addr = Signal(self._cfg.mem_addr_width)
        req_left, rsp_left = Signal(range(n + 1)), Signal(range(n + 1))
        buf = Signal(isa.INSTR_BITS)
        full = Signal()
        req, rsp = self.o_mem_req, self.i_mem_rsp
        m.d.comb += [
            self.i_pc.ready.eq((rsp_left == 0) & ~full),
            req.valid.eq(req_left != 0), req.p.addr.eq(addr), req.p.we.eq(0),
            rsp.ready.eq(rsp_left != 0),
            self.o_instr.valid.eq(full), self.o_instr.payload.eq(buf),
        ]
        with m.If(self.i_pc.valid & self.i_pc.ready):
            m.d.sync += [addr.eq(self.i_pc.payload), req_left.eq(n), rsp_left.eq(n)]
        with m.If(req.valid & req.ready):
            m.d.sync += [addr.eq(addr + 1), req_left.eq(req_left - 1)]
        with m.If(rsp.valid & rsp.ready):
            m.d.sync += [buf.eq(Cat(buf[width:], rsp.p.rdata)), rsp_left.eq(rsp_left - 1)]
            with m.If(rsp_left == 1):
                m.d.sync += full.eq(1)
        with m.If(self.o_instr.valid & self.o_instr.ready):
            m.d.sync += full.eq(0)
        return m


def sum_exceeds(limit, *terms, limit_max=None):
    """Return ``sum(terms) > limit`` for unsigned ``terms``, adding only their low bits: with
    ``limit < 2**w``, a term with a bit at or above ``w`` makes the sum exceed ``limit``.
    ``limit`` is an int, or a value of at most ``limit_max``."""
    w = (limit if limit_max is None else limit_max).bit_length()
    terms = [Value.cast(t) for t in terms]
    high = [t[w:].any() for t in terms if len(t) > w]
    low = sum(t[:w] for t in terms)
    return Cat(low > limit, *high).any()


class Checker(wiring.Component):
    """Check one decoded instruction (combinational).

    In priority order: an unknown opcode gives ``ILLEGAL_OPCODE``; a zero ``rows`` / ``m`` /
    ``k_tiles``, a LOAD/STORE spad selector outside :class:`isa.Spad` or a ``compress=1`` that
    the configuration does not allow (``hw/isa.py``) gives ``BAD_ARG``; a scratchpad row range
    beyond ``cfg.spad_depth`` gives ``SPAD_RANGE``; a device memory range beyond
    ``cfg.zero_dir_base`` (``cfg.mem_words`` without ``cfg.compress_acts``) gives
    ``DRAM_RANGE``; otherwise ``NONE``. MATMUL's activation rows
    are not checked here (the MatmulEngine flags them as it reads them), its weight rows
    (``R``, or ``k_tiles*R`` without ``wt_repeat``) and ACC rows are.

    With ``cfg.check_mul_bits`` the product ``(rows-1)*dram_stride`` (LOAD/STORE) is not
    computed here but comes in on ``span`` (:class:`SpanMultiplier`).

    Members
    -------
    instr : ``In(isa.Instr)``
    span : ``In(SpanMultiplier.span_bits(cfg) + 1)``; only with ``cfg.check_mul_bits``: the
        product, limited to ``2**span_bits(cfg)``.
    error : ``Out(isa.ErrorCode)``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = _check_cfg("Checker", cfg)
        members = {"instr": In(isa.Instr), "error": Out(ErrorCode)}
        if cfg.check_mul_bits:
            members["span"] = In(SpanMultiplier.span_bits(cfg) + 1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        args = self.instr.args
        err = self.error

        def check(bad_arg, spad_over, dram_over):
            with m.If(bad_arg):
                m.d.comb += err.eq(ErrorCode.BAD_ARG)
            with m.Elif(spad_over):
                m.d.comb += err.eq(ErrorCode.SPAD_RANGE)
            with m.Elif(dram_over):
                m.d.comb += err.eq(ErrorCode.DRAM_RANGE)

        m.d.comb += err.eq(ErrorCode.NONE)
        with m.Switch(self.instr.opcode):
            with m.Case(Opcode.LOAD, Opcode.STORE):
                d = args.dma
                depth = Signal(range(max(cfg.spad_depth(s) for s in bus.SPADS) + 1))
                words = Signal(range(max(cfg.spad_row_words(s) for s in bus.SPADS) + 1))
                bad_spad = Signal()
                with m.Switch(d.spad):
                    for i, s in enumerate(bus.SPADS):
                        with m.Case(isa.Spad(i)):
                            m.d.comb += [depth.eq(cfg.spad_depth(s)),
                                         words.eq(cfg.spad_row_words(s))]
                    with m.Default():
                        m.d.comb += bad_spad.eq(1)
                span = self.span if cfg.check_mul_bits else (d.rows - 1) * d.dram_stride
                check(bad_spad | (d.rows == 0) | self._bad_compress(d),
                      sum_exceeds(depth, d.spad_addr, d.rows,
                            limit_max=max(cfg.spad_depth(s) for s in bus.SPADS)),
                      sum_exceeds(cfg.zero_dir_base, d.dram_addr, span, words))
            with m.Case(Opcode.MATMUL):
                a = args.matmul
                wt_rows = Mux(a.wt_repeat, cfg.rows, a.k_tiles * cfg.rows)
                spad_over = (sum_exceeds(cfg.spad_depth("wt"), a.wt_addr, wt_rows) |
                             sum_exceeds(cfg.spad_depth("acc"), a.acc_addr, a.m))
                check((a.m == 0) | (a.k_tiles == 0), spad_over, 0)
            with m.Case(Opcode.REQUANT):
                r = args.requant
                spad_over = (sum_exceeds(cfg.spad_depth("acc"), r.acc_addr, r.rows) |
                             sum_exceeds(cfg.spad_depth("out"), r.out_addr, r.rows) |
                             sum_exceeds(cfg.spad_depth("param"), r.param_addr, 3))
                check(r.rows == 0, spad_over, 0)
            with m.Case(Opcode.PERF):
                check(0, 0, sum_exceeds(cfg.zero_dir_base, args.perf.dram_addr,
                                        isa.perf_words(cfg)))
            with m.Case(Opcode.SYNC, Opcode.HALT, Opcode.LOOP):
                pass
            with m.Default():
                m.d.comb += err.eq(ErrorCode.ILLEGAL_OPCODE)
        return m

    def _bad_compress(self, d):
        """Return whether the LOAD/STORE operands ``d`` ask for a compression the configuration
        does not allow: any ``compress=1`` without ``cfg.compress_acts``; else a LOAD not into
        ACT, a STORE not from OUT, or a row slot not aligned to ``cfg.zero_row_words``."""
        cfg = self._cfg
        if not cfg.compress_acts:
            return d.compress
        low = exact_log2(cfg.zero_row_words)
        wrong_spad = Mux(self.instr.opcode == Opcode.STORE, d.spad != isa.Spad.OUT,
                         d.spad != isa.Spad.ACT)
        return d.compress & (wrong_spad | d.dram_addr[:low].any() | d.dram_stride[:low].any())


class SpanMultiplier(wiring.Component):
    """Multiply ``(count - 1) * stride`` for the DMA range check by shift-and-add, without DSPs.

    On ``start`` it takes ``count`` and ``stride``; ``span`` holds the product, limited to
    ``2**W`` (``W = span_bits(cfg)``: every limit it is checked against is below ``2**W``, so
    the checks do not change), ``cfg.check_cycles`` cycles later (``cfg.check_mul_bits`` bits of
    ``count - 1`` per cycle, least significant first) until the next ``start``. Only the low
    ``cfg.check_count_bits`` of ``count - 1`` are used: a larger count fails the scratchpad
    check, which the checker reports first, so the span does not matter then (nor for a zero
    count, a ``BAD_ARG``).

    Members
    -------
    start : ``In(1)``; count : ``In(CHECK_COUNT_WIDTH)``; stride : ``In(STRIDE_WIDTH)``
    span : ``Out(span_bits(cfg) + 1)``
    """
    #: The stride of the range check (``DmaArgs.dram_stride``).
    STRIDE_WIDTH = Shape.cast(isa.DmaArgs.as_shape()["dram_stride"].shape).width

    @staticmethod
    def span_bits(cfg: AccelConfig) -> int:
        """Return ``W``: the span limit (``mem_words``) is below ``2**W``."""
        return cfg.mem_words.bit_length()

    def __init__(self, cfg: AccelConfig):
        self._cfg = _check_cfg("SpanMultiplier", cfg)
        if not cfg.check_mul_bits:
            raise ValueError("SpanMultiplier needs a configuration with check_mul_bits, not 0")
        super().__init__({"start": In(1), "count": In(CHECK_COUNT_WIDTH),
                          "stride": In(self.STRIDE_WIDTH),
                          "span": Out(self.span_bits(cfg) + 1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        bits = cfg.check_mul_bits
        nbits = cfg.check_cycles * bits                   # >= check_count_bits
        w = self.span_bits(cfg)
        mplier = Signal(nbits)
        mcand = Signal(w)                                 # the stride's low bits
        big = Signal()                                    # the stride is >= 2**w
        nonzero = Signal()                                # count - 1 != 0
        hi = Signal(w + 1)
        lo = Signal(nbits)
        # t = hi + mcand * chunk; {hi, lo} = {t, lo} >> bits.
        t = Signal(w + bits + 1)
        prod = Cat(lo, hi)
        m.d.comb += [t.eq(sum((Mux(mplier[b], mcand << b, 0) for b in range(bits)), hi)),
                     self.span.eq(Mux((big & nonzero) | prod[w:].any(), 1 << w, prod[:w]))]
        with m.If(self.start):
            count_m1 = (self.count - 1)[:cfg.check_count_bits]
            m.d.sync += [mplier.eq(count_m1), nonzero.eq(count_m1 != 0),
                         mcand.eq(self.stride[:w]), big.eq(self.stride[w:].any()), hi.eq(0)]
        with m.Else():
            m.d.sync += [mplier.eq(mplier >> bits), hi.eq(t >> bits),
                         lo.eq(Cat(lo[bits:], t[:bits]))]
        return m


class PerfWriter(wiring.Component):
    """Write the counters to device memory as PERF specifies (64-bit little-endian slots).

    Issues ``isa.perf_words(cfg)`` write requests back to back from ``dram_addr`` (the bytes after
    the last counter's slot are zero); ``busy`` from the cycle after the command until the last
    write is accepted. ``values`` must hold steady while busy (the controller freezes the
    counters).

    Members
    -------
    i_cmd : ``In(stream.Signature(cfg.mem_addr_width))``; the word address.
    busy : ``Out(1)``
    values : ``In(perf_layout(cfg))``
    o_mem_req : ``Out(stream.Signature(bus.mem_req_layout(cfg)))``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = _check_cfg("PerfWriter", cfg)
        super().__init__({
            "i_cmd": In(stream.Signature(cfg.mem_addr_width)),
            "busy": Out(1),
            "values": In(perf_layout(cfg)),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n = isa.perf_words(cfg)
        slot_bits = 8 * isa.PERF_SLOT_BYTES
        image = Cat(*(Cat(self.values[name], C(0, slot_bits - cfg.counter_bits))
                      for name in isa.PERF_COUNTERS))
        image = Cat(image, C(0, n * cfg.mem_bus_bits - len(image)))    # the last word's padding
        addr = Signal(cfg.mem_addr_width)
        k = Signal(range(n))
        req = self.o_mem_req
        m.d.comb += [
            self.i_cmd.ready.eq(~self.busy),
            req.valid.eq(self.busy), req.p.addr.eq(addr), req.p.we.eq(1),
            req.p.wdata.eq(image.word_select(k, cfg.mem_bus_bits)),
        ]
        with m.If(self.i_cmd.valid & self.i_cmd.ready):
            m.d.sync += [self.busy.eq(1), addr.eq(self.i_cmd.payload), k.eq(0)]
        with m.If(req.valid & req.ready):
            m.d.sync += [addr.eq(addr + 1), k.eq(k + 1)]
            with m.If(k == n - 1):
                m.d.sync += self.busy.eq(0)
        return m


class Controller(wiring.Component):
    """Fetch, check and execute a program; report status.

    On ``start`` (while idle): clear the counters and status, then from ``prog_addr`` repeatedly
    fetch an instruction (:class:`Fetcher`; a fetch past ``mem_words`` faults with
    ``FETCH_RANGE``), check it (:class:`Checker`, after ``cfg.check_cycles`` cycles of
    :class:`SpanMultiplier` with ``cfg.check_mul_bits``; a fault halts before anything is issued),
    dispatch it to its unit's ``o_*`` command stream and wait until every unit's ``busy`` is low.
    PERF writes the counters itself (:class:`PerfWriter`) while they are frozen; SYNC is a no-op;
    LOOP goes to ``o_loop`` and retires in its dispatch cycle (``loop_clear`` pulses on
    ``start``); HALT stops with ``done``. A REQUANT that ends with ``requant_fault`` faults with
    ``BAD_PARAM``, a MATMUL that ends with ``matmul_fault`` (an act row beyond the ACT depth)
    with ``SPAD_RANGE``. A fault sets ``done``, clears ``busy`` and latches ``error`` and
    ``fault_pc``. With an ideal memory an instruction's fetch-to-dispatch costs ``instr_words +
    ISSUE_OVERHEAD`` cycles (plus ``cfg.check_cycles``) and a unit's instruction retires
    ``RETIRE_CYCLES`` after its ``busy`` falls (SYNC, HALT: ``MISC_CYCLES`` after dispatch), the
    latencies of ``hw/timing.py`` (``tests/test_hw_controller.py`` checks isasim's cycles).

    Members
    -------
    start : ``In(1)``; prog_addr : ``In(cfg.mem_addr_width)``
    status : ``Out(isa.Status)``; fault_pc : ``Out(cfg.mem_addr_width)``
    o_mem_req, i_mem_rsp : the controller's memory bus port (fetch and PERF writes).
    o_dma : ``Out(stream.Signature(DmaCmd))``; dma_busy : ``In(1)``
    o_matmul : ``Out(stream.Signature(isa.MatmulArgs))``; matmul_busy, matmul_fault : ``In(1)``
    o_loop : ``Out(stream.Signature(isa.LoopArgs))``; loop_clear : ``Out(1)``
    o_requant : ``Out(stream.Signature(isa.RequantArgs))``; requant_busy, requant_fault : ``In(1)``
    perf_values : ``In(perf_layout(cfg))``
    perf_clear : ``Out(1)``; perf_active : ``Out(1)`` (count this cycle); retired : ``Out(1)``
    """

    def __init__(self, cfg: AccelConfig):
        self._cfg = _check_cfg("Controller", cfg)
        aw = cfg.mem_addr_width
        super().__init__({
            "start": In(1), "prog_addr": In(aw),
            "status": Out(isa.Status), "fault_pc": Out(aw),
            "o_mem_req": Out(stream.Signature(bus.mem_req_layout(cfg))),
            "i_mem_rsp": In(stream.Signature(bus.mem_rsp_layout(cfg))),
            "o_dma": Out(stream.Signature(DmaCmd)), "dma_busy": In(1),
            "o_matmul": Out(stream.Signature(isa.MatmulArgs)), "matmul_busy": In(1),
            "matmul_fault": In(1),
            "o_loop": Out(stream.Signature(isa.LoopArgs)), "loop_clear": Out(1),
            "o_requant": Out(stream.Signature(isa.RequantArgs)),
            "requant_busy": In(1), "requant_fault": In(1),
            "perf_values": In(perf_layout(cfg)),
            "perf_clear": Out(1), "perf_active": Out(1), "retired": Out(1),
        })

    @property
    def cfg(self) -> AccelConfig:
        return self._cfg

    def _connect_mem(self, m, fetcher, pw):
        req = self.o_mem_req
        for src, cond in ((pw.o_mem_req, pw.busy), (fetcher.o_mem_req, ~pw.busy)):
            with m.If(cond):
                m.d.comb += [req.valid.eq(src.valid), req.payload.eq(src.payload),
                             src.ready.eq(req.ready)]
        wiring.connect(m, wiring.flipped(self.i_mem_rsp), fetcher.i_mem_rsp)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n = isa.instr_words(cfg)
        m.submodules.fetcher = fetcher = Fetcher(cfg)
        m.submodules.checker = checker = Checker(cfg)
        if cfg.check_mul_bits:
            m.submodules.span_mul = span_mul = SpanMultiplier(cfg)
            nxt = fetcher.o_instr.payload
            m.d.comb += [
                checker.span.eq(span_mul.span),
                span_mul.start.eq(fetcher.o_instr.valid & fetcher.o_instr.ready),
                span_mul.count.eq(nxt.args.dma.rows), span_mul.stride.eq(nxt.args.dma.dram_stride),
            ]
            check_left = Signal(range(cfg.check_cycles))
        m.submodules.perf_writer = pw = PerfWriter(cfg)
        self._connect_mem(m, fetcher, pw)
        status = self.status
        # The instruction being executed: the Fetcher holds it until the next fetch (after it
        # retires), so it is not copied.
        ir = fetcher.o_instr.payload
        pc = Signal(cfg.mem_addr_width + 1)
        units_busy = self.dma_busy | self.matmul_busy | self.requant_busy | pw.busy
        m.d.comb += [
            checker.instr.eq(ir), pw.values.eq(self.perf_values),
            self.perf_active.eq(status.busy & ~pw.busy),
            fetcher.i_pc.payload.eq(pc),
            self.o_dma.p.store.eq(ir.opcode == Opcode.STORE), self.o_dma.p.args.eq(ir.args.dma),
            self.o_matmul.p.eq(ir.args.matmul), self.o_loop.p.eq(ir.args.loop),
            self.o_requant.p.eq(ir.args.requant),
            pw.i_cmd.payload.eq(ir.args.perf.dram_addr),
        ]

        def fault(code):
            m.d.sync += [status.busy.eq(0), status.done.eq(1), status.error.eq(code),
                         self.fault_pc.eq(pc)]
            m.next = "IDLE"

        def retire():
            m.d.comb += self.retired.eq(1)
            m.d.sync += pc.eq(pc + n)
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [self.perf_clear.eq(1), self.loop_clear.eq(1)]
                    m.d.sync += [pc.eq(self.prog_addr), status.busy.eq(1), status.done.eq(0),
                                 status.error.eq(ErrorCode.NONE), self.fault_pc.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(pc + n > cfg.mem_words):
                    fault(ErrorCode.FETCH_RANGE)
                with m.Else():
                    m.d.comb += fetcher.i_pc.valid.eq(1)
                    with m.If(fetcher.i_pc.ready):
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += fetcher.o_instr.ready.eq(1)
                with m.If(fetcher.o_instr.valid):
                    if cfg.check_mul_bits:
                        m.d.sync += check_left.eq(cfg.check_cycles - 1)
                        m.next = "CHECK"
                    else:
                        m.next = "EXEC"
            if cfg.check_mul_bits:
                with m.State("CHECK"):                # SpanMultiplier at work
                    m.d.sync += check_left.eq(check_left - 1)
                    with m.If(check_left == 0):
                        m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(checker.error != ErrorCode.NONE):
                    fault(checker.error)
                with m.Else():
                    self._dispatch(m, ir, pw, retire)
            with m.State("WAIT"):
                with m.If(~units_busy):
                    with m.If((ir.opcode == Opcode.REQUANT) & self.requant_fault):
                        fault(ErrorCode.BAD_PARAM)
                    with m.Elif((ir.opcode == Opcode.MATMUL) & self.matmul_fault):
                        fault(ErrorCode.SPAD_RANGE)
                    with m.Else():
                        retire()
        return m

    def _dispatch(self, m, ir, pw, retire):
        """Drive the command stream of the instruction's unit; go to WAIT once it is taken."""
        with m.Switch(ir.opcode):
            for ops, stream_ in (((Opcode.LOAD, Opcode.STORE), self.o_dma),
                                 ((Opcode.MATMUL,), self.o_matmul),
                                 ((Opcode.REQUANT,), self.o_requant),
                                 ((Opcode.PERF,), pw.i_cmd)):
                with m.Case(*ops):
                    m.d.comb += stream_.valid.eq(1)
                    with m.If(stream_.ready):
                        m.next = "WAIT"
            with m.Case(Opcode.LOOP):                 # the MatmulEngine is idle: ready
                m.d.comb += self.o_loop.valid.eq(1)
                with m.If(self.o_loop.ready):
                    retire()
            with m.Case(Opcode.SYNC):
                retire()
            with m.Case(Opcode.HALT):
                m.d.comb += self.retired.eq(1)
                m.d.sync += [self.status.busy.eq(0), self.status.done.eq(1)]
                m.next = "IDLE"
