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

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RULES = ("same", "defaults")
GTOL = {"float64": 1e-5, "float32": 1e-3}  # absolute, on max_i |grad_i| (scipy's default gtol; x100 in float32)
MEMORY = 10  # history size for every L-BFGS under --rule same (everyone's default anyway)
SOLVER_NAMES = ("qnjax", "scipy", "optax", "jaxopt", "optimistix")
BOUNDED_SOLVER_NAMES = ("qnjax", "scipy", "jaxopt")  # the ones that take bounds


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

    def __init__(self, linesearch: str = "more-thuente", rule: str = "same"):
        super().__init__(rule)
        self.linesearch = linesearch
        self.name = f"qnjax[{linesearch}]"

    takes_bounds = True

    def given(self, dtype, budget, bounded=False):
        box = dict(bounds="minimize(..., bounds=(lower, upper)), x0 as given (qnjax projects it)") if bounded else {}
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
        options = _pick(g, self.OPTIONS)
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


class Optax(Adapter):
    name = module = "optax"
    _CODES = ("running", "gtol: max |grad| <= gtol", "maxiter reached", "f or grad not finite")

    def given(self, dtype, budget):
        same = self.rule == "same"
        return dict(rule=self.rule, transform=f"optax.lbfgs({f'memory_size={MEMORY}' if same else ''})",
                    gtol=GTOL[dtype], maxiter=budget.maxiter, maxfev=None,
                    note=("" if same else "optax.lbfgs has no stopping rule of its own: the same loop as --rule "
                          "same; ") + "jitted lax.while_loop with optax.value_and_grad_from_state; stops on "
                                      "max|g| <= gtol (gradient test only), a non-finite f or g, or maxiter")

    def build(self, fun, dtype, budget):
        import optax

        g = self.given(dtype, budget)
        opt = optax.lbfgs(memory_size=MEMORY) if self.rule == "same" else optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(fun)

        def body(c):
            x, state, k, _, _ = c
            f, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=f, grad=grad, value_fn=fun)
            x = optax.apply_updates(x, updates)
            f_new = jnp.asarray(optax.tree.get(state, "value"), x.dtype)
            gnorm = jnp.max(jnp.abs(optax.tree.get(state, "grad")))
            k = k + 1
            code = jnp.where(k >= g["maxiter"], 2, 0)
            code = jnp.where(gnorm <= g["gtol"], 1, code)
            code = jnp.where(jnp.isfinite(f_new) & jnp.isfinite(gnorm), code, 3)
            return x, state, k, jnp.asarray(code, jnp.int32), f_new

        @jax.jit
        def solve(x0):
            start = (x0, opt.init(x0), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                     jnp.zeros((), x0.dtype))
            x, _, k, code, f = jax.lax.while_loop(lambda c: c[3] == 0, body, start)
            return x, f, k, code

        def run(x0):
            x, f, k, code = jax.block_until_ready(solve(x0))
            return Outcome(np.asarray(x), float(f), int(k), None, self._CODES[int(code)], int(code) == 1)

        return run


class Jaxopt(Adapter):
    name = module = "jaxopt"
    takes_bounds = True

    def given(self, dtype, budget, bounded=False):
        solver = "jaxopt.LBFGSB" if bounded else "jaxopt.LBFGS"
        box = dict(solver=solver, bounds="run(clip(x0, lower, upper), bounds=(lower, upper)): x0 projected "
                                         "by the bench (LBFGSB does not project it)") if bounded else {}
        measure = "the max norm of the projected gradient" if bounded else "the l2 norm of the gradient"
        if self.rule == "same":
            tests = "the others' test" if bounded else "jaxopt's only test (no max-norm test"
            return dict(rule="same", tol=GTOL[dtype], maxiter=budget.maxiter, maxfev=None, history_size=MEMORY,
                        stop_if_linesearch_fails=True, **box,
                        note=f"tol is on {measure}, {tests}{' (' if bounded else ', '}no f-reduction test); a "
                             "failed line search stops it as a failure")
        import inspect

        import jaxopt

        tol = inspect.signature(getattr(jaxopt, solver[7:])).parameters["tol"].default
        return dict(rule="defaults", maxiter=budget.maxiter, maxfev=None, **box,
                    note=f"{solver}'s defaults: tol {tol} on {measure} (its only test), history_size 10, zoom "
                         "line search, stop_if_linesearch_fails False")

    def build(self, fun, dtype, budget, bounds=None):
        import jaxopt

        options = _pick(self.given(dtype, budget), ("tol", "maxiter", "history_size", "stop_if_linesearch_fails"))
        solver = (jaxopt.LBFGS if bounds is None else jaxopt.LBFGSB)(fun=fun, **options)
        tol, box = solver.tol, _box(bounds, dtype)

        @jax.jit
        def solve(x0, box):
            if box is None:
                x, st = solver.run(x0)
            else:
                x, st = solver.run(jnp.clip(x0, *box), bounds=box)
            return x, st.value, st.iter_num, st.num_fun_eval, st.error, st.failed_linesearch

        def run(x0):
            x, f, nit, nfev, err, failed = jax.block_until_ready(solve(x0, box))
            what = "l2 norm of grad" if bounds is None else "max norm of projected grad"
            msg = f"error ({what}) = {float(err):.3g}" + ("; line search failed" if failed else "")
            return Outcome(np.asarray(x), float(f), int(nit), int(nfev), msg, bool(err <= tol))

        return run


class Optimistix(Adapter):
    name = module = "optimistix"

    def given(self, dtype, budget):
        g = dict(rule=self.rule, rtol=GTOL[dtype], atol=GTOL[dtype], max_steps=budget.maxfev)
        if dtype == "float32" and jax.config.jax_enable_x64:  # its float32 LBFGS fails to trace under x64
            g["x64"] = "off for this float32 run (optimistix.LBFGS's carry turns float64 when x64 is on)"
        if self.rule == "same":
            return dict(g, norm="max_norm", history_length=MEMORY,
                        note="no gradient test: Cauchy test on the step and on the change in f at rtol = atol "
                             "= gtol; one step is one evaluation (rejected trials included), so maxfev steps")
        return dict(g, note="optimistix.LBFGS has no default rtol/atol (required): the --rule same values; "
                            "its defaults otherwise (max_norm, history_length 10); max_steps = the bench's "
                            "maxfev in place of minimise's default 256")

    def build(self, fun, dtype, budget):
        import optimistix as optx

        g = self.given(dtype, budget)
        extra = dict(norm=optx.max_norm, history_length=g["history_length"]) if "norm" in g else {}
        solver = optx.LBFGS(rtol=g["rtol"], atol=g["atol"], **extra)

        @jax.jit
        def solve(x0):
            sol = optx.minimise(lambda y, _: fun(y), solver, x0, max_steps=g["max_steps"], throw=False)
            return sol.value, sol.state.f_info.f, sol.stats["num_steps"], sol.result

        def run(x0):
            with jax.enable_x64(False) if "x64" in g else contextlib.nullcontext():
                x, f, steps, result = jax.block_until_ready(solve(x0))
            ok = bool(result == optx.RESULTS.successful)
            msg = "successful" if ok else (optx.RESULTS[result] or "failed")
            return Outcome(np.asarray(x), float(f), int(steps), None, msg, ok)

        return run
