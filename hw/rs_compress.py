"""The zero-skip compressor: a dense activation row stream in, the compressed row stream out.

Compressed row format
---------------------
In the fabric (``i_acts`` of a ``zero_skip`` :class:`~stamen.hw.rs_pe.RsPE`), a row of ``W``
int8 activations with zero point ``zp`` travels as :func:`~stamen.hw.rs_pe.rs_act_layout`
beats: one ``(value, offset, end=0)`` beat per activation with ``value != zp``, in increasing
``offset`` (its position, ``0 <= offset < W``), then one end-of-row marker ``(end=1,
offset=W)``. A row of zeros is the marker alone; the dense row is rebuilt as
``a = full(W, zp); a[offset] = value``. ``sw.sim.rs_pe.compress_row`` is the reference.

In device memory (not built yet) the same information fits a byte stream a DMA can write and
read without arithmetic beyond a prefix count. Two candidates:

* bitmask + values (recommended; Cnvlutin / Eyeriss v2 style): ``ceil(W/8)`` mask bytes, bit
  ``p % 8`` of byte ``p // 8`` set when ``a[p] != zp``, then the non-zero values in order
  (``popcount(mask)`` bytes). The size is fixed by ``W`` up to the values, the offset of the
  ``i``-th value is the position of the ``i``-th set bit, and ``W + 1`` is the worst case: a
  dense row costs ``ceil(W/8)`` extra bytes and saves ``W - nnz`` at density below 7/8.
* run-length (Eyeriss v1 stores ifmaps so): pairs ``(run, value)`` with ``run`` the zeros
  before ``value``, so ``offset_i = offset_{i-1} + run_i + 1``; Eyeriss v1 packs three
  (5-bit run, 16-bit level) pairs and a last flag into 64 bits. For int8: a byte ``run``
  (runs over 255 split by a pair whose value is ``zp``, which the PE gates), then the value.
  It wins below about 50 % density and needs a count of pairs per row.

The stream is what both unpack to.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import ACT_WIDTH
from .rs_pe import rs_act_layout

__all__ = ["RsCompress", "RsDenseAct"]

#: A beat of a dense row: an activation, or (``end == 1``) the end-of-row marker after the last.
RsDenseAct = data.StructLayout({"value": signed(ACT_WIDTH), "end": 1})


class RsCompress(wiring.Component):
    """Drop the activations equal to the zero point and number the others.

    Takes one dense beat per cycle whenever its output register is free (empty, or being taken
    in the same cycle), so an always-ready consumer never stalls it; a kept beat (an activation
    ``!= zp``, or the marker) is valid on ``o_acts`` one cycle after it was taken. Offsets
    count the row's dense beats from 0 and restart after each marker, whose ``offset`` is the
    row width. ``zp`` must hold steady during a row. Rows wider than ``max_width`` wrap the
    offset (undefined).

    Parameters
    ----------
    max_width : int
        Widest row.

    Members
    -------
    i_acts : ``In(stream.Signature(RsDenseAct))``
    o_acts : ``Out(stream.Signature(rs_act_layout(max_width)))``
    zp : ``In(signed(ACT_WIDTH))``; the activation zero point.
    """

    def __init__(self, max_width: int = 256):
        if not isinstance(max_width, int) or isinstance(max_width, bool) or max_width <= 0:
            raise TypeError(f"Compressor max_width must be a positive integer, not {max_width!r}")
        self._max_width = max_width
        super().__init__({
            "i_acts": In(stream.Signature(RsDenseAct)),
            "o_acts": Out(stream.Signature(rs_act_layout(max_width))),
            "zp": In(signed(ACT_WIDTH)),
        })

    @property
    def max_width(self) -> int:
        return self._max_width

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_acts, self.o_acts
        pos = Signal(range(self._max_width + 1))
        free = ~o.valid | o.ready
        keep = i.p.end | (i.p.value != self.zp)
        m.d.comb += i.ready.eq(free)
        with m.If(o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & free):
            m.d.sync += pos.eq(Mux(i.p.end, 0, pos + 1))
            with m.If(keep):
                m.d.sync += [o.valid.eq(1), o.p.value.eq(i.p.value), o.p.offset.eq(pos),
                             o.p.end.eq(i.p.end)]
        return m
