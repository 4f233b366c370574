"""The Optax face: ``qnjax.lbfgs``, a drop-in for ``optax.lbfgs``.

``lbfgs(...)`` is an ``optax.GradientTransformationExtraArgs`` whose update is
one iteration of ``_step`` (two-loop direction, line search, memory update):

    value, grad = qnjax.value_and_grad_from_state(fn)(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    params = optax.apply_updates(params, updates)

The accepted point's value and gradient are kept in the state (fields ``value``
and ``grad``, the only ones so named), so the next iteration costs no extra
evaluation and ``optax.value_and_grad_from_state`` works on the state too.
``value`` starts at +inf, meaning "not evaluated yet".

Type stability by construction: ``init`` fixes every leaf's shape, dtype and
weak_type (none weak; counters int32; scalars in the scalar dtype of ``_tree``)
and ``update`` builds each leaf in exactly that type, for any float or complex
leaves, mixed pytrees and a loss of another dtype (cast to the scalar dtype).

``status`` (a :class:`qnjax.Status` code) is RUNNING after an update that moved,
or after one whose quasi-Newton direction gave no decrease (its updates are
zero and the memory is dropped, so the next update searches along steepest
descent); GTOL when the given gradient is exactly zero; LINESEARCH_FAILED
when even steepest descent gave no decrease; NONFINITE when the given value
or gradient is not finite. In the last three the updates are zero.
``extra_args`` are passed on to ``value_fn``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from . import _memory, _objective, _tree
from ._status import Status, code
from ._step import lbfgs_step
from .linesearch import MoreThuente


class LbfgsState(NamedTuple):
    count: jax.Array  # int32: updates made
    value: jax.Array  # scalar dtype: f at the current params (+inf before the first evaluation)
    grad: object  # raw gradient at the current params, in the params' dtypes
    memory: _memory.Memory
    stepsize: jax.Array  # scalar dtype: last accepted step size
    nfev: jax.Array  # int32: evaluations made by the line searches so far
    status: jax.Array  # int32: a Status code


def lbfgs(memory_size: int = 10, linesearch=None, scalar_dtype=None) -> optax.GradientTransformationExtraArgs:
    """L-BFGS with a line search, as an Optax transformation (module docstring).

    Args:
      memory_size: number m of (s, y) pairs kept.
      linesearch: a line-search config (default ``qnjax.linesearch.MoreThuente()``, L-BFGS-B's).
      scalar_dtype: dtype of values, step sizes and inner products; default the
        widest real float among the params, at least float32.
    """
    if int(memory_size) < 1:
        raise ValueError(f"memory_size must be >= 1, got {memory_size}")
    linesearch = MoreThuente() if linesearch is None else linesearch

    def init_fn(params):
        _tree.check_params(params)
        sdt = _tree.scalar_dtype(params, scalar_dtype)
        return LbfgsState(
            count=jnp.zeros((), jnp.int32),
            value=jnp.full((), jnp.inf, sdt),
            grad=_tree.zeros_like(params),
            memory=_memory.init(params, int(memory_size), sdt),
            stepsize=jnp.zeros((), sdt),
            nfev=jnp.zeros((), jnp.int32),
            status=code(Status.RUNNING),
        )

    def update_fn(updates, state, params, *, value, grad=None, value_fn, **extra_args):
        if params is None:
            raise ValueError("qnjax.lbfgs needs params (update(grad, state, params, value=..., value_fn=...))")
        sdt = state.value.dtype
        grad = updates if grad is None else grad
        grad = _tree.cast_like(grad, state.grad)
        _objective.check_loss(value)
        value = jnp.asarray(value).astype(sdt)
        evaluate = _objective.value_and_grad(value_fn, state.grad, sdt)
        value_and_grad = lambda x: evaluate(x, **extra_args)  # noqa: E731

        finite = jnp.isfinite(value) & _tree.all_finite(grad) & _tree.all_finite(updates)
        step = lbfgs_step(linesearch, state.memory, params, value, (grad, None), value_and_grad, updates)
        stationary = _tree.norm_inf(grad, sdt) == 0
        status = jnp.where(step.failed, code(Status.LINESEARCH_FAILED), code(Status.RUNNING))
        status = jnp.where(stationary, code(Status.GTOL), status)
        status = jnp.where(finite, status, code(Status.NONFINITE))
        new_state = LbfgsState(
            count=state.count + 1,
            value=step.value,
            grad=step.payload[0],
            memory=step.memory,
            stepsize=step.stepsize,
            nfev=state.nfev + step.nfev,
            status=status,
        )
        return step.updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def value_and_grad_from_state(value_fn):
    """Like ``optax.value_and_grad_from_state``, for any state holding one ``value``
    and one ``grad`` field: returns the stored pair when it is set, else evaluates
    ``value_fn``. The evaluated loss and gradient are cast to the state's types,
    so mixed-precision params and a loss dtype other than the params' work."""

    def wrapped(params, *args, state, **kwargs):
        value = otu.tree_get(state, "value")
        grad = otu.tree_get(state, "grad")
        if value is None or grad is None:
            raise ValueError("the state has no 'value' and 'grad' fields (expected exactly one of each)")

        def evaluate():
            f, (g, _) = _objective.value_and_grad(value_fn, grad, value.dtype)(params, *args, **kwargs)
            return f, g

        return jax.lax.cond(jnp.isinf(value), evaluate, lambda: (value, grad))

    return wrapped
