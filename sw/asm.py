"""Assembler and disassembler of Stamen instruction words.

Text form, one instruction per line (``;`` or ``#`` starts a comment)::

    0000  LOAD spad=ACT spad_addr=0 rows=64 dram_addr=0x120 dram_stride=4
    0001  MATMUL act_addr=0 wt_addr=0 acc_addr=0 m=64 k_tiles=8 act_stride=64 zp=-3 accumulate=0
    0002  HALT
    0003  .word 0x0000000000000000000000000000000f ; illegal opcode 15

The leading address column is optional for :func:`assemble` (it is ignored). Operands are
``name=value`` with the field names of ``hw/isa.py``; values are Python integer literals (``0x..``
allowed) and ``spad`` also takes a :class:`~hw.isa.Spad` name. A word that the operand form cannot
reproduce exactly (an illegal opcode, an illegal ``spad`` value, non-zero dependency tokens or
reserved bits) is written as ``.word``, which round-trips bit-exactly. The in-memory form of a
program is :data:`~hw.isa.INSTR_BITS` bits per instruction, little-endian (see :func:`to_bytes`).
"""
from __future__ import annotations

import re

from stamen.hw import isa
from stamen.hw.params import AccelConfig

__all__ = ["disassemble", "disassemble_word", "assemble", "to_bytes", "from_bytes", "fields"]

_INSTR_BYTES = isa.INSTR_BITS // 8
_KIND_FIELDS = {
    "dma": ("spad", "spad_addr", "rows", "dram_addr", "dram_stride", "compress", "zp"),
    "matmul": ("act_addr", "wt_addr", "acc_addr", "m", "k_tiles", "act_stride", "zp", "accumulate",
               "acc_max", "wt_repeat"),
    "loop": ("k_wrap0", "k_wrap1", "k_stride1", "k_stride2", "m_wrap", "m_stride", "m_stride1"),
    "requant": ("acc_addr", "out_addr", "param_addr", "rows", "zp_out", "relu"),
    "perf": ("dram_addr",),
}
_HEX_FIELDS = {"dram_addr"}


def fields(word: int) -> tuple[isa.Opcode, dict[str, int]]:
    """Decode ``word`` into its opcode and a dict of operand values (``spad`` as an int).

    Raises
    ------
    ValueError
        When the opcode or the ``spad`` field is illegal.
    """
    view = isa.decode(word)
    op = view.opcode
    kind = isa.OPCODE_ARGS[op]
    if kind is None:
        return op, {}
    args = getattr(view.args, kind)
    out = {}
    for name in _KIND_FIELDS[kind]:
        if name == "spad":
            try:
                out[name] = int(args.spad.value)
            except ValueError:
                raise ValueError(f"Illegal spad selector in instruction {word:#x}") from None
        else:
            out[name] = int(getattr(args, name))
    return op, out


def _fmt_operands(op: isa.Opcode, ops: dict[str, int]) -> str:
    parts = []
    defaults = isa.ARG_DEFAULTS.get(isa.OPCODE_ARGS[op], {})
    for name, v in ops.items():
        if defaults.get(name, None) == v:
            continue                                # optional flags show only when set
        if name == "spad":
            parts.append(f"spad={isa.Spad(v).name}")
        elif name in _HEX_FIELDS:
            parts.append(f"{name}={v:#x}")
        else:
            parts.append(f"{name}={v}")
    return " ".join([op.name] + parts)


def disassemble_word(word: int) -> str:
    """Return the text of one instruction word (without the address column); never raises for
    a 128-bit value."""
    raw = f".word {word:#0{2 + _INSTR_BYTES * 2}x}"
    try:
        op, ops = fields(word)
    except ValueError as e:
        code = isa.opcode_bits(word)
        if code not in {o.value for o in isa.Opcode}:
            return f"{raw} ; illegal opcode {code}"
        return f"{raw} ; {e}"
    text = _fmt_operands(op, ops)
    if isa.encode(op, **ops) != word:
        return f"{raw} ; {text} (non-zero dependency or reserved bits)"
    return text


def disassemble(words: list[int], cfg: AccelConfig | None = None, prog_addr: int = 0) -> str:
    """Return the program ``words`` as text, one line per instruction.

    The address column is the instruction index, or, when ``cfg`` is given, the device-memory word
    address ``prog_addr + i * instr_words(cfg)``. Illegal words print as ``.word`` lines.
    """
    step = isa.instr_words(cfg) if cfg is not None else 1
    base = prog_addr if cfg is not None else 0
    lines = []
    for i, w in enumerate(words):
        w = int(w)
        if not 0 <= w < (1 << isa.INSTR_BITS):
            raise ValueError(f"Instruction {i} must be a {isa.INSTR_BITS}-bit unsigned integer, "
                             f"not {w!r}")
        lines.append(f"{base + i * step:04x}  {disassemble_word(w)}")
    return "\n".join(lines) + ("\n" if lines else "")


_ADDR_RE = re.compile(r"^[0-9a-fA-F]+:?$")


def _parse_int(text: str, lineno: int, name: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"line {lineno}: operand {name} must be an integer, "
                         f"not {text!r}") from None


def assemble(text: str) -> list[int]:
    """Return the instruction words of the program ``text`` (the inverse of :func:`disassemble`).

    Raises
    ------
    ValueError
        Naming the line, for an unknown mnemonic, a missing / unknown / out-of-range operand or a
        malformed token.
    """
    opnames = {op.name: op for op in isa.Opcode}
    words = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = re.split(r"[;#]", line, maxsplit=1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        if tokens[0].upper() not in opnames and tokens[0] != ".word" and _ADDR_RE.match(tokens[0]):
            tokens = tokens[1:]
            if not tokens:
                continue
        mnem, rest = tokens[0], tokens[1:]
        if mnem == ".word":
            if len(rest) != 1:
                raise ValueError(f"line {lineno}: .word takes exactly one value, not {rest!r}")
            w = _parse_int(rest[0], lineno, ".word")
            if not 0 <= w < (1 << isa.INSTR_BITS):
                raise ValueError(f"line {lineno}: .word must be a {isa.INSTR_BITS}-bit unsigned "
                                 f"integer, not {rest[0]!r}")
            words.append(w)
            continue
        if mnem.upper() not in opnames:
            raise ValueError(f"line {lineno}: unknown mnemonic {mnem!r}; expected one of "
                             f"{sorted(opnames)} or .word")
        op = opnames[mnem.upper()]
        ops = {}
        for tok in rest:
            if "=" not in tok:
                raise ValueError(f"line {lineno}: operand must be name=value, not {tok!r}")
            name, val = tok.split("=", 1)
            if name in ops:
                raise ValueError(f"line {lineno}: operand {name} given twice")
            if name == "spad" and val.upper() in isa.Spad.__members__:
                ops[name] = isa.Spad[val.upper()]
            elif name == "spad":
                try:
                    ops[name] = isa.Spad(int(val, 0))
                except ValueError:
                    raise ValueError(f"line {lineno}: spad must be one of "
                                     f"{list(isa.Spad.__members__)}, not {val!r}") from None
            else:
                ops[name] = _parse_int(val, lineno, name)
        try:
            words.append(isa.encode(op, **ops))
        except ValueError as e:
            raise ValueError(f"line {lineno}: {e}") from None
    return words


def to_bytes(words: list[int], cfg: AccelConfig) -> bytes:
    """Return the in-memory form of ``words``: INSTR_BITS bits each, little-endian (least
    significant memory word first, bytes within a word little-endian)."""
    isa.instr_words(cfg)   # the config must allow whole-word instructions
    out = bytearray()
    for w in words:
        out += int(w).to_bytes(_INSTR_BYTES, "little")
    return bytes(out)


def from_bytes(data: bytes, cfg: AccelConfig) -> list[int]:
    """Return the instruction words of the in-memory form ``data`` (see :func:`to_bytes`).

    Raises
    ------
    ValueError
        When the length is not a whole number of instructions.
    """
    data = bytes(data)
    if len(data) % _INSTR_BYTES:
        raise ValueError(f"Program bytes must be a multiple of {_INSTR_BYTES} "
                         f"(one instruction is {isa.instr_words(cfg)} words of "
                         f"{cfg.mem_bus_bytes} bytes), not {len(data)}")
    return [int.from_bytes(data[i:i + _INSTR_BYTES], "little")
            for i in range(0, len(data), _INSTR_BYTES)]
