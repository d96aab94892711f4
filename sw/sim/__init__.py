"""Simulation models: the ISA simulator and the per-engine cycle models."""
