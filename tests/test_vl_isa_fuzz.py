"""Tier 4 sample of the instruction-stream fuzzer: fuzz programs on the whole device's Verilog under
Verilator agree with the ISA simulator on how they end (HALT or the fault's ErrorCode), the fault
PC, and every device-memory word they were given plus the zero-row directory (what the program
wrote, PERF snapshots included) and the performance counters at the end (those isasim
models at a fault); so do the hand-picked ``targeted_cases`` (operand sums past a field's
width, REQUANT shift faults).

Each program gets a prologue that zeroes the scratchpads (``isa_fuzz.with_prologue``), as the
device keeps them from one job to the next and isasim starts from zeros; the sample keeps
programs whose data and writes stay in a few thousand words, so read-back stays cheap. One
Verilator build per configuration (cached under ``build/``). ``python tests/isa_fuzz.py
--preset P --n N --seed S --verilator`` runs more; a mismatch prints the replay command.
"""
import collections

import pytest

from isa_fuzz import (compare_verilator, run_isasim, targeted_cases,
                                   verilator_sample, with_prologue)

pytestmark = pytest.mark.verilator

#: ``tiny``: rows > cols, 2-byte memory words, serial requantizer, range-check multiplier;
#: ``small-skip``: the zero-skipping ws engine and the compressed-activation directory.
PRESETS = ["tiny", "small-skip"]
N_PROGRAMS = 25
SEED = 4242


@pytest.mark.parametrize("preset", PRESETS)
def test_fuzz_sample_matches_isasim(preset):
    sample = verilator_sample(preset, N_PROGRAMS, SEED)
    assert len(sample) == N_PROGRAMS, f"only {len(sample)} programs suit a Verilator run"
    targeted = [with_prologue(c) for c in targeted_cases(preset)]
    comps = compare_verilator(preset, sample + [(c, run_isasim(c)) for c in targeted])
    bad = [f"{c.case}: {'; '.join(c.diffs)}"
           + (f" (replay: {c.case.replay} --prologue)" if c.case.kind != "targeted" else "")
           for c in comps if c.diffs]
    assert not bad, "Verilator and isasim disagree:\n" + "\n".join(bad)
    statuses = collections.Counter(c.status for c in comps[:N_PROGRAMS])
    assert statuses["HALT"] >= 3 and len(statuses) >= 4, dict(statuses)
