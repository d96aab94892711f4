"""Shared pytest set-up: Verilator tests are skipped, with the reason, where Verilator is missing."""
import pytest

from stamen.verif.vlrun import verilator_missing_reason


def pytest_collection_modifyitems(config, items):
    reason = verilator_missing_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "verilator" in item.keywords:
            item.add_marker(skip)
