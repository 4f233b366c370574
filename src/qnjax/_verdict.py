"""What one line search's result means for the iteration: a step taken, a tie, a
retry, or a stop, and with which status.

After the search along d from x (phi(t) = f(x + t d), phi'(0) = ``slope0``):

* **Rounding.** f's *floor* at x is a few units in its last place (``floor``); its
  *noise* is the floor, or more where the search's trials showed more (``noise``: the
  part of their change in f that their slopes do not explain). A search that ran out
  of trials with a decrease within the noise found nothing (it only chases rounding)
  and counts as failed.
* **Ties** (``judge``). A step that does not lower f (the approximate Wolfe test let it
  through, Hager & Zhang 2005), or, right after a search that moved nothing, lowers it by
  no more than the noise its own search measured (``res.noise``; after a step, a stiff f's
  unexplained changes are its curvature), lets the slopes lead through a region where f is flat
  at its rounding: a plateau, a saddle in float32, or f = 1e6 + a sum of squares,
  whose rounding hides what the exact gradient still sees. Ties wander at a minimum,
  where the gradient is its own rounding noise, so few are taken in a row: MAX_TIES,
  or, below float64, TIE_PATIENCE while the decrease the quasi-Newton model promises
  along d, -phi'(0) t0 / 2, is *resolved* (above eps^RESOLVED times its value at the
  run's first tie: it measures the squared distance to the model's minimiser, which
  has then fallen by eps^0.75, 6.6e-6 in float32), the count restarting each time that
  promise falls to TIE_FALL times its value where the count began (progress: at a
  minimum, where the slopes are rounding, it does not keep falling). Float64 keeps
  MAX_TIES: its rounding hides about 1e-16 of f, where x is already within about 1e-8
  of the model's minimiser, and its runs keep scipy's steps.
* **Stationary to working precision** (``at_precision``), after a failed search along
  -g: a minimiser along -g lies within rounding of x, or the largest decrease along -g
  is within twice f's noise.
* **At the origin** (``_origin``): x and f are 0 to working precision on the scale of the start,
  and the run stops PRECISION without a search.
* **The status** (``rules``): GTOL, PRECISION at the origin, UNBOUNDED, MAXFEV (the search along -g cut short by
  ``maxfev``), PRECISION, LINESEARCH_FAILED, FTOL, then the budgets (``spent``), the first true
  wins (``_status.decide``); before the first iteration, ``start_rules``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _bounds, _tree, _xla
from ._status import Status
from ._xla import where
from .linesearch import LineSearchStatus

# A step moving x by at most this many units in the last place counts as no step at all
# (``rounding_ulps``: where x is stored in the scalar dtype).
ROUNDING_ULPS = 8
# Steps in a row that move x without lowering f (ties): MAX_TIES while the decrease the model
# promises is not resolved, TIE_PATIENCE while it is but has not fallen to TIE_FALL times its
# value where the count began (then the count restarts).
MAX_TIES = 2
TIE_PATIENCE = 10
TIE_FALL = 0.7
# UNBOUNDED: a failed search where f is at most -(the scalar dtype's largest value) / this.
UNBOUNDED_MARGIN = 2.0**10
# Resolved: the promise above eps^RESOLVED times its value at the run's first tie.
RESOLVED = 1.5


def rounding_ulps(params, sdt, fdt=None) -> int:
    """ROUNDING_ULPS where no leaf of ``params`` is narrower than the scalar dtype ``sdt`` (fewer
    mantissa bits); 1 where one is (bfloat16 or float16 leaves of a float32 f): a unit in such a leaf's last
    place changes f far beyond f's rounding, and a step of a few of them is a step (bfloat16
    Rosenbrock had stopped PRECISION at f = 0.027, its Newton step moving x by 6 units). So too
    where f is (``fdt``: :func:`value_dtype`)."""
    return 1 if has_narrower(params, sdt, fdt) else ROUNDING_ULPS


def has_narrower(params, sdt, fdt=None) -> bool:
    """Whether a leaf of ``params``, or f (``fdt``, :func:`value_dtype`), is :func:`narrower` than the
    scalar dtype ``sdt`` (static)."""
    return fdt is not None or any(narrower(a, sdt) for a in jax.tree.leaves(params))


def value_dtype(value, sdt):
    """The dtype ``fun`` returns f in (``value``, an array or its abstract value), where it is narrower
    than the scalar dtype ``sdt`` (float64 x, f computed in float32), else None (static): the solver's
    ``value_dtype``. Such an f's rounding is its dtype's (:func:`floor`), and so is x's as f sees it
    (``_tree.ulp_stepsizes``): runs at f's minimum had ended LINESEARCH_FAILED, every trial within the
    rounding of x that f sees (16 of 24 float32 least-squares fits of float64 x, in each face)."""
    dtype = jnp.dtype(value.dtype if hasattr(value, "dtype") else jnp.result_type(value))
    real = jnp.issubdtype(dtype, jnp.floating)
    return dtype if real and narrower(dtype, sdt) else None


def narrower(leaf, sdt) -> bool:
    """Whether ``leaf`` (or a dtype) is stored with fewer mantissa bits than the scalar dtype ``sdt``
    (static; a complex leaf's parts are its real dtype's)."""
    return jnp.finfo(_tree.dtype_of(leaf)).nmant < jnp.finfo(sdt).nmant


def floor(value, scale=1, fdt=None):
    """A few units in the last place of f at ``value``: the least change rounding can hide. With
    ``scale`` (f's power of two, ``_scale``: ``value`` is scale f) no less than scale times the
    smallest normal number, below which f itself is flushed to 0. Of f's own dtype where ``fun``
    returns it narrower than ``value``'s (``fdt``: :func:`value_dtype`)."""
    sdt = value.dtype
    info = jnp.finfo(sdt if fdt is None else fdt)
    tiny = jnp.asarray(info.tiny, sdt) * jnp.maximum(jnp.asarray(scale, sdt), 1)
    return ROUNDING_ULPS * jnp.maximum(jnp.asarray(info.eps, sdt) * jnp.abs(value), tiny)


def noise(res, floor):
    """The change in f that rounding can hide at x: ``floor`` (``floor`` of f at x), or more
    where the search's trials showed more (``res.noise``: the part of their change in f that
    their slopes do not explain, at trials near x or where f came back exactly unchanged)."""
    return jnp.maximum(floor, res.noise)


def at_precision(res, slope0, noise, t_round, t_model, value0, narrow=False):
    """After a search along -g (phi(t) = f(x - t g), phi'(0) = ``slope0``) that found no
    decrease, or one within the noise (then ``res`` is at its best trial): is x stationary to
    working precision? Yes if a minimiser of phi lies within rounding of x (f rises, with a
    non-negative slope, at the step t_round that moves x by a few units in the last place),
    or if the largest decrease along -g is within twice f's rounding noise. The decrease is
    estimated from slopes: phi'(0)^2 / 2c with the curvature c = (phi'(t) - phi'(0)) / t at
    the smallest trial t, and at most |phi'(0)| t_r / 2 with t_r the smallest trial whose
    slope is not negative or the step ``t_model`` that minimises the quasi-Newton model along
    -g (1 once the memory has given H0 = gamma I a curvature scale: the model's decrease
    g^T H0 g / 2). ``noise`` is f's rounding noise at x (:func:`noise`).

    The curvature is phi's near 0 only where phi grows as a quadratic out to the smallest
    trial: its rise phi(t) - phi(0) (``value0`` = phi(0)) is at least half the trapezoid
    (phi'(0) + phi'(t)) t / 2 that a quadratic's equals (t^k gives 2 / k of it), or within
    the noise. Where phi grows faster the secant measures that growth, not phi near 0: from
    10 times Chebyquad's start (n = 10; f a polynomial of degree 20) with bounds of +-1e30,
    scipy's first trial, the step to P(x - g), lay 10^29 times beyond phi's minimiser, the
    search ended after 30 trials at t = 1e-22 (rise a tenth of the trapezoid), and the estimate
    2e-73 claimed PRECISION at f = 2.7e28, max |g| = 4.4e28; there only the slopes' bound holds.

    ``narrow`` (static: a leaf, or f, narrower than the scalar dtype, :func:`has_narrower`; then the
    Newton check, ``_rescue``, vets every PRECISION stop): x is also within rounding where the model's
    minimiser along -g, ``t_model``, is within ``t_round``, the coarsest leaves' rounding step. Trials
    below it move the finer leaves only, or nothing f sees: no trial had reached it, and runs at their
    minimum ended LINESEARCH_FAILED (1 in 6 of a quadratic with float32 beside float64 leaves)."""
    in_x = res.rising <= 1.01 * t_round
    if narrow:  # (the model's minimiser within the coarse leaves' rounding: ``narrow``, docstring above)
        in_x = in_x | (t_model <= t_round)
    t, f_t, d = res.smallest
    curvature = (d - slope0) / t
    quadratic = f_t - value0 + 2 * noise >= (slope0 + d) * t / 4
    decrease = where((curvature > 0) & quadratic, slope0 * slope0 / (2 * curvature), jnp.inf)
    decrease = jnp.minimum(decrease, -slope0 * jnp.minimum(res.rising, t_model) / 2)
    in_f = decrease <= 2 * noise  # the decrease is itself an upper bound
    return in_x | in_f


def tolerance(value, sdt):
    """A solver's tolerance (``gtol``, ``ftol``, ``fatol``) in the scalar dtype, 0 (off) where None."""
    return jnp.asarray(0 if value is None else value).astype(sdt)


class Judged(NamedTuple):
    """A search's result judged (:func:`judge`)."""

    moved: Any  # bool: x moves to the search's point (else x stays: a retry or a stop)
    tie: Any  # bool: the search's point does not lower f
    ties: Any  # int32: the ties in a row before this step, after a restart of the count
    promised: Any  # the model's promised decrease along d, -phi'(0) t0 / 2
    noise: Any  # f's rounding noise at x (:func:`noise`)


def judge(state, res, slope0, t0, floor) -> Judged:
    """Whether the search's point is taken (the module's docstring): not after a failed
    search, nor a search that ran out of trials with a decrease within f's noise, nor a tie
    beyond the ties allowed in a row. ``state`` is the iteration's (its f, ties and tie
    levels), ``t0`` the search's first trial, ``floor`` :func:`floor` of f at x."""
    value = state.value
    sdt = value.dtype
    # (stepsize 0: after a search that moved nothing, or in the first iteration; there a decrease
    # within the noise this search measured is none)
    tie = (res.value >= value) | ((state.stepsize == 0) & (value - res.value <= res.noise))
    promised = -slope0 * t0 / 2
    if jnp.finfo(sdt).bits >= 64:
        resolved = jnp.zeros((), bool)
    else:
        resolution = float(jnp.finfo(sdt).eps) ** RESOLVED
        resolved = (promised > resolution * state.tie_start) & (promised > jnp.finfo(sdt).tiny)
    ties = where((state.ties > 0) & resolved & (promised <= TIE_FALL * state.tie_level), 0, state.ties)
    rounding = noise(res, floor)
    lost = (res.status == LineSearchStatus.DECREASE) & (value - res.value <= rounding)
    allowed = ties < where(resolved, TIE_PATIENCE, MAX_TIES)
    moved = (res.status != LineSearchStatus.FAILED) & ~lost & (~tie | allowed)
    moved = _xla.once(state.nfev < 0, moved)  # (read by every update after it; nfev >= 0)
    return Judged(moved, tie, ties, promised, rounding)


def tie_fields(state, judged: Judged) -> dict:
    """The new state's ``ties``, ``tie_level`` and ``tie_start``."""
    sdt = state.value.dtype
    moved, tie, ties, promised = judged.moved, judged.tie, judged.ties, judged.promised
    return dict(
        ties=where(moved, where(tie, ties + 1, 0), state.ties).astype(jnp.int32),
        tie_level=where(moved & tie & (ties == 0), promised, state.tie_level).astype(sdt),
        tie_start=where(moved, where(tie, where(state.ties == 0, promised, state.tie_start), jnp.inf),
                        state.tie_start).astype(sdt),
    )


def rules(solver, state, new, res, judged: Judged, *, final, spent, slope0, t_round, t_model, t_max, origin=False):
    """The status rules of an iteration from ``state`` to ``new`` after the search ``res``
    (``_status.decide`` them, with :func:`spent` after them). ``final``: x stays
    after a search along -g (no retry is left); ``spent``: ``maxfev`` cut that search short (it
    made every trial the budget left it, fewer than its own limit): MAXFEV, before PRECISION;
    ``t_round`` the step that moves x (its coarsest leaves) by a few units in the last place, ``t_model`` the step
    that minimises the model along -g (:func:`at_precision`), ``t_max`` the largest feasible
    step: with bounds, PRECISION also when the whole feasible part of the direction (up to
    t_max, which the search tried) moves x by no more than rounding; ``origin``: x was at the
    origin (``_origin.at_origin``) and nothing was searched."""
    sdt = state.value.dtype
    value, f_new = state.value, new.value
    narrow = has_narrower(state.params, sdt, solver.value_dtype)
    precision = final & (at_precision(res, slope0, judged.noise, t_round, t_model, value, narrow)
                         | (t_max <= 1.01 * t_round))
    ftol, fatol = tolerance(solver.ftol, sdt), tolerance(solver.fatol, sdt)
    bound = jnp.maximum(ftol * jnp.maximum(jnp.abs(value), jnp.abs(f_new)), fatol)
    normal = res.status == LineSearchStatus.SUCCESS
    converged_f = normal & ((ftol > 0) | (fatol > 0)) & (value - f_new <= bound)
    gtol = tolerance(solver.gtol, sdt)
    return [
        (solver.stationarity(new.params, new.grad, new.bounds, new.scale) <= gtol, Status.GTOL),
        (origin, Status.PRECISION),
        (final & (value <= -jnp.finfo(sdt).max / UNBOUNDED_MARGIN), Status.UNBOUNDED),
        # (a search that maxfev cut short says nothing of what its next trials would have found)
        (final & spent, Status.MAXFEV),
        (precision, Status.PRECISION),
        (final, Status.LINESEARCH_FAILED),
        (converged_f, Status.FTOL),
    ]


def start_rules(solver, state):
    """The status rules of a state before any iteration: INFEASIBLE, NONFINITE, GTOL, then
    MAXITER or MAXFEV when a budget is already spent (as with ``maxiter=0``); none true:
    RUNNING."""
    sdt = state.value.dtype
    finite = jnp.isfinite(state.value) & _tree.all_finite(state.grad)
    gtol = tolerance(solver.gtol, sdt)
    rules = [(~finite, Status.NONFINITE),
             (solver.stationarity(state.params, state.grad, state.bounds, state.scale) <= gtol, Status.GTOL)]
    if state.bounds is not None:
        rules.insert(0, (~_bounds.facts(state.bounds, state.params)[0], Status.INFEASIBLE))
    return rules + spent(solver, state)


def spent(solver, state):
    """The status rules of the budgets: MAXITER once ``count`` reaches ``maxiter``, MAXFEV
    once ``nfev`` reaches ``maxfev`` (none for a budget that is None)."""
    rules = []
    if solver.maxiter is not None:
        rules.append((state.count >= jnp.asarray(solver.maxiter, jnp.int32), Status.MAXITER))
    if solver.maxfev is not None:
        rules.append((state.nfev >= jnp.asarray(solver.maxfev, jnp.int32), Status.MAXFEV))
    return rules
