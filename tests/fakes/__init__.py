"""Local fake servers speaking real provider protocols, for tests and benchmarks."""
