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


def interleaved_times(calls, reps=7):
    """The wall times of each zero-argument call in ``calls`` over ``reps`` rounds that call
    each once in turn (after one warm-up call each; the order reversed every other round):
    ``times[i][r]`` is call i's time in round r. A slow spell of the machine then touches
    every call alike, which ``best_of`` run one after another does not."""
    for call in calls:
        jax.block_until_ready(call())
    times = [[] for _ in calls]
    for r in range(reps):
        for i in (range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))):
            t = time.perf_counter()
            jax.block_until_ready(calls[i]())
            times[i].append(time.perf_counter() - t)
    return times


def interleaved_best(calls, reps=7):
    """The best wall time of each call over :func:`interleaved_times`' rounds."""
    return [min(t) for t in interleaved_times(calls, reps)]
