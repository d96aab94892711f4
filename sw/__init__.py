"""Stamen host library: golden model, quantizer, compiler, ISA simulator, runtime and CLI."""
