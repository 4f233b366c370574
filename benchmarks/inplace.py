"""Check that the L-BFGS ring buffer is updated in place (n = 1e6, m = 10, float32).

Prints, for each direction method (compact, two-loop), (1) the whole-buffer copies in
the optimised HLO of `qnjax.minimize`'s loop (the zeros' initial materialisation aside
there must be none), (2) the time per iteration of the whole solver and (3) the time
of one copy of the two buffers, which is what every iteration would pay if XLA copied
the loop-carried history. Run: `python benchmarks/inplace.py`.
"""

import re
import time

import jax
import jax.numpy as jnp

import qnjax

N, M, ITERS = 1_000_000, 10, 30


def objective(x):
    w = jnp.arange(1, x.size + 1, dtype=x.dtype) / x.size
    return jnp.sum(w * (x - 1) ** 2 + 0.1 * (x - 1) ** 4)


def solve(x0, direction="compact", memory_size=M, maxiter=ITERS, linesearch=None):
    return qnjax.minimize(objective, x0, gtol=0.0, ftol=0.0, maxiter=maxiter, maxfev=10**6,
                          memory_size=memory_size, direction=direction, linesearch=linesearch)


def buffer_copies(hlo_text, m, n, dtype="f32"):
    """Copies of the (2 m, n) buffer of S and Y, or of either half (m, n), other than the
    initial materialisation of zeros."""
    pat = re.compile(rf"= {dtype}\[(?:{2 * m}|{m}),{n}\]\{{[0-9,]*\}} copy\((%[\w.-]+)\)")
    return [line for line in hlo_text.splitlines() if (mt := pat.search(line)) and "broadcast" not in mt.group(1)]


def best_of(fn, reps=5):
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    x0 = jnp.zeros(N, jnp.float32)
    print(f"n = {N:,}, m = {M}, float32, {jax.devices()[0].platform}")
    copy = jax.jit(lambda a: a + 0.0)
    buf = jnp.zeros((2 * (M + 1), N), jnp.float32)
    print(f"one copy of s and y: {best_of(lambda: copy(buf)) * 1e3:.1f} ms")
    for direction in ("compact", "two-loop"):
        run = jax.jit(lambda x, d=direction: solve(x, d))
        copies = buffer_copies(run.lower(x0).compile().as_text(), M + 1, N)  # m pairs and the free slot
        res = run(x0)
        per_iter = best_of(lambda run=run: run(x0), reps=3) / int(res.nit)
        print(f"{direction:9s} whole-buffer copies in the loop: {len(copies)};  {int(res.nit)} iterations, "
              f"{int(res.nfev)} evaluations, {per_iter * 1e3:.1f} ms per iteration;  in place: "
              + ("yes" if not copies else "NO: the history is copied every iteration"))
        for line in copies:
            print("   ", line.strip()[:160])


if __name__ == "__main__":
    main()
