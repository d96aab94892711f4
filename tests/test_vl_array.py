"""Tier 4: the SystolicArray's generated Verilog under Verilator (cocotb), against golden.gemm."""
import json

import pytest

from stamen.hw.pe_array import SystolicArray
from stamen.verif import vlrun

# (rows, cols, zero_gate, m, tiles, seed)
ARRAY_CASES = [
    (2, 4, True, 5, 3, 11),
    (8, 8, True, 24, 4, 12),
    (4, 4, False, 1, 3, 13),
    (3, 5, True, 2, 4, 14),
]


@pytest.mark.verilator
@pytest.mark.parametrize("rows,cols,zero_gate,m,tiles,seed", ARRAY_CASES,
                         ids=[f"{r}x{c}-zg{int(z)}-m{m}" for r, c, z, m, _, _ in ARRAY_CASES])
def test_array_matches_golden(rows, cols, zero_gate, m, tiles, seed):
    out = vlrun.BUILD_ROOT / "vl" / f"array-{rows}x{cols}-zg{int(zero_gate)}"
    verilog = vlrun.write_verilog(SystolicArray(rows, cols, zero_gate), "systolic_array", out)
    sim = vlrun.build(verilog, "systolic_array", out / "sim")
    params = {"rows": rows, "cols": cols, "zero_gate": zero_gate, "m": m, "tiles": tiles,
              "seed": seed}
    vlrun.run_test(sim, "systolic_array", "stamen.verif.tb_array",
                   extra_env={"STAMEN_ARRAY": json.dumps(params)})
