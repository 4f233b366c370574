"""What every line search shares: the scalar function it sees and what it returns.

A line search sees one scalar function of the step size,

    phi(t) -> (value, slope, grad)      value = f(x + t d), slope = phi'(t) = <grad f(x + t d), d>,

where ``value`` and ``slope`` are scalars in the state's scalar dtype and ``grad``
is an opaque pytree (the gradient at x + t d, plus anything the caller wants
carried along with the accepted point). It never sees the objective, x, d or
the pytree structure. Every search has the same call,

    search(phi, value0, slope0, grad0, stepsize, *, max_steps=None, max_stepsize=inf,
           min_stepsize=0, rounding_stepsize=None, negligible=0, keep_probe=False) -> LineSearchResult

with phi(0) = (value0, slope0, grad0) already known (slope0 < 0 required),
``stepsize`` the first trial and the limits of this call: at most ``max_steps``
evaluations (and never more than the config's own ``max_steps``), no trial
beyond ``max_stepsize`` (a trial at that step with sufficient decrease, where
the search would go further, is accepted), and no trial below ``min_stepsize``
(the caller's "a smaller step would not change x"): a search that would go
below it tries ``min_stepsize`` itself once, then stops, and a first trial below
it is raised to it. ``rounding_stepsize`` (default ``min_stepsize``) is the step
that moves x by a few units in its last place: trials within NEAR times it are
"near x", where f's rounding can hide the change the slopes predict, and a search
whose next trial would fall from above it to below it tries it first (whether phi
rises within x's rounding is what the caller's stopping rule asks).
``negligible`` (default 0: never) is a decrease of f too small to look for (the
caller's rounding level of f): the search stops once its slopes say that phi cannot
fall by more. With c = min over the trials of (phi'(t) - phi'(0)) / t, the flattest
curvature seen, the quadratic with slope phi'(0) and curvature c falls by at most
phi'(0)^2 / (2 c); if c > 0 and that is below ``negligible`` after ``HOPELESS_AFTER``
(4) trials, no further trial is worth making (a trial with c <= 0, as at a saddle, never
ends a search this way). Evaluations are counted exactly (``nfev``). ``keep_probe``: a
search that fails keeps a trial's curvature for the caller (below).

Outcomes (``LineSearchStatus``): SUCCESS, the search's acceptance test held with
sufficient decrease; NOISE, it held through the approximate Wolfe test of Hager
& Zhang (f's change below its rounding: the slopes decided, f did not rise);
DECREASE, the search stopped and returns its best sufficient-decrease trial;
FAILED, no decrease was found and the zero step is returned. ``rising`` reports
the smallest trial with a finite, non-negative slope (with slope0 < 0 a minimiser
of phi lies in (0, rising)) and ``smallest`` the point of the smallest finite
trial, and ``noise`` the largest change of f that the slopes do not explain (by the
trapezoid rule) over trials near x or where f came back exactly phi(0); they tell a
caller how far from x, and how large, a decrease could still be, and how large a
change f's rounding hides. A trial whose value or slope is not finite is outside the
domain and the step is shrunk; a search never returns a step whose value is above
value0. With ``keep_probe`` a FAILED search's ``grad`` is instead the payload of ``probe``,
the last trial whose slope exceeds phi'(0) (t (phi'(t) - phi'(0)) > 0: a curvature pair
from x, ``_probe``), where there is one (``probe``'s t > 0; else grad0); no gradient more
is carried, the loop's slot for the best point's holds it while no decrease is found.
:func:`run` is that shared loop; a search only supplies its update rule
(:class:`LineSearch`).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .. import _tree, _unrolled, _xla
from .._loop import batched
from .._xla import where
from ._acceptance import ACCEPT, ACCEPT_APPROX, REJECT


class LineSearchStatus(enum.IntEnum):
    SUCCESS = 0  # the acceptance test held with sufficient decrease
    NOISE = 1  # the acceptance test held through the approximate Wolfe test (f's change below rounding)
    DECREASE = 2  # stopped; the best sufficient-decrease trial is returned
    FAILED = 3  # no decrease found; the zero step is returned


class LineSearchResult(NamedTuple):
    stepsize: jax.Array  # scalar dtype
    value: jax.Array  # phi(stepsize)
    slope: jax.Array  # phi'(stepsize)
    grad: object  # phi's grad payload at stepsize
    nfev: jax.Array  # int32, evaluations of phi made
    status: jax.Array  # int32, a LineSearchStatus
    rising: jax.Array  # smallest trial with a finite slope >= 0 (+inf if none)
    smallest: jax.Array  # point(t, f, slope) of the smallest trial with finite value and slope (t = +inf if none)
    noise: jax.Array  # the largest change in f that the slopes do not explain, over trials near x or flat
    probe: Any = None  # with keep_probe, point(t, f, slope) of the trial whose payload a FAILED search's grad is


# Trials before ``negligible`` can end a search: a few, so that a step within f's rounding
# that the slopes accept still gets its chances. Float32 runs get out of a saddle where f is
# flat (WOODS, n = 100) and of a badly scaled valley (POWELL's) through such steps; after 2
# or 3 trials they stopped there (``qnjax bench``, float32).
HOPELESS_AFTER = 4

# Trials within this factor of ``rounding_stepsize`` (x moves by a few thousand units in
# its last place) are "near x": there a change in f that the slopes do not explain is noise.
NEAR = 1000


def point(t, f, d):
    """A point of phi: the (3,) array [t, phi(t), phi'(t)] in the scalar dtype.

    Searches keep the points they remember (interval ends, the best trial) in this
    form and update them with one ``jnp.where`` each: XLA compiles each loop-carried
    value into its own kernel, so one array per point compiles faster than three
    scalars (``t, f, d = p`` unpacks one)."""
    return jnp.stack([t, f, d])


class LineSearch:
    """What a search config supplies: ``max_steps`` and

    ``rule(value0, slope0, stepsize, near) -> (rule0, update, stop)``: its initial state (``near``:
    trials up to this step are near x, where f's rounding may hide a change),
    ``update(rule, p, finite) -> (rule, t_next, accept, admissible)`` with ``p`` the
    trial's :func:`point` (``accept`` is REJECT, ACCEPT or ACCEPT_APPROX and ends the
    search at p unless REJECT; an ``admissible`` trial becomes the best point if it is
    the lowest so far), and ``stop(rule, t_next) -> bool``, true when the next trial is
    not worth evaluating (e.g. the interval collapsed). A next trial that is not finite
    and positive also ends the search.
    """

    def search(self, phi, value0, slope0, grad0, stepsize, *, max_steps=None, max_stepsize=jnp.inf,
               min_stepsize=0.0, rounding_stepsize=None, negligible=0.0, fixed_steps=0,
               keep_probe=False) -> LineSearchResult:
        return run(self, phi, value0, slope0, grad0, stepsize, max_steps, max_stepsize, min_stepsize,
                   rounding_stepsize, negligible, fixed_steps, keep_probe)


class _Loop(NamedTuple):
    """The loop's state, packed (XLA compiles each loop-carried value that changes into
    its own kernel): ``counts`` = [k, accepted], ``scalars`` = [t, rising, noise, *best,
    *smallest, flattest, *probe]."""

    counts: jax.Array  # int32 (2,): evaluations made, the verdict on the last trial
    scalars: jax.Array  # (10,) scalar dtype, (13,) with keep_probe
    rule: Any  # the search's own state
    grad: Any  # phi's grad payload at best

    k = property(lambda self: self.counts[0])
    accepted = property(lambda self: self.counts[1])
    t = property(lambda self: self.scalars[0])  # next trial
    rising = property(lambda self: self.scalars[1])  # smallest trial with a finite slope >= 0
    noise = property(lambda self: self.scalars[2])  # largest unexplained change in f near x
    best = property(lambda self: self.scalars[3:6])  # point: the lowest admissible trial, or the accepted one
    smallest = property(lambda self: self.scalars[6:9])  # point of the smallest finite trial
    flattest = property(lambda self: self.scalars[9])  # least (phi'(t) - phi'(0)) / t over finite trials (+inf: none)
    probe = property(lambda self: self.scalars[10:13])  # point whose payload ``grad`` holds while best is phi(0)


def _loop(k, t, accepted, rule, best, grad, rising, smallest, noise, flattest, probe=None):
    probe = () if probe is None else (probe,)  # (only with keep_probe)
    return _Loop(jnp.stack([k, accepted]).astype(jnp.int32),
                 jnp.concatenate([jnp.stack([t, rising, noise]), best, smallest, flattest[None], *probe]), rule, grad)


def run(search, phi, value0, slope0, grad0, stepsize, max_steps=None, max_stepsize=jnp.inf,
        min_stepsize=0.0, rounding_stepsize=None, negligible=0.0, fixed_steps=0, keep_probe=False) -> LineSearchResult:
    """The loop every search shares: one evaluation of phi per iteration, exact ``nfev``.

    ``fixed_steps`` (a Python int) > 0: the loop has that static trip count, each trial
    under ``lax.cond`` (a trial not needed evaluates nothing), and at most that many
    trials; reverse-mode differentiation can then go through the search (a
    ``while_loop`` cannot be transposed). The trials and the result are the same.

    ``best`` starts as the zero step (phi(0)) and is replaced only by an evaluated
    trial, so at the end it is the accepted trial, the best decrease point, or the
    zero step: the outcomes of the module docstring."""
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    value0, slope0 = as_s(value0), as_s(slope0)
    t_max, t_min = as_s(max_stepsize), as_s(min_stepsize)
    rounding = t_min if rounding_stepsize is None else as_s(rounding_stepsize)
    near = NEAR * rounding
    negligible = as_s(negligible)
    if fixed_steps:  # derivatives go through this search: not through its rounding levels
        t_max, t_min, near, negligible, rounding = (jax.lax.stop_gradient(v)
                                                    for v in (t_max, t_min, near, negligible, rounding))
    limit = jnp.asarray(search.max_steps, jnp.int32)
    if max_steps is not None:
        limit = jnp.minimum(limit, jnp.asarray(max_steps, jnp.int32))
    rule0, update, stop = search.rule(value0, slope0, as_s(stepsize), near)
    start_ok = (slope0 < 0) & jnp.isfinite(value0)
    init = _loop(
        k=jnp.zeros((), jnp.int32),
        t=where(start_ok, jnp.minimum(jnp.maximum(as_s(stepsize), t_min), t_max), jnp.nan),  # NaN: no trial
        accepted=jnp.asarray(REJECT, jnp.int32),
        rule=rule0,
        best=point(jnp.zeros((), sdt), value0, slope0),
        grad=grad0,
        rising=jnp.full((), jnp.inf, sdt),
        smallest=point(jnp.full((), jnp.inf, sdt), value0, slope0),
        noise=jnp.zeros((), sdt),
        flattest=jnp.full((), jnp.inf, sdt),
        probe=point(jnp.zeros((), sdt), value0, slope0) if keep_probe else None,
    )

    if fixed_steps:  # derivatives go through this search (qnjax._unrolled)
        # Everything the update depends on is an argument (a custom_jvp must not close over tracers).
        rebuilt = _unrolled.forward_derivative(
            lambda cfg, r, p, finite, v0, s0, t0, nr: cfg.rule(v0, s0, t0, nr)[1](r, p, finite))
        start = as_s(stepsize)
        update = lambda r, p, finite: rebuilt(search, r, p, finite, value0, slope0, start, near)  # noqa: E731

    def trial(c):
        """The next trial: the new loop state (its ``grad`` still the kept one), whether the
        trial is kept, and its payload."""
        f, d, g = phi(c.t)
        f, d = as_s(f), as_s(d)
        finite = jnp.isfinite(f) & jnp.isfinite(d)
        p = point(c.t, f, d)
        rule, t_next, accept, admissible = update(c.rule, p, finite)
        t_next, rule = _xla.once(c.k < 0, (as_s(t_next), rule))  # (k counts evaluations: k < 0 never holds)
        # At the largest step with a decrease, a search that wants to go further stops there.
        at_max = (accept == REJECT) & admissible & (c.t >= t_max) & (t_next >= c.t)
        accept = where(at_max, ACCEPT, accept).astype(jnp.int32)
        keep = (accept != REJECT) | (admissible & finite & (f < c.best[1]))
        best = where(keep, p, c.best)
        rising = where(finite & (d >= 0), jnp.minimum(c.rising, c.t), c.rising)
        smallest = where(finite & (c.t < c.smallest[0]), p, c.smallest)
        # The trapezoid rule on the slopes predicts f(t) - f(0) = t (phi'(0) + phi'(t)) / 2.
        # Near x, or wherever f came back exactly phi(0) (the slopes' change hidden by f's
        # rounding: a sum of large terms that cancel can be flat at its floor far from x).
        unexplained = jnp.abs(f - value0 - c.t * (slope0 + d) / 2)
        noise = where(finite & ((c.t <= near) | (f == value0)), jnp.maximum(c.noise, unexplained), c.noise)
        flattest = where(finite, jnp.minimum(c.flattest, (d - slope0) / c.t), c.flattest)
        # (keep_probe: while best is phi(0), the payload slot holds the last trial with curvature)
        probe = finite & ~keep & (c.best[0] == 0) & (d > slope0) if keep_probe else None
        t_next = jnp.minimum(t_next, t_max)
        # A trial below min_stepsize is not evaluated; the step min_stepsize itself is, once. Nor is one
        # below the rounding step before that step (no trial between: it says whether phi rises within
        # x's rounding, ``_verdict.at_precision``; a first trial far beyond it interpolates past it).
        t_next = where((t_next < rounding) & (c.t > rounding), rounding, t_next)
        t_next = where((t_next < t_min) & (c.t > t_min), t_min, t_next)
        if keep_probe:
            probe, keep = where(probe, p, c.probe), keep | probe
        return _loop(c.k + 1, t_next, accept, rule, best, c.grad, rising, smallest, noise, flattest, probe), keep, g

    def take(keep, latest, c):
        return c._replace(grad=_tree.select(keep, latest, c.grad))

    def body(c):
        new, keep, g = trial(c)
        return take(keep, g, new)

    def proceed(c):  # the next trial is evaluated (tested here, so the body's t_next has one use)
        usable = jnp.isfinite(c.t) & (c.t > 0) & (c.t >= t_min)
        # phi'(0)^2 / (2 c) <= negligible, c the flattest curvature seen (module docstring)
        hopeless = (c.k >= HOPELESS_AFTER) & (c.flattest > 0) & jnp.isfinite(c.flattest)
        hopeless = hopeless & (slope0 * slope0 <= 2 * negligible * c.flattest)
        return (c.accepted == REJECT) & (c.k < limit) & usable & ~hopeless & ~stop(c.rule, c.t)

    if fixed_steps:  # the iterations' loop, at most fixed_steps trials, checkpointed per trial
        c = _unrolled.loop(proceed, body, init, fixed_steps, blocks=False)
    elif not batched((value0, slope0, grad0)):
        # (one gradient carried and selected in place: the deferred form below would carry a
        # second one, which XLA copies in and out of the loop at every trial; at n = 1e4 in
        # float32 this loop made an iteration about a fifth faster)
        c = jax.lax.while_loop(proceed, body, init)
    else:
        # Under jax.vmap the test is carried, computed where the state it tests is made: the
        # loop selects every carried value with it, and XLA would compute it again inside each
        # of those kernels, for each entry of the gradient it selects.
        # Likewise the kept gradient: each trial's payload is carried with whether it is kept,
        # and taken at the start of the next trial (or after the loop), from carried values.
        def deferred(carry):
            c, _, keep, latest = carry
            new, keep, g = trial(take(keep, latest, c))
            return new, proceed(new), keep, g

        c, _, keep, latest = jax.lax.while_loop(lambda cg: cg[1], deferred,
                                                (init, proceed(init), jnp.asarray(False), init.grad))
        c = take(keep, latest, c)
    t, f, d = c.best
    status = where(
        c.accepted == ACCEPT, LineSearchStatus.SUCCESS,
        where(c.accepted == ACCEPT_APPROX, LineSearchStatus.NOISE,
                  where(t > 0, LineSearchStatus.DECREASE, LineSearchStatus.FAILED)),
    ).astype(jnp.int32)
    return LineSearchResult(stepsize=t, value=f, slope=d, grad=c.grad, nfev=c.k, status=status, rising=c.rising,
                            smallest=c.smallest, noise=c.noise, probe=c.probe if keep_probe else None)
