"""The objective as data: what every qnjax algorithm evaluates, and how ``fun`` is keyed.

``fun(params, *args)`` must return a real floating scalar (or ``(scalar, aux)``
with ``has_aux``). A non-scalar loss raises ``ValueError`` and a non-float loss
``TypeError`` before anything is differentiated, with a message that says so.
The value is cast to the scalar dtype (so a float64 loss of float32 params
works) and each gradient leaf to its parameter's dtype; gradients are returned
in the real-space convention (``_tree.conj`` of ``jax.grad``).

``fun`` is data, not a cache key (:class:`Objective`): ``fun`` is traced once per
call into a jaxpr over (params, args); the arrays it closes over, however deeply (a
lambda's cells, a ``functools.partial``, a ``jax.tree_util.Partial``, an equinox
Module's fields, module-level arrays), become the Objective's pytree leaves, so they
are traced inputs of the compiled solve (and can be differentiated), and the jaxpr's
text is the static part that keys the compilation. A fresh lambda that computes the
same thing with other arrays therefore reuses the compiled solve.

Only the forward computation is traced per call: JAX differentiates the same jaxpr
the same way, so its text determines the gradient too, and the gradient is traced
from it when the solve compiles. The trace is what a call costs on the host: on the
10-D Rosenbrock function, tracing ``jax.value_and_grad(fun)`` took about 10 ms a call
and the forward pass about 1.5 ms (a ``minimize`` call that reuses its compiled solve,
about 2 ms of it solving, went from 11.3 to 5.6 ms). The exception is a custom
derivative rule (``jax.custom_jvp``, ``jax.custom_vjp``, ``jax.custom_gradient``; also
JAX's own, as in ``jax.nn.relu``): the forward jaxpr names the rule but does not hold
it, so an objective that has one is keyed by the jaxpr of ``jax.value_and_grad(fun)``,
which holds the rule's computation.

Python and NumPy scalars are compile-time constants, as under ``jax.jit``: a new
value is a new program (pass it in ``args`` or as a ``jnp`` array instead). The text
of a jaxpr hides the identity of host callbacks (``jax.pure_callback`` prints their
function with its address masked), so the key also holds the user's callback
functions themselves: a module-level callback reuses the compiled solve, one defined
inside the objective (a new function on every call) compiles on every call.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np

from . import _tree, _verdict


class Evaluated(NamedTuple):
    """What a line search carries along with a point besides its value."""

    grad: Any  # real-space gradient, in the params' dtypes
    aux: Any  # fun's auxiliary output (None without has_aux)


def check_loss(out, has_aux: bool = False):
    """Raise a clear error unless ``out`` (a value or abstract value) is a real scalar."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("with has_aux=True, fun must return a pair (loss, aux)")
        out = out[0]
    elif isinstance(out, (tuple, list)):
        raise ValueError(f"fun returned a {type(out).__name__} of length {len(out)}, not a scalar loss: for "
                         "(loss, grad), as scipy's jac=True expects, pass jac=True to qnjax.minimize; for "
                         "(loss, aux), pass has_aux=True")
    shape, dtype = jnp.shape(out), jnp.result_type(out)
    if shape != ():
        raise ValueError(f"the loss must be a scalar, got an array of shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"the loss must be a real floating-point scalar, got dtype {dtype}")


def value_and_grad(fun: Callable, like, sdt, has_aux: bool = False):
    """``fun`` -> ``(params, *args, **kwargs) -> (value in sdt, real-space grad like ``like``, aux)``."""

    def evaluate(params, *args, **kwargs):
        check_loss(jax.eval_shape(lambda p: fun(p, *args, **kwargs), params), has_aux)
        if has_aux:
            (f, aux), g = jax.value_and_grad(fun, has_aux=True)(params, *args, **kwargs)
        else:
            (f, g), aux = jax.value_and_grad(fun)(params, *args, **kwargs), None
        return jnp.asarray(f).astype(sdt), _tree.conj(_tree.cast_like(g, like)), aux

    return evaluate


def bind_static_args(fun: Callable, args):
    """``(fun, args)`` with the leaves of ``args`` that are neither arrays nor numbers (a
    string, an option object: scipy passes ``args`` through as they are) bound into ``fun``
    as constants, since JAX cannot trace them; they are part of ``fun``'s trace, so another
    value that changes the computation is another program. Arrays and numbers stay ``args``."""
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of extra arguments to fun, got {type(args).__name__}")
    leaves, treedef = jax.tree_util.tree_flatten(args)
    static = [not isinstance(v, (jax.Array, np.ndarray, np.generic, bool, int, float, complex))
              and not hasattr(v, "__jax_array__") for v in leaves]
    if not any(static):
        return fun, args
    constants = [v if s else None for v, s in zip(leaves, static)]  # (the arrays are not closed over)

    def bound(params, *dynamic):
        given = iter(dynamic)
        return fun(params, *jax.tree_util.tree_unflatten(treedef, [c if s else next(given)
                                                                   for c, s in zip(constants, static)]))

    return bound, tuple(v for v, s in zip(leaves, static) if not s)


def _user_functions(obj, depth: int = 0) -> tuple:
    """The user's functions behind a callback object: JAX wraps them (``callback_func``,
    closures of its own), and the wrappers are new on every trace."""
    obj = getattr(obj, "callback_func", obj)
    if isinstance(obj, functools.partial):
        return _user_functions(obj.func, depth + 1) + tuple(obj.args) + tuple(sorted(obj.keywords.items()))
    if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith("jax") and depth < 4:
        inner = tuple(f for cell in obj.__closure__ or () if callable(c := cell.cell_contents)
                      for f in _user_functions(c, depth + 1))
        return inner or (obj,)
    return (obj,)


def _equations(jaxpr):
    """Every equation of ``jaxpr`` and of its sub-jaxprs, each before those of its own."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jex.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def _callbacks(jaxpr) -> tuple:
    """The host functions of every callback in ``jaxpr`` and its sub-jaxprs, in order."""
    return tuple(f for eqn in _equations(jaxpr) for name, value in eqn.params.items() if "callback" in name
                 for f in _user_functions(value))


def _has_custom_rules(jaxpr) -> bool:
    """Whether ``jaxpr`` or a sub-jaxpr calls a custom derivative rule (which its text names
    but does not hold)."""
    return any(eqn.primitive.name.startswith(("custom_jvp", "custom_vjp", "custom_lin")) for eqn in _equations(jaxpr))


class _Key:
    """The static part of an :class:`Objective`: equal when the computation is."""

    def __init__(self, closed, in_tree, out_tree, sdt, has_aux, differentiated):
        self.closed = closed  # a ClosedJaxpr whose consts are *not* used (the leaves are)
        self.in_tree, self.out_tree = in_tree, out_tree
        self.sdt, self.has_aux = jnp.dtype(sdt), has_aux
        self.differentiated = differentiated  # closed is value_and_grad's jaxpr, else fun's
        self.callbacks = _callbacks(closed.jaxpr)
        self.text = str(closed.jaxpr)
        self._hash = hash((self.text, in_tree, out_tree, self.sdt, has_aux, differentiated))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (isinstance(other, _Key) and self._hash == other._hash and self.text == other.text
                and self.in_tree == other.in_tree and self.out_tree == other.out_tree
                and self.sdt == other.sdt and self.has_aux == other.has_aux
                and self.differentiated == other.differentiated
                and len(self.callbacks) == len(other.callbacks)
                and all(a is b for a, b in zip(self.callbacks, other.callbacks)))


@jax.tree_util.register_pytree_node_class
class Objective:
    """``fun`` as a pytree: its closed-over arrays are the leaves, its computation the key.

    ``objective(params, args) -> (value in the scalar dtype, real-space grad, aux)``."""

    def __init__(self, key: _Key, consts):
        self.key, self.consts = key, list(consts)

    @classmethod
    def build(cls, fun: Callable, params, args: tuple, sdt, has_aux: bool = False) -> Objective:
        def loss(p, a):
            out = fun(p, *a)
            check_loss(out, has_aux)
            return out

        closed, out_shape = jax.make_jaxpr(loss, return_shape=True)(params, args)
        differentiated = _has_custom_rules(closed.jaxpr)
        if differentiated:
            closed, out_shape = jax.make_jaxpr(jax.value_and_grad(loss, has_aux=has_aux), return_shape=True)(
                params, args)
        key = _Key(closed, jax.tree.structure((params, args)), jax.tree.structure(out_shape), sdt, has_aux,
                   differentiated)
        return cls(key, closed.consts)

    @property
    def value_dtype(self):
        """f's dtype where narrower than the scalar dtype, else None (``_verdict.value_dtype``; static)."""
        return _verdict.value_dtype(self.key.closed.out_avals[0], self.key.sdt)

    def __call__(self, params, args):
        key = self.key
        run = jex.core.jaxpr_as_fun(jex.core.ClosedJaxpr(key.closed.jaxpr, self.consts))
        if key.differentiated:
            value, g = jax.tree.unflatten(key.out_tree, run(*jax.tree.leaves((params, args))))
        else:
            def forward(p):
                return jax.tree.unflatten(key.out_tree, run(*jax.tree.leaves((p, args))))

            value, g = jax.value_and_grad(forward, has_aux=key.has_aux)(params)
        value, aux = value if key.has_aux else (value, None)
        return jnp.asarray(value).astype(key.sdt), _tree.conj(_tree.cast_like(g, params)), aux

    def tree_flatten(self):
        return self.consts, self.key

    @classmethod
    def tree_unflatten(cls, key, consts):
        return cls(key, consts)
