"""The single source of every number that describes a Stamen device.

`AccelConfig` is a frozen dataclass that validates itself. The RTL generator, the compiler, the ISA
simulator, the golden model and the testbenches all read their widths and depths from it.

Memory model (shared by every tier)
-----------------------------------
Device memory ("DRAM") is ``mem_bytes`` bytes seen as ``mem_words`` words of ``mem_bus_bytes`` bytes (the
bus width); addresses count words. Bytes within a word are little-endian: byte ``j`` of a word is bits ``8j .. 8j+7``. Each scratchpad
row is a whole number of memory words:

========  =================  =============================================================
spad      row contents       row bytes
========  =================  =============================================================
ACT       ``rows`` int8      ``rows``   (one activation vector, element ``r`` in byte ``r``)
WT        ``cols`` int8      ``cols``   (one row of a weight tile, element ``c`` in byte ``c``)
ACC       ``cols`` int32     ``4*cols`` (little-endian int32 per column)
OUT       ``cols`` int8      ``cols``   (requantized results)
PARAM     ``cols`` int32     ``4*cols`` (bias / multiplier / shift rows for requantization)
========  =================  =============================================================
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

__all__ = ["AccelConfig", "DATAFLOWS", "PRESETS", "ACT_WIDTH", "WT_WIDTH", "ACC_WIDTH",
           "OPERAND_WIDTH", "COUNTER_WIDTH", "CONFIG_ID_WIDTH", "CHECK_COUNT_WIDTH", "RS_SEGMENT",
           "RS_MAX_STRIDE", "RS_FEED_DEPTH", "RS_PASS_QUEUE", "WS_SKIP_ROWS"]

#: Width of an activation element in memory (int8, asymmetric with a zero point).
ACT_WIDTH = 8
#: Width of a weight element (int8, symmetric per output channel).
WT_WIDTH = 8
#: Width of an accumulator / partial sum (int32).
ACC_WIDTH = 32
#: Width of the activation operand entering the array: ``a - zp`` needs 9 signed bits.
OPERAND_WIDTH = ACT_WIDTH + 1
#: Width of each performance counter (the default of ``AccelConfig.counter_bits``).
COUNTER_WIDTH = 48
#: Narrowest performance counter ``AccelConfig.counter_bits`` allows.
_MIN_COUNTER_BITS = 16
#: Width of the configuration ID CSR (a hash of the configuration).
CONFIG_ID_WIDTH = 32

DATAFLOWS = ("ws", "os", "rs")
_IMPLEMENTED_DATAFLOWS = ("ws", "os", "rs")
#: Most output positions one row-stationary pass computes (a power of two): a MATMUL's output
#: rows are cut into segments of at most this many outputs, so a PE's ifmap row is at most
#: ``(RS_SEGMENT - 1) * RS_MAX_STRIDE + max_taps`` wide (see ``hw/rs_matmul.py``).
RS_SEGMENT = 64
#: Passes the row-stationary engine has in flight: issued to the PE rows and not yet written to
#: ACC. Each PE row starts its next pass on its own, so a fast row may run this many passes
#: ahead of the slowest one (``hw/rs_matmul.py``).
RS_PASS_QUEUE = 2
#: Slack entries of the row-stationary engine's FIFOs beyond what ``RS_PASS_QUEUE`` passes need
#: (each PE row's activation FIFO holds their runs plus this, each PE's psum FIFO their outputs
#: and the column adder's stages plus this).
RS_FEED_DEPTH = 4
#: Largest window stride a row-stationary PE walks (``m_stride / act_stride`` of a MATMUL).
RS_MAX_STRIDE = 2
#: Largest scratchpad depth the ISA address fields can name (see ``hw/isa.py``).
_MAX_SPAD_DEPTH = 1 << 16
#: Widest device memory bus, in bytes (an instruction is 128 bits).
_MAX_BUS_BYTES = 16
#: Largest device memory the ISA's word address can name.
_MAX_MEM_WORDS = 1 << 32
#: Legal multiplier bits per cycle of a requantization lane (divisors of the 32-bit multiplier).
_REQUANT_MUL_BITS = (1, 2, 4, 8, 16, 32)
#: Fields added after the first release, with the defaults that keep the earlier hardware; a field
#: at its default is left out of :attr:`AccelConfig.config_hash`, so earlier hashes stay valid.
_HASH_OPTIONAL = {"requant_lanes": 0, "requant_mul_bits": 32, "check_mul_bits": 0,
                  "counter_bits": COUNTER_WIDTH, "rs_wt_depth": 224, "rs_ifmap_depth": 12,
                  "rs_psum_depth": 24, "compress_acts": False}
_SPADS = ("act", "wt", "acc", "out", "param")
#: Bits of the count that the range check multiplies (LOAD/STORE ``rows``; see hw/isa.py).
CHECK_COUNT_WIDTH = 16
#: Act rows the zero-skipping weight-stationary engine reads per cycle (``dataflow="ws"``,
#: ``zero_skip``): a pair, through a second ACT read port (``hw/matmul.py``).
WS_SKIP_ROWS = 2


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of one Stamen device.

    Parameters
    ----------
    rows, cols : int
        PE array size. ``rows`` is the reduction (K) dimension of one weight tile, ``cols`` the
        output-channel (N) dimension.
    dataflow : str
        ``"ws"`` (weight-stationary systolic, ``hw/matmul.py``) or ``"os"`` (output-stationary
        systolic, ``hw/os_matmul.py``); both execute the same ISA bit-exactly, only the cycles
        differ (``sw/sim/os_engine.py``). ``"rs"`` (row-stationary, ``hw/rs_matmul.py``)
        runs the same MATMULs as 1-D convolutions on Eyeriss-style PEs.
    act_spad_depth, wt_spad_depth, acc_spad_depth, out_spad_depth, param_spad_depth : int
        Scratchpad depths in rows (see the module docstring for a row's contents).
    bus_bytes : int
        Device memory word (bus) width in bytes: a power of two of at most 16 that divides ``rows`` and
        ``cols``, or 0 (the default) for the widest such width. :attr:`mem_bus_bytes` is the width used.
    mem_bytes : int
        Device memory size in bytes; a multiple of 16 (one instruction).
    zero_gate : bool
        Gate the multiplier and accumulator of a PE whose operand is zero (and count it).
    zero_skip : bool
        Skip zero activations (not with ``dataflow="os"``). ``"rs"``: the PEs get compressed
        rows and spend no cycle on an activation equal to the zero point. ``"ws"``: the engine
        reads :data:`WS_SKIP_ROWS` act rows per cycle (a second ACT read port, a copy of the ACT
        spad's BRAMs) and spends no array cycle on a row whose every lane is the zero point.
    requant_lanes : int
        Requantization lanes of PostProc: 0 (the default) for ``cols`` lanes (a row per cycle), or
        a divisor of ``cols``. With fewer lanes (or ``requant_mul_bits < 32``) PostProc
        requantizes a row in ``cols // lanes`` groups of lanes (see :attr:`requant_row_cycles`).
    requant_mul_bits : int
        Multiplier bits each requantization lane consumes per cycle: 32 (the default) multiplies
        the 32x32-bit product in one cycle (DSP blocks), 1, 2, 4, 8 or 16 builds it by
        shift-and-add from logic (no DSP) in ``32 // requant_mul_bits`` cycles per group.
    check_mul_bits : int
        How the controller multiplies for the LOAD/STORE range check (``(rows-1)*dram_stride``;
        MATMUL's act rows are checked by the MatmulEngine as it reads them): 0 (the default)
        combinationally, or 1 to 16 multiplier bits per cycle by shift-and-add from logic (no
        DSP), which adds :attr:`check_cycles` cycles to every instruction's decode.
    counter_bits : int
        Width of each performance counter, ``16..COUNTER_WIDTH`` (48, the default); a counter
        wraps modulo ``2**counter_bits``. PERF slots and the bridge's CSRs stay 8 bytes
        (zero-extended).
    rs_wt_depth, rs_ifmap_depth, rs_psum_depth : int
        Filter, ifmap and psum scratchpad entries of each row-stationary PE (Eyeriss v1: 224,
        12, 24); ignored by the other dataflows.
    compress_acts : bool
        Reserve the top :attr:`zero_dir_words` words of device memory for the zero-row
        directory and let LOAD / STORE with ``compress=1`` skip the memory traffic of act rows
        whose every byte is the zero point (``hw/isa.py``, ``docs/internals.md``). Needs
        ``rows == cols`` (ACT and OUT rows of the same size) and a power-of-two number of words
        per row. False (the default) builds the hardware without it. The compiler then moves
        the input and the intermediate int8 activations that way (``sw/compiler/lower.py``).
    name : str
        A label; not part of the configuration hash.

    Raises
    ------
    TypeError, ValueError
        When a field has the wrong kind or a value that does not fit.
    """
    rows: int = 8
    cols: int = 8
    dataflow: str = "ws"
    act_spad_depth: int = 1024
    wt_spad_depth: int = 1024
    acc_spad_depth: int = 512
    out_spad_depth: int = 512
    param_spad_depth: int = 96
    bus_bytes: int = 0
    mem_bytes: int = 1 << 20
    zero_gate: bool = True
    zero_skip: bool = False
    requant_lanes: int = 0
    requant_mul_bits: int = 32
    check_mul_bits: int = 0
    counter_bits: int = COUNTER_WIDTH
    rs_wt_depth: int = 224
    rs_ifmap_depth: int = 12
    rs_psum_depth: int = 24
    compress_acts: bool = False
    name: str = dataclasses.field(default="custom", compare=False)

    def __post_init__(self):
        int_fields = ("rows", "cols", "act_spad_depth", "wt_spad_depth", "acc_spad_depth",
                      "out_spad_depth", "param_spad_depth", "mem_bytes")
        for f in int_fields:
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TypeError(f"AccelConfig.{f} must be a positive integer, not {v!r}")
        for f in ("zero_gate", "zero_skip", "compress_acts"):
            if not isinstance(getattr(self, f), bool):
                raise TypeError(f"AccelConfig.{f} must be a bool, not {getattr(self, f)!r}")
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"AccelConfig.dataflow must be one of {DATAFLOWS}, "
                             f"not {self.dataflow!r}")
        if self.dataflow not in _IMPLEMENTED_DATAFLOWS:
            raise ValueError(f"AccelConfig.dataflow {self.dataflow!r} is not implemented yet; "
                             f"implemented: {_IMPLEMENTED_DATAFLOWS}")
        if self.zero_skip and self.dataflow == "os":
            raise ValueError(f"AccelConfig.zero_skip needs dataflow 'rs' (its PEs walk the "
                             f"activations one by one) or 'ws' (it drops all-zero act rows); "
                             f"the {self.dataflow!r} array reduces each act row over several "
                             f"cycles and cannot skip it")
        for f in ("rs_wt_depth", "rs_ifmap_depth", "rs_psum_depth"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TypeError(f"AccelConfig.{f} must be a positive integer, not {v!r}")
        if self.rs_ifmap_depth <= RS_MAX_STRIDE:
            raise ValueError(f"AccelConfig.rs_ifmap_depth must exceed the largest stride "
                             f"({RS_MAX_STRIDE}), not {self.rs_ifmap_depth!r}")
        if self.rs_wt_depth < 2 * self.rs_max_taps:
            raise ValueError(f"AccelConfig.rs_wt_depth must hold two filter rows of "
                             f"rs_ifmap_depth - {RS_MAX_STRIDE} = {self.rs_max_taps} taps "
                             f"(>= {2 * self.rs_max_taps}), not {self.rs_wt_depth!r}")
        if self.rows > 64 or self.cols > 64:
            raise ValueError(f"PE array must be at most 64x64, not {self.rows}x{self.cols}")
        if not isinstance(self.bus_bytes, int) or isinstance(self.bus_bytes, bool):
            raise TypeError(f"AccelConfig.bus_bytes must be an integer, not {self.bus_bytes!r}")
        if self.bus_bytes:
            if not _is_pow2(self.bus_bytes) or self.bus_bytes > _MAX_BUS_BYTES:
                raise ValueError(f"AccelConfig.bus_bytes must be 0 (auto) or a power of two of at "
                                 f"most {_MAX_BUS_BYTES}, not {self.bus_bytes!r}")
            if self.rows % self.bus_bytes or self.cols % self.bus_bytes:
                raise ValueError(f"AccelConfig.bus_bytes ({self.bus_bytes}) must divide both "
                                 f"rows ({self.rows}) and cols ({self.cols})")
        if self.mem_bytes % _MAX_BUS_BYTES:
            raise ValueError(f"AccelConfig.mem_bytes must be a multiple of {_MAX_BUS_BYTES}, "
                             f"not {self.mem_bytes!r}")
        for f in ("act_spad_depth", "wt_spad_depth", "acc_spad_depth", "out_spad_depth",
                  "param_spad_depth"):
            v = getattr(self, f)
            if v > _MAX_SPAD_DEPTH:
                raise ValueError(f"AccelConfig.{f} must be at most {_MAX_SPAD_DEPTH}, not {v!r}")
        if self.wt_spad_depth < 2 * self.rows:
            raise ValueError(f"AccelConfig.wt_spad_depth must hold two weight tiles "
                             f"(>= {2 * self.rows}), not {self.wt_spad_depth!r}")
        if self.param_spad_depth < 3:
            raise ValueError(f"AccelConfig.param_spad_depth must be at least 3 (bias, multiplier "
                             f"and shift rows), not {self.param_spad_depth!r}")
        for f in ("requant_lanes", "requant_mul_bits", "check_mul_bits", "counter_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"AccelConfig.{f} must be an integer, not {v!r}")
        if self.requant_lanes < 0 or (self.requant_lanes and self.cols % self.requant_lanes):
            raise ValueError(f"AccelConfig.requant_lanes must be 0 (all cols) or a divisor of "
                             f"cols ({self.cols}), not {self.requant_lanes!r}")
        if self.requant_mul_bits not in _REQUANT_MUL_BITS:
            raise ValueError(f"AccelConfig.requant_mul_bits must be one of {_REQUANT_MUL_BITS}, "
                             f"not {self.requant_mul_bits!r}")
        if not 0 <= self.check_mul_bits <= CHECK_COUNT_WIDTH:
            raise ValueError(f"AccelConfig.check_mul_bits must be in 0..{CHECK_COUNT_WIDTH}, "
                             f"not {self.check_mul_bits!r}")
        if not _MIN_COUNTER_BITS <= self.counter_bits <= COUNTER_WIDTH:
            raise ValueError(f"AccelConfig.counter_bits must be in {_MIN_COUNTER_BITS}.."
                             f"{COUNTER_WIDTH}, not {self.counter_bits!r}")
        if self.mem_words > _MAX_MEM_WORDS:
            raise ValueError(f"AccelConfig.mem_bytes must be at most {_MAX_MEM_WORDS} bus words, "
                             f"not {self.mem_bytes!r} bytes")
        if self.compress_acts:
            if self.rows != self.cols:
                raise ValueError(f"AccelConfig.compress_acts needs ACT and OUT rows of one size "
                                 f"(rows == cols), not {self.rows}x{self.cols}")
            if not _is_pow2(self.zero_row_words):
                raise ValueError(f"AccelConfig.compress_acts needs a power-of-two number of "
                                 f"memory words per act row, not {self.zero_row_words}")
            if 2 * self.zero_dir_words > self.mem_words:
                raise ValueError(f"AccelConfig.compress_acts: the zero-row directory "
                                 f"({self.zero_dir_words} words) must fit in half of "
                                 f"memory ({self.mem_words} words)")

    # -- derived sizes ------------------------------------------------------------------------
    @property
    def mem_bus_bytes(self) -> int:
        """Width of a device memory word in bytes (``bus_bytes``, or the widest that fits)."""
        if self.bus_bytes:
            return self.bus_bytes
        width = _MAX_BUS_BYTES
        while self.rows % width or self.cols % width:
            width //= 2
        return width

    @property
    def mem_words(self) -> int:
        """Device memory size in bus words."""
        return self.mem_bytes // self.mem_bus_bytes

    @property
    def mem_bus_bits(self) -> int:
        """Width of a device memory word in bits."""
        return 8 * self.mem_bus_bytes

    @property
    def mem_addr_width(self) -> int:
        """Bits of a device memory word address."""
        return max(1, (self.mem_words - 1).bit_length())

    def spad_row_bytes(self, spad: str) -> int:
        """Return the bytes of one row of scratchpad ``spad`` (``"act"``, ``"wt"``, ...)."""
        table = {"act": self.rows, "wt": self.cols, "acc": 4 * self.cols, "out": self.cols,
                 "param": 4 * self.cols}
        if spad not in table:
            raise ValueError(f"Scratchpad must be one of {tuple(table)}, not {spad!r}")
        return table[spad]

    def spad_row_words(self, spad: str) -> int:
        """Return the device memory words that one row of scratchpad ``spad`` spans."""
        return self.spad_row_bytes(spad) // self.mem_bus_bytes

    @property
    def zero_row_words(self) -> int:
        """Words of one row slot of the zero-row directory: an ACT (= OUT) row,
        ``spad_row_words("act")``."""
        return self.spad_row_words("act")

    @property
    def zero_dir_words(self) -> int:
        """Words of the zero-row directory (0 without ``compress_acts``): one bit per row slot
        of memory, ``ceil(ceil(mem_words / zero_row_words) / mem_bus_bits)``. Bit ``n`` (bit
        ``n % mem_bus_bits`` of word ``zero_dir_base + n // mem_bus_bits``) describes the slot
        at word address ``n * zero_row_words``: 1 when that slot holds a row whose every byte
        is the zero point, 0 when it must be read (a zeroed directory is always correct)."""
        if not self.compress_acts:
            return 0
        slots = -(-self.mem_words // self.zero_row_words)
        return -(-slots // self.mem_bus_bits)

    @property
    def zero_dir_base(self) -> int:
        """First word of the zero-row directory, ``mem_words - zero_dir_words`` (the top of
        memory); LOAD / STORE rows must end below it (``mem_words`` without
        ``compress_acts``)."""
        return self.mem_words - self.zero_dir_words

    @property
    def requant_lane_count(self) -> int:
        """Requantization lanes of PostProc (``requant_lanes``, or ``cols`` when it is 0)."""
        return self.requant_lanes or self.cols

    @property
    def requant_serial(self) -> bool:
        """True when PostProc requantizes a row in groups of lanes over several cycles (fewer
        lanes than ``cols`` or a shift-and-add multiplier), False for one row per cycle."""
        return self.requant_lane_count != self.cols or self.requant_mul_bits != 32

    @property
    def requant_row_cycles(self) -> int:
        """Cycles between consecutive rows of a REQUANT: 1, or when :attr:`requant_serial`
        ``groups * max(1 + 32 // requant_mul_bits, 3)`` with ``groups = cols // lanes`` (per
        group a load cycle and the multiplier's cycles, at least the 3 PARAM row reads)."""
        if not self.requant_serial:
            return 1
        return (self.cols // self.requant_lane_count) * self.requant_group_cycles

    @property
    def requant_group_cycles(self) -> int:
        """Cycles of one group of requantization lanes when :attr:`requant_serial`:
        ``max(1 + 32 // requant_mul_bits, 3)`` (a load cycle and the multiplier's cycles, at
        least the 3 PARAM row reads); 1 otherwise."""
        if not self.requant_serial:
            return 1
        return max(1 + ACC_WIDTH // self.requant_mul_bits, 3)

    @property
    def check_count_bits(self) -> int:
        """Low bits of ``count - 1`` that the range-check multiply needs: a larger LOAD/STORE
        ``rows`` already fails the scratchpad check (``SPAD_RANGE``, which comes first):
        ``bit_length(max spad depth - 1)``."""
        return max(1, (max(self.spad_depth(s) for s in _SPADS) - 1).bit_length())

    @property
    def check_cycles(self) -> int:
        """Extra decode cycles of every instruction for the range checks: 0, or
        ``ceil(check_count_bits / check_mul_bits)`` with a shift-and-add check multiplier."""
        if not self.check_mul_bits:
            return 0
        return -(-self.check_count_bits // self.check_mul_bits)

    def spad_depth(self, spad: str) -> int:
        """Return the depth (rows) of scratchpad ``spad``."""
        self.spad_row_bytes(spad)   # validates the name
        return getattr(self, f"{spad}_spad_depth")

    @property
    def rs_max_taps(self) -> int:
        """Longest filter row a row-stationary PE holds: its ifmap spad keeps a window and the
        next window's new positions (``rs_ifmap_depth - RS_MAX_STRIDE``)."""
        return self.rs_ifmap_depth - RS_MAX_STRIDE

    @property
    def rs_max_width(self) -> int:
        """Widest ifmap row of one row-stationary pass:
        ``(RS_SEGMENT - 1) * RS_MAX_STRIDE + rs_max_taps``."""
        return (RS_SEGMENT - 1) * RS_MAX_STRIDE + self.rs_max_taps

    # -- identity -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Return the fields as a JSON-ready dict (``name`` included)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AccelConfig":
        """Build a config from :meth:`to_dict` output."""
        return cls(**d)

    @property
    def config_hash(self) -> int:
        """A 32-bit hash of every field but ``name``; the device reports it in its ID CSR.

        Fields added later (``requant_lanes``, ``requant_mul_bits``, ``check_mul_bits``,
        ``counter_bits``, ``compress_acts``, ...: ``_HASH_OPTIONAL``) enter the
        hash only when they differ from their defaults, so a configuration that does not use
        them keeps its hash."""
        d = self.to_dict()
        d.pop("name")
        for f, default in _HASH_OPTIONAL.items():
            if d[f] == default:
                d.pop(f)
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).digest()
        return int.from_bytes(digest[:CONFIG_ID_WIDTH // 8], "little")

    @classmethod
    def preset(cls, name: str) -> "AccelConfig":
        """Return the named preset: ``"tiny"`` (4x2), ``"small"`` (8x8), ``"large"`` (16x16),
        ``"small-os"`` / ``"small-rs"`` (``"small"`` with the output-stationary / row-stationary
        dataflow), ``"small-skip"`` (``"small"`` skipping all-zero act rows, in the array and in
        device memory traffic) or ``"small-rs-skip"`` (``"small-rs"`` skipping zero
        activations, and all-zero act rows in device memory traffic)."""
        if name not in PRESETS:
            raise ValueError(f"Preset must be one of {tuple(PRESETS)}, not {name!r}")
        return PRESETS[name]

    def replace(self, **changes) -> "AccelConfig":
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


PRESETS = {
    # For the iCE40UP5K: its 8 DSPs as a 4x2 array (every column costs 32-bit accumulator,
    # de-skew and requantizer paths, a row only 9-bit operands), without zero gating, with a
    # one-lane bit-serial requantizer, shift-and-add range checks, 32-bit counters and its four
    # SPRAMs (128 KiB) as device memory.
    "tiny": AccelConfig(name="tiny", rows=4, cols=2, act_spad_depth=512, wt_spad_depth=256,
                        acc_spad_depth=256, out_spad_depth=256, param_spad_depth=48,
                        mem_bytes=1 << 17, zero_gate=False, requant_lanes=1,
                        requant_mul_bits=1, check_mul_bits=1, counter_bits=32),
    "small": AccelConfig(name="small"),
    "large": AccelConfig(name="large", rows=16, cols=16, act_spad_depth=1024, wt_spad_depth=1024,
                         acc_spad_depth=512, out_spad_depth=512, param_spad_depth=96),
    "small-os": AccelConfig(name="small-os", dataflow="os"),
    "small-rs": AccelConfig(name="small-rs", dataflow="rs"),
    "small-skip": AccelConfig(name="small-skip", zero_skip=True, compress_acts=True),
    "small-rs-skip": AccelConfig(name="small-rs-skip", dataflow="rs", zero_skip=True,
                                 compress_acts=True),
}
