"""One adapter per solver, all with the same small interface.

An adapter has a ``name`` (``"scipy"``, ``"qnjax[zoom]"``), the ``module`` it needs
(imported by :func:`load`, so a missing package is a notice, never a crash) and

* ``given(dtype, budget) -> dict``: exactly the tolerances and budgets it is told
  (written to the JSON next to every record);
* ``build(fun, dtype, budget) -> solve``: ``solve(x0) -> Outcome`` on the host,
  blocking until the result is ready. JAX solvers are wrapped in one ``jax.jit``
  built once per (problem, dtype), so the bench's first call pays the compilation
  and its second call is the run time.

Every solver is told the closest equivalent of scipy L-BFGS-B's defaults: an
absolute ``gtol`` on ``max_i |g_i|`` (:data:`GTOL`) and, where it has one, scipy's
relative-reduction test on f (:data:`FTOL`). ``fun`` is the bench's counted
objective; the adapters never count anything themselves (their own counts are
kept in ``Outcome.nfev`` only to cross-check the bench's).
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Stopping tolerances given to every solver, by dtype name.
GTOL = {"float64": 1e-5, "float32": 1e-3}  # absolute, on max_i |grad_i| (scipy's gtol/pgtol)
FTOL = {"float64": 1e7 * 2.0**-52, "float32": 1e-6}  # scipy's factr=1e7 * eps; qnjax's float32 default
MEMORY = 10  # history size for every L-BFGS

SOLVER_NAMES = ("qnjax", "scipy", "optax", "jaxopt", "optimistix")
LINESEARCHES = {"zoom": "Zoom", "more-thuente": "MoreThuente", "hager-zhang": "HagerZhang",
                "backtracking": "Backtracking"}


class Budget(NamedTuple):
    maxiter: int
    maxfev: int


class Outcome(NamedTuple):
    x: np.ndarray
    f: float  # as reported by the solver
    nit: int | None
    nfev: int | None  # the solver's own count (None if it keeps none)
    message: str
    converged: bool  # the solver's own verdict


def _host(x) -> np.ndarray:
    return np.asarray(x)


class Adapter:
    name = "?"
    module = "?"

    def given(self, dtype: str, budget: Budget) -> dict:
        raise NotImplementedError

    def build(self, fun, dtype: str, budget: Budget) -> Callable[[jax.Array], Outcome]:
        raise NotImplementedError


class Qnjax(Adapter):
    module = "qnjax"

    def __init__(self, linesearch: str = "more-thuente"):
        self.linesearch = linesearch
        self.name = f"qnjax[{linesearch}]"

    def given(self, dtype, budget):
        return dict(gtol=GTOL[dtype], ftol=FTOL[dtype], fatol=FTOL[dtype], maxiter=budget.maxiter,
                    maxfev=budget.maxfev, memory_size=MEMORY, linesearch=LINESEARCHES[self.linesearch])

    def build(self, fun, dtype, budget):
        import qnjax

        g = self.given(dtype, budget)
        ls = getattr(qnjax.linesearch, g["linesearch"])()

        @jax.jit
        def solve(x0):
            r = qnjax.minimize(fun, x0, gtol=g["gtol"], ftol=g["ftol"], fatol=g["fatol"],
                               maxiter=g["maxiter"], maxfev=g["maxfev"], memory_size=MEMORY, linesearch=ls)
            return r.x, r.fun, r.nit, r.nfev, r.status

        def run(x0):
            x, f, nit, nfev, status = jax.block_until_ready(solve(x0))
            st = qnjax.Status(int(status))
            return Outcome(_host(x), float(f), int(nit), int(nfev), f"{st.name}: {st.message}", st.success)

        return run


class Scipy(Adapter):
    name = module = "scipy"

    def given(self, dtype, budget):
        return dict(method="L-BFGS-B", gtol=GTOL[dtype], ftol=FTOL[dtype], maxiter=budget.maxiter,
                    maxfun=budget.maxfev, maxcor=MEMORY)

    def build(self, fun, dtype, budget):
        from scipy.optimize import minimize

        g = self.given(dtype, budget)
        options = {k: g[k] for k in ("gtol", "ftol", "maxiter", "maxfun", "maxcor")}
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
    _CODES = ("running", "gtol: max |grad| <= gtol", "ftol: relative reduction <= ftol",
              "maxiter reached", "f or grad not finite")

    def given(self, dtype, budget):
        return dict(transform=f"optax.lbfgs(memory_size={MEMORY})", gtol=GTOL[dtype], ftol=FTOL[dtype],
                    maxiter=budget.maxiter, maxfev=None,
                    loop="jitted lax.while_loop, optax.value_and_grad_from_state; "
                         "stops on max|g| <= gtol or (f_k - f_k+1) <= ftol max(|f_k|, |f_k+1|, 1) (scipy's rule)")

    def build(self, fun, dtype, budget):
        import optax

        g = self.given(dtype, budget)
        opt = optax.lbfgs(memory_size=MEMORY)
        value_and_grad = optax.value_and_grad_from_state(fun)

        def body(c):
            x, state, k, _, _ = c
            f, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=f, grad=grad, value_fn=fun)
            x = optax.apply_updates(x, updates)
            f_new = jnp.asarray(optax.tree.get(state, "value"), x.dtype)
            g_new = optax.tree.get(state, "grad")
            gnorm = jnp.max(jnp.abs(g_new))
            scale = jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), 1.0)
            code = jnp.where(f - f_new <= g["ftol"] * scale, 2, 0)
            code = jnp.where(gnorm <= g["gtol"], 1, code)
            code = jnp.where(jnp.isfinite(f_new) & jnp.isfinite(gnorm), code, 4)
            k = k + 1
            code = jnp.where((code == 0) & (k >= g["maxiter"]), 3, code)
            return x, state, k, jnp.asarray(code, jnp.int32), f_new

        @jax.jit
        def solve(x0):
            start = (x0, opt.init(x0), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
                     jnp.zeros((), x0.dtype))
            x, _, k, code, f = jax.lax.while_loop(lambda c: c[3] == 0, body, start)
            return x, f, k, code

        def run(x0):
            x, f, k, code = jax.block_until_ready(solve(x0))
            return Outcome(_host(x), float(f), int(k), None, self._CODES[int(code)], int(code) in (1, 2))

        return run


class Jaxopt(Adapter):
    name = module = "jaxopt"

    def given(self, dtype, budget):
        return dict(tol=GTOL[dtype], tol_is="l2 norm of the gradient (jaxopt's only test)",
                    maxiter=budget.maxiter, maxfev=None, history_size=MEMORY, stop_if_linesearch_fails=True)

    def build(self, fun, dtype, budget):
        import jaxopt

        g = self.given(dtype, budget)
        solver = jaxopt.LBFGS(fun=fun, maxiter=g["maxiter"], tol=g["tol"], history_size=MEMORY,
                              stop_if_linesearch_fails=True)

        @jax.jit
        def solve(x0):
            x, st = solver.run(x0)
            return x, st.value, st.iter_num, st.num_fun_eval, st.error, st.failed_linesearch

        def run(x0):
            x, f, nit, nfev, err, failed = jax.block_until_ready(solve(x0))
            msg = f"error (l2 norm of grad) = {float(err):.3g}" + ("; line search failed" if failed else "")
            return Outcome(_host(x), float(f), int(nit), int(nfev), msg, bool(err <= g["tol"]))

        return run


class Optimistix(Adapter):
    name = module = "optimistix"

    def given(self, dtype, budget):
        return dict(solver=f"optimistix.LBFGS(history_length={MEMORY})", rtol=GTOL[dtype], atol=GTOL[dtype],
                    norm="max_norm", max_steps=budget.maxfev,
                    note="no gradient test: Cauchy test on the step and on the change in f; "
                         "one step is one evaluation (rejected trials included), so it gets maxfev steps")

    def build(self, fun, dtype, budget):
        import optimistix as optx

        g = self.given(dtype, budget)
        solver = optx.LBFGS(rtol=g["rtol"], atol=g["atol"], norm=optx.max_norm, history_length=MEMORY)

        @jax.jit
        def solve(x0):
            sol = optx.minimise(lambda y, _: fun(y), solver, x0, max_steps=g["max_steps"], throw=False)
            return sol.value, sol.state.f_info.f, sol.stats["num_steps"], sol.result

        def run(x0):
            x, f, steps, result = jax.block_until_ready(solve(x0))
            ok = bool(result == optx.RESULTS.successful)
            msg = "successful" if ok else (optx.RESULTS[result] or "failed")
            return Outcome(_host(x), float(f), int(steps), None, msg, ok)

        return run


_ADAPTERS = {"scipy": Scipy, "optax": Optax, "jaxopt": Jaxopt, "optimistix": Optimistix}


def load(adapter: Adapter) -> str | None:
    """Import what ``adapter`` needs; ``None`` if fine, else a one-line reason."""
    try:
        importlib.import_module(adapter.module)
        if isinstance(adapter, Qnjax):
            import qnjax.linesearch

            if not hasattr(qnjax.linesearch, LINESEARCHES[adapter.linesearch]):
                return f"qnjax.linesearch.{LINESEARCHES[adapter.linesearch]} is not available"
    except Exception as e:  # noqa: BLE001 -- any import failure means "skip this solver"
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    return None


def make_adapters(solvers, linesearches, notice: Callable[[str], None]) -> list[Adapter]:
    """The adapters for ``solvers`` (one qnjax entry per line search), skipping with a
    one-line ``notice`` every one that cannot be loaded."""
    out: list[Adapter] = []
    for name in solvers:
        if name == "qnjax":
            unknown = [ls for ls in linesearches if ls not in LINESEARCHES]
            if unknown:
                raise ValueError(f"unknown line search {unknown[0]!r}; known: {', '.join(LINESEARCHES)}")
            candidates = [Qnjax(ls) for ls in linesearches]
        elif name in _ADAPTERS:
            candidates = [_ADAPTERS[name]()]
        else:
            raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVER_NAMES)}")
        for adapter in candidates:
            why = load(adapter)
            if why is None:
                out.append(adapter)
            else:
                notice(f"skipping {adapter.name}: {why}")
    return out
