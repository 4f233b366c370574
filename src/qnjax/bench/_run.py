"""Running, counting, judging and the JSON: the same for every solver.

* Counting: :func:`counted` wraps the objective so that a ``jax.debug.callback``
  increments a host counter every time the objective's forward pass runs at run
  time (never at trace time). A value-and-gradient evaluation runs the forward pass
  once, so it counts as one; a solver that asks for the value and the gradient
  separately is charged for both. The callback's host round trip (a few
  microseconds) is part of every solver's run time alike.
* Timing: every ``solve`` is called twice with the same inputs. ``run_s`` is the
  wall time of the second call (until the result is on the host and every callback
  has run); ``compile_s`` is the first call's wall time minus the second's (tracing,
  lowering and XLA compilation; for scipy, the jit of its value-and-grad), clipped at 0.
  The evaluations counted are those of the second call.
* Judging: :func:`judge` recomputes f and the gradient at the returned ``x`` (in
  float64 whenever x64 is on, else in the run's dtype) and applies the rules below.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._solvers import Adapter, Budget

# Success judgement, the same for every solver, by the dtype of the run:
# solved if f(x) <= fstar + TOL_F * max(1, |fstar|)   (f recomputed by the bench), or,
# failing that (fstar only a local minimum, or unknown), if max_i |grad_i f(x)| <= TOL_GRAD
# (recomputed by the bench). A non-finite x, f or gradient is a failure.
TOL_F = {"float64": 1e-5, "float32": 1e-3}
TOL_GRAD = {"float64": 1e-4, "float32": 1e-2}

# Budgets (the same for every solver; maxfev where the solver takes one).
FULL_BUDGET = Budget(maxiter=5000, maxfev=10000)
QUICK_BUDGET = Budget(maxiter=1000, maxfev=2000)
# --quick: small, fast MGH problems (compilation dominates; every solver compiles each).
QUICK_PROBLEMS = ("rosenbrock", "freudenstein_roth", "beale", "helical_valley",
                  "powell_singular", "wood", "box_3d", "extended_rosenbrock_n10")


class Counter:
    """Host-side evaluation counter (called by ``jax.debug.callback``)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def counted(fun: Callable, counter: Counter) -> Callable:
    """``fun`` with one ``counter()`` call per run-time evaluation of its forward pass."""

    def objective(x):
        jax.debug.callback(counter)
        return fun(x)

    return objective


@functools.lru_cache(maxsize=128)
def _value_and_grad(problem, dtype: str):
    return jax.jit(jax.value_and_grad(problem.fun))


def judge_dtype(dtype: str) -> str:
    """The dtype the bench recomputes f and its gradient in."""
    return "float64" if jax.config.jax_enable_x64 else dtype


def judge(problem, x, dtype: str) -> dict:
    """Judge a returned ``x`` for ``problem`` run in ``dtype`` (rules at the top)."""
    x = np.asarray(x, dtype=np.float64)
    x_finite = bool(x.shape == (problem.n,) and np.all(np.isfinite(x)))
    f = ginf = math.nan
    if x_finite:
        edt = judge_dtype(dtype)
        fv, g = _value_and_grad(problem, edt)(jnp.asarray(x, edt))
        f, ginf = float(fv), float(jnp.max(jnp.abs(g)))
    fstar = problem.fstar
    f_ok = bool(math.isfinite(f) and math.isfinite(fstar) and f <= fstar + TOL_F[dtype] * max(1.0, abs(fstar)))
    g_ok = bool(math.isfinite(f) and math.isfinite(ginf) and ginf <= TOL_GRAD[dtype])
    judged_by = "f" if f_ok else ("grad" if g_ok else None)
    return dict(solved=f_ok or g_ok, judged_by=judged_by, f=f, grad_inf=ginf, x_finite=x_finite)


def _blank(adapter: Adapter, problem, dtype: str, budget: Budget) -> dict:
    return dict(solver=adapter.name, problem=problem.name, number=problem.number, n=problem.n, dtype=dtype,
                fstar=problem.fstar, solved=False, judged_by=None, f=None, grad_inf=None, x_finite=None,
                f_reported=None, nit=None, nfev=None, nfev_reported=None, compile_s=None, run_s=None,
                converged=None, message=None, error=None, x=None, given=None)


def run_one(adapter: Adapter, problem, dtype: str, budget: Budget) -> dict:
    """Solve ``problem`` in ``dtype`` with ``adapter``: one record, never an exception."""
    rec = _blank(adapter, problem, dtype, budget)
    counter = Counter()
    try:
        rec["given"] = adapter.given(dtype, budget)
        solve = adapter.build(counted(problem.fun, counter), dtype, budget)
        x0 = problem.x0_as(dtype)
        t0 = time.perf_counter()
        solve(x0)
        jax.effects_barrier()
        first = time.perf_counter() - t0
        counter.n = 0
        t0 = time.perf_counter()
        out = solve(x0)
        jax.effects_barrier()
        rec["run_s"] = time.perf_counter() - t0
        rec["compile_s"] = max(first - rec["run_s"], 0.0)
        rec.update(nfev=counter.n, nfev_reported=out.nfev, nit=out.nit, f_reported=out.f,
                   message=out.message, converged=out.converged, x=np.asarray(out.x, np.float64).tolist())
        rec.update(judge(problem, out.x, dtype))
    except Exception as e:  # noqa: BLE001 -- a failing solve is a recorded failure
        rec["solved"] = False
        rec["error"] = f"{type(e).__name__}: {e}"[:4000]
    return rec


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> list[dict]:
    """Per (solver, dtype): solved/total, medians of nit and nfev over the solved
    problems, medians of compile and run time over every problem that ran."""
    rows = []
    keys = list(dict.fromkeys((r["solver"], r["dtype"]) for r in records))
    for solver, dtype in keys:
        rs = [r for r in records if r["solver"] == solver and r["dtype"] == dtype]
        ok = [r for r in rs if r["solved"]]
        rows.append(dict(
            solver=solver, dtype=dtype, solved=len(ok), total=len(rs),
            errors=sum(r["error"] is not None for r in rs),
            median_nit=_median([r["nit"] for r in ok]),
            median_nfev=_median([r["nfev"] for r in ok]),
            median_compile_s=_median([r["compile_s"] for r in rs]),
            median_run_s=_median([r["run_s"] for r in rs]),
        ))
    return rows


def environment(argv, dtypes, adapters) -> dict:
    import datetime
    import importlib
    import importlib.metadata as md
    import os
    import platform

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:  # e.g. run from a source tree
            return getattr(importlib.import_module(pkg), "__version__", None)

    pkgs = {a.module for a in adapters} | {"jax", "jaxlib", "numpy"}
    return dict(
        jax=jax.__version__, backend=jax.default_backend(), devices=[str(d) for d in jax.devices()],
        x64=bool(jax.config.jax_enable_x64), dtypes=list(dtypes), judged_in={d: judge_dtype(d) for d in dtypes},
        command=list(argv) if argv is not None else None, python=platform.python_version(),
        platform=platform.platform(), cpu_count=os.cpu_count(), packages={p: version(p) for p in sorted(pkgs)},
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def clean_json(obj):
    """Non-finite floats become null (strict JSON); numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def run_all(adapters, problems, dtypes, budget: Budget, on_done: Callable[[dict], None] | None = None):
    """Every (dtype, problem, adapter) record, in that loop order."""
    records = []
    for dtype in dtypes:
        for problem in problems:
            for adapter in adapters:
                rec = run_one(adapter, problem, dtype, budget)
                records.append(rec)
                if on_done is not None:
                    on_done(rec)
    return records
