"""The MATMUL engine models, one per dataflow, mirroring ``hw.top.MATMUL_ENGINES``.

Each model module (``ws_engine``, ``os_engine``, ``rs_engine``) has the members listed in
``sim/ws_engine.py``'s docstring; :func:`engine_model` picks the one of a configuration, so no
code outside the models asks which dataflow a device has.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from stamen.hw.params import AccelConfig

from . import os_engine, rs_engine, ws_engine

__all__ = ["ENGINE_MODELS", "engine_model", "matmul_cycles", "matmul_cycles_of"]

#: The engine model of each dataflow (the keys of ``hw.top.MATMUL_ENGINES``).
ENGINE_MODELS: dict[str, ModuleType] = {"ws": ws_engine, "os": os_engine, "rs": rs_engine}


def engine_model(cfg_or_dataflow: AccelConfig | str) -> ModuleType:
    """Return the engine model of a configuration or of a dataflow name."""
    name = getattr(cfg_or_dataflow, "dataflow", cfg_or_dataflow)
    if name not in ENGINE_MODELS:
        raise ValueError(f"Engine model dataflow must be one of {tuple(ENGINE_MODELS)}, not {name!r}")
    return ENGINE_MODELS[name]


def matmul_cycles(cfg: AccelConfig, m: int, k_tiles: int) -> int:
    """Return the cycles after dispatch of a MATMUL of ``m`` rows and ``k_tiles`` tiles that
    skips nothing (``ws`` and ``os``; an ``rs`` MATMUL's depend on the LOOP state)."""
    return engine_model(cfg).matmul_cycles(cfg, m, k_tiles)


def matmul_cycles_of(cfg: AccelConfig, args: dict, loop: dict,
                     act: np.ndarray | None = None) -> int:
    """Return the exact cycles after dispatch of the MATMUL ``args`` under LOOP state ``loop``
    (with zero skipping they depend on the ACT spad contents ``act``)."""
    return engine_model(cfg).timing(cfg, args, loop, act).cycles
