"""Evaluation: verification benchmarks, reports, plots and speed."""
