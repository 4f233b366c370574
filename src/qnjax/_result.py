"""``OptimizeResult``: what :func:`qnjax.minimize` returns, with scipy's field names.

A pytree (a ``NamedTuple``), so a result passes through ``jax.jit`` and ``jax.vmap``
(batched fields) and can be returned from a user's compiled function; the scipy
conveniences (``jac``, ``njev``, ``hess_inv``, ``res["fun"]``, ``keys()``,
``message``) are properties and methods on top of it.

Printed, it reads as scipy's does: one ``name: value`` line per field, the message
first, each array summarised by numpy (at most EDGE elements from either end of a long
one), a pytree a line per leaf, and the solver's state and trace one line each (the
state is what ``minimize(..., state=res.state)`` continues from, its memory buffers
and small matrices among it: printed whole, 100-130 lines whatever n). A batch
(``jax.vmap``) counts its members' statuses. Under a trace, where the fields are not
values yet, it prints as the plain tuple.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import jax
import numpy as np

from ._status import Status

# Elements shown from either end of a long array (numpy's ``edgeitems``; up to 2 EDGE whole).
EDGE = 3


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

    def __repr__(self) -> str:
        try:
            return _described(self)
        except Exception:  # noqa: BLE001  (tracers: no values to show)
            return "OptimizeResult(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"


def _described(res: OptimizeResult) -> str:
    """The module docstring's layout (raises on a traced field)."""
    rows = [("message", _message(res)), ("success", _array(res.success)), ("status", _status(res.status)),
            ("fun", _array(res.fun)), ("x", _tree(res.x)), ("nit", _array(res.nit)), ("nfev", _array(res.nfev)),
            ("grad", _tree(res.grad))]
    if res.aux is not None:
        rows.append(("aux", _tree(res.aux)))
    if res.state is not None:
        memory = res.state.memory
        pairs = np.asarray(memory.index[..., 0])  # (the count stored; batched: per member)
        kept = f"{pairs.min()}" if pairs.min() == pairs.max() else f"{pairs.min()}-{pairs.max()}"
        rows.append(("state", f"<qnjax.State: {kept} of {memory.gram.d.shape[-1] - 1} pairs stored; continue with "
                              "minimize(..., state=res.state)>"))
    if res.trace is not None:
        made, kept = np.asarray(res.trace.records), np.asarray(res.trace.kept).sum(axis=-1)
        rows.append(("trace", f"<qnjax.Trace: {_array(made)} records made, {_array(kept)} kept"
                              f"{'; res.trace.as_numpy()' if made.ndim == 0 else ''}>"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(_headed(name.rjust(width) + ": ", text) for name, text in rows)


def _headed(head, text) -> str:
    """``head`` then ``text``, its later lines indented under the first."""
    return head + text.replace("\n", "\n" + " " * len(head))


def _array(a) -> str:
    with np.printoptions(threshold=2 * EDGE, edgeitems=EDGE, precision=6):
        return np.array2string(np.asarray(a), separator=" ")


def _tree(tree) -> str:
    """An array, or one ``path: array`` line per leaf of a pytree."""
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, float, int, complex)):
        return _array(tree)
    lines = [_headed(f"{jax.tree_util.keystr(path)}: ", _array(leaf))
             for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]
    return "\n".join(lines) or repr(tree)


def _message(res: OptimizeResult) -> str:
    """``res.message``, or a batch's statuses counted."""
    codes = np.asarray(res.status)
    if codes.ndim == 0:
        return res.message
    counts = Counter(Status(int(c)).name for c in codes.ravel())
    return ", ".join(f"{name} x {k}" for name, k in sorted(counts.items(), key=lambda kv: -kv[1]))


def _status(status) -> str:
    codes = np.asarray(status)
    return f"{int(codes)} ({Status(int(codes)).name})" if codes.ndim == 0 else _array(codes)
