"""The Hager-Zhang line search (Hager & Zhang 2005, Sec. 4; CG_DESCENT, HZ 2006).

Notation: phi(t) = f(x + t d), phi'(0) < 0, 0 < delta < 1/2, delta <= sigma < 1 (the
settings ``c1`` = delta and ``c2`` = sigma, named as in the other searches);
the labels T1, T2, U0-U3, B0-B3, S1-S4, L0-L3 are the papers'. A trial t is
accepted when it satisfies the Wolfe conditions

    (T1)  phi(t) - phi(0) <= delta t phi'(0)   and   phi'(t) >= sigma phi'(0),

or the approximate Wolfe conditions

    (T2)  (2 delta - 1) phi'(0) >= phi'(t) >= sigma phi'(0)   and   phi(t) <= phi(0) + eps_k,

eps_k = epsilon |phi(0)|. T2's first inequality is T1's decrease condition
with phi replaced by its quadratic interpolant, phi(t) - phi(0) ~ t (phi'(0) +
phi'(t)) / 2: it is written with slopes only, which stay accurate where
rounding hides f's decrease. qnjax's failure policy (``_base``) overrides the
paper here: T2 is accepted only with phi(t) <= phi(0), never above it.

The search keeps an interval [a, b] with the opposite slope condition

    (OS)  phi(a) <= phi(0) + eps_k,   phi'(a) < 0,   phi'(b) >= 0,

so [a, b] contains a T2 point. The paper's procedures, with c a trial:

update(a, b, c) (U0-U3): c outside (a, b): keep [a, b] (U0). phi'(c) >= 0:
    [a, c] (U1). phi'(c) < 0 and phi(c) <= phi(0) + eps_k: [c, b] (U2).
    Else (U3) phi rose above phi(0) + eps_k with a negative slope: b = c and
    d = (1 - theta) a + theta b is tried repeatedly, replacing a (phi'(d) < 0,
    phi(d) low, U3b) or b (phi'(d) < 0, phi(d) high, U3c) until phi'(d) >= 0
    gives [a, d] (U3a).
bracket(c) (B0-B3): c_0 = ``stepsize``; phi'(c_j) >= 0: [a, c_j] with a the
    last trial with phi low, else 0 (B1); phi'(c_j) < 0 with phi(c_j) high: the
    U3 loop on [a, c_j] (B2); else c_{j+1} = rho c_j (B3). (The paper's B2
    starts from a = 0; the last low trial, which satisfies OS too, is used.)
secant(a, b) = (a phi'(b) - b phi'(a)) / (phi'(b) - phi'(a)), the zero of the
    linear interpolant of phi' (in [a, b] under OS).
secant^2(a, b) (S1-S4): c = secant(a, b), [A, B] = update(a, b, c) (S1); if
    c = B then c' = secant(b, B) (S2), if c = A then c' = secant(a, A) (S3);
    when c is an end, [A, B] = update(A, B, c') (S4). Near a root of phi' the
    double secant step converges with order 1 + sqrt(2) (HZ 2005, Sec. 4).
Main loop (L0-L3): [a_0, b_0] = bracket(c_0) (L0); [a, b] = secant^2(a_j, b_j)
    (L1); if b - a > gamma (b_j - a_j), update(a, b, (a + b) / 2) (L2, bisection);
    j = j + 1 (L3). It stops as soon as any trial satisfies T1 or T2.

Here the nested procedures are one ``while_loop`` with exactly one evaluation
of phi per iteration: ``stage`` names the step the next trial belongs to
(EXPAND = B3, SHRINK = U3, SEC1 = S1, SEC2 = S4, MID = L2) and steps that
evaluate nothing (a secant outside (a, b), a bisection not needed) are
resolved when the next trial is chosen. Each evaluated trial updates the
interval by one rule: phi'(c) >= 0 makes c the end b (U1, B1); phi'(c) < 0 and
phi(c) low makes it a (U2, B3, U3b); phi'(c) < 0 and phi(c) high makes it b of
``kind`` HIGH (U3, B2, U3c), shrunk by theta-bisection until a slope end is
found; then the main loop resumes where the paper's U3 returns (after S1 or
S4: the L2 test; after B2 or L2: a new L1).

Domain (qnjax policy): a trial with non-finite value or slope becomes b of kind
BAD and the next trial is a + 0.1 (b - a) while a = 0, a + 0.5 (b - a) after.
The search stops when a trial is accepted (SUCCESS), after ``max_steps``
evaluations, or when the interval is below rounding, returning then the
lowest trial with phi(t) < phi(0) (DECREASE) or the zero step (FAILED).
Defaults are the paper's: c1 = delta 0.1, c2 = sigma 0.9, epsilon 1e-6, theta 0.5,
gamma 0.66, rho 5.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._xla import where
from ._acceptance import acceptance
from ._base import LineSearch, point

# Stages: which procedure the next trial belongs to.
_EXPAND, _SHRINK, _SEC1, _SEC2, _MID = 0, 1, 2, 3, 4
# Kinds of the upper end b.
_OPEN, _SLOPE, _HIGH, _BAD = 0, 1, 2, 3
# Where the main loop resumes once a SHRINK has produced a slope end.
_TO_L1, _TO_L2 = 0, 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HagerZhang(LineSearch):
    """Hager-Zhang (approximate) Wolfe line search; every setting is a pytree leaf."""

    c1: float = 0.1  # the paper's delta: sufficient decrease (T1) and the slope bound of T2
    c2: float = 0.9  # the paper's sigma: curvature
    epsilon: float = 1e-6  # eps_k = epsilon |phi(0)|
    theta: float = 0.5  # U3 bisection point
    gamma: float = 0.66  # required shrink per secant^2 step, else bisect
    rho: float = 5.0  # bracket expansion
    max_steps: int = 30

    def rule(self, value0, slope0, stepsize, near=0.0):
        return _rule(self, value0, slope0, stepsize, near)


class _Rule(NamedTuple):
    stage: jax.Array  # int32, of the next trial
    ret: jax.Array  # int32, where a SHRINK returns to
    kind: jax.Array  # int32, kind of b
    a: jax.Array  # point (t, f, slope)
    b: jax.Array
    aj: tuple  # (t, slope) of a and b at the start of the current secant^2 step
    bj: tuple


def _secant(a, da, b, db):
    return (a * db - b * da) / (db - da)


def _rule(cfg: HagerZhang, value0, slope0, stepsize, near=0.0):
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
    delta, sigma, theta = as_s(cfg.c1), as_s(cfg.c2), as_s(cfg.theta)
    gamma, rho = as_s(cfg.gamma), as_s(cfg.rho)
    value0, slope0 = as_s(value0), as_s(slope0)
    zero = jnp.zeros((), sdt)
    high_level = value0 + as_s(cfg.epsilon) * jnp.abs(value0)  # phi(0) + eps_k

    def update(c, p, finite):
        t, f, d = p
        # Acceptance: T1 or T2 (the latter never above phi(0)).
        curvature = d >= sigma * slope0
        wolfe = f - value0 <= delta * t * slope0
        approx = (f <= value0) & (d <= (2 * delta - 1) * slope0)
        success = finite & curvature & (wolfe | approx)
        exact = finite & wolfe

        # The interval update (module docstring: one rule for U1-U3, B1-B3).
        move_a = finite & (d < 0) & (f <= high_level)
        kind_c = where(~finite, _BAD, where(d >= 0, _SLOPE, _HIGH))
        a = where(move_a, p, c.a)
        b = where(move_a, c.b, p)
        kind = where(move_a, c.kind, kind_c).astype(jnp.int32)

        # The next trial.
        a_t, _, a_d = a
        b_t, _, b_d = b
        width = b_t - a_t
        mid = a_t + width / 2
        inside = lambda x: jnp.isfinite(x) & (x > a_t) & (x < b_t)  # noqa: E731
        s = c.stage
        # After S1 the second secant (S2/S3) through the moved end and its old value.
        (aj_t, aj_d), (bj_t, bj_d) = c.aj, c.bj
        c_bar = where(move_a, _secant(aj_t, aj_d, a_t, a_d), _secant(bj_t, bj_d, b_t, b_d))
        to_sec2 = (s == _SEC1) & inside(c_bar)
        to_l1 = (s == _EXPAND) | (s == _MID) | ((s == _SHRINK) & (c.ret == _TO_L1))
        to_l2 = ~to_l1 & ~to_sec2  # after S4, S1 without a second secant, or a SHRINK from them
        l2_bisect = to_l2 & (width > gamma * (bj_t - aj_t))  # L2
        new_iter = ~to_sec2 & ~l2_bisect  # L3 -> L1: secant^2 on the current interval
        c_sec = _secant(a_t, a_d, b_t, b_d)
        use_sec = new_iter & inside(c_sec)  # else S1 evaluates nothing and L2 bisects
        slope_stage = where(to_sec2, _SEC2, where(use_sec, _SEC1, _MID))
        slope_t = where(to_sec2, c_bar, where(use_sec, c_sec, mid))

        is_open = kind == _OPEN
        shrinking = (kind == _HIGH) | (kind == _BAD)
        frac = where(kind == _HIGH, theta, where(a_t == 0, as_s(0.1), as_s(0.5)))
        t_next = where(is_open, rho * t, where(shrinking, a_t + frac * width, slope_t))
        stage = where(is_open, _EXPAND, where(shrinking, _SHRINK, slope_stage))
        ret_new = where((s == _SEC1) | (s == _SEC2), _TO_L2, where(s == _SHRINK, c.ret, _TO_L1))
        new_start = (kind == _SLOPE) & new_iter
        aj = jax.tree.map(lambda n, o: where(new_start, n, o), (a_t, a_d), c.aj)
        bj = jax.tree.map(lambda n, o: where(new_start, n, o), (b_t, b_d), c.bj)

        rule = _Rule(
            stage=stage.astype(jnp.int32),
            ret=where(shrinking, ret_new, c.ret).astype(jnp.int32),
            kind=kind,
            a=a,
            b=b,
            aj=aj,
            bj=bj,
        )
        return rule, t_next, acceptance(success, exact), finite

    def stop(c, t):  # the interval collapsed to rounding
        return (c.kind != _OPEN) & (c.b[0] - c.a[0] <= jnp.finfo(sdt).eps * c.b[0])

    rule0 = _Rule(
        stage=i32(_EXPAND),
        ret=i32(_TO_L1),
        kind=i32(_OPEN),
        a=point(zero, value0, slope0),
        b=point(zero, value0, slope0),
        aj=(zero, slope0),
        bj=(zero, slope0),
    )
    return rule0, update, stop
