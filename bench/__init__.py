"""Benchmarks: `python -m bench [--quick] [name ...]` runs every `bench/*.py` module's `main()`."""
