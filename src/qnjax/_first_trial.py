"""The first trial and the largest step of a search with bounds.

scipy's L-BFGS-B (``lnsrlb``): while no curvature pair was ever stored, the first trial
is t = 1, the whole step to P(x - g), where every variable has both bounds finite (the
box sets the scale of x), else a step of unit length in x, 1 / ||d||_2, as without
bounds; in the first iteration, where some bound is finite, no trial beyond t = 1. Once
a pair is stored, the first trial is the model's step and the largest the largest
feasible one (the caller's ``t0`` and ``t_max``). qnjax departs from it in two ways.

1. Neither first-iteration rule where the step t = 1 moves x by rounding only
   (``t_round``; f scaled by 1e-20: d = P(x - g) - x ~ 1e-20), nor where the decrease it
   promises, -phi'(0), is below the smallest normal number (``visible`` False: f scaled by
   1e-25 from x = 0, whose rounding is that of 0, so the step of 2e-25 counted as
   resolved, and the run stopped there with LINESEARCH_FAILED), nor, below float64, where
   it is within twice f's floor (``visible``: the same f times 1e-30 in [-2, 0.8]^4, whose
   power of two 2^100 (``_scale``) makes -phi'(0) normal, 1e-29 against f's 3.8: the
   search from t = 1 could not extrapolate to a decrease in its 30 trials, and the run
   ended LINESEARCH_FAILED at x0): there the first trial is of unit length in x.
2. A first search from the whole step that leaves x where it was is not final (``again``):
   the next search starts from the step of unit length in x, and only its failure ends the
   run. Finite bounds need not set x's scale: with bounds of +-1e30 the whole step is as
   long as g. From 10 times Chebyquad's (n = 10) start, max |g| = 4.4e28 and f a polynomial
   of degree 20, the search's 30 trials ended at t = 1e-22 with f still 10^113 times f(x0),
   and the run stopped LINESEARCH_FAILED at x0 (float64; so did Chebyquad (n = 8) from 10
   and 100 x0, Chebyquad (n = 10) from 100 x0, Brown almost-linear from 100 x0 and
   Jennrich-Sampson from 10 x0). The second search is told from the first by the status of
   the search before it: in the first iteration a search that left x where it was is never
   SUCCESS (``_verdict.judge``: FAILED, or a DECREASE within f's noise).

The projected method (``_projected``) takes L-BFGS-B's rules whenever no pair is stored,
as if none had ever been (after a dropped memory too), along the ray up to the largest
feasible step ``t_ray``; with pairs, the model's step and no largest step (the arc).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._bounds import facts
from ._tree import guards_range
from ._xla import where
from .linesearch import LineSearchStatus


def visible(slope0, unit, floor, sdt):
    """Whether the decrease the model's step promises, -phi'(0) ``unit``, is a normal number and,
    below float64, beyond twice f's ``floor`` (module docstring)."""
    level = jnp.finfo(sdt).tiny
    return -slope0 * unit >= (jnp.maximum(level, 2 * floor) if guards_range(sdt) else level)


def lbfgsb(state, box, params, scaled, unit, t_round, t0, t_max, visible=True):
    """(t0, t_max, again): L-BFGS-B's first trial and largest step (module docstring) given
    the unconstrained solver's ``t0``, the largest feasible step ``t_max``, whether a pair was
    ever stored (``scaled``) and the model's step ``unit``; ``again``: whether a search from
    them that leaves x is searched again from a shorter first trial. t0 <= t_max."""
    _, constrained, boxed = facts(box, params)
    first = state.count == 0
    resolved = (unit > t_round) & visible
    retry = first & (state.linesearch_status != int(LineSearchStatus.SUCCESS))
    whole = ~scaled & boxed & resolved & ~retry
    t_max = where(first & constrained & resolved, jnp.minimum(t_max, unit), t_max)
    shorter = jnp.minimum(t0, t_max) < jnp.minimum(unit, t_max)
    t0 = where(whole, unit, t0).astype(unit.dtype)
    return jnp.minimum(t0, t_max), t_max, whole & first & shorter


def projected(state, box, params, empty, unit, t_round, dd, t_ray, visible=True):
    """(t0, largest step, again) of the projected method (module docstring; ``dd`` = <d, d>,
    ``empty``: no pair stored)."""
    norm = jnp.sqrt(where(dd > 0, dd, 1))
    t0, t_max, again = lbfgsb(state, box, params, jnp.asarray(False), unit, t_round, 1 / norm, t_ray, visible)
    return where(empty, t0, unit), where(empty, t_max, jnp.inf), again & empty
