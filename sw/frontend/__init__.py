"""Front end: a PyTorch model in, a quantized graph out (quantize, fx_graph, fx_ops, calibration, prune, torch_ref)."""
