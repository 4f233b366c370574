"""Moré-Thuente line search (Moré & Thuente 1994, "Line search algorithms with
guaranteed sufficient decrease", ACM TOMS 20(3)), the search of MINPACK-2 and of
L-BFGS-B.

It looks for a step in the set T(mu) of the strong Wolfe conditions (their eqs.
1.1-1.2, N&W eq. 3.7), with c1 = mu (``ftol``) and c2 = eta (``gtol``):

    phi(t) <= phi(0) + c1 t phi'(0),     |phi'(t)| <= c2 |phi'(0)|.

It keeps an interval I = [t_x, t_y] (either order) and the trial t_p, where t_x
is the best step so far (the lowest value of the auxiliary function), and
updates them by the paper's rules (Sec. 2 and the "updating algorithm"):

    psi(t) = phi(t) - phi(0) - c1 t phi'(0)         (their eq. 2.1)

is used while no trial has had psi(t) <= 0 and phi'(t) >= 0 ("stage 1", when
phi(t) <= phi(t_x) but psi(t) > 0), phi itself afterwards. A new trial comes from
the four cases of Sec. 4, with t_c the minimiser of the cubic through
(t_x, t_p), t_q that of the quadratic through phi(t_x), phi'(t_x), phi(t_p), and
t_s the secant (minimiser of the quadratic through phi'(t_x), phi'(t_p)):

1. phi(t_p) > phi(t_x): t_c if it is closer to t_x than t_q, else (t_c + t_q) / 2;
   the minimiser is bracketed, t_y = t_p.
2. phi'(t_p) phi'(t_x) < 0: t_c if it is farther from t_p than t_s, else t_s;
   bracketed, t_y = t_x, t_x = t_p.
3. |phi'(t_p)| < |phi'(t_x)| (same sign): the cubic if its minimiser lies
   beyond t_p, else the extrapolation bound; bracketed: the one closer to t_p,
   and at most 0.66 of the way to t_y; otherwise the farther one.
4. otherwise: bracketed, the minimiser of the cubic through (t_p, t_y); else the
   extrapolation bound.

Unbracketed trials stay in [t_p + 1.1 (t_p - t_x), t_p + 4 (t_p - t_x)]
(``expand`` = 4); once bracketed, an interval that did not shrink by 0.66 over
two trials is bisected. The search ends when a trial meets the strong Wolfe
conditions (SUCCESS), or when the next trial would leave the interval or the
interval is below ``xtol`` relative width (the paper's rounding and xtol
tests); then ``_base`` returns the best sufficient-decrease trial (DECREASE),
where MINPACK-2 spends one more evaluation at t_x.

Rounding (qnjax's additions; away from rounding the trials are the paper's, so
``minimize`` takes scipy's L-BFGS-B steps). Shared with ``Zoom``
(``_acceptance.wolfe_tests``): sufficient decrease is tested as phi(t) - phi(0) <= c1 t
phi'(0), so a decrease below f's rounding is not one, and once the predicted
decrease is below rounding the approximate Wolfe test of Hager & Zhang decides
(with phi(t) <= phi(0), a tie being NOISE). Near x (``_base.NEAR`` times the caller's
``rounding_stepsize``: x moves by a few thousand units in its last place), a trial
beyond t_x that is higher than phi(t_x) although its slope and phi'(t_x) say phi still
descends is rounding noise where its rise is more than twice the fall the slopes predict,
(t - t_x) (phi'(t_x) + phi'(t)) / 2, or the rise and that fall differ by no more than f's
floor (``FLAT_ULPS`` units in the last place of phi(0)): it is not "higher" (case 1) and does
not bracket the step, so noise in f cannot end a search that the slopes would continue
(Hager & Zhang's update rule U2, the noise recognised rather than set). The non-finite
policy: a trial where phi or phi' is not finite becomes t_y and the next trial is
t_x + 0.1 (t - t_x) while nothing has decreased, the midpoint afterwards. Defaults are
L-BFGS-B's: c1 = 1e-3, c2 = 0.9, xtol = 0.1.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._xla import where
from ._acceptance import acceptance, wolfe_tests
from ._base import LineSearch, point

# f's floor for the rounding test (module docstring): this many units in the last place of
# phi(0). At its first trial, a float32 Meyer run's search along -g had slopes predicting a fall
# of 2.5 in f = 7e6 (a unit in its last place is 0.5) and saw f rise by 1.5; taken as higher,
# that trial bracketed [0, t], and the search failed where f falls by hundreds a few hundred
# times further out (the run then claimed PRECISION at f = 7.0e6 rather than at 1.1e5). Measured
# from t_x: a float32 L-BFGS-B box fit's search along -g found phi(1) one unit below phi(0) and
# phi(5) back at phi(0), bracketed [1, 5] where the minimiser lay near t = 1,400, and the run
# stopped PRECISION 1% above its minimum at iteration 6 with a projected gradient of 82.
FLAT_ULPS = 8


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MoreThuente(LineSearch):
    """Moré-Thuente strong-Wolfe line search; every setting is a pytree leaf."""

    c1: float = 1e-3
    c2: float = 0.9
    xtol: float = 0.1  # relative width of the interval below which the search stops
    max_steps: int = 30
    expand: float = 4.0  # unbracketed trials: at most this many times the last increment
    approx_eps: float = 1e-6  # relative noise level of f for the approximate Wolfe test

    def rule(self, value0, slope0, stepsize, near=0.0):
        return _rule(self, value0, slope0, stepsize, near)


class _Rule(NamedTuple):
    """Packed (each loop-carried value that changes is a compiled kernel of its own, in
    every iteration of the search): ``flags`` = [bracketed, stage1 (psi is used while
    True)], ``points`` = [*x, *y, width, width1] with x the point (t, f, slope) of the best
    step t_x, y that of the other end t_y, and |t_y - t_x| one and two trials ago."""

    flags: jax.Array  # (2,) bool
    points: jax.Array  # (8,) scalar dtype

    bracketed = property(lambda self: self.flags[0])
    stage1 = property(lambda self: self.flags[1])
    x = property(lambda self: self.points[0:3])
    y = property(lambda self: self.points[3:6])
    width = property(lambda self: self.points[6])
    width1 = property(lambda self: self.points[7])


def _packed(bracketed, stage1, x, y, width, width1):
    return _Rule(jnp.stack([bracketed, stage1]), jnp.concatenate([x, y, jnp.stack([width, width1])]))


def _cubic(a, fa, da, b, fb, db):
    """Minimiser of the cubic through (a, fa, da), (b, fb, db), scaled against overflow,
    with the ratio r (the minimiser is b + r (a - b)) and gamma that case 3 tests."""
    theta = 3 * (fa - fb) / (b - a) + da + db
    s = jnp.maximum(jnp.maximum(jnp.abs(theta), jnp.abs(da)), jnp.abs(db))
    disc = (theta / s) ** 2 - (da / s) * (db / s)
    gamma = s * jnp.sqrt(jnp.maximum(disc, 0)) * jnp.sign(a - b)
    r = ((gamma - db) + theta) / (((gamma - db) + gamma) + da)
    return b + r * (a - b), r, gamma


def _trial(x, y, p, bracketed, lo, hi, flat):
    """The four cases of Moré & Thuente (1994, Sec. 4): the new trial, and whether
    t_p is higher than t_x (case 1; never when ``flat``) and the slopes have opposite signs."""
    (tx, fx, dx), (ty, fy, dy), (tp, fp, dp) = x, y, p
    opposite = dp * jnp.sign(dx) < 0
    cubic_xp, r, gamma = _cubic(tx, fx, dx, tp, fp, dp)
    secant = tp + dp / (dp - dx) * (tx - tp)
    quad = tx + dx / ((fx - fp) / (tp - tx) + dx) / 2 * (tp - tx)
    # Case 1: higher value.
    t1 = where(jnp.abs(cubic_xp - tx) < jnp.abs(quad - tx), cubic_xp, cubic_xp + (quad - cubic_xp) / 2)
    # Case 2: slopes of opposite sign.
    t2 = where(jnp.abs(cubic_xp - tp) > jnp.abs(secant - tp), cubic_xp, secant)
    # Case 3: slope magnitude decreases. The cubic is used only if it tends to
    # infinity in the direction of the step and its minimiser lies beyond tp.
    beyond = (r < 0) & (gamma != 0)
    c3 = where(beyond, cubic_xp, where(tp > tx, hi, lo))
    near = where(jnp.abs(c3 - tp) < jnp.abs(secant - tp), c3, secant)
    far = jnp.clip(where(jnp.abs(c3 - tp) > jnp.abs(secant - tp), c3, secant), lo, hi)
    limit = tp + 0.66 * (ty - tp)
    t3 = where(bracketed, where(tp > tx, jnp.minimum(limit, near), jnp.maximum(limit, near)), far)
    # Case 4: slope magnitude does not decrease.
    cubic_py = _cubic(ty, fy, dy, tp, fp, dp)[0]
    t4 = where(bracketed, cubic_py, where(tp > tx, hi, lo))

    case1 = (fp > fx) & ~flat
    case2 = ~case1 & opposite
    case3 = ~case1 & ~case2 & (jnp.abs(dp) < jnp.abs(dx))
    t_new = where(case1, t1, where(case2, t2, where(case3, t3, t4)))
    return t_new, case1, opposite


def _rule(cfg: MoreThuente, value0, slope0, stepsize, near=0.0):
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    c1, c2, xtol, expand = as_s(cfg.c1), as_s(cfg.c2), as_s(cfg.xtol), as_s(cfg.expand)
    value0, slope0 = as_s(value0), as_s(slope0)
    tests, gtest = wolfe_tests(value0, slope0, c1, c2, cfg.approx_eps)
    near = as_s(near)
    f_floor = as_s(FLAT_ULPS * jnp.finfo(sdt).eps) * jnp.abs(value0)
    zero, inf = as_s(0), as_s(jnp.inf)

    def bounds(x, y, bracketed, t):
        # Where trial t may go: bracketed, the interval; else [t + 1.1 (t - t_x), t + expand (t - t_x)]
        # (before the first evaluation, t_x = 0 and the lower bound is 0).
        first = ~bracketed & (x[0] == 0)
        lo = where(bracketed, jnp.minimum(x[0], y[0]), where(first, 0, t + 1.1 * (t - x[0])))
        hi = where(bracketed, jnp.maximum(x[0], y[0]), t + expand * (t - x[0]))
        return lo, hi

    def update(r, p, finite):
        t, f, d = p
        lo, hi = bounds(r.x, r.y, r.bracketed, t)
        decrease, curvature, exact = tests(t, f, d, finite)
        success = decrease & curvature
        # psi (eq. 2.1) while in stage 1 and the trial is below t_x but not sufficiently low.
        use_psi = r.stage1 & (f <= r.x[1]) & ~decrease
        psi = where(use_psi, gtest, zero)
        shift = lambda q: (q[0], q[1] - psi * q[0], q[2] - psi)  # noqa: E731  phi -> psi
        # Near x (where x moves by a few thousand units in the last place at most), a rise
        # from t_x that the slopes do not explain (they predict (t - t_x) (phi'(t_x) + phi'(t))
        # / 2 < 0) is rounding noise: the rise is more than twice the fall they predict, or
        # the gap between the two is within f's floor. The trial is not "higher" and, still
        # descending, does not bracket the step (Hager & Zhang's update rule U2, with the
        # noise recognised rather than set).
        tx, fx, dx = r.x
        predicted = (t - tx) * (dx + d) / 2
        noisy = (f - fx > -2 * predicted) | (f - fx - predicted <= f_floor)
        flat = finite & (d < 0) & (dx < 0) & (t > tx) & (f > fx) & (t <= near) & noisy
        t_new, higher, opposite = _trial(shift(r.x), shift(r.y), shift(p), r.bracketed, lo, hi, flat)

        # The interval update: a higher trial becomes t_y; a lower one t_x (and the old
        # t_x becomes t_y if the slopes changed sign). A non-finite trial is outside the
        # domain: it becomes t_y, and the step shrinks towards t_x.
        to_y = higher | ~finite
        x = where(to_y, r.x, p)
        bad = where(finite, p, point(t, inf, zero))
        y = where(to_y, bad, where(opposite, r.x, r.y))
        bracketed = r.bracketed | to_y | opposite
        t_bad = r.x[0] + where(r.x[0] == 0, as_s(0.1), as_s(0.5)) * (t - r.x[0])
        t_new = where(finite, t_new, t_bad)

        # Bisect an interval that shrinks too slowly (or a trial that is not finite).
        width_now = jnp.abs(y[0] - x[0])
        bisect = bracketed & finite & ((width_now >= 0.66 * r.width1) | ~jnp.isfinite(t_new))
        t_new = where(bisect, x[0] + 0.5 * (y[0] - x[0]), t_new)
        width1 = where(bracketed, r.width, r.width1)
        width = where(bracketed, width_now, r.width)

        stage1 = r.stage1 & ~(decrease & (d >= 0))
        rule = _packed(bracketed, stage1, x, y, width, width1)
        return rule, t_new, acceptance(success, exact), decrease

    def stop(r, t):
        # The paper's rounding and xtol tests: the next trial would be t_x itself.
        lo, hi = bounds(r.x, r.y, r.bracketed, t)
        return r.bracketed & ((t <= lo) | (t >= hi) | (hi - lo <= xtol * hi))

    start = point(zero, value0, slope0)
    rule0 = _packed(jnp.asarray(False), jnp.asarray(True), start, start, inf, inf)
    return rule0, update, stop
