"""Runtime: Device and its backends (isasim, golden, verilator, fpga)."""
