"""Armijo backtracking with safeguarded interpolation (N&W 2006, Alg. 3.1 and Sec. 3.5).

A trial t is accepted when it gives sufficient decrease (N&W eq. 3.4)

    phi(t) <= phi(0) + c1 t phi'(0).

Otherwise the step is shortened. The first backtrack takes the minimiser of the
quadratic through phi(0), phi'(0), phi(t) (N&W eq. 3.57,
``_interpolate.quadratic_min``); later ones the minimiser of the cubic through
phi(0), phi'(0) and the values at the last two trials t_p > t (N&W eq. 3.58
and the formula after it),

    r_i = (phi(t_i) - phi(0) - phi'(0) t_i) / t_i^2,
    a = (r - r_p) / (t - t_p),   b = (t r_p - t_p r) / (t - t_p),
    t_new = -phi'(0) / (b + sqrt(b^2 - 3 a phi'(0)))

(the root of 3 a t^2 + 2 b t + phi'(0) with positive curvature, written without
cancellation; it is the quadratic's when a = 0), falling back to the quadratic
when the cubic has no minimiser. The new trial is kept in
[lo_frac t, hi_frac t] (defaults 0.1, 0.5), so each backtrack shrinks the step
by a bounded factor (N&W's safeguard). A trial whose value or slope is not
finite is outside the domain and the next trial is lo_frac t.

The search stops at the first Armijo point (SUCCESS), or after ``max_steps``
evaluations returning the lowest trial with phi(t) < phi(0) (DECREASE) or the
zero step (FAILED). phi' at trials is only used to judge finiteness and is
returned with the step.

Backtracking does not enforce a curvature condition, so the accepted step may
give <s, y> <= 0; L-BFGS then relies on its curvature guard (``_memory``:
a pair is stored only when <s, y> > eps ||s|| ||y||) to skip such pairs and
keep its inverse Hessian positive definite.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .._xla import where
from ._acceptance import acceptance
from ._base import LineSearch
from ._interpolate import quadratic_min


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Backtracking(LineSearch):
    """Armijo backtracking line search; every setting is a pytree leaf."""

    c1: float = 1e-4
    lo_frac: float = 0.1  # new trial >= lo_frac * t (and = lo_frac * t after a non-finite trial)
    hi_frac: float = 0.5  # new trial <= hi_frac * t
    max_steps: int = 30

    def rule(self, value0, slope0, stepsize, near=0.0):
        return _rule(self, value0, slope0, stepsize, near)


def _cubic_step(value0, slope0, tp, fp, t, f):
    """Minimiser of the cubic through phi(0), phi'(0), phi(tp), phi(t) (N&W eq. 3.58)."""
    rp = (fp - value0 - slope0 * tp) / (tp * tp)
    r = (f - value0 - slope0 * t) / (t * t)
    a = (r - rp) / (t - tp)
    b = (t * rp - tp * r) / (t - tp)
    disc = b * b - 3 * a * slope0
    den = b + jnp.sqrt(where(disc >= 0, disc, jnp.nan))
    return where(den > 0, -slope0 / den, jnp.nan)


def _rule(cfg: Backtracking, value0, slope0, stepsize, near=0.0):
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    c1, lo_frac, hi_frac = as_s(cfg.c1), as_s(cfg.lo_frac), as_s(cfg.hi_frac)
    value0, slope0 = as_s(value0), as_s(slope0)
    zero = jnp.zeros((), sdt)

    def update(prev, p, finite):
        """prev = (t, f, finite) of the last trial; finite False before the first."""
        t, f, _ = p
        armijo = finite & (f - value0 <= c1 * t * slope0)
        tp, fp, prev_finite = prev
        quad = quadratic_min(zero, value0, slope0, t, f)
        cubic = _cubic_step(value0, slope0, tp, fp, t, f)
        trial = where(prev_finite & jnp.isfinite(cubic), cubic, quad)
        trial = where(jnp.isfinite(trial), trial, hi_frac * t)
        t_next = where(finite, jnp.clip(trial, lo_frac * t, hi_frac * t), lo_frac * t)
        return (t, f, finite), t_next, acceptance(armijo, True), finite

    prev0 = (zero, value0, jnp.asarray(False))
    return prev0, update, lambda prev, t: jnp.asarray(False)
