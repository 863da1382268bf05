"""Benchmarks: ``python -m bench [--quick]`` prints tables and writes JSON (not timed tests)."""
