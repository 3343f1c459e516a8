"""Plotting functions: each takes an experiment's result and returns a matplotlib Figure."""
