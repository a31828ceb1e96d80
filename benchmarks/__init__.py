"""Load benchmarks of imagestore: `python -m benchmarks.run` (or `make bench`)."""
