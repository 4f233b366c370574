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


def interleaved_best(calls, reps=7):
    """The best wall time of each zero-argument call in ``calls`` over ``reps`` rounds that
    call each once in turn (after one warm-up call each): a slow spell of the machine
    then touches every call alike, which ``best_of`` run one after another does not."""
    for call in calls:
        jax.block_until_ready(call())
    best = [float("inf")] * len(calls)
    for _ in range(reps):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            jax.block_until_ready(call())
            best[i] = min(best[i], time.perf_counter() - t)
    return best
