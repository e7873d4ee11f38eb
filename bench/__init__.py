"""Benchmarks of tap-conversations against the in-repo sandbox: `python -m bench.run`."""
