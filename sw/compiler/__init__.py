"""Compiler: a quantized graph in, a Program out (driver: the entry points; lower: tiling and code generation)."""
