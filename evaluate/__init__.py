"""Benchmarks, inference, metrics and reports."""
