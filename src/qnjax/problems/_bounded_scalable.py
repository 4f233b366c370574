"""Large-``n`` bound-constrained problems with exact minima, matrix-free, any ``n`` (multiple of 4).

Both are defined here (no published source) so that the minimum is known exactly at
every ``n``; the functions tile their 4-periodic data inside the trace, so nothing of
size ``n`` is stored with them, and an evaluation at n = 10**6 is a few elementwise
passes. Index
``i = 0, 1, ...`` (0-based); ``i mod 4`` picks the pattern.

* ``bounded_quartic_n{n}``: ``f = sum_i (x_i - c_i)**4 / 4 + (x_i - c_i)**2 / 2`` on
  ``[0, 1]**n`` with ``c = (-1/2, 1/4, 3/2, 3/4)`` repeated. Each term is strictly convex
  with its minimum at ``c_i``, so ``x*_i = clip(c_i, 0, 1) = (0, 1/4, 1, 3/4)``: half
  the variables end on a bound (a quarter on each side, with gradients ``+0.625`` and
  ``-0.625``), half strictly inside. ``f* = (n/2) (1/64 + 1/8) = 9 n / 128``, exact in
  binary floating point. ``x0 = 1/2``.

* ``nnls_banded_n{n}``: nonnegative least squares ``f = |A x - b|**2 / 2``, ``x >= 0``,
  with the upper bidiagonal ``(A x)_i = 2 x_i + x_{i+1}`` (``x_n = 0``), applied by a
  shifted slice. Its singular values lie in ``[1, 3]``, so ``A'A`` is positive definite
  (condition number at most 9) and the minimiser is unique. It is constructed from
  its KKT conditions: pick ``x* = (0, 1, 2, 0)`` repeated and the residual
  ``r* = A x* - b = (4, -2, 1, 1)`` repeated; then the gradient
  ``g* = A' r*``, ``g*_i = 2 r*_i + r*_{i-1}`` (``r*_{-1} = 0``), is
  ``(8 + [i > 0], 0, 0, 3)``: zero on the free variables (``i mod 4 in {1, 2}``) and
  positive where ``x*_i = 0`` (strict complementarity). So
  ``b = A x* - r* = (1, 4, 4, 0) - (4, -2, 1, 1) = (-3, 6, 3, -1)`` repeated (the last
  row has no ``x_{i+1}``, but ``x*_{i+1} = 0`` there anyway) and
  ``f* = |r*|**2 / 2 = (n/4)(16 + 4 + 1 + 1)/2 = 11 n / 4``, exact. ``x0 = 1``.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._mgh_fixed import const

_QUARTIC_C = (-0.5, 0.25, 1.5, 0.75)
_NNLS_B = (-3.0, 6.0, 3.0, -1.0)
_NNLS_X = (0.0, 1.0, 2.0, 0.0)


def _pattern(values, x):
    """``values[i mod 4]`` for every index ``i`` of ``x``, in ``x``'s dtype."""
    return jnp.tile(const(values, x), x.shape[0] // len(values))


def bounded_quartic(x):
    d = x - _pattern(_QUARTIC_C, x)
    d2 = d * d
    return jnp.sum(d2 * d2 / 4 + d2 / 2)


def banded_apply(x):
    """``(A x)_i = 2 x_i + x_{i+1}`` with ``x_n = 0``."""
    return 2 * x + jnp.concatenate([x[1:], jnp.zeros((1,), x.dtype)])


def nnls_banded(x):
    r = banded_apply(x) - _pattern(_NNLS_B, x)
    return jnp.sum(r * r) / 2


def _need(n: int, family: str) -> None:
    if n < 4 or n % 4:
        raise ValueError(f"{family}: n={n} unsupported (a positive multiple of 4)")


@functools.cache
def build_bounded_quartic(n: int) -> Problem:
    _need(n, "bounded_quartic")
    xstar = np.tile(np.clip(_QUARTIC_C, 0.0, 1.0), n // 4)
    return Problem(f"bounded_quartic_n{n}", None, n, bounded_quartic, np.full(n, 0.5), 9 * n / 128, xstar,
                   lower=np.zeros(n), upper=np.ones(n))


@functools.cache
def build_nnls_banded(n: int) -> Problem:
    _need(n, "nnls_banded")
    return Problem(f"nnls_banded_n{n}", None, n, nnls_banded, np.ones(n), 11 * n / 4, np.tile(_NNLS_X, n // 4),
                   lower=np.zeros(n), upper=np.full(n, np.inf))


def scalable_bounded(n: int = 10_000) -> tuple[Problem, ...]:
    """The bounded quartic and the banded NNLS at dimension ``n`` (a multiple of 4)."""
    n = int(n)
    return build_bounded_quartic(n), build_nnls_banded(n)


FAMILIES = {
    "bounded_quartic": (build_bounded_quartic, (10_000,)),
    "nnls_banded": (build_nnls_banded, (10_000,)),
}
