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
whose value is above value0. :func:`run` is that shared loop; a search only
supplies its update rule (:class:`LineSearch`).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

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


def wolfe_tests(value0, slope0, c1, c2, approx_eps):
    """The acceptance tests of a trial, ``tests(t, f, d, finite) -> (decrease, curvature)``,
    and c1 phi'(0) (Moré-Thuente's psi needs it); returns ``(tests, c1 phi'(0))``.

    ``decrease``: sufficient decrease phi(t) <= phi(0) + c1 t phi'(0) (N&W eq. 3.4), or,
    once the predicted decrease c1 t |phi'(0)| is below ``approx_eps * |phi(0)|``
    (rounding noise), the approximate Wolfe test of Hager & Zhang (2005, Sec. 4):
    phi(t) <= phi(0) and phi'(t) <= (2 c1 - 1) phi'(0); never true for a higher value
    or a non-finite trial. ``curvature``: |phi'(t)| <= c2 |phi'(0)| (N&W eq. 3.7b).

    The levels that do not depend on t are computed once, as one array (one compiled
    kernel rather than one per level)."""
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    c1 = as_s(c1)
    factors = jnp.stack([c1, 2 * c1 - 1, -as_s(c2), as_s(approx_eps)])
    levels = factors * jnp.stack([slope0, slope0, slope0, jnp.abs(value0)])

    def tests(t, f, d, finite):
        slope_level, curvature_level, noise = levels[1], levels[2], levels[3]
        predicted = c1 * t * slope0
        armijo = f <= value0 + predicted
        approx = (-predicted <= noise) & (f <= value0) & (d <= slope_level)
        return finite & (armijo | approx), jnp.abs(d) <= curvature_level

    return tests, levels[0]


def point(t, f, d):
    """A point of phi: the (3,) array [t, phi(t), phi'(t)] in the scalar dtype.

    Searches keep the points they remember (interval ends, the best trial) in this
    form and update them with one ``jnp.where`` each: XLA compiles each loop-carried
    value into its own kernel, so one array per point compiles faster than three
    scalars (``t, f, d = p`` unpacks one)."""
    return jnp.stack([t, f, d])


class LineSearch:
    """What a search config supplies: ``max_steps`` and

    ``rule(value0, slope0, stepsize) -> (rule0, update, stop)``: its initial state,
    ``update(rule, p, finite) -> (rule, t_next, accept, admissible)`` with ``p`` the
    trial's :func:`point` (``accept`` ends the search with success at p; an
    ``admissible`` trial becomes the best point if it is the lowest so far), and
    ``stop(rule, t_next) -> bool``, true when the next trial is not worth evaluating
    (e.g. the interval collapsed). A next trial that is not finite and positive
    also ends the search.
    """

    def search(self, phi, value0, slope0, grad0, stepsize) -> LineSearchResult:
        return run(self, phi, value0, slope0, grad0, stepsize)


class _Loop(NamedTuple):
    k: jax.Array  # evaluations made
    t: jax.Array  # next trial
    accepted: jax.Array  # bool: the last trial met the acceptance test
    rule: Any  # the search's own state
    best: jax.Array  # point(t, f, slope): the lowest admissible trial, or the accepted one
    grad: Any  # phi's grad payload at best


def run(search, phi, value0, slope0, grad0, stepsize) -> LineSearchResult:
    """The loop every search shares: one evaluation of phi per iteration, exact ``nfev``.

    ``best`` starts as the zero step (phi(0)) and is replaced only by an evaluated
    trial, so at the end it is the accepted trial, the best decrease point, or the
    zero step: the three outcomes of the module docstring."""
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    value0, slope0, stepsize = as_s(value0), as_s(slope0), as_s(stepsize)
    rule0, update, stop = search.rule(value0, slope0, stepsize)
    start_ok = (slope0 < 0) & jnp.isfinite(value0)
    init = _Loop(
        k=jnp.zeros((), jnp.int32),
        t=jnp.where(start_ok, stepsize, jnp.nan),  # a NaN trial ends the loop before it starts
        accepted=jnp.asarray(False),
        rule=rule0,
        best=point(jnp.zeros((), sdt), value0, slope0),
        grad=grad0,
    )

    def body(c):
        f, d, g = phi(c.t)
        f, d = as_s(f), as_s(d)
        finite = jnp.isfinite(f) & jnp.isfinite(d)
        p = point(c.t, f, d)
        rule, t_next, accept, admissible = update(c.rule, p, finite)
        keep = accept | (admissible & finite & (f < c.best[1]))
        best = jnp.where(keep, p, c.best)
        g = jax.tree.map(lambda n, o: jnp.where(keep, n, o), g, c.grad)
        return _Loop(c.k + 1, as_s(t_next), accept, rule, best, g)

    def proceed(c):  # the next trial is evaluated (tested here, so the body's t_next has one use)
        usable = jnp.isfinite(c.t) & (c.t > 0)
        return ~c.accepted & (c.k < search.max_steps) & usable & ~stop(c.rule, c.t)

    c = jax.lax.while_loop(proceed, body, init)
    t, f, d = c.best
    status = jnp.where(
        c.accepted, LineSearchStatus.SUCCESS, jnp.where(t > 0, LineSearchStatus.DECREASE, LineSearchStatus.FAILED)
    ).astype(jnp.int32)
    return LineSearchResult(stepsize=t, value=f, slope=d, grad=c.grad, nfev=c.k, status=status)
