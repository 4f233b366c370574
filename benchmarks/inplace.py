"""Check that the L-BFGS ring buffer is updated in place (n = 1e6, m = 10, float32).

Prints (1) the whole-buffer copies in the optimised HLO of `qnjax.minimize`'s loop
(the zeros' initial materialisation aside there must be none), (2) the time per
iteration of the whole solver, (3) the time of the two-loop recursion alone and
(4) the time of one copy of the two buffers, which is what every iteration would
pay if XLA copied the loop-carried history.  Run: `python benchmarks/inplace.py`.
"""

import re
import time

import jax
import jax.numpy as jnp

import qnjax
from qnjax import _memory
from qnjax._minimize import _solve, _Tolerances

N, M, ITERS = 1_000_000, 10, 30


def objective(x):
    w = jnp.arange(1, x.size + 1, dtype=x.dtype) / x.size
    return jnp.sum(w * (x - 1) ** 2 + 0.1 * (x - 1) ** 4)


def buffer_copies(hlo_text, m, n, dtype="f32"):
    """Copies of an (m, n) buffer other than the initial materialisation of zeros."""
    pat = re.compile(rf"= {dtype}\[{m},{n}\]\{{[0-9,]*\}} copy\((%[\w.-]+)\)")
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
    sdt = jnp.dtype(jnp.float32)
    x0 = jnp.zeros(N, sdt)
    zero = jnp.zeros((), sdt)
    tols = _Tolerances(zero, zero, zero, zero, jnp.asarray(ITERS, jnp.int32), jnp.asarray(10**6, jnp.int32))
    ls = qnjax.linesearch.Zoom()
    compiled = _solve.lower(objective, False, M, sdt, x0, (), tols, ls).compile()
    copies = buffer_copies(compiled.as_text(), M + 1, N)  # m pairs and the spare slot
    res = compiled(x0, (), tols, ls)
    per_iter = best_of(lambda: compiled(x0, (), tols, ls), reps=3) / int(res.nit)

    mem = _memory.init(x0, M, sdt)
    g = jax.grad(objective)(x0 + 0.5)
    for k in range(M):
        mem, _ = _memory.push(mem, g * (k + 1.0), g * (2.0 + k))
    two_loop = jax.jit(_memory.two_loop)
    t_two_loop = best_of(lambda: two_loop(mem, g))
    copy = jax.jit(lambda s, y: (s + 0.0, y + 0.0))
    t_copy = best_of(lambda: copy(mem.s, mem.y))

    print(f"n = {N:,}, m = {M}, float32, {jax.devices()[0].platform}")
    print(f"whole-buffer copies inside the compiled loop: {len(copies)}")
    for line in copies:
        print("   ", line.strip()[:160])
    print(f"minimize: {int(res.nit)} iterations, {int(res.nfev)} evaluations, {per_iter * 1e3:.1f} ms per iteration")
    print(f"two-loop alone: {t_two_loop * 1e3:.1f} ms;  one copy of s and y: {t_copy * 1e3:.1f} ms")
    print("in place: " + ("yes" if not copies else "NO: the history is copied every iteration"))


if __name__ == "__main__":
    main()
