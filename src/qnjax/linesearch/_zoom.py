"""Strong-Wolfe line search by bracketing and zoom (N&W 2006, Algorithms 3.5 and 3.6).

A step t is accepted when it satisfies the strong Wolfe conditions (N&W eq. 3.7)

    phi(t) <= phi(0) + c1 t phi'(0)          (sufficient decrease)
    |phi'(t)| <= c2 |phi'(0)|                (curvature)

with 0 < c1 < c2 < 1. Bracketing (Alg. 3.5) tries t_0 = ``stepsize`` and then
extrapolates with the cubic through the last two trials, kept within
[1.1, ``expand``] times the last increment, until an interval [lo, hi] is
known to contain acceptable steps; zoom (Alg. 3.6) then shrinks the interval
with the safeguarded cubic/quadratic interpolant of ``_interpolate``,
keeping lo the lowest sufficient-decrease trial and phi'(lo) (hi - lo) < 0.
Two departures from the textbook: a trial meeting both conditions is accepted
at once (even if phi(lo) is lower), and a trial whose value *ties* phi(lo)
after rounding counts as not higher, so its slope decides where the
minimiser lies (as in Hager & Zhang's update rule); the textbook's
phi(t) >= phi(lo) test brackets or collapses on the wrong side when f's
changes are at the rounding level.

Rounding (Hager & Zhang 2005, Sec. 4, the approximate Wolfe conditions): once
the predicted decrease c1 t |phi'(0)| is below ``approx_eps * |phi(0)|``, f's
change is within rounding noise and sufficient decrease cannot be observed;
then the decrease test becomes phi(t) <= phi(0) together with the approximate
Wolfe slope test phi'(t) <= (2 c1 - 1) phi'(0). A step never raises phi.

Trials where phi or phi' is not finite are outside the domain: they become hi
and the next trial is lo + 0.1 (hi - lo) while no decrease has been found
(lo = 0), the midpoint afterwards. The search stops after ``max_steps``
evaluations or when the interval is below rounding, returning (``_base``) the
best decrease point seen, or the zero step with a failure flag.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._xla import where
from ._acceptance import acceptance, wolfe_tests
from ._base import LineSearch, point
from ._interpolate import extrapolate, safeguarded


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Zoom(LineSearch):
    """Strong-Wolfe zoom line search; every setting is a pytree leaf (no recompile on change)."""

    c1: float = 1e-4
    c2: float = 0.9
    max_steps: int = 30
    expand: float = 4.0
    margin: float = 0.1  # interpolation safeguard: trials stay this fraction of the interval inside its ends
    approx_eps: float = 1e-6  # relative noise level of f for the approximate Wolfe test

    def rule(self, value0, slope0, stepsize, near=0.0):
        return _rule(self, value0, slope0, stepsize, near)


class _Rule(NamedTuple):
    bracketed: jax.Array
    lo: jax.Array  # point (t, f, slope): bracketing: previous trial; zoom: best end
    hi: jax.Array


def _rule(cfg: Zoom, value0, slope0, stepsize, near=0.0):
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    c1, c2, margin = as_s(cfg.c1), as_s(cfg.c2), as_s(cfg.margin)
    zero = jnp.zeros((), sdt)
    tests, _ = wolfe_tests(value0, slope0, c1, c2, cfg.approx_eps)

    def update(r, p, finite):
        t, f, d = p
        decrease, curvature, exact = tests(t, f, d, finite)
        lo_t, lo_f, lo_d = r.lo
        hi_t, hi_f, hi_d = r.hi

        # Any trial meeting both conditions is accepted, before comparing it with lo.
        success = decrease & curvature
        # Bracketing phase (Alg. 3.5), lo = previous trial. A value that ties lo's after
        # rounding is not "higher": the slope decides (extrapolate or swap).
        to_zoom_hi = ~success & (~decrease | (f > lo_f))
        to_zoom_swap = ~success & ~to_zoom_hi & (d >= 0)
        # Zoom phase (Alg. 3.6), with the same tie rule.
        shrink_hi = ~success & (~decrease | (f > lo_f))
        flip = ~shrink_hi & (d * (hi_t - lo_t) >= 0)

        b = r.bracketed
        new_lo = where(b, where(shrink_hi, r.lo, p), where(to_zoom_hi, r.lo, p))
        old_lo_as_hi = where(flip, r.lo, r.hi)
        new_hi = where(
            b,
            where(shrink_hi, p, old_lo_as_hi),
            where(to_zoom_hi, p, where(to_zoom_swap, r.lo, old_lo_as_hi)),
        )
        bracketed = b | to_zoom_hi | to_zoom_swap

        # Next trial.
        nl_t, nl_f, nl_d = new_lo
        nh_t, nh_f, nh_d = new_hi
        hi_bad = ~(jnp.isfinite(nh_f) & jnp.isfinite(nh_d))
        frac = where(nl_t == 0, as_s(0.1), as_s(0.5))
        t_zoom = where(
            hi_bad, nl_t + frac * (nh_t - nl_t), safeguarded(nl_t, nl_f, nl_d, nh_t, nh_f, nh_d, margin)
        )
        t_ext = extrapolate(lo_t, lo_f, lo_d, t, f, d, as_s(cfg.expand))
        t_next = where(bracketed, t_zoom, t_ext)
        return _Rule(bracketed, new_lo, new_hi), t_next, acceptance(success, exact), decrease

    def stop(r, t):  # the interval collapsed to rounding
        lo_t, hi_t = r.lo[0], r.hi[0]
        return r.bracketed & (jnp.abs(hi_t - lo_t) <= jnp.finfo(sdt).eps * jnp.maximum(lo_t, hi_t))

    start = point(zero, value0, slope0)
    rule0 = _Rule(jnp.asarray(False), start, start)
    return rule0, update, stop
