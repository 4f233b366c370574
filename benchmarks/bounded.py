"""Bounds: L-BFGS-B's cost at scale and batched multi-start, against its peers.

`python benchmarks/bounded.py [--out DIR] [--quick] [--sizes 1e4,1e6] [--settled 1e6] [--batched 2e4] [--parts 1,2,3,4]`
(part of `make bench`); prints rich tables and writes `<out>/bounded.json`. Runs on the default device
(on a GPU: `--sizes 1e6,1e7 --settled 1e6,1e7`).

1. Per-iteration time at n = 1e4 and 1e6 in float32 and float64 on the scalable
   bounded problems (`qnjax.problems.scalable_bounded`: a separable quartic on [0, 1]^n
   with half its bounds active, and matrix-free nonnegative least squares), K
   iterations with every stopping test off: qnjax with the bounds, qnjax without them
   on the same objective (the unconstrained iteration), and scipy's L-BFGS-B (float64,
   host; its objective and gradient a jitted JAX call; at n <= 1e6 only). ms/iter = best of 5 timed runs
   (after a warm-up call; the qnjax runs take turns) / iterations taken; these problems are solved in
   a few iterations, so that includes the run's fixed costs (the first evaluation, the state, x0
   projected). "after the first" = (time of the K-iteration run - time of a 1-iteration run) /
   iterations between: the later iterations only, while the active set still changes. The runs
   need not end alike: at n = 1e6 nonnegative least squares with bounds (float64) reached working
   precision in 8 iterations (13 evaluations) and spent 18 more evaluations on failed searches and
   their retries (31 in 10 iterations), while the unconstrained run stepped plainly for 20 (27).
   "(plain iterations)" compares iterations 2..K of the three runs, K the fewest iterations before
   any run's first search that does not end in plain success (``plain_iterations``): every run
   steps normally there. The issue's target: bounded / unconstrained <= 1.5 at n = 1e6. The same
   for ``bounds_method="projected"`` ("projected": projected L-BFGS, no Cauchy point), with each
   run's whole time ("ms (run)"): it takes other, often more, iterations.
2. Once the active set settles: the 1e6-dimensional (`--settled`) Rosenbrock function
   in the box [-2, 0.8]^n from a random start, with and without the bounds, in float32 and
   float64, stopping tests off: ms/iter over iterations 11 to 40 = (time of a 40-iteration
   run - time of a 10-iteration run) / iterations between, which leaves out the first
   iterations (where the active set changes in many variables); 40 becomes the iteration
   where the first of the two runs stops by itself, if earlier (its last search fails and is
   retried: an iteration of another kind). The four runs take turns for 15 rounds; ms/iter
   is the median over the rounds of that round's difference, and "ratio" the ratio of the
   two medians. "ratio (best of)" is the same from each run's best time (the difference of
   two minima, which swung by 1.3-1.7 between whole runs of this script on a 2-core machine).
   Then the same from anywhere in the box with the bounds as arrays: there the free set keeps
   changing in thousands of variables an iteration (the gathered-rows update of ``_reduced``).
3. Batched multi-start: 1,000 random starts of the 10-D Rosenbrock function in the box
   [-2, 0.8]^10 (the unconstrained minimiser is outside it) in float64, every solver told
   the projected-gradient test max|P(x - g) - x| <= 1e-5: qnjax under `jax.vmap` (L-BFGS-B, and
   ``bounds_method="projected"``),
   jaxopt.LBFGSB under `jax.vmap` (its x0 in the box), and scipy's L-BFGS-B in a Python
   loop (timed on the first 100 starts). Problems per second, and how many ended at a
   point whose projected gradient is below 1e-4 (recomputed here) and at the best f found.
4. Batched at scale: `jax.vmap` over 4 random starts of the `--batched`-dimensional (default
   2e4) Rosenbrock function in [-2, 0.8]^n, float32, stopping tests off, against one of them
   solved alone: ms per iteration over iterations 6 to 20 (the two runs taking turns, best of
   5), and the batch's time over 4 single solves'. Beyond 4,096 variables the batch steps its
   members in turn (`qnjax._loop`), so the ideal is 1.
"""

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # before any array: the float64 parts need it

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of, interleaved_best, interleaved_times  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import qnjax  # noqa: E402
from qnjax import problems  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 150)
SCIPY_MAX_N = 1_000_000  # scipy's host-side iteration beyond this takes longer than the rest of the run


def scipy_lbfgsb(fun, x0, lo, hi, **options):
    from scipy.optimize import minimize

    vg = jax.jit(jax.value_and_grad(fun))

    def fg(x):
        f, g = vg(jnp.asarray(x))
        return float(f), np.asarray(g, np.float64)

    return minimize(fg, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B",
                    bounds=list(zip(lo, hi)) if np.ndim(lo) else None, options=options)


def _solve(fun, x0, bounds, iters, method="lbfgsb"):
    return qnjax.minimize(fun, x0, maxiter=iters, bounds=bounds, gtol=0, ftol=0, bounds_method=method)


# Part 1's runs: (name, the box or None, bounds_method); "box" stands for the problem's.
RUNS = (("bounded", "box", "lbfgsb"), ("unconstrained", None, "lbfgsb"), ("projected", "box", "projected"))


def plain_iterations(fun, x0, bounds, iters, method):
    """How many of a run's first ``iters`` iterations come before its first search that does not
    end in plain success (a step accepted within f's noise, a failed search and its retry: the
    iterations of a run at working precision, of another kind and cost)."""
    res = qnjax.minimize(fun, x0, maxiter=iters, bounds=bounds, gtol=0, ftol=0, bounds_method=method,
                         trace=2 * iters + 2)
    status = res.trace.as_numpy()["linesearch_status"][1:]
    other = np.nonzero(status != 0)[0]
    return int(other[0]) if other.size else int(res.nit)


def per_iteration(sizes, dtypes, iters):
    rows = []
    for n in sizes:
        for prob in problems.scalable_bounded(n):
            lo, hi = prob.lower, prob.upper
            for dtype in dtypes:
                x0 = prob.x0_as(dtype)
                row = {"problem": prob.name, "n": n, "dtype": dtype}
                box = (jnp.asarray(lo, dtype), jnp.asarray(hi, dtype))
                solve = jax.jit(functools.partial(_solve, prob.fun), static_argnums=3)
                cases = [(name, box if bounds == "box" else None, k, method) for name, bounds, method in RUNS
                         for k in (1, iters)]
                times = interleaved_best([functools.partial(solve, x0, bounds, k, method)
                                          for _, bounds, k, method in cases], reps=5)
                nits = [int(solve(x0, bounds, k, method).nit) for _, bounds, k, method in cases]
                for i, name in ((0, "bounded"), (2, "unconstrained"), (4, "projected")):
                    row[f"{name} ms (run)"] = 1e3 * times[i + 1]
                    row[f"{name} ms/iter"] = 1e3 * times[i + 1] / max(nits[i + 1], 1)
                    row[f"{name} nit"] = nits[i + 1]
                    # without the first iteration and what comes before it (the first
                    # evaluation, the state, x0 projected): later iterations only
                    row[f"{name} ms/iter after the first"] = (1e3 * (times[i + 1] - times[i])
                                                              / max(nits[i + 1] - nits[i], 1))
                for name in ("bounded", "projected"):
                    prefix = "" if name == "bounded" else "projected "
                    row[f"{prefix}ratio"] = row[f"{name} ms/iter"] / row["unconstrained ms/iter"]
                    row[f"{prefix}ratio after the first"] = (row[f"{name} ms/iter after the first"]
                                                             / row["unconstrained ms/iter after the first"])
                # Like for like: iterations 2..K of each run, K the fewest plain iterations among
                # the three (``plain_iterations``): every run steps normally there.
                like = min(plain_iterations(prob.fun, x0, bounds, iters, method) for _, bounds, _, method in cases)
                row["plain iterations"] = like
                if like >= 2:
                    plain = [(bounds, k, method) for _, bounds, _, method in cases[::2] for k in (1, like)]
                    t = interleaved_best([functools.partial(solve, x0, *c) for c in plain], reps=5)
                    per = {name: 1e3 * (t[2 * i + 1] - t[2 * i]) / (like - 1)
                           for i, (name, _, _) in enumerate(RUNS)}
                    row["ratio (plain iterations)"] = per["bounded"] / per["unconstrained"]
                    row["projected ratio (plain iterations)"] = per["projected"] / per["unconstrained"]
                if dtype == "float64" and n <= SCIPY_MAX_N:
                    t = time.perf_counter()
                    res = scipy_lbfgsb(prob.fun, x0, lo, hi, maxiter=iters, ftol=0, gtol=0)
                    row["scipy ms/iter"] = 1e3 * (time.perf_counter() - t) / max(res.nit, 1)
                rows.append(row)
                console.print(row)
    return rows


def rosen(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def settled(n, dtypes, first=10, last=40, anywhere=False):
    """Part 2; ``anywhere``: from anywhere in the box, with the bounds as arrays (the free set
    keeps changing in thousands of variables an iteration)."""
    rows = []
    for dtype in dtypes:
        x0 = jnp.asarray(np.random.default_rng(0).uniform(*((-2, 0.8) if anywhere else (-1.5, 0.7)), n), dtype)
        box = tuple(jnp.full(n, v, dtype) for v in (-2.0, 0.8)) if anywhere else (-2.0, 0.8)
        runs = {name: jax.jit(lambda x0, k, bounds=bounds: qnjax.minimize(rosen, x0, maxiter=k, bounds=bounds,
                                                                          gtol=0, ftol=0))
                for name, bounds in (("bounded", box), ("unconstrained", None))}
        # A run that stops before ``last`` (working precision, in float32) ends with a search that
        # fails and a retry: an iteration of another kind. Both runs end at the first of their stops.
        end = min([last] + [int(run(x0, last).nit) for run in runs.values()])
        start = "from anywhere, array bounds" if anywhere else "from [-1.5, 0.7]^n"
        row = {"problem": f"rosenbrock in [-2, 0.8]^n {start}, iterations {first + 1}-{end}", "n": n, "dtype": dtype}
        cases = [(name, k) for name in runs for k in (first, end)]
        times = np.asarray(interleaved_times([functools.partial(runs[name], x0, k) for name, k in cases], reps=15))
        nits = [int(runs[name](x0, k).nit) for name, k in cases]
        best = {}
        for i, name in ((0, "bounded"), (2, "unconstrained")):
            its = max(nits[i + 1] - nits[i], 1)
            row[f"{name} ms/iter"] = 1e3 * float(np.median(times[i + 1] - times[i])) / its
            row[f"{name} iterations"] = nits[i + 1] - nits[i]
            best[name] = (times[i + 1].min() - times[i].min()) / its
        row["ratio"] = row["bounded ms/iter"] / row["unconstrained ms/iter"]
        row["ratio (best of)"] = float(best["bounded"] / best["unconstrained"])
        rows.append(row)
        console.print(row)
    return rows


def batched(n, members=4, first=5, last=20):
    x0s = jnp.asarray(np.random.default_rng(1).uniform(-1.5, 0.7, (members, n)), jnp.float32)
    one = jax.jit(lambda x0, k: qnjax.minimize(rosen, x0, maxiter=k, bounds=(-2.0, 0.8), gtol=0, ftol=0))
    batch = jax.jit(lambda x0s, k: jax.vmap(lambda x0: qnjax.minimize(rosen, x0, maxiter=k, bounds=(-2.0, 0.8),
                                                                      gtol=0, ftol=0))(x0s))
    cases = [(one, x0s[0], first), (one, x0s[0], last), (batch, x0s, first), (batch, x0s, last)]
    times = interleaved_best([functools.partial(run, x, k) for run, x, k in cases], reps=5)
    nits = [int(np.max(run(x, k).nit)) for run, x, k in cases]
    single, both = ((times[i + 1] - times[i]) / max(nits[i + 1] - nits[i], 1) * 1e3 for i in (0, 2))
    row = {"problem": f"rosenbrock in [-2, 0.8]^n, iterations {first + 1}-{last}", "n": n, "members": members,
           "batch ms/iter": both, "one alone ms/iter": single, "batch / (members x one)": both / (members * single)}
    console.print(row)
    return [row]


def projected_gradient(x, lo, hi):
    g = np.asarray(jax.vmap(jax.grad(rosen))(jnp.asarray(x)))
    return np.abs(np.clip(-g, lo - x, hi - x)).max(axis=1)


def multistart(starts, scipy_starts):
    n, lo, hi, gtol = 10, -2.0, 0.8, 1e-5
    x0s = jax.random.uniform(jax.random.PRNGKey(0), (starts, n), jnp.float64, lo, hi)
    out = {}
    for name, method in (("qnjax", "lbfgsb"), ("qnjax projected", "projected")):
        solve = jax.jit(jax.vmap(lambda x0, method=method: qnjax.minimize(rosen, x0, bounds=(lo, hi), gtol=gtol,
                                                                          bounds_method=method)))
        res = solve(x0s)
        out[name] = (starts / best_of(solve, x0s), np.asarray(res.x), float(np.median(res.nfev)))
    try:
        import jaxopt

        lbfgsb = jaxopt.LBFGSB(fun=rosen, tol=gtol, maxiter=15000)
        run = jax.jit(jax.vmap(lambda x0: lbfgsb.run(x0, bounds=(jnp.full(n, lo), jnp.full(n, hi)))))
        sol = run(x0s)
        out["jaxopt"] = (starts / best_of(run, x0s), np.asarray(sol.params),
                         float(np.median(sol.state.num_fun_eval)))
    except ImportError:
        console.print("jaxopt not installed: skipped")
    t = time.perf_counter()
    xs, nfev = [], []
    for x0 in np.asarray(x0s[:scipy_starts]):
        r = scipy_lbfgsb(rosen, x0, np.full(n, lo), np.full(n, hi), gtol=gtol)
        xs.append(r.x)
        nfev.append(r.nfev)
    out["scipy (loop)"] = (scipy_starts / (time.perf_counter() - t), np.asarray(xs), float(np.median(nfev)))
    fbest = min(float(np.min(jax.vmap(rosen)(jnp.asarray(x)))) for _, x, _ in out.values())
    rows = []
    for name, (rate, x, nfev) in out.items():
        f = np.asarray(jax.vmap(rosen)(jnp.asarray(x)))
        rows.append({"solver": name, "problems/s": rate, "starts": len(x), "median nfev": nfev,
                     "stationary (pg<=1e-4)": float(np.mean(projected_gradient(x, lo, hi) <= 1e-4)),
                     "at best f": float(np.mean(f <= fbest + 1e-8 * max(1, abs(fbest))))})
    return rows


def table(title, rows):
    t = Table(title=title)
    cols = list(rows[0])
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*(f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols))
    console.print(t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-results/bounded")
    p.add_argument("--quick", action="store_true", help="n = 1e4 only, 100 starts")
    p.add_argument("--sizes", help="part 1's sizes (default 1e4,1e6; 1e4 with --quick)")
    p.add_argument("--settled", help="part 2's sizes (default 1e6; 1e4 with --quick)")
    p.add_argument("--batched", help="part 4's size (default 2e4; 5e3 with --quick)")
    p.add_argument("--parts", default="1,2,3,4", help="which parts to run (default 1,2,3,4)")
    a = p.parse_args(argv)
    parts = {int(s) for s in a.parts.split(",")}
    sizes = lambda arg, default: [int(float(s)) for s in (arg or default).split(",")]  # noqa: E731
    device = jax.devices()[0]
    console.print(f"{device.platform} ({getattr(device, 'device_kind', '')}), jax {jax.__version__}",
                  markup=False, highlight=False)
    rows1 = rows2 = rows3 = rows4 = []
    if 1 in parts:
        rows1 = per_iteration(sizes(a.sizes, "1e4" if a.quick else "1e4,1e6"), ("float32", "float64"), iters=20)
        table("L-BFGS-B per iteration (20 iterations, stopping tests off)", rows1)
    if 2 in parts:
        rows3 = [r for n in sizes(a.settled, "1e4" if a.quick else "1e6") for anywhere in (False, True)
                 for r in settled(n, ("float32", "float64"), anywhere=anywhere)]
        table("Once the active set settles (stopping tests off)", rows3)
    if 3 in parts:
        rows2 = multistart(100 if a.quick else 1000, 20 if a.quick else 100)
        table("Multi-start: 10-D Rosenbrock in [-2, 0.8]^10, float64, pg <= 1e-5", rows2)
    if 4 in parts:
        rows4 = batched(sizes(a.batched, "5e3" if a.quick else "2e4")[0])
        table("Batched at scale: jax.vmap over 4 starts, float32", rows4)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bounded.json").write_text(json.dumps({"per_iteration": rows1, "settled": rows3, "multistart": rows2,
                                                  "batched": rows4, "device": str(device)}, indent=1))


if __name__ == "__main__":
    main()
