"""One L-BFGS iteration, shared by the Optax face and :func:`qnjax.minimize`.

Given x_k, f_k, the gradient g_k and the memory (``_memory``):

1. direction d = -H_k g_k by the two-loop recursion (N&W Alg. 7.4);
2. first trial step t = 1 when the memory holds a pair, else t = 1 / ||g_k||_2,
   a first step of unit length in x (as scipy's L-BFGS-B). This makes the
   iterates invariant to multiplying f by a constant (H_0 = gamma I scales
   with 1/f too), where a capped ``min(1, 1/||g||)`` would not be;
3. a line search along phi(t) = f(x_k + t d) (any object with ``search``);
4. if the search found no decrease (or d is not a descent direction), x stays x_k
   (t = 0); if the memory held pairs, it is dropped, so the next iteration
   searches along steepest descent -g_k (``retry``); if that search fails too,
   the failure is final (``failed``) and the caller reports it;
5. x_{k+1} = x_k + t d, and the pair s = x_{k+1} - x_k, y = g_{k+1} - g_k goes to
   the memory under the curvature guard.

The gradient payload ``grad`` carried through the line search is the raw
``jax.grad`` output (plus aux), so faces can store it as is; the real-space
gradient (complex leaves conjugated, see ``_tree``) is used for the algebra.
The retry is the next iteration rather than a loop inside this one: one line
search per iteration keeps the compiled program small.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _memory, _tree
from .linesearch import LineSearchStatus


class StepResult(NamedTuple):
    params: object
    updates: object  # params - old params, leaf by leaf, as optax.apply_updates adds
    value: jax.Array
    payload: object  # (raw grad, aux) at params
    memory: _memory.Memory
    stepsize: jax.Array
    nfev: jax.Array  # int32, evaluations made by this iteration
    retry: jax.Array  # bool: no decrease with the memory; dropped, params unchanged
    failed: jax.Array  # bool: no decrease along steepest descent either; params unchanged
    searched: jax.Array  # int32 LineSearchStatus of the last search (SUCCESS: its test was met)


def lbfgs_step(
    linesearch,
    memory: _memory.Memory,
    params,
    value,
    payload,
    value_and_grad: Callable,
    direction_grad=None,
) -> StepResult:
    """One iteration (module docstring).

    ``value_and_grad(params) -> (value in the scalar dtype, payload)`` where
    ``payload[0]`` is the raw gradient; ``payload`` is the same at ``params``.
    ``direction_grad`` (default: the gradient) is what the two-loop multiplies:
    the Optax face passes its incoming ``updates`` there.
    """
    sdt = memory.rho.dtype
    g = _tree.real_grad(payload[0])
    q = g if direction_grad is None else _tree.real_grad(direction_grad)
    d = _memory.two_loop(memory, q, scale=-1.0)

    def phi(t):
        # Barriers: materialise u and x in the leaves' dtypes, so no FMA or excess
        # precision makes the evaluated point differ from params + updates.
        u = jax.lax.optimization_barrier(_tree.step_update(t, d, params))
        x = jax.lax.optimization_barrier(_tree.add(params, u))
        f, p = value_and_grad(x)
        return f, _tree.inner(_tree.real_grad(p[0]), d, sdt), p

    empty = _memory.is_empty(memory)
    t0 = jnp.where(empty, 1 / jnp.sqrt(_tree.inner(q, q, sdt)), jnp.ones((), sdt))
    res = linesearch.search(phi, value, _tree.inner(g, d, sdt), payload, t0)

    no_decrease = res.status == LineSearchStatus.FAILED
    u = _tree.step_update(res.stepsize, d, params)
    u = jax.tree.map(lambda a: jnp.where(no_decrease, jnp.zeros_like(a), a), u)
    y = _tree.sub(_tree.real_grad(res.grad[0]), g)
    memory, _ = _memory.push(_memory.clear(memory, no_decrease), u, y, allow=~no_decrease)
    return StepResult(
        params=jax.tree.map(lambda a, b: jnp.where(no_decrease, b, a), _tree.add(params, u), params),
        updates=u,
        value=res.value,
        payload=res.grad,
        memory=memory,
        stepsize=res.stepsize,
        nfev=res.nfev,
        retry=no_decrease & ~empty,
        failed=no_decrease & empty,
        searched=res.status,
    )
