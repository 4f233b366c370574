"""Random box least-squares fits that are hard in float32, and their float64 minima.

Each fit is ``min_x s |A x - b|^2 / 2`` subject to ``lower <= x <= upper``, with 8
variables and 12 residuals. The columns of ``A`` are scaled over four decades (condition
numbers of A^T A up to about 1e8, beyond float32's 1 / eps), ``b`` over three and the
factor ``s`` over six; each variable gets a box of one of five kinds (none, a lower bound,
an upper bound, both, or fixed: ``lower == upper``) around a random centre, and the start
is random. So a family holds every combination of active sets with ill-conditioning that
float32 rounding can hide: a solver that claims success there above the minimum has a
rounding defect (``qnjax._subspace``, ``qnjax.linesearch._more_thuente``), and the
suite's float32 box-fit test and ``benchmarks/box_fits.py`` count such claims.

The minimum of each fit (``box_least_squares_minima``) is scipy's bounded-variable least
squares (``scipy.optimize.lsq_linear(method="bvls")``, tol 1e-14; the fixed variables
substituted out first), in float64: an active-set method that is exact up to float64's
rounding. ``box_least_squares_judged`` judges returned points the way ``qnjax bench`` does:
solved when f is within ``rtol`` of the minimum (relative, at least 1) or the projected
gradient max |P(x - g) - x| is at most ``pgtol``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BoxFits(NamedTuple):
    """``count`` fits, float64 arrays: ``a`` (count, 12, 8), ``b`` (count, 12), ``scale``
    (count,), ``lower``, ``upper``, ``x0`` (count, 8)."""

    a: np.ndarray
    b: np.ndarray
    scale: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    x0: np.ndarray


def box_least_squares(count: int = 400, seed: int = 0) -> BoxFits:
    """``count`` random fits (module docstring) from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    n, m = 8, 12
    a = rng.normal(size=(count, m, n)) * 10.0 ** rng.uniform(-2, 2, (count, 1, n))
    b = rng.normal(size=(count, m)) * 10.0 ** rng.uniform(-1, 2, (count, 1))
    scale = 10.0 ** rng.uniform(-3, 3, count)
    lower, upper = np.full((count, n), -np.inf), np.full((count, n), np.inf)
    kind = rng.integers(0, 5, (count, n))
    centre = rng.normal(size=(count, n)) * 0.3
    lower[kind == 1], upper[kind == 2] = centre[kind == 1], centre[kind == 2]
    lower[kind == 3], upper[kind == 3] = centre[kind == 3] - 0.1, centre[kind == 3] + 0.5
    lower[kind == 4], upper[kind == 4] = centre[kind == 4], centre[kind == 4]
    x0 = rng.normal(size=(count, n))
    return BoxFits(a, b, scale, lower, upper, x0)


def box_least_squares_value(fits: BoxFits, x):
    """(f, max |P(x - g) - x|) of every fit at the points ``x`` (count, 8), in float64."""
    x = np.asarray(x, np.float64)
    r = np.einsum("kij,kj->ki", fits.a, x) - fits.b
    g = fits.scale[:, None] * np.einsum("kij,ki->kj", fits.a, r)
    projected = np.clip(x - g, fits.lower, fits.upper) - x
    return 0.5 * fits.scale * np.sum(r * r, axis=1), np.max(np.abs(projected), axis=1)


def box_least_squares_minima(fits: BoxFits):
    """(f*, x*) of every fit (module docstring; needs scipy)."""
    from scipy.optimize import lsq_linear

    count, n = fits.x0.shape
    fstar, xstar = np.empty(count), np.empty((count, n))
    for i in range(count):
        fixed = fits.lower[i] == fits.upper[i]
        rhs = fits.b[i] - fits.a[i][:, fixed] @ fits.lower[i][fixed]
        free = lsq_linear(fits.a[i][:, ~fixed], rhs, bounds=(fits.lower[i][~fixed], fits.upper[i][~fixed]),
                          method="bvls", tol=1e-14).x
        xstar[i][fixed], xstar[i][~fixed] = fits.lower[i][fixed], free
        fstar[i] = 0.5 * fits.scale[i] * np.sum((fits.a[i][:, ~fixed] @ free - rhs) ** 2)
    return fstar, xstar


def box_least_squares_judged(fits: BoxFits, x, fstar, rtol=1e-3, pgtol=1e-2):
    """Whether each point of ``x`` solves its fit: f within ``rtol`` of ``fstar`` (relative,
    at least 1) or the projected gradient at most ``pgtol`` (float32's defaults; the bench's
    float64 ones are 1e-5 and 1e-4)."""
    f, pg = box_least_squares_value(fits, x)
    return (f - fstar <= rtol * np.maximum(1.0, np.abs(fstar))) | (pg <= pgtol)
