"""Honesty on random box least-squares fits: how often each bounds method claims success above the minimum.

`python benchmarks/box_fits.py [--seeds 0-7] [--count 400] [--dtypes float32] [--methods lbfgsb,projected,unbounded]
[--batched] [--face minimize|optax] [--out DIR]` (part of `make bench`); prints a rich table and writes
`<out>/box_fits.json`. ``--face optax``: each fit is a ``lax.while_loop`` of ``qnjax.lbfgs`` updates
while the status is RUNNING (at most MAX_UPDATES; with a box, from x0 clipped into it), as a user's
loop that stops on the status runs, judged the same way.
Method ``unbounded`` solves the same fits without their boxes (their minima then least squares'),
which is how the unconstrained solver's claims are counted (``qnjax._rescue``).

For each seed, `qnjax.problems.box_least_squares(count, seed)` (8 variables, columns scaled over
four decades, boxes of every kind) is solved fit by fit with `qnjax.minimize` and its defaults, as
a user calls it (`--batched`: all at once under `jax.vmap`, one program), and each end is judged
against the fit's float64 minimum (scipy's bounded-variable least squares) as `qnjax bench` judges:
solved when f is within 1e-3 (float32; 1e-5 in float64) of the minimum, relative, or the projected
gradient is at most 1e-2 (1e-4). A false success reported success without being solved, a false
failure the other way round. Counts are per seed and in total; the seeds' spread is the
measurement's noise (the runs are deterministic, but a change that moves rounding moves which
fits end where).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

MAX_UPDATES = 3000  # --face optax: a loop's updates at most


def seeds_of(text):
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def run(seed, count, dtype, method, batched, face="minimize"):
    import jax
    import jax.numpy as jnp

    import qnjax
    from qnjax import problems
    from qnjax._status import is_success

    fits = problems.box_least_squares(count, seed)
    if method == "unbounded":
        fits = fits._replace(lower=np.full_like(fits.lower, -np.inf), upper=np.full_like(fits.upper, np.inf))
    fstar, _ = problems.box_least_squares_minima(fits)

    def fun(x, a, b, s):
        r = a @ x - b
        return 0.5 * s * jnp.sum(r * r)

    cast = lambda v: jnp.asarray(v, dtype)  # noqa: E731
    data = [cast(v) for v in (fits.x0, fits.a, fits.b, fits.scale, fits.lower, fits.upper)]
    def solve(x0, a, b, s, lo, hi):  # (success, nit, nfev, x)
        if face == "optax":
            return optax_loop(lambda x: fun(x, a, b, s), x0, lo, hi)
        if method == "unbounded":
            res = qnjax.minimize(fun, x0, (a, b, s))
        else:
            res = qnjax.minimize(fun, x0, (a, b, s), bounds=(lo, hi), bounds_method=method)
        return res.success, res.nit, res.nfev, res.x

    def optax_loop(f, x0, lo, hi):
        """``qnjax.lbfgs`` updates in a ``lax.while_loop`` while the status is RUNNING (at most
        MAX_UPDATES), from x0 clipped into the box."""
        import optax

        boxed = method != "unbounded"
        opt = qnjax.lbfgs(bounds=(lo, hi), bounds_method=method) if boxed else qnjax.lbfgs()
        value_and_grad = qnjax.value_and_grad_from_state(f)

        def body(c):
            x, state, k = c
            v, g = value_and_grad(x, state=state)
            u, state = opt.update(g, state, x, value=v, grad=g, value_fn=f)
            return optax.apply_updates(x, u), state, k + 1

        x0 = jnp.clip(x0, lo, hi) if boxed else x0
        running = lambda c: (c[1].status == qnjax.Status.RUNNING) & (c[2] < MAX_UPDATES)  # noqa: E731
        x, state, _ = jax.lax.while_loop(running, body, (x0, opt.init(x0), 0))
        return is_success(state.status), state.count, state.nfev, x

    t = time.perf_counter()
    if batched:
        success, nit, nfev, x = (np.asarray(v) for v in jax.jit(jax.vmap(solve))(*data))
    else:
        one = jax.jit(solve) if face == "optax" else solve
        ends = [one(*fit) for fit in zip(*data)]
        success, nit, nfev, x = (np.stack([np.asarray(r[k]) for r in ends]) for k in range(4))
    wall = time.perf_counter() - t
    tol = (1e-3, 1e-2) if dtype == "float32" else (1e-5, 1e-4)
    solved = problems.box_least_squares_judged(fits, x, fstar, *tol)
    return dict(seed=seed, dtype=dtype, method=method, face=face, batched=batched, fits=count,
                success=int(success.sum()), false_successes=[int(i) for i in np.nonzero(success & ~solved)[0]],
                false_failures=[int(i) for i in np.nonzero(~success & solved)[0]],
                unsolved_failures=int(np.sum(~success & ~solved)), median_nit=float(np.median(nit)),
                max_nfev=int(nfev.max()), wall_s=wall)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--methods", default="lbfgsb,projected,unbounded", help="lbfgsb, projected, unbounded (no box)")
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--face", default="minimize", choices=("minimize", "optax"),
                        help="optax: a lax.while_loop of qnjax.lbfgs updates while the status is RUNNING")
    parser.add_argument("--out", default="bench-results/box_fits")
    args = parser.parse_args(argv)
    dtypes = args.dtypes.split(",")
    if "float64" in dtypes:
        import jax

        jax.config.update("jax_enable_x64", True)
    rows = [run(seed, args.count, dtype, method, args.batched, args.face)
            for dtype in dtypes for method in args.methods.split(",") for seed in seeds_of(args.seeds)]
    table = Table(title=f"random box least-squares fits ({'batched' if args.batched else 'one by one'}, "
                        f"{'qnjax.lbfgs loops' if args.face == 'optax' else 'qnjax.minimize'}), {args.count} per seed")
    for col in ("dtype", "method", "seeds", "fits", "reported success", "false successes", "false failures",
                "unsolved failures", "false successes per seed", "median nit", "max nfev"):
        table.add_column(col, justify="right")
    totals = []
    for dtype in dtypes:
        for method in args.methods.split(","):
            group = [r for r in rows if r["dtype"] == dtype and r["method"] == method]
            total = dict(dtype=dtype, method=method, seeds=[r["seed"] for r in group],
                         fits=sum(r["fits"] for r in group), success=sum(r["success"] for r in group),
                         false_successes=sum(len(r["false_successes"]) for r in group),
                         false_failures=sum(len(r["false_failures"]) for r in group),
                         unsolved_failures=sum(r["unsolved_failures"] for r in group))
            totals.append(total)
            table.add_row(dtype, method, args.seeds, str(total["fits"]), str(total["success"]),
                          str(total["false_successes"]), str(total["false_failures"]),
                          str(total["unsolved_failures"]), " ".join(str(len(r["false_successes"])) for r in group),
                          f"{np.median([r['median_nit'] for r in group]):.0f}", str(max(r["max_nfev"] for r in group)))
    Console(width=None if sys.stdout.isatty() else 150).print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "box_fits.json").write_text(json.dumps(dict(totals=totals, runs=rows, argv=sys.argv[1:]), indent=1))
    print(f"wrote {out / 'box_fits.json'}")
    return totals


if __name__ == "__main__":
    main()
