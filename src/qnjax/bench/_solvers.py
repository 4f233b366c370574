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


class Adapter:
    name = "?"
    module = "?"

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

    def given(self, dtype, budget):
        if self.rule == "same":
            return dict(rule="same", gtol=GTOL[dtype], ftol=0.0, fatol=0.0, maxiter=budget.maxiter,
                        maxfev=budget.maxfev, memory_size=MEMORY, linesearch=self.linesearch,
                        note="gradient test only (max|g| <= gtol); ftol = fatol = 0: no f-reduction test")
        return dict(rule="defaults", maxiter=budget.maxiter, maxfev=budget.maxfev, linesearch=self.linesearch,
                    note="qnjax.minimize's defaults (gtol, ftol, fatol, memory_size); the line search is "
                         "qnjax.linesearch.get(linesearch) with its default settings")

    def build(self, fun, dtype, budget):
        import qnjax

        g = self.given(dtype, budget)
        options = _pick(g, self.OPTIONS)
        ls = qnjax.linesearch.get(g["linesearch"])

        @jax.jit
        def solve(x0):
            r = qnjax.minimize(fun, x0, linesearch=ls, **options)
            return r.x, r.fun, r.nit, r.nfev, r.status

        def run(x0):
            x, f, nit, nfev, status = jax.block_until_ready(solve(x0))
            st = qnjax.Status(int(status))
            return Outcome(np.asarray(x), float(f), int(nit), int(nfev), f"{st.name}: {st.message}", st.success)

        return run


class Scipy(Adapter):
    name = module = "scipy"
    OPTIONS = ("gtol", "ftol", "maxiter", "maxfun", "maxcor")

    def given(self, dtype, budget):
        if self.rule == "same":
            return dict(rule="same", method="L-BFGS-B", gtol=GTOL[dtype], ftol=0.0, maxiter=budget.maxiter,
                        maxfun=budget.maxfev, maxcor=MEMORY,
                        note="gradient test only (max|proj g| <= gtol); ftol = 0 (factr 0): no f-reduction test")
        return dict(rule="defaults", method="L-BFGS-B", maxiter=budget.maxiter, maxfun=budget.maxfev,
                    note="scipy's defaults: gtol 1e-5, ftol 1e7*eps (factr 1e7), maxcor 10, maxls 20")

    def build(self, fun, dtype, budget):
        from scipy.optimize import minimize

        options = _pick(self.given(dtype, budget), self.OPTIONS)
        value_and_grad = jax.jit(jax.value_and_grad(fun))

        def host_fun(x):  # scipy works in float64 numpy; the objective runs in `dtype`
            f, grad = value_and_grad(jnp.asarray(x, dtype))
            return float(f), np.asarray(grad, dtype=np.float64)

        def run(x0):
            r = minimize(host_fun, np.asarray(x0, np.float64), jac=True, method="L-BFGS-B", options=options)
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

    def given(self, dtype, budget):
        if self.rule == "same":
            return dict(rule="same", tol=GTOL[dtype], maxiter=budget.maxiter, maxfev=None, history_size=MEMORY,
                        stop_if_linesearch_fails=True,
                        note="tol is on the l2 norm of the gradient, jaxopt's only test (no max-norm test, "
                             "no f-reduction test); a failed line search stops it as a failure")
        import inspect

        import jaxopt

        tol = inspect.signature(jaxopt.LBFGS).parameters["tol"].default
        return dict(rule="defaults", maxiter=budget.maxiter, maxfev=None,
                    note=f"jaxopt.LBFGS's defaults: tol {tol} on the l2 norm of the gradient (its only test), "
                         "history_size 10, zoom line search, stop_if_linesearch_fails False")

    def build(self, fun, dtype, budget):
        import jaxopt

        options = _pick(self.given(dtype, budget), ("tol", "maxiter", "history_size", "stop_if_linesearch_fails"))
        solver = jaxopt.LBFGS(fun=fun, **options)
        tol = solver.tol

        @jax.jit
        def solve(x0):
            x, st = solver.run(x0)
            return x, st.value, st.iter_num, st.num_fun_eval, st.error, st.failed_linesearch

        def run(x0):
            x, f, nit, nfev, err, failed = jax.block_until_ready(solve(x0))
            msg = f"error (l2 norm of grad) = {float(err):.3g}" + ("; line search failed" if failed else "")
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
