"""The adapters of the JAX peers qnjax is compared with: ``optax.lbfgs`` (a jitted
``lax.while_loop`` of its updates, with no stopping rule of its own), ``jaxopt.LBFGS`` and
``jaxopt.LBFGSB`` (archived; bounds with x0 projected by the adapter) and
``optimistix.LBFGS`` (no gradient test: Cauchy tests on the step and on f). The interface,
the rules and what each peer is given under them: :mod:`qnjax.bench._solvers`.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from ._solvers import GTOL, MEMORY, Adapter, Outcome, _box, _pick


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
