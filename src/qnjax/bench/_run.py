"""Choosing the solvers and the problems, running, counting, timing and the JSON: the same for every solver.

* Solvers: :func:`make_adapters` makes the adapters of :mod:`qnjax.bench._solvers` (qnjax,
  scipy) and :mod:`qnjax.bench._peers` (optax, jaxopt, optimistix)
  under a rule, one qnjax entry per registered line search asked for
  (``qnjax.linesearch.REGISTRY``), skipping with a notice those that cannot be loaded.
* Problems: ``--set`` names a catalogue (:data:`SETS`: ``mgh``, the 35
  Moré-Garbow-Hillstrom problems; ``cutest``, the CUTEst problems at n = 100; ``all``,
  both); ``--quick`` takes a few fast ones of the set (:data:`QUICK_PROBLEMS`);
  ``--problems`` overrides both (:func:`select_problems`). ``--bounded`` takes the
  bound-constrained catalogue (``qnjax.problems.bounded()``) instead of a set, and only
  the solvers that take bounds (:data:`qnjax.bench._solvers.BOUNDED_SOLVER_NAMES`);
  bounded and unconstrained problems never mix in one run. ``--starts 1,10,100`` runs
  each from 1, 10 and 100 times its standard start (:func:`from_starts`).
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
* Judging: :mod:`qnjax.bench._judge` (solved, false success, false failure).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable

import jax
import numpy as np

from ._judge import judge, judge_dtype, local_minimum, verdicts
from ._peers import Jaxopt, Optax, Optimistix
from ._solvers import BOUNDED_SOLVER_NAMES, SOLVER_NAMES, Adapter, Budget, Qnjax, Scipy

# Budgets (the same for every solver; maxfev where the solver takes one).
FULL_BUDGET = Budget(maxiter=5000, maxfev=10000)
QUICK_BUDGET = Budget(maxiter=1000, maxfev=2000)


def linesearch_names() -> tuple[str, ...]:
    """The registered qnjax line searches (``qnjax.linesearch.REGISTRY``)."""
    import qnjax.linesearch

    return tuple(qnjax.linesearch.REGISTRY)


_ADAPTERS = {"scipy": Scipy, "optax": Optax, "jaxopt": Jaxopt, "optimistix": Optimistix}


def load(adapter: Adapter) -> str | None:
    """Import what ``adapter`` needs; ``None`` if fine, else a one-line reason."""
    try:
        importlib.import_module(adapter.module)
        if isinstance(adapter, Qnjax):
            import qnjax.linesearch

            qnjax.linesearch.get(adapter.linesearch)  # registered and constructible with its defaults
    except Exception as e:  # noqa: BLE001 -- any import failure means "skip this solver"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    return None


def make_adapters(solvers, linesearches, notice: Callable[[str], None], rule: str = "same",
                  bounded: bool = False) -> list[Adapter]:
    """The adapters for ``solvers`` under ``rule`` (one qnjax entry per line search),
    skipping with a one-line ``notice`` every one that cannot be loaded (an unknown
    rule, solver or line search is a ``ValueError``, and so is, when ``bounded``, a
    solver that cannot take bounds)."""
    out: list[Adapter] = []
    for name in solvers:
        if bounded and name in SOLVER_NAMES and name not in BOUNDED_SOLVER_NAMES:
            raise ValueError(f"{name} cannot take bounds (it has no bound-constrained L-BFGS); --bounded runs "
                             f"{', '.join(BOUNDED_SOLVER_NAMES)}")
        if name == "qnjax-projected" and not bounded:
            raise ValueError("qnjax-projected is qnjax's projected method for bounds: run it with --bounded")
        if name in ("qnjax", "qnjax-projected"):
            known = linesearch_names()
            unknown = [ls for ls in linesearches if ls not in known]
            if unknown:
                raise ValueError(f"unknown line search {unknown[0]!r}; known: {', '.join(known)}")
            method = "projected" if name == "qnjax-projected" else "lbfgsb"
            candidates = [Qnjax(ls, rule, bounds_method=method) for ls in linesearches]
        elif name in _ADAPTERS:
            candidates = [_ADAPTERS[name](rule)]
        else:
            raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVER_NAMES)}")
        for adapter in candidates:
            why = load(adapter)
            if why is None:
                out.append(adapter)
            else:
                notice(f"skipping {adapter.name}: {why}")
    return out


SETS = ("mgh", "cutest", "all")
CUTEST_N = 100
# --quick: small, fast problems of each set (compilation dominates; every solver compiles each).
QUICK_PROBLEMS = {
    "mgh": ("rosenbrock", "freudenstein_roth", "beale", "helical_valley",
            "powell_singular", "wood", "box_3d", "extended_rosenbrock_n10"),
    "cutest": ("arwhead_n100", "dqdrtic_n100", "srosenbr_n100", "tridia_n100"),
}
QUICK_PROBLEMS["all"] = QUICK_PROBLEMS["mgh"] + QUICK_PROBLEMS["cutest"]
QUICK_BOUNDED = ("hs1", "hs2", "hs4", "hs5", "hs38", "hs45", "rosenbrock_box", "box_3d_box", "lbfgsb_driver1",
                 "random_box_qp_n8", "linear_box", "fixed_variables_n6")


def select_problems(problem_set: str = "mgh", names=None, quick: bool = False, bounded: bool = False) -> list:
    """The problems to run: ``names`` if given (any catalogue), else the ``quick`` few
    of ``problem_set``, else the whole set; with ``bounded``, of the bounded catalogue
    instead of a set. Named problems must be bounded exactly when ``bounded`` is."""
    from qnjax import problems as catalogue

    if problem_set not in SETS:
        raise ValueError(f"unknown problem set {problem_set!r}; known: {', '.join(SETS)}")
    if names is not None:
        probs = [catalogue.get(n) for n in names]
        for p in probs:
            if p.bounded != bounded:
                raise ValueError(f"{p.name} is bound-constrained: run it with --bounded" if p.bounded
                                 else f"{p.name} has no bounds: run it without --bounded")
        return probs
    if bounded:
        return [catalogue.get(n) for n in QUICK_BOUNDED] if quick else list(catalogue.bounded())
    if quick:
        return [catalogue.get(n) for n in QUICK_PROBLEMS[problem_set]]
    probs = []
    if problem_set in ("mgh", "all"):
        probs += list(catalogue.mgh())
    if problem_set in ("cutest", "all"):
        probs += list(catalogue.cutest(CUTEST_N))
    return probs


def from_starts(problems, factors=(1.0,)) -> list:
    """Each problem from each of ``factors`` times its standard start, as Moré, Garbow &
    Hillstrom (1981) test from x0, 10 x0 and 100 x0: factor 1 is the problem itself,
    another is the same problem named ``"<name>@<factor>x0"`` with ``x0`` scaled and
    ``f0`` unknown. ``fstar`` is kept: from a far start a run may reach another local
    minimum, which the judge then accepts by the gradient (:mod:`._judge`)."""
    import dataclasses

    factors = tuple(dict.fromkeys(float(f) for f in factors))
    if not factors or any(not math.isfinite(f) or f == 0 for f in factors):
        raise ValueError(f"start factors must be finite and nonzero, got {factors}")
    out = []
    for problem in problems:
        for f in factors:
            out.append(problem if f == 1 else dataclasses.replace(
                problem, name=f"{problem.name}@{f:g}x0", x0=problem.x0 * f, f0=None))
    return out


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


def _blank(adapter: Adapter, problem, dtype: str) -> dict:
    return dict(solver=adapter.name, problem=problem.name, number=problem.number, n=problem.n, dtype=dtype,
                fstar=problem.fstar, solved=False, reported_success=None, false_success=False,
                false_failure=False, judged_by=None, f=None, grad_inf=None, x_finite=None, f_reported=None,
                bounded=problem.bounded, pgrad_inf=None, feasible=None,
                nit=None, nfev=None, nfev_reported=None, compile_s=None, run_s=None, message=None, error=None,
                x=None, given=None)


def run_one(adapter: Adapter, problem, dtype: str, budget: Budget) -> dict:
    """Solve ``problem`` in ``dtype`` with ``adapter``: one record, never an exception."""
    rec = _blank(adapter, problem, dtype)
    counter = Counter()
    try:
        if problem.bounded:
            if not adapter.takes_bounds:
                raise ValueError(f"{adapter.name} cannot take bounds")
            rec["given"] = adapter.given(dtype, budget, bounded=True)
            solve = adapter.build(counted(problem.fun, counter), dtype, budget, bounds=(problem.lower, problem.upper))
        else:
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
                   message=out.message, reported_success=bool(out.reported_success),
                   x=np.asarray(out.x, np.float64).tolist())
        rec.update(judge(problem, out.x, dtype))
    except Exception as e:  # noqa: BLE001 -- a failing solve is a recorded failure
        rec["solved"] = False
        rec["error"] = f"{type(e).__name__}: {e}"[:4000]
    rec.update(verdicts(rec["reported_success"], rec["solved"]))
    if rec["false_success"] and rec.get("x") is not None:  # (a local minimum other than the known one?)
        try:
            rec.update(local_minimum(problem, rec["x"], dtype))
        except Exception:  # noqa: BLE001 -- a diagnosis that fails leaves the record as it is
            pass
    return rec


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
