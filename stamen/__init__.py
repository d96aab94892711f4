"""Stamen: an open int8 DNN inference accelerator you can install with pip.

The public API::

    cfg  = stamen.AccelConfig.preset("small")
    qnet = stamen.quantize(torch_model, calibration_batches)
    prog = stamen.compile(qnet, cfg)
    dev  = stamen.Device(cfg, backend="verilator")      # or "isasim", "golden"
    y, report = dev.run(prog, x)
"""
from stamen.hw.params import AccelConfig

__all__ = ["AccelConfig"]
