"""Why the device halted: the reasons behind its fault codes, worked out on the host.

The device reports only a fault code (:class:`~hw.isa.ErrorCode`) and the word address of the
faulting instruction. For ``BAD_ARG`` the reason is a property of that one instruction word, so the
host can decode the word from the memory image it gave the device and name the rule it breaks.
These are the one source of the ``BAD_ARG`` rules: the ISA simulator raises the fault with
:func:`bad_arg_reason` too (``sw/sim/isasim.py``, module docstring, step 3), in this order:

1. a LOAD / STORE ``spad`` selector outside :class:`~hw.isa.Spad`;
2. a zero count: LOAD / STORE ``rows``, MATMUL ``m`` or ``k_tiles``, REQUANT ``rows``;
3. LOAD / STORE with ``compress=1`` (:func:`compress_reason`): without ``cfg.compress_acts``, from
   or to another spad than ``ACT`` (LOAD) / ``OUT`` (STORE), or with a ``dram_addr`` or
   ``dram_stride`` that is not a multiple of ``cfg.zero_row_words``.
"""
from __future__ import annotations

import numpy as np

from stamen.hw import isa
from stamen.hw.params import AccelConfig

from .asm import fields

__all__ = ["FAULT_TEXT", "SPAD_NAMES", "bad_arg_reason", "compress_reason", "instruction_at",
           "explain_fault"]

#: Scratchpad names by ``spad`` selector value (:class:`~hw.isa.Spad`), as the ISA simulator
#: names them.
SPAD_NAMES = tuple(s.name.lower() for s in sorted(isa.Spad, key=lambda s: s.value))

#: What each fault code means in general (used when nothing more precise is known).
FAULT_TEXT = {
    isa.ErrorCode.ILLEGAL_OPCODE: "the instruction's opcode is not one the device knows",
    isa.ErrorCode.FETCH_RANGE: "the program counter left device memory",
    isa.ErrorCode.DRAM_RANGE: "an access would run past the end of device memory",
    isa.ErrorCode.SPAD_RANGE: "an access would run past the end of a scratchpad",
    isa.ErrorCode.BAD_ARG: "an operand is invalid (a zero count, a spad selector that names no "
                           "scratchpad, or a compress=1 transfer the configuration or the "
                           "operands do not allow)",
    isa.ErrorCode.BAD_PARAM: f"a requantization shift is outside 0..{isa.REQUANT_MAX_SHIFT}",
}


def compress_reason(cfg: AccelConfig, store: bool, spad: str, dram_addr: int,
                    dram_stride: int) -> str | None:
    """Return why a LOAD (``store=False``) or STORE with ``compress=1`` is a ``BAD_ARG``, or None
    when it is a legal compressed transfer; ``spad`` is a name of :data:`SPAD_NAMES`."""
    op = "STORE" if store else "LOAD"
    if not cfg.compress_acts:
        return f"{op} compress=1 needs a configuration with compress_acts"
    want = "out" if store else "act"
    if spad != want:
        return f"{op} compress=1 must use the {want} spad, not {spad}"
    rw = cfg.zero_row_words
    if dram_addr % rw or dram_stride % rw:
        return (f"{op} compress=1 needs dram_addr ({dram_addr}) and dram_stride "
                f"({dram_stride}) to be multiples of {rw}")
    return None


def bad_arg_reason(cfg: AccelConfig, word: int) -> str | None:
    """Return why the device refuses instruction ``word`` with ``BAD_ARG``, or None when it does
    not (a legal instruction, or one that faults with another code first, such as an illegal
    opcode). The texts are the ISA simulator's."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"Fault explanation config must be an AccelConfig, not {cfg!r}")
    if isa.opcode_bits(word) not in {o.value for o in isa.Opcode}:
        return None                                 # ILLEGAL_OPCODE comes first
    try:
        op, a = fields(word)
    except ValueError as e:                         # illegal spad selector
        return str(e)
    if op in (isa.Opcode.LOAD, isa.Opcode.STORE):
        if a["rows"] == 0:
            return "DMA rows must be non-zero"
        if a.get("compress", 0):
            return compress_reason(cfg, op == isa.Opcode.STORE, SPAD_NAMES[a["spad"]],
                                   a["dram_addr"], a["dram_stride"])
    elif op == isa.Opcode.MATMUL:
        if a["m"] == 0 or a["k_tiles"] == 0:
            return f"MATMUL m={a['m']} and k_tiles={a['k_tiles']} must be non-zero"
    elif op == isa.Opcode.REQUANT:
        if a["rows"] == 0:
            return "REQUANT rows must be non-zero"
    return None


def instruction_at(cfg: AccelConfig, image: np.ndarray, pc: int) -> int | None:
    """Return the instruction word at word address ``pc`` of memory image ``image`` (uint8), or
    None when it does not lie wholly inside the image."""
    bb = cfg.mem_bus_bytes
    n = isa.INSTR_BITS // 8
    image = np.asarray(image, np.uint8).reshape(-1)
    if pc < 0 or (pc * bb) + n > image.size:
        return None
    return int.from_bytes(image[pc * bb:pc * bb + n].tobytes(), "little")


def explain_fault(cfg: AccelConfig, code: isa.ErrorCode, pc: int | None,
                  image: np.ndarray | None = None) -> str:
    """Return the explanation of fault ``code`` at word address ``pc`` for a run of memory image
    ``image``: for ``BAD_ARG``, the rule the instruction at ``pc`` breaks (as the ISA simulator
    words it) when it can be decoded from ``image``; otherwise :data:`FAULT_TEXT`'s text."""
    code = isa.ErrorCode(code)
    if code == isa.ErrorCode.BAD_ARG and image is not None and pc is not None:
        word = instruction_at(cfg, image, pc)
        if word is not None:
            reason = bad_arg_reason(cfg, word)
            if reason is not None:
                return reason
            return (f"{FAULT_TEXT[code]}; but the instruction {word:#x} the host gave at this "
                    f"address breaks none of these rules (was device memory overwritten?)")
    return FAULT_TEXT.get(code, "")
