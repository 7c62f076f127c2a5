"""Benchmarks: printed figures measured in one run on this machine (see README)."""
