"""Benchmarks (`make bench`): each measures a figure against a baseline in the same run."""
