"""A bound on the slope of the Cauchy point's model along a stretch of its path, which lets
``_segments``' walk pass over a block of breakpoints without its prefix sums (the notation
is ``_segments``': G, p, c, q, theta, M along the path of Algorithm CP).

A block's breakpoints t_(k) in [t_a, t_b] (t_a where the path walked before
ends), p_a, G_a, q_a the values at t_a, a_k = g_(k) w_(k). For t in the block the slope is
s(t) = -G(t) (1 - theta t) - p(t)^T M c(t) with G(t) in [G_b, G_a] (G_b after the block),
p(t) = p_a + dp, c(t) = t p(t) - q(t) = c_a(t) + dc, c_a(t) = t p_a - q_a, where dp sums
the a_k passed and dc their (t - t_(k)) a_k, so ||dp|| <= A = sum_k |g_(k)| ||w_(k)|| and
||dc|| <= (t_b - t_a) A. Expanding, with the convex parts at most their values at the ends,

    s(t) <= U = max_{t in {t_a, t_b}} [max(-G_a (1 - theta t), -G_b (1 - theta t)) - p_a^T M c_a(t)]
              + A max_{t in {t_a, t_b}} ||M c_a(t)|| + (t_b - t_a) A ||M p_a|| + (t_b - t_a) A^2 ||M||_F.

U < 0 (by a margin of sqrt(eps) times the terms' size, which covers the rounding of both
this bound and the walk's sums) means no segment of the block holds t_c, so the block
only adds its sums (no prefix sum: most of a trip's cost). Where the Cauchy point lies
far along the path, as when many bounds become active at once, the slope is far below 0
until close to it: nonnegative least squares at n = 10^6 (``problems.scalable_bounded``)
walks 500,000 breakpoints in 31 trips, 30 of which the bound skips.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _xla
from ._tree import matmul as mm
from ._xla import where


def slope_bound(ts, wt, norms, theta, mid, mid_norm, t0, q0, p0, g0):
    """(U, the size of its terms): U, the bound above on the model's slope along the path
    in the segments that end at the breakpoints ``ts`` (``walk``'s ``ts`` and ``wt``, and
    ``norms`` = ||w_(k)|| of their rows of W; the path before them ends at ``t0``, with
    p0 = p, g0 = G and ``q0`` there; ``mid_norm`` = ||M||_F)."""
    is_bp = jnp.isfinite(ts)
    t1 = jnp.max(where(is_bp, ts, t0))
    g1 = g0 - jnp.sum(wt * wt)
    big_a = jnp.sum(jnp.abs(wt) * norms)
    ends = jnp.stack([t0, t1])
    c = ends[:, None] * p0 - q0  # c_a(t) at both ends
    mc, mp = mm(c, mid), mm(mid, p0)
    lin = -(1 - theta * ends)[:, None] * jnp.stack([g0, g1])[None, :]  # [end, G_a or G_b]
    front = jnp.max(jnp.max(lin, axis=1) - mm(mc, p0))
    span = t1 - t0
    rest = big_a * (jnp.max(jnp.sqrt(jnp.sum(mc * mc, axis=1))) + span * jnp.sqrt(jnp.sum(mp * mp))
                    + span * big_a * mid_norm)
    return front + rest, g0 * (1 + jnp.abs(theta) * t1) + jnp.max(jnp.abs(mm(mc, p0))) + rest


def rises_within(ts, wt, norms, theta, mid, mid_norm, t0, q0, p0, g0, sdt):
    """Whether the slope may reach 0 in those segments (``slope_bound``'s arguments): False
    only where U < 0 by a margin of sqrt(eps) times its terms' size, and G stays positive. In
    ``_xla.small_dtype``, as ``_segments.walk``: its terms of the order of f's scale cubed
    underflowed in float32 (A^2 ||M||, theta G)."""
    with jax.enable_x64(True):
        ts, wt, norms, theta, mid, mid_norm, t0, q0, p0, g0 = _xla.widened(sdt, ts, wt, norms, theta, mid, mid_norm,
                                                                            t0, q0, p0, g0)
        bound, size = slope_bound(ts, wt, norms, theta, mid, mid_norm, t0, q0, p0, g0)
        return ~((bound + jnp.sqrt(jnp.finfo(sdt).eps) * size < 0) & (g0 - jnp.sum(wt * wt) > 0))
