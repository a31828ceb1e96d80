"""The servers that tests, client tests and benchmarks start, shared by all three."""
