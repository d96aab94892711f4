"""The one table of array configurations the case tables run on: the shipped presets and
non-square custom arrays (rows > cols and rows < cols) for every dataflow.

A non-square array exercises what a square one hides: an output tile of ``cols`` channels reads
part of an input chunk of ``rows`` channels (or several chunks), tensors are padded to
``lcm(rows, cols)`` channels, and scratchpad slots differ in size between ops.
"""
from __future__ import annotations

from stamen.hw.params import PRESETS, AccelConfig

__all__ = ["NON_SQUARE", "config", "ISASIM_CONFIGS", "VERILATOR_CONFIGS"]

#: Custom configurations: ``tall`` has rows > cols, ``wide`` rows < cols. (``compress_acts``
#: needs a square array, so the non-square skipping configs skip in the array only.)
NON_SQUARE: dict[str, AccelConfig] = {c.name: c for c in (
    AccelConfig(name="tall-8x4", rows=8, cols=4),
    AccelConfig(name="wide-4x8", rows=4, cols=8),
    AccelConfig(name="tall-8x4-skip", rows=8, cols=4, zero_skip=True),
    AccelConfig(name="tall-8x4-os", rows=8, cols=4, dataflow="os"),
    AccelConfig(name="wide-4x8-os", rows=4, cols=8, dataflow="os"),
    AccelConfig(name="tall-8x4-rs-skip", rows=8, cols=4, dataflow="rs", zero_skip=True),
    AccelConfig(name="wide-4x8-rs", rows=4, cols=8, dataflow="rs"),
)}


def config(name: str) -> AccelConfig:
    """Return the preset or non-square configuration called ``name``."""
    return NON_SQUARE[name] if name in NON_SQUARE else AccelConfig.preset(name)


#: Every configuration, for the ISA simulator tier.
ISASIM_CONFIGS: list[str] = [*PRESETS, *NON_SQUARE]
#: The Verilator tier: each build costs minutes, so one per engine, plus ``wide-4x8`` (rows <
#: cols; ``tiny`` is rows > cols).
VERILATOR_CONFIGS: list[str] = ["tiny", "small", "small-skip", "small-os", "small-rs-skip",
                                "wide-4x8"]
