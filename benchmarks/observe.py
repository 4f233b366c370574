"""Cost of watching a run, and of the scipy habit of a fresh lambda per call.

`python benchmarks/observe.py` prints:

1. the time of `qnjax.minimize` on 100-D Rosenbrock (float64, about 570 iterations)
   plain and with `trace=100`, `verbose=True`, `verbose=10` and a no-op `callback`
   (best of 20 after a warm-up; output of verbose discarded), and whether x is
   bitwise the same;
2. 25 calls of `minimize(lambda p: loss(p, d), x0)` with 25 different arrays d: XLA
   compilations (JAX's monitoring event) and the process's resident memory.
"""

import contextlib
import io
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import qnjax  # noqa: E402

COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: COMPILES.append(duration)
    if event == "/jax/core/compile/backend_compile_duration" else None)


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def best_of(x0, reps=20, **kw):
    res = qnjax.minimize(rosen, x0, **kw)
    jax.block_until_ready(res.x)
    times = []
    for _ in range(reps):
        with contextlib.redirect_stdout(io.StringIO()):
            t = time.perf_counter()
            res = qnjax.minimize(rosen, x0, **kw)
            jax.block_until_ready(res.x)
            jax.effects_barrier()
            times.append(time.perf_counter() - t)
    return min(times), res


def overhead():
    x0 = jnp.tile(jnp.array([-1.2, 1.0]), 50)
    base, plain = best_of(x0)
    print("1. watching a fast solve (100-D Rosenbrock, float64)")
    for name, kw in [("plain", {}), ("trace=100", dict(trace=100)), ("verbose=True", dict(verbose=True)),
                     ("verbose=10", dict(verbose=10)), ("callback (no-op)", dict(callback=lambda r: None))]:
        t, res = best_of(x0, **kw)
        same = bool(np.array_equal(res.x, plain.x))
        print(f"   {name:18s} {t * 1e3:8.2f} ms  x{t / base:5.2f}  nit {int(res.nit)}  same x: {same}")


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fresh_closures(calls=25):
    def loss(p, d):
        return jnp.sum((p - d) ** 2 + 0.1 * (p - d) ** 4)

    x0 = jnp.zeros(50)
    before = len(COMPILES)
    rows = []
    for i in range(calls):
        d = jnp.full(50, float(i))
        t = time.perf_counter()
        res = qnjax.minimize(lambda p: loss(p, d), x0)  # noqa: B023 (a fresh closure on purpose)
        jax.block_until_ready(res.x)
        rows.append((time.perf_counter() - t, len(COMPILES) - before, rss_mib()))
    print(f"2. {calls} calls of minimize(lambda p: loss(p, d_i), x0)")
    print(f"   first call {rows[0][0]:.2f} s, compilations {rows[0][1]}; last call {rows[-1][0] * 1e3:.1f} ms, "
          f"compilations in all {rows[-1][1]}; resident memory calls 2 -> {calls}: "
          f"{rows[-1][2] - rows[1][2]:+.1f} MiB")


if __name__ == "__main__":
    overhead()
    fresh_closures()
