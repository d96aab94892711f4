"""Tier 4: compiled convolutional graphs on the whole device's Verilog under Verilator, vs golden.

Every case of ``tests/conv_cases.py`` (convolutions with kernels 1/3/5, strides 1/2, same and valid
padding, depthwise and grouped, max / average / global pooling, residual adds, Linear layers and
two small networks) runs on two array sizes, once with an ideal memory and once with extra latency
and random backpressure. Outputs are compared element by element with the graph's golden
reference; the exact counters must equal the ISA simulator's, and with an ideal memory the cycles
of every layer too.
"""
import numpy as np
import pytest

import configs
import conv_cases
from stamen.hw.params import AccelConfig
from stamen.sw.compiler.lower import compile_graph
from stamen.sw.runtime.device import Device

pytestmark = pytest.mark.verilator

PRESETS = configs.VERILATOR_CONFIGS
MEMORIES = {"ideal-mem": (0, 0), "slow-mem": (5, 3)}


@pytest.mark.parametrize("memory", list(MEMORIES))
@pytest.mark.parametrize("preset", PRESETS)
def test_conv_cases_bit_exact_on_verilator(preset, memory):
    cfg = configs.config(preset)
    latency, stall = MEMORIES[memory]
    items, labels, graphs = [], [], []
    for case in conv_cases.CONV_CASES:
        graph, x = conv_cases.make_case(case)
        items.append((compile_graph(graph, cfg, batch=case.batch), x))
        labels.append(str(case))
        graphs.append(graph)
    got = Device(cfg, "verilator", mem_latency=latency, mem_stall=stall).run_many(items)
    ref = Device(cfg, "isasim").run_many(items)
    for label, graph, (_, x), (y, rep), (_, iref) in zip(labels, graphs, items, got, ref):
        np.testing.assert_array_equal(y, graph.reference(x), err_msg=f"{label} cfg={preset} "
                                                                     f"{memory}")
        for r, ir in zip([rep.total, *rep.layers], [iref.total, *iref.layers]):
            assert (r.issued_macs, r.gated_macs, r.skipped_macs, r.dram_bytes) == \
                (ir.issued_macs, ir.gated_macs, ir.skipped_macs, ir.dram_bytes), \
                f"{label} {r.name} cfg={preset} {memory}: counters differ from isasim's"
            if memory == "ideal-mem":
                assert (r.cycles, r.compute_cycles) == (ir.cycles, ir.compute_cycles), \
                    f"{label} {r.name} cfg={preset}: cycles differ from isasim's"
    if memory == "slow-mem":
        assert sum(rep.stall_cycles for _, rep in got) > 0, "backpressure never stalled"
