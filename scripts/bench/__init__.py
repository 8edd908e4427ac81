"""Helpers shared by the benchmark scripts (`scripts/bench_*.py`): load generation, statistics,
process management and the bare gRPC baseline. Not part of any service; never imported by `src/`.
"""
