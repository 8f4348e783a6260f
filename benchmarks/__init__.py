"""Benchmark suite for apollo_frames (not part of the pytest run): ``python -m benchmarks [--quick] [--only N]``."""
