"""The Optax face's update without a line search (``qnjax.lbfgs(linesearch=None)``).

optax's ``lbfgs(linesearch=None)`` means no line search: ``value_fn`` is never called and
the update is the direction itself, u = scale d with d = -H q (``scale`` the learning
rate, 1 by default), except while the memory holds no pair, where H = I has no scale and
the first update is shortened to unit length, u = d min(1, 1 / ||q||_2) (optax's
``scale_init_precond``). Nothing is evaluated, so the state's value is unknown (+inf),
x always moves, the memory records u as the tentative step (the next update's q gives
its y), and the only status is GTOL on the gradient given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _memory_update, _tree, _verdict
from ._status import Status, decide
from ._xla import where


def step(solver, state, memory, q, d, empty, held, scale):
    """(u, new state, None) for ``LBFGS.step_with_search`` with ``solver.linesearch`` None:
    ``memory`` after the pair was pushed and the direction d = -scale H q taken, ``empty``
    whether it holds no pair, ``held`` the batch's mask of the memory's writes."""
    params, grad = state.params, state.grad
    sdt = state.value.dtype
    norm = jnp.sqrt(_tree.inner(q, q, sdt))
    if _tree.guards_range(sdt):  # (||q||^2 overflows beyond 1.8e19 in float32)
        def scaled_norm():
            scaled, factor = _tree.scaled_to_unit(q, sdt)
            return jnp.sqrt(_tree.inner(scaled, scaled, sdt)) / factor

        norm = jax.lax.cond(jnp.isfinite(norm), lambda: norm, scaled_norm)
    t = where(empty & solver.scale_init_precond, jnp.minimum(1, 1 / jnp.maximum(norm, jnp.finfo(sdt).tiny)), 1)
    u = _tree.scale(t.astype(sdt), d, params)
    memory = _memory_update.record_step(memory, u, -jnp.asarray(scale).astype(sdt) * t, held)
    new = state._replace(params=_tree.add(params, u), value=jnp.full((), jnp.inf, sdt), memory=memory,
                         stepsize=t.astype(sdt), count=state.count + 1)
    gtol = _verdict.tolerance(solver.gtol, sdt)
    return u, new._replace(status=decide([(solver.stationarity(params, grad) <= gtol, Status.GTOL)])), None
