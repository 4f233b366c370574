"""Safeguarded polynomial interpolation for line searches (N&W 2006, Sec. 3.5).

Given two points a, b of phi with values and slopes, the minimiser of the cubic
interpolant is (N&W eq. 3.59)

    d1 = phi'(a) + phi'(b) - 3 (phi(a) - phi(b)) / (a - b)
    d2 = sign(b - a) sqrt(d1^2 - phi'(a) phi'(b))
    t  = b - (b - a) (phi'(b) + d2 - d1) / (phi'(b) - phi'(a) + 2 d2),

and of the quadratic through phi(a), phi'(a), phi(b) (N&W eq. 3.57)

    t = a - phi'(a) (b - a)^2 / (2 (phi(b) - phi(a) - phi'(a) (b - a))).

:func:`safeguarded` keeps a candidate inside [a + margin (b - a), b - margin (b - a)]
(so a zoom interval shrinks by a fixed factor), falling back to the quadratic
when the cubic is undefined and to bisection when both are.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._xla import where


def cubic_min(a, fa, da, b, fb, db):
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    d2 = jnp.sign(b - a) * jnp.sqrt(where(disc >= 0, disc, jnp.nan))
    return b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2)


def quadratic_min(a, fa, da, b, fb):
    curv = fb - fa - da * (b - a)
    return a - da * (b - a) ** 2 / (2 * curv)


def safeguarded(a, fa, da, b, fb, db, margin):
    """A trial inside the interval between a and b (either order), see module docstring."""
    lo = jnp.minimum(a, b) + margin * jnp.abs(b - a)
    hi = jnp.maximum(a, b) - margin * jnp.abs(b - a)
    cubic = cubic_min(a, fa, da, b, fb, db)
    quad = quadratic_min(a, fa, da, b, fb)
    ok_c = jnp.isfinite(cubic) & (cubic >= lo) & (cubic <= hi)
    ok_q = jnp.isfinite(quad)
    mid = (a + b) / 2
    t = where(ok_c, cubic, where(ok_q, jnp.clip(quad, lo, hi), mid))
    return where(jnp.isfinite(t), t, mid)


def extrapolate(a, fa, da, b, fb, db, expand):
    """A trial beyond b (b > a, phi'(b) < 0): the cubic's minimiser, kept in
    [b + 1.1 (b - a), b + expand (b - a)] (the upper end when undefined)."""
    lo = b + 1.1 * (b - a)
    hi = b + expand * (b - a)
    cubic = cubic_min(a, fa, da, b, fb, db)
    return where(jnp.isfinite(cubic) & (cubic > b), jnp.clip(cubic, lo, hi), hi)
