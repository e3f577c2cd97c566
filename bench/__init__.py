"""Benchmarks of the scene pipeline (``python -m bench``); they print JSON lines, never assert timings."""
