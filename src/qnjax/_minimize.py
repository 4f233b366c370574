"""``qnjax.minimize``: the scipy-shaped front door, one compiled loop.

    res = qnjax.minimize(fun, x0, args=(), gtol=..., maxiter=...)

runs L-BFGS (the same ``_step`` as :func:`qnjax.lbfgs`) inside one
``lax.while_loop`` and returns an :class:`OptimizeResult` pytree with scipy's
names. It is jitted on ``fun``, the tree structure and the dtypes/shapes, with
the tolerances and the line-search settings traced, so re-calling it with the
same ``fun`` and shapes does not recompile; it works under ``jax.jit`` and
``jax.vmap`` (batched ``x0`` and/or ``args``).

Stopping, checked at x0 and after every iteration, first match wins:

* NONFINITE   f(x0) or grad f(x0) not finite (x = x0, nothing else is tried);
* GTOL        max_i |g_i| <= gtol                 (scipy's pgtol; default 0, off);
* GTOL_REL    max_i |g_i| <= gtol_rel max_i |g0_i|  (default 1e-8 in float64, 1e-5 in float32);
* FTOL        f_k - f_{k+1} <= max(ftol max(|f_k|, |f_{k+1}|), fatol) after a step that
              met the line search's acceptance test (ftol default 2.2e-9 = scipy's
              factr 1e7 times eps in float64, 1e-6 in float32; fatol default 0);
* LINESEARCH_FAILED  no decrease along the quasi-Newton direction nor along -g;
* MAXITER, MAXFEV    the budgets (defaults 15000 each, scipy's).

The defaults follow the precision of the scalar dtype (see ``_tree``): about
the relative gradient and f reduction that rounding still lets one measure. They
are all relative, so multiplying f by any constant gives the same iterates
and the same stop; scipy's absolute ``gtol = 1e-5`` and the ``max(..., 1)`` in
its ftol test are not, which is why they differ here: ``gtol=1e-5, fatol=ftol``
is scipy's rule exactly (its max(|f_k|, |f_{k+1}|, 1) floor is an absolute test).
``success`` is true for GTOL, GTOL_REL and FTOL only. The line
search's evaluations are capped by what is left of ``maxfev``; ``nfev``
counts every evaluation of ``fun`` (with its gradient), the one at x0 included.
The returned ``x`` and ``fun`` always belong to the same point, never worse
than x0.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _memory, _objective, _tree
from ._status import Status, code, is_success
from ._step import lbfgs_step
from .linesearch import LineSearchStatus, MoreThuente


class OptimizeResult(NamedTuple):
    x: Any
    fun: jax.Array
    grad: Any
    nit: jax.Array
    nfev: jax.Array
    status: jax.Array
    success: jax.Array
    aux: Any = None

    @property
    def jac(self):
        return self.grad

    @property
    def message(self):
        """Human-readable message(s) for ``status`` (host only; an array of them when batched)."""
        codes = np.asarray(self.status)
        if codes.ndim == 0:
            return Status(int(codes)).message
        return np.vectorize(lambda c: Status(int(c)).message, otypes=[object])(codes)


class _Tolerances(NamedTuple):
    gtol: jax.Array
    gtol_rel: jax.Array
    ftol: jax.Array
    fatol: jax.Array
    maxiter: jax.Array
    maxfev: jax.Array


def default_tolerances(sdt) -> dict:
    """The default tolerances for a scalar dtype (module docstring)."""
    if jnp.finfo(sdt).bits >= 64:
        return dict(gtol=0.0, gtol_rel=1e-8, ftol=1e7 * float(jnp.finfo(sdt).eps), fatol=0.0)
    return dict(gtol=0.0, gtol_rel=1e-5, ftol=1e-6, fatol=0.0)


def minimize(
    fun,
    x0,
    args=(),
    *,
    method: str = "lbfgs",
    gtol=None,
    gtol_rel=None,
    ftol=None,
    fatol=None,
    maxiter=15000,
    maxfev=15000,
    memory_size: int = 10,
    linesearch=None,
    has_aux: bool = False,
    scalar_dtype=None,
) -> OptimizeResult:
    """Minimise ``fun(x, *args)`` from ``x0`` (any pytree of float/complex arrays).

    ``fun`` returns a real scalar, or ``(scalar, aux)`` with ``has_aux=True``.
    See the module docstring for the stopping rules and their defaults.
    """
    if method.lower() not in ("lbfgs", "l-bfgs"):
        raise ValueError(f"unknown method {method!r}; available: 'lbfgs'")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of extra arguments to fun, got {type(args).__name__}")
    _tree.check_params(x0, "x0")
    sdt = _tree.scalar_dtype(x0, scalar_dtype)
    defaults = default_tolerances(sdt)
    pick = lambda v, name: defaults[name] if v is None else v  # noqa: E731
    tols = _Tolerances(
        gtol=jnp.asarray(pick(gtol, "gtol"), sdt),
        gtol_rel=jnp.asarray(pick(gtol_rel, "gtol_rel"), sdt),
        ftol=jnp.asarray(pick(ftol, "ftol"), sdt),
        fatol=jnp.asarray(pick(fatol, "fatol"), sdt),
        maxiter=jnp.asarray(maxiter, jnp.int32),
        maxfev=jnp.asarray(maxfev, jnp.int32),
    )
    linesearch = MoreThuente() if linesearch is None else linesearch
    return _solve(fun, bool(has_aux), int(memory_size), jnp.dtype(sdt), x0, args, tols, linesearch)


class _Carry(NamedTuple):
    x: Any
    value: jax.Array
    payload: Any  # (raw grad, aux)
    memory: _memory.Memory
    nit: jax.Array
    nfev: jax.Array
    status: jax.Array


def _first_match(rules):
    """The status of the first true condition in ``[(condition, Status), ...]``, else
    RUNNING: one chain of selects, each condition used once (one compiled kernel)."""
    status = code(Status.RUNNING)
    for condition, s in reversed(rules):
        status = jnp.where(condition, code(s), status)
    return status


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _solve(fun, has_aux, memory_size, sdt, x0, args, tols, linesearch):
    evaluate = _objective.value_and_grad(fun, x0, sdt, has_aux)
    value_and_grad = lambda x: evaluate(x, *args)  # noqa: E731

    value0, payload0 = value_and_grad(x0)
    gnorm0 = _tree.norm_inf(payload0[0], sdt)

    finite0 = jnp.isfinite(value0) & _tree.all_finite(payload0[0])
    start = _Carry(
        x=x0,
        value=value0,
        payload=payload0,
        memory=_memory.init(x0, memory_size, sdt),
        nit=jnp.zeros((), jnp.int32),
        nfev=jnp.ones((), jnp.int32),
        status=_first_match([(~finite0, Status.NONFINITE), (gnorm0 <= tols.gtol, Status.GTOL),
                             (gnorm0 <= tols.gtol_rel * gnorm0, Status.GTOL_REL)]),
    )

    def cond(c):
        return c.status == Status.RUNNING

    def body(c):
        budget = jnp.minimum(jnp.asarray(linesearch.max_steps, jnp.int32), tols.maxfev - c.nfev)
        ls = dataclasses.replace(linesearch, max_steps=jnp.maximum(budget, 0))
        step = lbfgs_step(ls, c.memory, c.x, c.value, c.payload, value_and_grad)
        # A retry (the memory's direction gave no decrease; next: steepest descent) is
        # not an iteration: x did not move.
        nit, nfev = c.nit + jnp.where(step.retry, 0, 1).astype(jnp.int32), c.nfev + step.nfev
        reduction = c.value - step.value
        # A small reduction means convergence only after a normal (acceptance-test) step;
        # after a stalled search (e.g. pinned at the edge of f's domain) it means nothing.
        normal = step.searched == LineSearchStatus.SUCCESS
        bound = jnp.maximum(tols.ftol * jnp.maximum(jnp.abs(c.value), jnp.abs(step.value)), tols.fatol)
        gnorm = _tree.norm_inf(step.payload[0], sdt)
        out_of_budget = budget < linesearch.max_steps  # a failure then is the budget's
        status = _first_match(
            [(step.failed & out_of_budget, Status.MAXFEV), (step.failed, Status.LINESEARCH_FAILED),
             (gnorm <= tols.gtol, Status.GTOL), (gnorm <= tols.gtol_rel * gnorm0, Status.GTOL_REL),
             (normal & (reduction <= bound), Status.FTOL), (nit >= tols.maxiter, Status.MAXITER),
             (nfev >= tols.maxfev, Status.MAXFEV)],
        )
        return _Carry(step.params, step.value, step.payload, step.memory, nit, nfev, status)

    c = jax.lax.while_loop(cond, body, start)
    return OptimizeResult(
        x=c.x,
        fun=c.value,
        grad=c.payload[0],
        nit=c.nit,
        nfev=c.nfev,
        status=c.status,
        success=is_success(c.status),
        aux=c.payload[1],
    )
