"""The stop at the origin (``_verdict``'s rules: PRECISION without a search).

max |x_i| < eps max |x0_i| and 0 <= f <= eps |f(x0)| (``at_origin``): x and f are 0 to working
precision on the scale of the start, and the run stops PRECISION without a search (with bounds, x0 in
the box, and only where every variable on a bound is held there by its gradient: ``origin``). f's eps
is f's dtype's; x's the scalar dtype's, but float32's where a leaf (or f: ``_verdict.value_dtype``) is
narrower than a float64 scalar dtype: such a leaf's gradient is rounded to float32's range at least.

A minimum at x* = 0 with f* = 0 has no scale of its own: near it f(c x) behaves as c^k f(x) (a
quadratic, k = 2), so every iterate looks like the last one shrunk, and no rule that ignores where the
run began can stop there: f and x stay resolved to their last place all the way to underflow. With
``minimize``'s defaults, from x0 = 1 (n = 100, float64), sum i x_i^2 took 1,474 iterations to f = 0,
sum (i x_i)^2 13,602 to 1.8e-306, sum i x_i^4 and CUTEst's POWER and SPARSQUR ended MAXFEV at 15,000
evaluations near 1e-215; stopping here, 165, 1,653, 134, 219 and 134 iterations (f = 6e-32, 3e-31,
2e-62, 7e-62, 7e-63). Only the scales of x and f are taken from the start, and only to say that they
are 0: a far start elsewhere (x* != 0) never comes within eps |x0| of the origin in every component,
and multiplying f by a constant changes nothing. f's condition is for a singularity at 0 (log x^2,
-1 / x^2: f falls without end as x creeps to 0): there f turns negative, or stays within a factor of
f(x0) (log x^2 + 100), where at a minimum f(c x) ~ c^k f(x) has fallen by eps^k. Without it those
runs stopped PRECISION, claiming success at f = -224 to -4.7e32 (float64). With float32 leaves beside
float64 ones (x's eps float64's, as it was), the float32 leaves' gradient rounded to 0 where x was
about 1e-13 of its start, x stayed there, and sum i x_i^4 and POWER (n = 100, x0 = 1) crawled on to
MAXFEV after 15,000 evaluations; with float32's eps for x they stop after 64 and 108. (Where the scalar
dtype is float32, bfloat16 and float16 leaves keep it: their gradients are float32's, and the coarser
eps stopped sum (i x_i)^2 of bfloat16 leaves at f = 3e-4 where float32's reaches 3e-13.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _verdict
from ._xla import where


def at_origin(x_norm, value, scale, sdt, eps_x=None, fdt=None):
    """Whether x, of max |x_i| = ``x_norm`` and f = ``value``, is 0 to working precision on the
    scale of its start (``scale``: max |x0_i| and |f(x0)|; the module docstring): max |x_i| <
    eps max |x0_i| (never where x0 = 0) and 0 <= f <= eps |f(x0)| (where f falls without end
    as x -> 0, log |x| or -1 / x^2, x also creeps to 0: there f is negative or has not fallen).
    x's eps is ``eps_x`` where given (:func:`origin`), else ``sdt``'s; f's that of ``fdt`` where given
    (f narrower than ``sdt``: ``_verdict.value_dtype``)."""
    eps = jnp.asarray(jnp.finfo(sdt if fdt is None else fdt).eps, sdt)  # (in sdt: strict promotion)
    eps_x = jnp.asarray(jnp.finfo(sdt).eps if eps_x is None else eps_x, sdt)
    return (x_norm < eps_x * scale[0]) & (value >= 0) & (value <= eps * scale[1])


def origin(state, x_norm, sdt, fdt=None):
    """Whether the iteration from ``state`` (x of max |x_i| = ``x_norm``) stops at the origin
    (``at_origin``, x's eps float32's beside float64, ``fdt``: the module docstring); with bounds,
    only where every variable on a bound is held there by its gradient (``_held``: a pass over x and
    g, made only near the origin, ``lax.cond``)."""
    wide = jnp.finfo(sdt).bits >= 64 and _verdict.has_narrower(state.params, sdt, fdt)
    near = at_origin(x_norm, state.value, state.start_scale, sdt, jnp.finfo(jnp.float32).eps if wide else None, fdt)
    if state.bounds is None:
        return near
    return jax.lax.cond(near, lambda: _held(state.params, state.grad, state.bounds), lambda: jnp.zeros((), bool))


def _held(x, g, box):
    """Whether every variable on a bound is held there by its gradient (g_i >= 0 at its lower
    bound, g_i <= 0 at its upper one; a fixed variable always): P(x - g) - x is 0 there."""
    ok = jnp.ones((), bool)
    for xl, gl, lo, hi in zip(*(jax.tree_util.tree_leaves(t) for t in (x, g, box.lower, box.upper))):
        if xl.size and not jnp.iscomplexobj(xl):
            ok = ok & ~jnp.any(((xl == lo) & (gl < 0) & (xl < hi)) | ((xl == hi) & (gl > 0) & (xl > lo)))
    return ok


def start_scale(state, x_norm):
    """The new state's ``start_scale``: [max |x0_i|, |f(x0)|], taken by the first iteration (x0
    in the box; the Optax face's value arrives with its first update; at ``init`` the reduction
    made L-BFGS-B's program copy x), from the max |x_i| it computes anyway."""
    now = jnp.stack([x_norm, jnp.abs(state.value)]).astype(state.start_scale.dtype)
    return where(state.count == 0, now, state.start_scale)
