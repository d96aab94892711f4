"""A fast slice of the differential graph fuzzer (``tests/graph_fuzz.py``): random graphs on
random legal configurations (non-square arrays, every dataflow, small scratchpads), the ISA
simulator bit-exact against golden. ``make fuzz N=... SEED=...`` runs many more; a failure
prints the seed to replay with ``python tests/graph_fuzz.py --replay SEED``."""
import functools

import pytest

import graph_fuzz

_run = functools.lru_cache(graph_fuzz.run_seed)

#: Fixed seeds, so that CI is repeatable; ``make fuzz`` explores new ones.
SEEDS = range(1000, 1040)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_graph_matches_golden(seed):
    r = _run(seed)
    assert r.outcome in ("pass", "refused"), \
        f"{r.outcome}: {r.detail}\n{graph_fuzz.describe(seed)}\nreplay: python " \
        f"tests/graph_fuzz.py --replay {seed}"
    if r.outcome == "refused":
        assert "no tiling fits" in r.detail or "device memory" in r.detail, r.detail


def test_the_slice_mostly_compiles():
    """The generator makes graphs the compiler takes: a slice of refusals proves nothing."""
    outcomes = [_run(s).outcome for s in SEEDS[:20]]
    assert outcomes.count("pass") >= 12, outcomes


def test_replay_prints_the_graph(capsys):
    assert graph_fuzz.main(["--replay", "1000"]) == 0
    out = capsys.readouterr().out
    assert "seed 1000" in out and "input" in out
