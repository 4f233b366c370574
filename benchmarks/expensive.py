"""An expensive objective: time per iteration against one value-and-grad, beside the peers.

    python benchmarks/expensive.py [--n 10000] [--terms 32] [--iters 30] [--repeats 7] [--out DIR] [--quick]

Where the objective's evaluation dominates, an iteration should cost little more than the
evaluations it makes: issue 14's target is time per iteration / one value-and-grad
<= 1.15 for qnjax. The objective (below) is a convex chain of ``terms`` log-cosh terms
per variable, no data (so nothing is a compile-time constant), whose value-and-grad
costs about 3 x n x ``terms`` transcendental functions: at n = 1e4 and 32 terms, about
8 ms on a CPU core, against a solver's own 0.1-0.3 ms an iteration at that n
(`benchmarks/scale.py` part 1).

Each solver of `scale.py` (every stopping test off, the same K iterations for each) runs
its jitted solve; one more program runs K value-and-grads in a compiled loop (each
depending on the last). All of a dtype's programs are timed in turns, best of
``--repeats`` rounds (`_timing.interleaved_best`: the machine's slow spells touch the
numerator and the denominator alike). ms/iter = run / iterations, ms/eval = loop / K,
and their ratio is about the evaluations per iteration (the one at x0 included, counted
on the host in a separate run) plus the solver's own share, which "overhead ms/iter"
estimates: ms/iter - evaluations per iteration x ms/eval. "later" leaves out the run's
fixed costs (the evaluation at x0, the state, the result) and its first iterations, as
`scale.py` part 1 does: (run - a K/3-iteration run, timed in the same turns) / the
iterations between, over ms/eval. The target is checked on both.
Prints a table, writes `<out>/expensive.json`; asserts nothing.
"""

import argparse
import functools
import json
import math
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import scale  # noqa: E402  (benchmarks/ is on the path when run as a script)
from _timing import interleaved_best  # noqa: E402

TARGET = 1.15


def chain(x, terms):
    """(1 / terms) sum_k sum_i log cosh(a_k u_i + b_k u_(i-1) - 1) + 5e-4 ||u||^2, u = s x,
    s_i from 1 to 100 (log-spaced), a_k = 1 + k / terms, b_k = sin(k) / 2, u_(-1) = 0:
    convex, coupled along the chain, condition about 1e4 (L-BFGS runs every one of the
    iterations asked, no solver reaching f's floor). The terms are a Python loop over
    n-vectors: XLA fuses each pass into one loop over x, as in a user's objective."""
    s = jnp.logspace(0.0, 2.0, x.size, dtype=x.dtype)
    u = s * x
    prev = jnp.concatenate([jnp.zeros((1,), x.dtype), u[:-1]])
    total = jnp.zeros((), x.dtype)
    for k in range(terms):
        total = total + jnp.sum(jnp.log(jnp.cosh(u * (1 + k / terms) + prev * (0.5 * math.sin(k)) - 1)))
    return total / terms + 5e-4 * jnp.sum(u * u)


def measure(solvers, fun, n, dtype, k, repeats):
    """One dtype's rows: every solver's K-iteration solve and K evaluations, timed in turns."""
    x0 = jnp.zeros(n, dtype)
    rows, calls = [], []
    for name, make in solvers.items():
        row = dict(dtype=dtype, n=n, solver=name, k=k)
        try:
            with scale.x64_context(name, dtype):
                run, first = jax.jit(make(fun, k)), jax.jit(make(fun, k // 3))
                row["nit"] = int(jax.block_until_ready(run(x0))[1])
                row["nit_first"] = int(jax.block_until_ready(first(x0))[1])
                row["nfev"] = scale.counted_evaluations(make, fun, k, x0)

            def call(program, name=name):
                with scale.x64_context(name, dtype):
                    return program(x0)

            calls.append((row, functools.partial(call, run), functools.partial(call, first)))
        except Exception as e:  # noqa: BLE001 -- a peer that fails is a row with its error
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append(row)
    loop = scale.evaluation_loop(fun, k)
    times = interleaved_best([functools.partial(loop, x0)] + [c for _, run, first in calls for c in (run, first)],
                             reps=repeats)
    per_eval = times[0] / k
    for i, (row, _, _) in enumerate(calls):
        t, t_first = times[1 + 2 * i], times[2 + 2 * i]
        per_iter, later = t / row["nit"], (t - t_first) / max(row["nit"] - row["nit_first"], 1)
        row.update(eval_ms=per_eval * 1e3, ms_per_iter=per_iter * 1e3, per_eval_ratio=per_iter / per_eval,
                   later_ratio=later / per_eval, evals_per_iter=row["nfev"] / row["nit"],
                   overhead_ms=(per_iter - row["nfev"] / row["nit"] * per_eval) * 1e3)
    for row in rows:
        scale.console.print(f"  {dtype} {row['solver']}: " + (row.get("error") or
                            f"{row['per_eval_ratio']:.3f} x one value-and-grad ({row['later_ratio']:.3f} after "
                            f"iteration {row['nit_first']}), {row['nfev']} evaluations"),
                            markup=False, highlight=False)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--terms", type=int, default=32)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--repeats", type=int, default=None, help="rounds (default 7, with --quick 2)")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--solvers", default=None, help="comma-separated rows of scale.py (default: every one installed)")
    p.add_argument("--out", type=Path, default=Path("bench-results/full"))
    p.add_argument("--quick", action="store_true",
                   help="n = 1,000, 4 terms, 6 iterations, 2 rounds unless --repeats: a smoke test")
    ns = p.parse_args(argv)
    if ns.quick:
        ns.n, ns.terms, ns.iters = 1_000, 4, 6
    ns.repeats = ns.repeats or (2 if ns.quick else 7)
    solvers = scale.available(lambda m: scale.console.print(m, style="yellow", markup=False, highlight=False))
    if ns.solvers:
        solvers = {k: v for k, v in solvers.items() if k in ns.solvers.split(",")}
    fun = functools.partial(chain, terms=ns.terms)
    t0 = time.perf_counter()
    rows = [r for dtype in ns.dtypes.split(",") for r in measure(solvers, fun, ns.n, dtype, ns.iters, ns.repeats)]
    scale.console.print(scale.table(
        f"time per iteration / one value-and-grad: log-cosh chain, n = {ns.n:,}, {ns.terms} terms, "
        f"{ns.iters} iterations", rows, [
            ("dtype", "dtype", None), ("solver", "solver", None), ("iterations", "nit", "d"),
            ("evaluations", "nfev", "d"), ("evals/iter", "evals_per_iter", ".2f"), ("ms/eval", "eval_ms", ".3f"),
            ("ms/iter", "ms_per_iter", ".3f"), ("ms/iter / ms/eval", "per_eval_ratio", ".3f"),
            ("later", "later_ratio", ".3f"), ("overhead ms/iter", "overhead_ms", ".3f"), ("error", "error", None)]))
    targets = {}
    for r in rows:
        if r["solver"] == "qnjax compact" and "per_eval_ratio" in r:
            for key, name in (("per_eval_ratio", "iter_over_eval"), ("later_ratio", "later_iter_over_eval")):
                targets[f"{r['dtype']}_{name}"] = dict(measured=r[key], target=f"<= {TARGET}", met=r[key] <= TARGET)
    for k, v in targets.items():
        scale.console.print(f"target {k}: {v['measured']:.3f} (target {v['target']}): "
                            f"{'met' if v['met'] else 'NOT met'}", markup=False, highlight=False)
    ns.out.mkdir(parents=True, exist_ok=True)
    path = ns.out / "expensive.json"
    path.write_text(json.dumps(dict(rows=rows, targets=targets, n=ns.n, terms=ns.terms, iters=ns.iters,
                                    repeats=ns.repeats, wall_s=time.perf_counter() - t0, jax=jax.__version__),
                               indent=1))
    scale.console.print(f"wrote {path}", markup=False, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
