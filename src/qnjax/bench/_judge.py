"""How the bench judges a run: solved, false success, false failure, the summary.

The bench never takes a solver's word for it. At the returned ``x`` it recomputes f
and the gradient (in float64 whenever x64 is on, else in the run's dtype) and calls
the problem

* **solved** if ``f(x) <= fstar + TOL_F[dtype] * max(1, |fstar|)``, or, failing that
  (``fstar`` unknown, or a different local minimum), if
  ``max_i |grad_i f(x)| <= TOL_GRAD[dtype]``. A non-finite x, f or gradient is a
  failure.

A bound-constrained problem (``qnjax bench --bounded``) is judged the same way with
two changes: the gradient test is on the projected gradient,
``max_i |P(x - grad f(x))_i - x_i| <= TOL_GRAD[dtype]`` with ``P`` the projection onto
the box (zero exactly at a KKT point), and ``x`` must be **feasible** for either test
to count: ``lower <= x <= upper``, where each bound may also be taken as rounded to the
run's dtype (the solver saw it that way).

Each solver also gives its own verdict, ``reported_success`` (scipy's ``success``,
qnjax's ``Status.success``, jaxopt's ``error <= tol``, ...). Comparing the two:

* **false success** = reported success and not solved: the solver said "converged"
  and the bench disagrees (the costly error: a caller stops and uses a wrong x);
* **false failure** = not reported success and solved: the solver gave up or ran out
  of budget although x is a minimiser by the bench's rule.

A run that raised has ``reported_success = None`` and is neither.

A false success of an unconstrained problem of at most ``LOCAL_N`` variables is also
diagnosed (``local_minimum``): with the Hessian H of f at x (same dtype as f and the
gradient), x lies **near a local minimum** other than the known one if H is positive
definite and the Newton step would lower f by at most ``TOL_F[dtype] * max(1, |f|)``
(g^T H^-1 g / 2, the decrease the quadratic model promises): the bench's own tolerance
on f, measured from the minimum nearby instead of ``fstar``. (At a local minimum whose
gradient is within ``TOL_GRAD`` the run is solved; this is one whose gradient is not,
as a badly scaled minimum's at its rounding floor can be.) It stays a false success, and
the report says which kind it is. Where H's smallest eigenvalue lies within the eigenvalues'
own rounding, n eps |H| (eps of that dtype, |H| its largest eigenvalue in magnitude), of 0,
H is **singular to working precision**: its sign does not say whether x is near a minimum
or at a saddle (``local_minimum`` None). Osborne 1 from 10 times its start in float32 ended
where H's eigenvalues ran from -9.2e-6 to 4.1e10 (float64): within 4.5e-5 of 0, so the
diagnosis had called it "not at a local minimum" on rounding alone.
"""

from __future__ import annotations

import functools
import math
import statistics

import jax
import jax.numpy as jnp
import numpy as np

# Success judgement, by the dtype of the run (see the module docstring).
TOL_F = {"float64": 1e-5, "float32": 1e-3}
TOL_GRAD = {"float64": 1e-4, "float32": 1e-2}

RULE_TEXT = ("solved if f <= fstar + tol_f*max(1,|fstar|), else if max|grad| <= tol_grad; "
             "f and grad recomputed by the bench at the returned x; "
             "false_success = reported_success and not solved; false_failure = not reported_success and solved")
BOUNDED_RULE_TEXT = ("solved if x is feasible (lower <= x <= upper, the bounds exact or rounded to the run's dtype) "
                     "and f <= fstar + tol_f*max(1,|fstar|), else if feasible and max|P(x - grad) - x| <= tol_grad "
                     "(P: projection onto the box); f and grad recomputed by the bench at the returned x; "
                     "false_success = reported_success and not solved; false_failure = not reported_success and solved")


@functools.lru_cache(maxsize=128)
def _value_and_grad(problem, dtype: str):
    return jax.jit(jax.value_and_grad(problem.fun))


LOCAL_N = 200  # the most variables whose Hessian the diagnosis forms


@functools.lru_cache(maxsize=128)
def _hessian(problem, dtype: str):
    return jax.jit(jax.hessian(problem.fun))


def local_minimum(problem, x, dtype: str) -> dict:
    """For an unconstrained ``problem`` of at most LOCAL_N variables and a finite ``x`` run in
    ``dtype``: ``local_minimum`` (module docstring: None where H is singular to working
    precision), the Hessian's smallest and largest eigenvalues and the Newton decrease
    g^T H^-1 g / 2 (None where H is not positive definite beyond rounding); else {}."""
    x = np.asarray(x, dtype=np.float64)
    if problem.bounded or problem.n > LOCAL_N or x.shape != (problem.n,) or not np.all(np.isfinite(x)):
        return {}
    edt = judge_dtype(dtype)
    xs = jnp.asarray(x, edt)
    fv, g = _value_and_grad(problem, edt)(xs)
    h = np.asarray(_hessian(problem, edt)(xs), np.float64)
    f, g = float(fv), np.asarray(g, np.float64)
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(g)) and math.isfinite(f)):
        return {}
    eigenvalues = np.linalg.eigvalsh((h + h.T) / 2)
    smallest, largest = float(eigenvalues[0]), float(eigenvalues[-1])
    rounding = problem.n * float(jnp.finfo(edt).eps) * float(np.max(np.abs(eigenvalues)))
    decrease = float(g @ np.linalg.solve(h, g)) / 2 if smallest > rounding else None
    at_min = decrease is not None and decrease <= TOL_F[dtype] * max(1.0, abs(f))
    at_min = None if abs(smallest) <= rounding else at_min
    return dict(local_minimum=at_min, hessian_min_eig=smallest, hessian_max_eig=largest, newton_decrease=decrease)


def judge_dtype(dtype: str) -> str:
    """The dtype the bench recomputes f and its gradient in."""
    return "float64" if jax.config.jax_enable_x64 else dtype


def box(problem, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``problem``'s bounds widened to admit their rounding to ``dtype`` (float64 arrays)."""
    rounded = [np.asarray(b, dtype).astype(np.float64) for b in (problem.lower, problem.upper)]
    return np.minimum(problem.lower, rounded[0]), np.maximum(problem.upper, rounded[1])


def judge(problem, x, dtype: str) -> dict:
    """Judge a returned ``x`` for ``problem`` run in ``dtype`` (rules at the top); a
    bounded problem's record also has ``pgrad_inf`` and ``feasible``."""
    x = np.asarray(x, dtype=np.float64)
    x_finite = bool(x.shape == (problem.n,) and np.all(np.isfinite(x)))
    f = ginf = pginf = math.nan
    feasible = True
    if x_finite:
        edt = judge_dtype(dtype)
        fv, g = _value_and_grad(problem, edt)(jnp.asarray(x, edt))
        f, ginf = float(fv), float(jnp.max(jnp.abs(g)))
        if problem.bounded:
            lower, upper = box(problem, dtype)
            feasible = bool(np.all((lower <= x) & (x <= upper)))
            g = np.asarray(g, np.float64)
            pginf = float(np.max(np.abs(np.clip(x - g, lower, upper) - x)))
    fstar, test = problem.fstar, pginf if problem.bounded else ginf
    f_ok = bool(feasible and math.isfinite(f) and math.isfinite(fstar)
                and f <= fstar + TOL_F[dtype] * max(1.0, abs(fstar)))
    g_ok = bool(feasible and math.isfinite(f) and math.isfinite(test) and test <= TOL_GRAD[dtype])
    judged_by = "f" if f_ok else (("pgrad" if problem.bounded else "grad") if g_ok else None)
    out = dict(solved=f_ok or g_ok, judged_by=judged_by, f=f, grad_inf=ginf, x_finite=x_finite)
    if problem.bounded:
        out.update(pgrad_inf=pginf, feasible=x_finite and feasible)
    return out


def verdicts(reported_success: bool | None, solved: bool) -> dict:
    """``false_success`` and ``false_failure`` from the solver's and the bench's verdicts."""
    if reported_success is None:  # the run raised: no verdict of its own
        return dict(false_success=False, false_failure=False)
    reported_success, solved = bool(reported_success), bool(solved)
    return dict(false_success=reported_success and not solved, false_failure=solved and not reported_success)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def solved_by_all(records: list[dict]) -> dict:
    """Per dtype, the problems that every solver of the run solved in it."""
    out = {}
    for dtype in dict.fromkeys(r["dtype"] for r in records):
        rs = [r for r in records if r["dtype"] == dtype]
        solvers = dict.fromkeys(r["solver"] for r in rs)
        sets = [{r["problem"] for r in rs if r["solver"] == s and r["solved"]} for s in solvers]
        out[dtype] = set.intersection(*sets)
    return out


def summarize(records: list[dict]) -> list[dict]:
    """Per (solver, dtype): solved/total, false successes and failures, medians of nit
    and nfev over the solved problems, the median of nfev over the problems every solver
    solved in that dtype (solvers that solve different sets compare fairly only there: a
    problem one of them fails, often a hard one, is left out of its median only), medians
    of compile and run time over every problem that ran."""
    rows = []
    keys = list(dict.fromkeys((r["solver"], r["dtype"]) for r in records))
    shared = solved_by_all(records)
    for solver, dtype in keys:
        rs = [r for r in records if r["solver"] == solver and r["dtype"] == dtype]
        ok = [r for r in rs if r["solved"]]
        rows.append(dict(
            solver=solver, dtype=dtype, solved=len(ok), total=len(rs),
            reported_success=sum(bool(r.get("reported_success")) for r in rs),
            false_success=sum(bool(r.get("false_success")) for r in rs),
            false_failure=sum(bool(r.get("false_failure")) for r in rs),
            errors=sum(r["error"] is not None for r in rs),
            median_nit=_median([r["nit"] for r in ok]),
            median_nfev=_median([r["nfev"] for r in ok]),
            median_nfev_shared=_median([r["nfev"] for r in ok if r["problem"] in shared[dtype]]),
            solved_by_all=len(shared[dtype]),
            median_compile_s=_median([r["compile_s"] for r in rs]),
            median_run_s=_median([r["run_s"] for r in rs]),
        ))
    return rows
