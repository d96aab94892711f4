"""Stamen: an open int8 DNN inference accelerator you can install with pip.

The public API::

    import stamen
    cfg  = stamen.AccelConfig.preset("small")
    qnet = stamen.quantize(torch_model, calibration_batches)   # an MLP or a CNN (torch.fx)
    prog = stamen.compile(qnet, cfg, batch=100)
    dev  = stamen.Device(cfg, backend="verilator")      # or "isasim", "golden"
    y, report = dev.run(prog, qnet.quantize_input(x))

``stamen.quantize`` returns a :class:`QuantizedNet` for an ``nn.Sequential`` of Linear / ReLU /
Flatten and a :class:`QuantizedGraph` (``stamen.quantize_graph``) for any other module.

Names load on first use, so ``import stamen.hw.params`` stays light (no torch, no compiler).
"""
import importlib

__all__ = ["AccelConfig", "golden", "Program", "compile", "compile_gemm", "compile_linear",
           "quantize", "quantize_graph", "QuantizedNet", "QuantizedGraph", "Device", "Report",
           "StamenError", "CompileError", "QuantizeError", "ConfigMismatchError", "DeviceError",
           "DeviceTimeoutError", "TransportError", "BoardError", "prune", "estimate_energy"]

_WHERE = {
    "AccelConfig": ("stamen.hw.params", "AccelConfig"),
    "golden": ("stamen.sw.golden", None),
    "Program": ("stamen.sw.program", "Program"),
    "compile": ("stamen.sw.compiler.driver", "compile_model"),
    "compile_gemm": ("stamen.sw.compiler.driver", "compile_gemm"),
    "compile_linear": ("stamen.sw.compiler.driver", "compile_linear"),
    "quantize": ("stamen.sw.frontend.quantize", "quantize_model"),
    "quantize_graph": ("stamen.sw.frontend.fx_graph", "quantize_graph"),
    "QuantizedGraph": ("stamen.sw.graph", "QuantizedGraph"),
    "QuantizedNet": ("stamen.sw.frontend.quantize", "QuantizedNet"),
    "Device": ("stamen.sw.runtime.device", "Device"),
    "Report": ("stamen.sw.runtime.device", "Report"),
    "StamenError": ("stamen.sw.errors", "StamenError"),
    "CompileError": ("stamen.sw.errors", "CompileError"),
    "QuantizeError": ("stamen.sw.errors", "QuantizeError"),
    "ConfigMismatchError": ("stamen.sw.errors", "ConfigMismatchError"),
    "DeviceError": ("stamen.sw.errors", "DeviceError"),
    "DeviceTimeoutError": ("stamen.sw.errors", "DeviceTimeoutError"),
    "TransportError": ("stamen.sw.errors", "TransportError"),
    "BoardError": ("stamen.sw.errors", "BoardError"),
    "prune": ("stamen.sw.frontend.prune", "prune"),
    "estimate_energy": ("stamen.sw.analysis.energy", "estimate_energy"),
}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'stamen' has no attribute {name!r}")
    module, attr = _WHERE[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
