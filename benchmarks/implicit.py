"""Cost and accuracy of derivatives of a solution (implicit differentiation).

`python benchmarks/implicit.py [--features N] [--samples M] [--out DIR]` (part of
`make bench`), float64:

1. A hypergradient: the gradient of a validation loss with respect to log(lambda), the
   L2 weight of a logistic regression with N features (default 10,000) fitted on M
   training samples by `qnjax.minimize`. Times (best of 3 after a warm-up, compile
   excluded): the forward solve alone, and the gradient (`jax.grad`, which runs the
   solve and then one conjugate-gradient solve on Hessian-vector products); the
   ratio (gradient - solve) / solve is the implicit step's cost relative to the solve
   (the issue's target: <= 1). Accuracy: against central finite differences of the
   validation loss (each side a full solve), step 1e-3 in log(lambda).
   The same gradient by reverse mode through the iterations (`adjoint="unrolled"`,
   `maxiter` = the run's iterations + 5, so the run is the same): its time and its
   difference from the finite difference.
2. Memory: XLA's own accounting (`compiled.memory_analysis()`: arguments, outputs and
   temporaries) of the compiled solve, the implicit gradient and the unrolled gradient,
   at the same size, and at `--memory-features` (default 100,000; 200 samples, maxiter
   100 for the unrolled program; compiled, not run).

Prints the figures and writes `<out>/implicit.json`.
"""

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of  # noqa: E402

import qnjax  # noqa: E402


def problem(features, samples, seed=0):
    """Train and validation sets from one sparse-ish linear model with label noise."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=features) * (rng.random(features) < 0.05)
    x = rng.normal(size=(2 * samples, features)) / np.sqrt(features)
    y = (x @ w_true * np.sqrt(features) / 4 + 0.5 * rng.normal(size=2 * samples) > 0).astype(np.float64)
    return jnp.asarray(x[:samples]), jnp.asarray(y[:samples]), jnp.asarray(x[samples:]), jnp.asarray(y[samples:])


def logistic(w, x, y):
    z = x @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)


def memory(f, *args):
    stats = jax.jit(f).lower(*args).compile().memory_analysis()
    if stats is None:
        return None
    return (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes) / 2**20


def fitting(xt, yt, xv, yv):
    def fit(log_lam, adjoint="implicit", maxiter=15000):
        def train(w, log_lam):
            return logistic(w, xt, yt) + 0.5 * jnp.exp(log_lam) * jnp.sum(w * w)

        return qnjax.minimize(train, jnp.zeros(xt.shape[1]), (log_lam,), maxiter=maxiter, adjoint=adjoint)

    def validation(log_lam, adjoint="implicit", maxiter=15000):
        return logistic(fit(log_lam, adjoint, maxiter).x, xv, yv)

    return fit, validation


def memory_at(features, samples=200, maxiter=100):
    """XLA's memory (MiB) of the solve, the implicit and the unrolled gradient at this size."""
    fit, validation = fitting(*problem(features, samples))
    log_lam = jnp.asarray(np.log(1e-3))
    return dict(features=features, samples=samples, unrolled_maxiter=maxiter,
                solve_mib=memory(lambda ll: fit(ll).x, log_lam),
                implicit_mib=memory(jax.grad(validation), log_lam),
                unrolled_mib=memory(jax.grad(lambda ll: validation(ll, "unrolled", maxiter)), log_lam))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--memory-features", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results/full"))
    args = parser.parse_args()
    xt, yt, xv, yv = problem(args.features, args.samples)

    fit, validation = fitting(xt, yt, xv, yv)

    solve = jax.jit(lambda ll: fit(ll).x)
    hypergradient = jax.jit(jax.grad(validation))
    log_lam = jnp.asarray(np.log(1e-3))
    res = jax.jit(fit)(log_lam)
    t_solve, t_grad = best_of(solve, log_lam), best_of(hypergradient, log_lam)
    h = 1e-3  # truncation ~ h^2 and the two solves' noise ~ 1/h balance near here (measured)
    val = jax.jit(validation)
    fd = (float(val(log_lam + h)) - float(val(log_lam - h))) / (2 * h)
    g = float(hypergradient(log_lam))
    maxiter = int(res.nit) + 5
    unrolled = jax.jit(jax.grad(lambda ll: validation(ll, "unrolled", maxiter)))
    t_unrolled, g_unrolled = best_of(unrolled, log_lam), float(unrolled(log_lam))
    row = dict(features=args.features, samples=args.samples, nit=int(res.nit), nfev=int(res.nfev),
               status=qnjax.Status(int(res.status)).name, solve_s=t_solve, gradient_s=t_grad,
               implicit_over_solve=(t_grad - t_solve) / t_solve, gradient=g, finite_difference=fd,
               rel_error=abs(g - fd) / abs(fd), solve_mib=memory(lambda ll: fit(ll).x, log_lam),
               gradient_mib=memory(jax.grad(validation), log_lam), unrolled_s=t_unrolled,
               unrolled_maxiter=maxiter, unrolled_gradient=g_unrolled,
               unrolled_rel_error=abs(g_unrolled - fd) / abs(fd),
               unrolled_mib=memory(jax.grad(lambda ll: validation(ll, "unrolled", maxiter)), log_lam),
               at_scale=memory_at(args.memory_features), jax=jax.__version__, backend=jax.default_backend())
    print(f"hypergradient of a validation loss w.r.t. log(lambda): logistic regression, {args.features} features, "
          f"{args.samples} samples, float64")
    print(f"  solve: {t_solve * 1e3:.1f} ms ({row['nit']} iterations, {row['nfev']} evaluations, {row['status']})")
    print(f"  gradient (solve + implicit step): {t_grad * 1e3:.1f} ms; implicit step / solve = "
          f"{row['implicit_over_solve']:.2f}")
    print(f"  d val / d log(lambda) = {g:.10g}; central difference {fd:.10g}; relative difference "
          f"{row['rel_error']:.1e}")
    print(f"  unrolled reverse mode (maxiter {maxiter}): {t_unrolled * 1e3:.1f} ms = "
          f"{t_unrolled / t_grad:.2f} x the implicit gradient; d val / d log(lambda) = {g_unrolled:.10g}, "
          f"relative difference from the central difference {row['unrolled_rel_error']:.1e}")
    if row["solve_mib"] is not None:
        big = row["at_scale"]
        print(f"  XLA memory (arguments + outputs + temporaries): solve {row['solve_mib']:.1f} MiB, "
              f"implicit gradient {row['gradient_mib']:.1f} MiB, unrolled gradient {row['unrolled_mib']:.1f} MiB")
        print(f"  at {big['features']:,} features ({big['samples']} samples, unrolled maxiter "
              f"{big['unrolled_maxiter']}): solve {big['solve_mib']:.1f} MiB, implicit gradient "
              f"{big['implicit_mib']:.1f} MiB, unrolled gradient {big['unrolled_mib']:.1f} MiB")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "implicit.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
