"""Front end: a PyTorch model in, a quantized graph out (quantize, fx_graph, calibration, prune, torch_ref)."""
