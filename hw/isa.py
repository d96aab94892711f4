"""The Stamen instruction set: the one place where instruction fields and their widths are defined.

Every instruction is :data:`INSTR_BITS` bits wide and is stored in device memory as
``INSTR_BITS // cfg.mem_bus_bits`` consecutive words, least significant word first. The controller
executes instructions one at a time, in order; an instruction starts after the previous one has finished
(the dependency-token fields are reserved for decoupled load/compute/store queues and are ignored).

Semantics (``R = cfg.rows``, ``C = cfg.cols``; spads and row contents as in ``hw/params.py``):

``LOAD``  (:class:`DmaArgs`)
    ``for i in range(rows): spad[spad_addr + i] = mem[dram_addr + i*dram_stride : +row_words]``
``STORE`` (:class:`DmaArgs`)
    ``for i in range(rows): mem[dram_addr + i*dram_stride : +row_words] = spad[spad_addr + i]``

    With ``compress=0`` (the default) LOAD and STORE are the plain copies above. With
    ``cfg.compress_acts`` the top ``cfg.zero_dir_words`` words of memory, from
    ``cfg.zero_dir_base``, are the *zero-row directory*: bit ``n`` (bit ``n % mem_bus_bits``
    of word ``zero_dir_base + n // mem_bus_bits``) describes the row slot at word address
    ``n * row_words`` (``row_words = cfg.zero_row_words``, an ACT or OUT row): 1 means the slot
    holds a row whose every byte equals the zero point, 0 means read the slot (so a zeroed
    directory, the power-on state, is always correct). Every LOAD / STORE (and PERF) must end
    below ``zero_dir_base``, else it halts with ``DRAM_RANGE``, so programs cannot corrupt
    the directory. ``compress=1`` (only with ``cfg.compress_acts``, LOAD only into ``ACT``,
    STORE only from ``OUT``, ``dram_addr`` and ``dram_stride`` multiples of ``row_words``;
    otherwise ``BAD_ARG``)::

        # STORE compress=1, zp: skip the data words of all-zp rows, record them in the directory
        for i in range(rows):
            a = dram_addr + i*dram_stride
            if all(spad[spad_addr + i] == zp):
                dir_bit[a // row_words] = 1                          # no data words written
            else:
                mem[a : a + row_words] = spad[spad_addr + i]
                dir_bit[a // row_words] = 0
        # LOAD compress=1, zp: an all-zp row costs no data reads
        for i in range(rows):
            a = dram_addr + i*dram_stride
            spad[spad_addr + i] = zp if dir_bit[a // row_words] else mem[a : a + row_words]

    The directory words are accessed once per run of consecutive rows that fall in the same
    word: a LOAD reads the word, a STORE reads it, updates the bits of its rows and writes it
    back. An uncompressed STORE leaves the directory alone: a program must not LOAD with
    ``compress=1`` a slot it wrote uncompressed after a compressed STORE set its bit.
``MATMUL`` (:class:`MatmulArgs`), ``k_tiles`` weight tiles of ``R`` rows each::

    for kt in range(k_tiles):
        w0 = wt_addr if wt_repeat else wt_addr + kt*R
        W = wt[w0 : w0 + R]                                          # R x C int8
        for i in range(m):
            a = act[act_row(kt, i)] - zp                             # R values, 9-bit signed
            p = a @ W                                                # C int32
            if not (accumulate or kt > 0):
                acc[acc_addr + i] = p
            elif acc_max:
                acc[acc_addr + i] = maximum(acc[acc_addr + i], p)    # per column
            else:
                acc[acc_addr + i] = acc[acc_addr + i] + p

    Accumulation wraps modulo 2**32. The activation row comes from the address generator, whose
    strides and wrap counts the last ``LOOP`` set (``//`` and ``%`` by a wrap count of 0 mean the
    level never wraps: ``t // 0 = 0``, ``t % 0 = t``)::

        def act_row(kt, i):
            t0, t1, t2 = kt % k_wrap0, (kt // k_wrap0) % k_wrap1, kt // (k_wrap0 * k_wrap1)
            i0, i1 = i % m_wrap, i // m_wrap
            return (act_addr + t0*act_stride + t1*k_stride1 + t2*k_stride2
                    + i0*m_stride + i1*m_stride1)

    With the values ``start`` resets the generator to (all 0 but ``m_stride = 1``) this is
    ``act_addr + kt*act_stride + i``. A convolution uses the levels as kernel column / kernel
    row / channel chunk (``kt``) and output column / output row (``i``), so the array walks the
    input window in the act spad without im2col copies. An act row at or beyond the act spad
    depth is detected as it is read: the MATMUL completes (the ACC rows it wrote are undefined)
    and then halts with ``SPAD_RANGE``; the other ranges are checked before it starts.
``LOOP`` (:class:`LoopArgs`): sets the activation address generator of later MATMULs (above);
    retires in its dispatch cycle.
``REQUANT`` (:class:`RequantArgs`): ``bias, mult, shift = param[param_addr : param_addr + 3]``, then
    ``out[out_addr + i] = golden.requantize(acc[acc_addr + i] + bias, mult, shift, zp_out, relu)``
    for ``i in range(rows)``; a shift outside ``0..31`` halts with ``BAD_PARAM``.
``PERF`` (:class:`PerfArgs`): writes the performance counters, in :data:`PERF_COUNTERS` order, each as a
    64-bit little-endian value, to ``mem[dram_addr : dram_addr + perf_words(cfg)]`` (bytes of the
    last word beyond the last counter are written as zero). Of the MAC counters, ``macs`` counts
    the MACs the array performed, ``gated_macs`` those of them performed with a gated multiplier
    (a zero operand, ``cfg.zero_gate``), and ``skipped_macs`` the MACs never performed because a
    zero activation was skipped (``cfg.zero_skip``: the ``rs`` array skips zero activations, the
    ``ws`` engine all-zero act rows, ``R * C`` MACs each; always 0 for ``os``), so
    ``macs + skipped_macs`` is the MATMULs' total ``m * R * C * k_tiles``. The ``ws`` and
    ``os`` arrays gate on a zero activation or a zero weight; the ``rs`` array gates (or skips)
    only on a zero activation ``a - zp == 0``, never on a zero weight.
``SYNC``: waits until all previous instructions have finished (a no-op for the in-order controller).
``HALT``: stops; status reports ``done``.

Faults halt the device with ``done`` and an :class:`ErrorCode` in the status CSR: an opcode not listed
here (0 is illegal, so zeroed memory faults), a zero loop count, a scratchpad or device-memory range
overrun, a bad REQUANT shift (above) or a fetch outside memory. Range overruns are checked before the
instruction starts, so nothing is corrupted, except a MATMUL's act rows: an act row at or beyond the
act spad depth is found as it is read, so that MATMUL completes (the ACC rows it wrote are undefined)
and then halts with ``SPAD_RANGE``.
"""
from amaranth.hdl import Shape, signed
from amaranth.lib import data, enum

__all__ = ["INSTR_BITS", "Opcode", "Spad", "ErrorCode", "Deps", "DmaArgs", "MatmulArgs",
           "RequantArgs", "PerfArgs", "LoopArgs", "LOOP_RESET",
           "ARG_DEFAULTS", "Args", "Instr", "Status", "PERF_COUNTERS",
           "PERF_SLOT_BYTES", "SPAD_ADDR_WIDTH", "encode", "decode", "instr_words",
           "perf_words", "opcode_bits", "OPCODE_ARGS", "ARG_RANGES", "REQUANT_MAX_SHIFT"]

#: Bits of one instruction.
INSTR_BITS = 128
#: Bits of a scratchpad row address in an instruction.
SPAD_ADDR_WIDTH = 16
#: Largest right shift a REQUANT parameter may hold.
REQUANT_MAX_SHIFT = 31


class Opcode(enum.Enum, shape=4):
    """Instruction opcodes. 0 and values not listed are illegal."""
    LOAD = 1
    STORE = 2
    MATMUL = 3
    REQUANT = 4
    SYNC = 5
    PERF = 6
    HALT = 7
    LOOP = 8


class Spad(enum.Enum, shape=3):
    """Scratchpad selector of LOAD / STORE."""
    ACT = 0
    WT = 1
    ACC = 2
    OUT = 3
    PARAM = 4


class ErrorCode(enum.Enum, shape=4):
    """Fault codes reported in the status CSR."""
    NONE = 0
    ILLEGAL_OPCODE = 1
    FETCH_RANGE = 2
    DRAM_RANGE = 3
    SPAD_RANGE = 4
    BAD_ARG = 5
    BAD_PARAM = 6


class Deps(data.Struct):
    """Reserved dependency tokens (VTA-style); ignored by the in-order controller, keep zero."""
    pop_prev: 1
    pop_next: 1
    push_prev: 1
    push_next: 1


class DmaArgs(data.Struct):
    """Operands of LOAD and STORE. ``dram_addr`` and ``dram_stride`` count memory words;
    ``compress`` uses the zero-row directory with zero point ``zp`` (module docstring)."""
    spad: Spad
    spad_addr: SPAD_ADDR_WIDTH
    rows: 16
    dram_addr: 32
    dram_stride: 24
    compress: 1
    zp: signed(8)


class MatmulArgs(data.Struct):
    """Operands of MATMUL; see the module docstring. ``zp`` is the activation zero point;
    ``acc_max`` accumulates by per-column maximum instead of sum (max pooling); ``wt_repeat``
    uses the weight tile at ``wt_addr`` for every ``kt`` (pooling, residual add)."""
    act_addr: SPAD_ADDR_WIDTH
    wt_addr: SPAD_ADDR_WIDTH
    acc_addr: SPAD_ADDR_WIDTH
    m: 16
    k_tiles: 16
    act_stride: 16
    zp: signed(8)
    accumulate: 1
    acc_max: 1
    wt_repeat: 1


class LoopArgs(data.Struct):
    """Operands of LOOP: wrap counts (0: never wraps) and strides, in act rows, of the MATMUL
    activation address generator; see the module docstring."""
    k_wrap0: 16
    k_wrap1: 16
    k_stride1: 16
    k_stride2: 16
    m_wrap: 16
    m_stride: 16
    m_stride1: 16


class RequantArgs(data.Struct):
    """Operands of REQUANT; ``zp_out`` is the output zero point, ``relu`` clamps at it."""
    acc_addr: SPAD_ADDR_WIDTH
    out_addr: SPAD_ADDR_WIDTH
    param_addr: SPAD_ADDR_WIDTH
    rows: 16
    zp_out: signed(8)
    relu: 1


class PerfArgs(data.Struct):
    """Operands of PERF."""
    dram_addr: 32


class Args(data.Union):
    """Opcode-specific operands."""
    dma: DmaArgs
    matmul: MatmulArgs
    requant: RequantArgs
    perf: PerfArgs
    loop: LoopArgs


class Instr(data.Struct):
    """One instruction: opcode, reserved dependency tokens, operands (padded to INSTR_BITS)."""
    opcode: Opcode
    deps: Deps
    args: Args
    _pad: INSTR_BITS - 4 - 4 - Args.as_shape().size


class Status(data.Struct):
    """Status CSR: ``busy`` while running; ``done`` after HALT or a fault; ``error`` the fault."""
    busy: 1
    done: 1
    error: ErrorCode


#: Performance counters, in the order PERF writes them and the runtime reads them.
#: New counters go at the end, so the earlier ones keep their PERF slots and bridge CSRs.
PERF_COUNTERS = ("cycles", "compute_cycles", "macs", "gated_macs", "dram_read_bytes",
                 "dram_write_bytes", "stall_cycles", "instructions", "skipped_macs")
#: Bytes of one counter slot written by PERF.
PERF_SLOT_BYTES = 8

#: Which operand struct each opcode uses (None: no operands).
OPCODE_ARGS = {Opcode.LOAD: "dma", Opcode.STORE: "dma", Opcode.MATMUL: "matmul",
               Opcode.REQUANT: "requant", Opcode.SYNC: None, Opcode.PERF: "perf",
               Opcode.HALT: None, Opcode.LOOP: "loop"}


def _field_range(layout, name):
    s = Shape.cast(layout.as_shape()[name].shape)
    if s.signed:
        return (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1)
    return (0, (1 << s.width) - 1)


#: Legal (min, max) of every integer operand field, by operand struct name.
ARG_RANGES = {
    "dma": {f: _field_range(DmaArgs, f) for f in ("spad_addr", "rows", "dram_addr", "dram_stride",
                                                  "compress", "zp")},
    "matmul": {f: _field_range(MatmulArgs, f) for f in
               ("act_addr", "wt_addr", "acc_addr", "m", "k_tiles", "act_stride", "zp",
                "accumulate", "acc_max", "wt_repeat")},
    "requant": {f: _field_range(RequantArgs, f) for f in
                ("acc_addr", "out_addr", "param_addr", "rows", "zp_out", "relu")},
    "perf": {"dram_addr": _field_range(PerfArgs, "dram_addr")},
    "loop": {f: _field_range(LoopArgs, f) for f in
             ("k_wrap0", "k_wrap1", "k_stride1", "k_stride2", "m_wrap", "m_stride", "m_stride1")},
}

#: Operands that :func:`encode` may omit, with the value it then uses.
ARG_DEFAULTS = {"matmul": {"acc_max": 0, "wt_repeat": 0}, "dma": {"compress": 0, "zp": 0}}

#: LOOP operands after ``start``: ``act_row(kt, i) = act_addr + kt*act_stride + i``.
LOOP_RESET = {"k_wrap0": 0, "k_wrap1": 0, "k_stride1": 0, "k_stride2": 0, "m_wrap": 0,
              "m_stride": 1, "m_stride1": 0}


def instr_words(cfg) -> int:
    """Return how many device memory words one instruction occupies under ``cfg``."""
    return INSTR_BITS // cfg.mem_bus_bits


def perf_words(cfg) -> int:
    """Return how many device memory words PERF writes under ``cfg``: the counters' slots,
    rounded up to whole words (the padding bytes are written as zero)."""
    return -(-len(PERF_COUNTERS) * PERF_SLOT_BYTES // cfg.mem_bus_bytes)


def encode(opcode: Opcode, **args) -> int:
    """Encode one instruction as an integer of INSTR_BITS bits.

    Raises
    ------
    ValueError
        When an operand is missing (and not in :data:`ARG_DEFAULTS`), unknown, or outside its
        field's range.
    """
    opcode = Opcode(opcode)
    kind = OPCODE_ARGS[opcode]
    init = {"opcode": opcode}
    if kind is None:
        if args:
            raise ValueError(f"{opcode.name} takes no operands, not {sorted(args)!r}")
    else:
        ranges = ARG_RANGES[kind]
        fields = {**ARG_DEFAULTS.get(kind, {}), **args}
        if kind == "dma":
            if "spad" not in fields:
                raise ValueError(f"{opcode.name} needs operand 'spad'")
            fields["spad"] = Spad(fields["spad"])
        for name, (lo, hi) in ranges.items():
            if name not in fields:
                raise ValueError(f"{opcode.name} needs operand {name!r}")
            v = fields[name]
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{opcode.name} operand {name} must be an integer in "
                                 f"[{lo}, {hi}], not {v!r}")
            fields[name] = v
        extra = set(fields) - set(ranges) - {"spad"}
        if extra:
            raise ValueError(f"{opcode.name} has no operand(s) {sorted(extra)!r}")
        init["args"] = {kind: fields}
    return Instr.const(init).as_value().value


def decode(word: int):
    """Decode an INSTR_BITS-bit integer into a ``data.Const`` view of :class:`Instr`."""
    if not 0 <= word < (1 << INSTR_BITS):
        raise ValueError(f"Instruction must be a {INSTR_BITS}-bit unsigned integer, not {word!r}")
    raw = opcode_bits(word)
    if raw not in {op.value for op in Opcode}:
        raise ValueError(f"Illegal opcode {raw} in instruction {word:#x}")
    return data.Const(Instr, word)


def opcode_bits(word: int) -> int:
    """Return the raw opcode field of an instruction word (legal or not)."""
    field = Instr.as_shape()["opcode"]
    return (word >> field.offset) & ((1 << Shape.cast(field.shape).width) - 1)
