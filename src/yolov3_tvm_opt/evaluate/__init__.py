"""Measuring and showing results: smoke test, benchmarks against peers, per-op profile, detections, reports.

The top library layer: it compiles (smoke, tuning curve) and runs artifacts, so it may use every
layer below it.
"""
