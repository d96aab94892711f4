"""BAD_ARG faults on the Verilator-simulated device are explained in the ISA simulator's words.

The device reports only the fault code and pc; the runtime decodes the faulting instruction on the
host (``sw/faults.py``). Each program below breaks one BAD_ARG rule (a spad selector that names no
scratchpad, a zero count, a compress=1 transfer the configuration or its operands do not allow).
"""
import pytest

from stamen.hw import isa
from stamen.sw.errors import DeviceError
from stamen.sw.runtime.device import Device
from test_sw_fpga import SKIP, TINY, bad_arg_programs

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("cfg", [TINY, SKIP], ids=lambda c: c.name)
def test_bad_arg_reasons_match_isasim(cfg):
    progs, x = bad_arg_programs(cfg)
    items = [(p, x) for p, _ in progs.values()]
    got = Device(cfg, "verilator").run_many(items, return_exceptions=True)
    want = Device(cfg, "isasim").run_many(items, return_exceptions=True)
    iw = isa.instr_words(cfg)
    for (name, (prog, index)), g, w in zip(progs.items(), got, want):
        assert isinstance(g, DeviceError), f"{name}: {g!r}"
        assert g.code == isa.ErrorCode.BAD_ARG and g.pc == prog.prog_addr + index * iw, name
        assert str(g) == str(w), name
        assert "loop count" not in str(g)
