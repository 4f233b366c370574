"""scipy.optimize.minimize's spellings at :func:`qnjax.minimize`'s door.

A scipy user's habits get an answer, not a bare TypeError: where the meaning is the
same the spelling is accepted, otherwise the error names the qnjax equivalent.

* ``method``: ``"L-BFGS-B"`` (scipy's name), ``"lbfgs"``, ``"l-bfgs"``, any case.
* ``bounds``: qnjax's ``(lower, upper)`` (``_bounds``), a ``scipy.optimize.Bounds``
  (its ``lb`` and ``ub``), or scipy's sequence of ``(min, max)`` pairs, one per
  variable of a 1-D ``x0`` (a list, or a NumPy array of shape (n, 2)), ``None`` or
  ±inf for no bound.
* ``jac=True``: ``fun`` returns ``(loss, grad)``; ``jac=callable``: ``jac(x, *args)``
  returns the gradient. Either becomes a ``jax.custom_jvp`` rule, so the solver uses
  the given gradient (one call of ``fun`` per evaluation with ``jac=True``) and
  still sees one function of x. Real parameters only (scipy's case).
* ``tol``: as scipy's L-BFGS-B, sets ``gtol`` and ``ftol`` unless they are given.
  (qnjax's ftol has no floor of 1 in its denominator, so it is invariant to scaling f.)
* ``options``: ``maxiter``, ``maxfun``/``maxfev``, ``gtol``, ``ftol``, ``maxcor``
  (``memory_size``), ``disp`` (``verbose``); scipy options without a meaning here
  (``eps``, ``iprint``, ``maxls``, ...) are rejected with what to use instead.
* ``x0`` as a list or tuple of numbers, a Python number or a NumPy array of integers:
  a floating array, as scipy reads it (nested containers of arrays stay pytrees; a JAX
  integer array is refused with a message, its dtype having been chosen).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("lbfgs", "l-bfgs", "l-bfgs-b")
OPTIONS = {"maxiter": "maxiter", "maxfun": "maxfev", "maxfev": "maxfev", "gtol": "gtol", "ftol": "ftol",
           "maxcor": "memory_size", "disp": "verbose"}
REJECTED = {
    "eps": "qnjax differentiates fun exactly (jax.grad, or jac=); there is no finite-difference step",
    "finite_diff_rel_step": "qnjax differentiates fun exactly (jax.grad, or jac=); there is no finite-difference step",
    "iprint": "use verbose=N (a line every N iterations, 1: every one) or verbose=True",
    "maxls": "pass linesearch=qnjax.linesearch.MoreThuente(max_steps=...)",
    "workers": "solve many problems at once with jax.vmap(lambda x0: qnjax.minimize(fun, x0))",
}


def check_method(method: str) -> None:
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"unknown method {method!r}; available: 'L-BFGS-B' (also spelled 'lbfgs'); "
                         "qnjax implements L-BFGS and L-BFGS-B only")


def bounds_pair(bounds, x0):
    """(lower, upper) from any of the accepted forms (module docstring), or None."""
    if bounds is None:
        return None
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        return bounds.lb, bounds.ub
    if isinstance(bounds, np.ndarray) and bounds.ndim == 2 and bounds.shape[1] == 2:  # scipy: one row per variable
        bounds = [tuple(row) for row in bounds.tolist()]
    if not isinstance(bounds, (tuple, list)):
        raise TypeError(f"bounds must be (lower, upper) or a sequence of (min, max) pairs, got {type(bounds).__name__}")
    leaves = jax.tree_util.tree_leaves(x0)
    if len(leaves) == 1 and jnp.ndim(leaves[0]) == 1 and len(bounds) == jnp.shape(leaves[0])[0] and all(
            isinstance(b, (tuple, list)) and len(b) == 2 for b in bounds):
        side = lambda i, inf: np.asarray([inf if b[i] is None else b[i] for b in bounds], float)  # noqa: E731
        return side(0, -np.inf), side(1, np.inf)
    if len(bounds) == 2:
        return tuple(bounds)  # qnjax's (lower, upper), checked by _bounds.box
    raise ValueError("bounds must be (lower, upper) with each side None, a scalar or a pytree like x0, or, for a "
                     f"1-D x0, one (min, max) pair per variable; got {bounds!r}")


def settings(given: dict, defaults: dict, tol, options) -> dict:
    """The keyword settings after ``tol`` and ``options`` (scipy's names) are applied to
    ``given`` (the keywords as passed; ``defaults`` their default values)."""
    out = dict(given)
    for key, value in (options or {}).items():
        if key in REJECTED:
            raise ValueError(f"option {key!r} has no meaning here: {REJECTED[key]}")
        if key not in OPTIONS:
            raise ValueError(f"unknown option {key!r}; known: {', '.join(OPTIONS)} (or the keyword "
                             "arguments of qnjax.minimize)")
        name = OPTIONS[key]
        if not (out[name] is defaults[name] or (isinstance(out[name], (int, float)) and out[name] == defaults[name])):
            raise ValueError(f"{name} given twice: as a keyword and as options[{key!r}]")
        out[name] = bool(value) if name == "verbose" else value
    if tol is not None:
        for name in ("gtol", "ftol"):
            if out[name] is None:
                out[name] = tol
    return out


def as_params(x0):
    """A list/tuple of numbers, a Python number or a NumPy array of integers becomes an
    array (floating), as scipy reads ``x0``; anything else is a pytree and is kept (a JAX
    integer array is refused with a message: its dtype was chosen)."""
    leaves = jax.tree.leaves(x0)
    scalar = isinstance(x0, numbers.Number)
    numpy_ints = isinstance(x0, np.ndarray) and (np.issubdtype(x0.dtype, np.integer) or x0.dtype == bool)
    if scalar or numpy_ints or (isinstance(x0, (list, tuple)) and leaves
                                and all(isinstance(v, numbers.Number) for v in leaves)):
        arr = jnp.asarray(x0)
        return arr if jnp.issubdtype(arr.dtype, jnp.inexact) else arr.astype(jnp.result_type(float))
    return x0


def with_jac(fun, jac, has_aux: bool):
    """``fun`` as one function of x whose derivative is the gradient ``jac`` gives."""
    if jac is None or jac is False:
        return fun
    if has_aux:
        raise ValueError("jac= and has_aux=True cannot be combined: return aux from a jax-differentiable fun instead")
    if jac is True:
        value_and_grad = fun
    elif callable(jac):
        def value_and_grad(x, *args):
            return fun(x, *args), jac(x, *args)
    else:
        raise TypeError(f"jac must be True, False, None or a callable jac(x, *args) -> grad, got {jac!r}")

    @jax.custom_jvp
    def loss(x, *args):
        return _value(value_and_grad(x, *args), jac)

    @loss.defjvp
    def _loss_jvp(primals, tangents):
        x, *args = primals
        out = value_and_grad(x, *args)
        value, grad = _value(out, jac), out[1]
        leaves = jax.tree.leaves(x)
        if any(jnp.iscomplexobj(leaf) for leaf in leaves):
            raise TypeError("jac= supports real parameters only; for complex ones let JAX differentiate fun")
        dot = sum(jnp.sum(jnp.asarray(g) * t) for g, t in zip(jax.tree.leaves(grad), jax.tree.leaves(tangents[0])))
        return value, jnp.asarray(dot).astype(jnp.result_type(value))

    return loss


def _value(out, jac):
    if jac is True and not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ValueError("with jac=True, fun must return a pair (loss, grad)")
    return out[0]
