"""Payload layouts shared between blocks: the device-memory bus and the scratchpad rows.

The device-memory bus is a pair of streams. A requester sends :func:`mem_req_layout` payloads on
``o_mem_req`` (``we=1``: write ``wdata`` to word ``addr``, no response; ``we=0``: read word ``addr``)
and receives one :func:`mem_rsp_layout` payload on ``i_mem_rsp`` per read, in request order. Both
streams may stall for any number of cycles.
"""
from amaranth.hdl import signed
from amaranth.lib import data

from .params import ACC_WIDTH, ACT_WIDTH, WT_WIDTH, AccelConfig

__all__ = ["SPADS", "mem_req_layout", "mem_rsp_layout", "spad_row_layout", "spad_addr_width"]

#: Scratchpad names, in :class:`hw.isa.Spad` order.
SPADS = ("act", "wt", "acc", "out", "param")


def mem_req_layout(cfg: AccelConfig) -> data.StructLayout:
    """Return the layout of a device-memory request."""
    return data.StructLayout({"addr": cfg.mem_addr_width, "we": 1, "wdata": cfg.mem_bus_bits})


def mem_rsp_layout(cfg: AccelConfig) -> data.StructLayout:
    """Return the layout of a device-memory read response."""
    return data.StructLayout({"rdata": cfg.mem_bus_bits})


def spad_row_layout(cfg: AccelConfig, spad: str) -> data.ArrayLayout:
    """Return the layout of one row of scratchpad ``spad`` (see ``hw/params.py``)."""
    table = {
        "act": data.ArrayLayout(signed(ACT_WIDTH), cfg.rows),
        "wt": data.ArrayLayout(signed(WT_WIDTH), cfg.cols),
        "acc": data.ArrayLayout(signed(ACC_WIDTH), cfg.cols),
        "out": data.ArrayLayout(signed(ACT_WIDTH), cfg.cols),
        "param": data.ArrayLayout(signed(ACC_WIDTH), cfg.cols),
    }
    if spad not in table:
        raise ValueError(f"Scratchpad must be one of {SPADS}, not {spad!r}")
    return table[spad]


def spad_addr_width(cfg: AccelConfig, spad: str) -> int:
    """Return the address width of scratchpad ``spad``."""
    return max(1, (cfg.spad_depth(spad) - 1).bit_length())
