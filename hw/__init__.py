"""Stamen RTL: Amaranth components of the accelerator. Imports only Amaranth and itself."""
