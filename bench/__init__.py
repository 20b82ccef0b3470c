"""Benchmarks that print tables: model quality (bench.model) and scoring speed (bench.scoring)."""
