"""``OptimizeResult``: what :func:`qnjax.minimize` returns, with scipy's field names.

A pytree (a ``NamedTuple``), so a result passes through ``jax.jit`` and ``jax.vmap``
(batched fields) and can be returned from a user's compiled function; the scipy
conveniences (``jac``, ``njev``, ``hess_inv``, ``res["fun"]``, ``keys()``,
``message``) are properties and methods on top of it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from ._status import Status


class OptimizeResult(NamedTuple):
    """The outcome of :func:`minimize` (scipy's field names), a pytree.

    Fields: ``x`` (the solution, a pytree like ``x0``), ``fun`` (f(x), scalar dtype),
    ``grad`` (the gradient at x as ``jax.grad`` returns it; also ``jac``), ``nit``
    (iterations), ``nfev`` (evaluations of f and its gradient, the one at x0
    included; below float64, Hessian-vector products too, ``_rescue``), ``status``
    (a :class:`qnjax.Status` code), ``success`` (a convergence code: GTOL, PRECISION
    or FTOL), ``aux`` (fun's aux at x with ``has_aux``),
    ``state`` (the solver's final :class:`qnjax.State`, memory included: pass it back
    as ``minimize(..., state=res.state)`` to continue the run) and ``trace`` (a
    :class:`qnjax.Trace` with ``trace=K``, else None). ``message`` gives the status's
    message on the host."""

    x: Any
    fun: jax.Array
    grad: Any
    nit: jax.Array
    nfev: jax.Array
    status: jax.Array
    success: jax.Array
    aux: Any = None
    state: Any = None
    trace: Any = None

    @property
    def jac(self):
        return self.grad

    @property
    def njev(self):
        """Gradient evaluations: every evaluation computes f and its gradient (= nfev)."""
        return self.nfev

    @property
    def hess_inv(self):
        """The final L-BFGS inverse-Hessian approximation as an operator, as scipy's
        ``LbfgsInvHessProduct`` (:class:`qnjax._inverse_hessian.InverseHessian`: ``H @ v``,
        ``H @ V`` for an (n, k) matrix, ``v @ H``, ``H.T``, ``matvec``, ``matmat``,
        ``todense``, ``shape``, ``dtype``)."""
        from ._inverse_hessian import InverseHessian

        return InverseHessian(self.state)

    def __getitem__(self, key):
        """``res["fun"]`` as with scipy's result (integer indices index the tuple)."""
        if isinstance(key, str):
            try:
                return getattr(self, key)
            except AttributeError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    def keys(self):
        return self._fields

    @property
    def message(self):
        """Human-readable message(s) for ``status`` (host only; an array of them when batched)."""
        codes = np.asarray(self.status)
        if codes.ndim == 0:
            return Status(int(codes)).message
        return np.vectorize(lambda c: Status(int(c)).message, otypes=[object])(codes)
