"""Measurements of the pipeline's parts on this machine (figures for docs/benchmarks.md)."""
