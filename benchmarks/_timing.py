"""Timing shared by the benchmark scripts (run as `python benchmarks/<name>.py`, so this
folder is on the import path)."""

import time

import jax


def best_of(fn, *args, reps=3):
    """The best wall time of ``reps`` calls of ``fn(*args)`` after one warm-up call (compilation)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times)
