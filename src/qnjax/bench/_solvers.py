"""One adapter per solver, all with the same small interface, under two stopping rules.

An adapter has a ``name`` (``"scipy"``, ``"qnjax[zoom]"``), the ``module`` it needs
(imported by :func:`qnjax.bench._run.load`, so a missing package is a notice, never a
crash), the ``rule`` it runs under (:data:`RULES`) and

* ``given(dtype, budget) -> dict``: exactly the settings it passes to the solver
  (written to the JSON next to every record, with a ``note`` on what they mean);
* ``build(fun, dtype, budget) -> solve``: ``solve(x0) -> Outcome`` on the host,
  blocking until the result is ready. JAX solvers are wrapped in one ``jax.jit``
  built once per (problem, dtype), so the bench's first call pays the compilation
  and its second call is the run time.

The rules:

* ``same`` (the default): every solver is told the same stopping rule, the gradient
  test only, absolute ``max_i |g_i| <= GTOL[dtype]``, and no test on the reduction of
  f. Where a solver cannot be told exactly that, ``given`` says what it gets: jaxopt's
  only test is its ``tol`` on the l2 norm of the gradient; optimistix has no gradient
  test (Cauchy tests on the step and on f, at ``rtol = atol = GTOL``).
* ``defaults``: every solver with its own defaults and only the bench's budgets.
  optax.lbfgs has no stopping rule of its own, so it runs the same loop as under
  ``same``; optimistix.LBFGS has no default ``rtol``/``atol``, so it gets ``same``'s.

Bounds (``--bounded``): adapters with ``takes_bounds`` (qnjax, scipy, jaxopt) also take
``bounds=(lower, upper)`` in ``build`` (float64, ``+-inf`` where unbounded) and
``bounded=True`` in ``given``: qnjax as ``minimize(..., bounds=...)``, scipy as
L-BFGS-B's ``bounds``, both from ``x0`` as given (each projects it); jaxopt runs
``jaxopt.LBFGSB`` from ``x0`` projected by the adapter (it would not do it), so all
start from the same point. The gradient test is then on the projected gradient,
``max_i |P(x - g)_i - x_i|``, what scipy's ``pgtol`` and jaxopt.LBFGSB's ``tol``
measure. optax and optimistix have no bound-constrained L-BFGS and are refused.

``fun`` is the bench's counted objective; the adapters never count anything
themselves (their own counts are kept in ``Outcome.nfev`` only to cross-check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RULES = ("same", "defaults")
GTOL = {"float64": 1e-5, "float32": 1e-3}  # absolute, on max_i |grad_i| (scipy's default gtol; x100 in float32)
MEMORY = 10  # history size for every L-BFGS under --rule same (everyone's default anyway)
SOLVER_NAMES = ("qnjax", "scipy", "optax", "jaxopt", "optimistix")
# the ones that take bounds; qnjax-projected: minimize(..., bounds_method="projected")
BOUNDED_SOLVER_NAMES = ("qnjax", "qnjax-projected", "scipy", "jaxopt")


class Budget(NamedTuple):
    maxiter: int
    maxfev: int


class Outcome(NamedTuple):
    x: np.ndarray
    f: float  # as reported by the solver
    nit: int | None
    nfev: int | None  # the solver's own count (None if it keeps none)
    message: str
    reported_success: bool  # the solver's own verdict


def _pick(given: dict, keys) -> dict:  # the settings in `given` that are passed on as keywords
    return {k: given[k] for k in keys if k in given}


def _box(bounds, dtype):
    """``bounds`` as a pair of jax arrays of ``dtype`` (``None`` stays ``None``)."""
    return None if bounds is None else tuple(jnp.asarray(b, dtype) for b in bounds)


class Adapter:
    name = "?"
    module = "?"
    takes_bounds = False

    def __init__(self, rule: str = "same"):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
        self.rule = rule

    def given(self, dtype: str, budget: Budget) -> dict:
        raise NotImplementedError

    def build(self, fun, dtype: str, budget: Budget) -> Callable[[jax.Array], Outcome]:
        raise NotImplementedError


class Qnjax(Adapter):
    module = "qnjax"
    OPTIONS = ("gtol", "ftol", "fatol", "maxiter", "maxfev", "memory_size")

    def __init__(self, linesearch: str = "more-thuente", rule: str = "same", bounds_method: str = "lbfgsb"):
        super().__init__(rule)
        self.linesearch = linesearch
        self.bounds_method = bounds_method
        self.name = f"qnjax[{linesearch}]" if bounds_method == "lbfgsb" else f"qnjax-{bounds_method}[{linesearch}]"

    takes_bounds = True

    def given(self, dtype, budget, bounded=False):
        box = dict(bounds="minimize(..., bounds=(lower, upper)), x0 as given (qnjax projects it)") if bounded else {}
        if bounded and self.bounds_method != "lbfgsb":
            box["bounds_method"] = self.bounds_method
        if self.rule == "same":
            return dict(rule="same", gtol=GTOL[dtype], ftol=0.0, fatol=0.0, maxiter=budget.maxiter,
                        maxfev=budget.maxfev, memory_size=MEMORY, linesearch=self.linesearch, **box,
                        note=f"gradient test only (max|{'proj ' if bounded else ''}g| <= gtol); ftol = fatol = 0: "
                             "no f-reduction test")
        return dict(rule="defaults", maxiter=budget.maxiter, maxfev=budget.maxfev, linesearch=self.linesearch, **box,
                    note="qnjax.minimize's defaults (gtol, ftol, fatol, memory_size); the line search is "
                         "qnjax.linesearch.get(linesearch) with its default settings")

    def build(self, fun, dtype, budget, bounds=None):
        import qnjax
        from qnjax import _compile

        g = self.given(dtype, budget, bounded=bounds is not None)
        options = _pick(g, self.OPTIONS + ("bounds_method",))
        ls = qnjax.linesearch.get(g["linesearch"])
        box = _box(bounds, dtype)

        @_compile.jit  # as a direct call of minimize compiles (XLA:CPU's classic emitters)
        def solve(x0, box):
            extra = {} if box is None else dict(bounds=box)
            r = qnjax.minimize(fun, x0, linesearch=ls, **extra, **options)
            return r.x, r.fun, r.nit, r.nfev, r.status

        def run(x0):
            x, f, nit, nfev, status = jax.block_until_ready(solve(x0, box))
            st = qnjax.Status(int(status))
            return Outcome(np.asarray(x), float(f), int(nit), int(nfev), f"{st.name}: {st.message}", st.success)

        return run


class Scipy(Adapter):
    name = module = "scipy"
    OPTIONS = ("gtol", "ftol", "maxiter", "maxfun", "maxcor")

    takes_bounds = True

    def given(self, dtype, budget, bounded=False):
        box = dict(bounds="L-BFGS-B's bounds=list(zip(lower, upper)), x0 as given (scipy clips it)") if bounded else {}
        if self.rule == "same":
            return dict(rule="same", method="L-BFGS-B", gtol=GTOL[dtype], ftol=0.0, maxiter=budget.maxiter,
                        maxfun=budget.maxfev, maxcor=MEMORY, **box,
                        note="gradient test only (max|proj g| <= gtol); ftol = 0 (factr 0): no f-reduction test")
        return dict(rule="defaults", method="L-BFGS-B", maxiter=budget.maxiter, maxfun=budget.maxfev, **box,
                    note="scipy's defaults: gtol 1e-5, ftol 1e7*eps (factr 1e7), maxcor 10, maxls 20")

    def build(self, fun, dtype, budget, bounds=None):
        from scipy.optimize import minimize

        options = _pick(self.given(dtype, budget), self.OPTIONS)
        value_and_grad = jax.jit(jax.value_and_grad(fun))
        box = None if bounds is None else list(zip(*(np.asarray(b, np.float64) for b in bounds)))

        def host_fun(x):  # scipy works in float64 numpy; the objective runs in `dtype`
            f, grad = value_and_grad(jnp.asarray(x, dtype))
            return float(f), np.asarray(grad, dtype=np.float64)

        def run(x0):
            r = minimize(host_fun, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B", bounds=box,
                         options=options)
            return Outcome(np.asarray(r.x), float(r.fun), int(r.nit), int(r.nfev), str(r.message), bool(r.success))

        return run
