"""Stamen verification: Amaranth-sim helpers, cocotb testbenches and the Verilator runner."""
