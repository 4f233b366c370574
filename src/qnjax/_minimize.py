"""``qnjax.minimize``: the scipy-shaped front door, one compiled loop.

It builds an :class:`~qnjax._solver.LBFGS` from scipy's names, turns ``fun`` into
data (``_objective.Objective``: the arrays it closes over are traced inputs, its
computation keys the compilation), and runs ``LBFGS.step`` inside one
``lax.while_loop``. The jitted solve takes only pytrees (the solver config, the
objective, ``x0`` and ``args``): tolerances, line-search settings and closed-over
data are traced, so changing them does not recompile; it works under ``jax.jit``
and ``jax.vmap`` (batched ``x0`` and/or ``args``), and a finished member of a
vmapped batch makes the line search evaluate nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from . import _objective, _tree
from ._solver import LBFGS, State
from ._status import Status, code, is_success


class OptimizeResult(NamedTuple):
    """The outcome of :func:`minimize` (scipy's field names), a pytree.

    Fields: ``x`` (the solution, a pytree like ``x0``), ``fun`` (f(x), scalar dtype),
    ``grad`` (the gradient at x as ``jax.grad`` returns it; also ``jac``), ``nit``
    (iterations), ``nfev`` (evaluations of f and its gradient, the one at x0
    included), ``status`` (a :class:`qnjax.Status` code), ``success`` (a convergence
    code: GTOL, PRECISION or FTOL) and ``aux`` (fun's aux at x with ``has_aux``).
    ``message`` gives the status's message on the host."""

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


def minimize(
    fun,
    x0,
    args=(),
    *,
    method: str = "lbfgs",
    gtol=None,
    ftol=None,
    fatol=None,
    maxiter=15000,
    maxfev=15000,
    memory_size: int = 10,
    linesearch=None,
    direction: str = "compact",
    has_aux: bool = False,
    scalar_dtype=None,
) -> OptimizeResult:
    """Minimise ``fun(x, *args)`` from ``x0`` with L-BFGS.

    Args:
      fun: ``fun(x, *args) -> loss`` (a real scalar), or ``-> (loss, aux)`` with
        ``has_aux=True``. Any callable: a lambda, a ``functools.partial``, a
        ``jax.tree_util.Partial``, an equinox Module; the arrays it closes over are
        data (a new closure over new arrays reuses the compiled solve).
      x0: the starting point, any pytree of float or complex arrays; the result
        keeps its structure and dtypes.
      args: a tuple of extra arguments to ``fun`` (arrays or pytrees; traced).
      method: ``"lbfgs"`` (the only one so far).
      gtol: stop with GTOL when max_i |grad_i| <= gtol (scipy's absolute test).
        Default 0: only an exactly zero gradient.
      ftol: stop with FTOL when a step reduces f by at most ftol relative to
        max(|f_k|, |f_k+1|) (scipy's test without its floor of 1, so it is
        invariant to scaling f); convergence in f, the gradient not checked.
        Default 0 (off): a slow stretch near a saddle passes it unconverged.
      fatol: the same test with an absolute level: reduction <= fatol
        (``fatol=ftol`` with ``gtol=1e-5`` is scipy's rule exactly). Default 0.
      maxiter: the most iterations (default 15000, scipy's); stop with MAXITER.
      maxfev: the most evaluations of f and its gradient (default 15000); MAXFEV.
      memory_size: the number m of curvature pairs kept (default 10, scipy's maxcor).
      linesearch: a ``qnjax.linesearch`` config; default ``MoreThuente()``, scipy's
        L-BFGS-B search with its settings, so the steps are scipy's.
      direction: ``"compact"`` (default; Byrd, Nocedal & Schnabel's compact form, two
        passes over the memory) or ``"two-loop"`` (N&W Algorithm 7.4).
      has_aux: ``fun`` returns ``(loss, aux)``; ``aux`` at the solution is returned.
      scalar_dtype: the dtype of values, step sizes and inner products; default the
        widest real float among the leaves of x0, at least float32.

    Returns:
      An :class:`OptimizeResult`. Without tolerances that fire earlier, a run ends
      when x is stationary to working precision (PRECISION; see ``qnjax.Status``),
      whatever the scale of f; ``success`` is true for GTOL, PRECISION and FTOL only.
      The returned ``x`` and ``fun`` always belong to the same point, never worse
      than x0.
    """
    if method.lower() not in ("lbfgs", "l-bfgs"):
        raise ValueError(f"unknown method {method!r}; available: 'lbfgs'")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of extra arguments to fun, got {type(args).__name__}")
    _tree.check_params(x0, "x0")
    sdt = _tree.scalar_dtype(x0, scalar_dtype)
    # Every tolerance a leaf (defaults resolved here), so changing one never recompiles.
    solver = LBFGS(
        memory_size=memory_size, linesearch=_default_linesearch(linesearch), gtol=0.0 if gtol is None else gtol,
        ftol=0.0 if ftol is None else ftol, fatol=0.0 if fatol is None else fatol,
        maxiter=maxiter, maxfev=maxfev, direction_method=direction, scalar_dtype=scalar_dtype,
    )
    objective = _objective.Objective.build(fun, x0, args, sdt, has_aux)
    return _solve(solver, objective, x0, args)


def _default_linesearch(linesearch):
    from .linesearch import MoreThuente

    return MoreThuente() if linesearch is None else linesearch


@jax.jit
def _solve(solver: LBFGS, objective, x0, args) -> OptimizeResult:
    def evaluate(x):
        return objective(x, args)

    value0, grad0, aux0 = evaluate(x0)
    state = solver.init(x0, value0, grad0, aux0)
    state = state._replace(nfev=state.nfev + 1)
    state = state._replace(status=solver.start_status(state))

    def running(s: State):
        return s.status == code(Status.RUNNING)

    def body(s: State):
        return solver.step(s, evaluate, active=running(s))[1]

    s = jax.lax.while_loop(running, body, state)
    return OptimizeResult(
        x=s.params, fun=s.value, grad=_tree.conj(s.grad), nit=s.count, nfev=s.nfev, status=s.status,
        success=is_success(s.status), aux=s.aux,
    )
