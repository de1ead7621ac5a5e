"""Benchmarks: each runs the product's way and a baseline side by side and reports their ratio."""
