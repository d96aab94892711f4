"""Applications: the CLI, the demo and its networks, the benchmark suites, bitstreams."""
