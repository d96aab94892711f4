"""Performance counters (``isa.PERF_COUNTERS``)."""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .isa import PERF_COUNTERS
from .params import WS_SKIP_ROWS, AccelConfig

__all__ = ["perf_layout", "skipped_inc_shape", "PerfCounters"]


def perf_layout(cfg: AccelConfig) -> data.StructLayout:
    """Return the layout of the counter values of ``cfg`` (``cfg.counter_bits`` each), fields in
    :data:`isa.PERF_COUNTERS` order."""
    if not isinstance(cfg, AccelConfig):
        raise TypeError(f"perf_layout configuration must be an AccelConfig, not {cfg!r}")
    return data.StructLayout({name: cfg.counter_bits for name in PERF_COUNTERS})


def skipped_inc_shape(cfg: AccelConfig) -> range:
    """Return the shape of a per-cycle skipped-MAC increment under ``cfg``: every PE of the array
    may skip a filter row of up to ``cfg.rs_max_taps`` taps in one cycle (``rs``), or the
    zero-skipping ``ws`` engine drop ``WS_SKIP_ROWS`` act rows of ``rows * cols`` MACs."""
    return range(cfg.rows * cfg.cols * max(cfg.rs_max_taps, WS_SKIP_ROWS) + 1)


class PerfCounters(wiring.Component):
    """The counters of ``isa.PERF_COUNTERS``, each ``cfg.counter_bits`` bits, wrapping.

    Every counter is cleared by ``clear`` and adds its increment on each cycle with ``active``
    (the controller is busy and not writing the counters with PERF).

    Parameters
    ----------
    cfg : AccelConfig

    Members
    -------
    clear, active : ``In(1)``
    compute : ``In(1)``; the MatmulEngine is busy.
    macs_inc, gated_inc : ``In(range(rows*cols + 1))``; the array's MACs issued / gated this cycle.
    skipped_inc : ``In(skipped_inc_shape(cfg))``; MACs the array skipped this cycle (zero
        activations of a ``zero_skip`` row-stationary array, all-zero act rows of a
        ``zero_skip`` weight-stationary one; 0 for the other arrays).
    dram_read, dram_write : ``In(1)``; a DMA read response / write request handshake (one word).
    stall : ``In(1)``; a memory request is valid but not ready.
    retired : ``In(1)``; an instruction retires.
    values : ``Out(perf_layout(cfg))``
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise TypeError(f"PerfCounters configuration must be an AccelConfig, not {cfg!r}")
        self._cfg = cfg
        macs = range(cfg.rows * cfg.cols + 1)
        super().__init__({
            "clear": In(1), "active": In(1), "compute": In(1),
            "macs_inc": In(macs), "gated_inc": In(macs),
            "skipped_inc": In(skipped_inc_shape(cfg)),
            "dram_read": In(1), "dram_write": In(1), "stall": In(1), "retired": In(1),
            "values": Out(perf_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        bytes_ = self._cfg.mem_bus_bytes
        incs = {
            "cycles": 1,
            "compute_cycles": self.compute,
            "macs": self.macs_inc,
            "gated_macs": self.gated_inc,
            "dram_read_bytes": Mux(self.dram_read, bytes_, 0),
            "dram_write_bytes": Mux(self.dram_write, bytes_, 0),
            "stall_cycles": self.stall,
            "instructions": self.retired,
            "skipped_macs": self.skipped_inc,
        }
        counters = {name: Signal(self._cfg.counter_bits, name=name) for name in PERF_COUNTERS}
        for name, ctr in counters.items():
            m.d.comb += self.values[name].eq(ctr)
            with m.If(self.clear):
                m.d.sync += ctr.eq(0)
            with m.Elif(self.active):
                m.d.sync += ctr.eq(ctr + incs[name])
        return m
