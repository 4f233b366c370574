"""What every line search shares: the scalar function it sees and what it returns.

A line search sees one scalar function of the step size,

    phi(t) -> (value, slope, grad)      value = f(x + t d), slope = phi'(t) = <grad f(x + t d), d>,

where ``value`` and ``slope`` are scalars in the state's scalar dtype and ``grad``
is an opaque pytree (the gradient at x + t d, plus anything the caller wants
carried along with the accepted point). It never sees the objective, x, d or
the pytree structure. Every search has the same call,

    search(phi, value0, slope0, grad0, stepsize) -> LineSearchResult

with phi(0) = (value0, slope0, grad0) already known (slope0 < 0 required) and
``stepsize`` the first trial. Evaluations are counted exactly (``nfev``).

Failure policy, shared by all searches: a trial whose value or slope is not
finite is outside the domain and the step is shrunk; a search that runs out of
steps returns the best sufficient-decrease point it saw (``DECREASE``), or the
zero step with phi(0)'s value and grad (``FAILED``); it never returns a step
whose value is above value0.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp


class LineSearchStatus(enum.IntEnum):
    SUCCESS = 0  # the search's acceptance test (e.g. strong Wolfe) holds
    DECREASE = 1  # out of steps; best sufficient-decrease point returned
    FAILED = 2  # no decrease found; zero step returned


class LineSearchResult(NamedTuple):
    stepsize: jax.Array  # scalar dtype
    value: jax.Array  # phi(stepsize)
    slope: jax.Array  # phi'(stepsize)
    grad: object  # phi's grad payload at stepsize
    nfev: jax.Array  # int32, evaluations of phi made
    status: jax.Array  # int32, a LineSearchStatus


def finish(success, best_t, best_f, best_d, best_grad, value0, slope0, grad0, nfev):
    """The common exit: success, else best decrease point, else the zero step."""
    moved = best_t > 0
    status = jnp.where(
        success, LineSearchStatus.SUCCESS, jnp.where(moved, LineSearchStatus.DECREASE, LineSearchStatus.FAILED)
    ).astype(jnp.int32)
    keep = success | moved
    pick = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
    return LineSearchResult(
        stepsize=pick(best_t, jnp.zeros_like(best_t)),
        value=pick(best_f, value0),
        slope=pick(best_d, slope0),
        grad=jax.tree.map(pick, best_grad, grad0),
        nfev=nfev.astype(jnp.int32),
        status=status,
    )
