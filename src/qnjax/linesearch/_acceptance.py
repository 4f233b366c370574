"""How a line search judges a trial: the verdicts a rule's ``update`` returns and the Wolfe
tests the curvature-based searches share (Moré-Thuente's, the zoom's).

For phi(t) = f(x + t d) with phi(0), phi'(0) < 0 known:

* sufficient decrease (N&W eq. 3.4), phi(t) - phi(0) <= c1 t phi'(0), the difference
  taken first so that a change below f's rounding is not a decrease;
* the approximate Wolfe test (Hager & Zhang 2005, Sec. 4), once the predicted decrease
  c1 t |phi'(0)| is below f's rounding noise: phi(t) <= phi(0) and
  phi'(t) <= (2 c1 - 1) phi'(0), the slopes deciding where f cannot;
* the strong curvature condition (N&W eq. 3.7b), |phi'(t)| <= c2 |phi'(0)|.

A trial accepted through the first test is ACCEPT, through the second ACCEPT_APPROX
(the search's status NOISE); REJECT goes on searching.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._xla import where

# What a rule's ``update`` says about a trial.
REJECT, ACCEPT, ACCEPT_APPROX = 0, 1, 2


def wolfe_tests(value0, slope0, c1, c2, approx_eps):
    """The acceptance tests of a trial, ``tests(t, f, d, finite) -> (decrease, curvature, exact)``,
    and c1 phi'(0) (Moré-Thuente's psi needs it); returns ``(tests, c1 phi'(0))``.

    ``decrease``: sufficient decrease phi(t) - phi(0) <= c1 t phi'(0) (N&W eq. 3.4, with
    the difference taken first, so a decrease below f's rounding is not one; then
    ``exact``), or, once the predicted decrease c1 t |phi'(0)| is below
    ``approx_eps * |phi(0)|`` (rounding noise), the approximate Wolfe test of Hager &
    Zhang (2005, Sec. 4): phi(t) <= phi(0) and phi'(t) <= (2 c1 - 1) phi'(0), the slopes
    deciding where f cannot; never true for a higher value or a non-finite trial (a tie
    is NOISE, never SUCCESS: the solver limits how many ties it takes in a row).
    ``curvature``: |phi'(t)| <= c2 |phi'(0)| (N&W eq. 3.7b).

    The levels that do not depend on t are computed once, as one array (one compiled
    kernel rather than one per level)."""
    sdt = jnp.result_type(value0)
    as_s = lambda v: jnp.asarray(v).astype(sdt)  # noqa: E731
    c1 = as_s(c1)
    factors = jnp.stack([c1, 2 * c1 - 1, -as_s(c2), as_s(approx_eps)])
    levels = factors * jnp.stack([slope0, slope0, slope0, jnp.abs(value0)])

    def tests(t, f, d, finite):
        slope_level, curvature_level, noise = levels[1], levels[2], levels[3]
        predicted = c1 * t * slope0
        armijo = finite & (f - value0 <= predicted)
        approx = finite & (-predicted <= noise) & (f <= value0) & (d <= slope_level)
        return armijo | approx, jnp.abs(d) <= curvature_level, armijo

    return tests, levels[0]


def acceptance(success, exact):
    """A rule's verdict on a trial: REJECT, ACCEPT (with sufficient decrease) or ACCEPT_APPROX."""
    return where(success, where(exact, ACCEPT, ACCEPT_APPROX), REJECT).astype(jnp.int32)
