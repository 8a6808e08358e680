"""Measuring and showing results: smoke test, benchmarks against peers, accuracy, reports, pictures, bundles.

The top library layer: it compiles (smoke, tuning curve) and runs artifacts, so it may use every
layer below it; the timing, statistics, profiler and decoding it uses live in ``deploy``.
"""
