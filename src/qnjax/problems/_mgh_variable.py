"""Moré-Garbow-Hillstrom problems 21-35 (variable dimension, any ``n``).

Same paper, form and conventions as :mod:`qnjax.problems._mgh_fixed` (which documents
the references): ``f(x) = sum_i f_i(x)**2`` with the paper's residuals and starting
points. Every function reads ``n`` from ``x.shape`` and is vectorised with ``jnp``
(shifted slices, ``cumsum``), so the same code serves n = 10 and n = 10**5.

Standard instances (``mgh()``): extended Rosenbrock n = 10; extended Powell singular
n = 12; penalty I and II n = 4, 10; variably dimensioned, trigonometric, Brown
almost-linear, discrete boundary value, discrete integral equation, Broyden
tridiagonal and banded n = 10; the linear functions n = 10, m = 2n = 20; Chebyquad
n = m = 8, 10. Any other ``n`` can be built with ``qnjax.problems.get(family, n=...)``
(the linear functions keep m = 2n) where the minimum value is known for it.

Minimum values (as printed in the paper, 6 digits):

* Penalty I: 2.24997e-5 (n=4), 7.08765e-5 (n=10). The minimiser is ``c * ones`` with
  ``c`` the root of ``4 n c**3 + (2a - 1) c - 2a = 0`` (stationarity forces all
  components equal), so ``xstar``/``fstar`` are computed exactly for any ``n``.
* Penalty II: 9.37629e-6 (n=4), 2.93660e-4 (n=10).
* Trigonometric: global ``f = 0`` (e.g. at ``x = 0``). For n = 10 there is also a
  local minimum ``f = 2.79506e-5`` that some methods reach from ``x0``; ``fstar = 0``.
* Brown almost-linear: ``f = 0`` at ``(a, ..., a, a**(1-n))`` with
  ``n a**n - (n+1) a**(n-1) + 1 = 0`` (e.g. ``a = 1``); local ``f = 1`` at
  ``(0, ..., 0, n+1)``.
* Linear full rank: ``m - n`` at ``-ones``. Rank 1: ``m(m-1)/(2(2m+1))`` wherever
  ``sum_j j x_j = 3/(2m+1)``. Rank 1 with zero columns and rows:
  ``(m**2 + 3m - 6)/(2(2m-3))`` wherever ``sum_{j=2}^{n-1} j x_j = 3/(2m-3)``.
* Chebyquad (m = n): 0 for n = 1..7 and 9, 3.51687e-3 (n=8), 6.50395e-3 (n=10).
* All others: 0.

``f0``: closed forms (derived here from ``x0``, valid for every ``n``) for extended
Rosenbrock (24.2 per pair), extended Powell (215 per block), penalty I, penalty II,
variably dimensioned, trigonometric, Brown almost-linear, discrete boundary value
(``x0`` is quadratic, so ``f_i = h**2 ((t_i**2 + 1)**3/2 - 2)``), Broyden tridiagonal
(``n + 11``), Broyden banded (``36 n``) and the linear functions. They agree with the
published MINPACK-1 initial residual norms (linear functions n=5, m=10; Brown
almost-linear n=10, 30, 40) and Burkardt's TEST_OPT values at n=4 (extended
Rosenbrock and Powell, penalty I and II, trigonometric, variably dimensioned).
Chebyquad n=8, 10 match MINPACK-1's published norms. Derived, with no published value
found: penalty II, trigonometric, discrete boundary value at n=10 (closed forms above)
and the discrete integral equation n=10 (exact rational arithmetic).
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._mgh_fixed import const, index, sumsq

# ------------------------------------------------------------------ functions


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return sumsq(10 * (even - odd * odd)) + sumsq(1 - odd)


def extended_powell_singular(x):
    b = x.reshape(-1, 4)
    r1 = b[:, 0] + 10 * b[:, 1]
    r2 = math.sqrt(5) * (b[:, 2] - b[:, 3])
    r3 = (b[:, 1] - 2 * b[:, 2]) ** 2
    r4 = math.sqrt(10) * (b[:, 0] - b[:, 3]) ** 2
    return sumsq(r1) + sumsq(r2) + sumsq(r3) + sumsq(r4)


_PENALTY_A = 1e-5


def penalty_i(x):
    return sumsq(math.sqrt(_PENALTY_A) * (x - 1)) + (jnp.sum(x * x) - 0.25) ** 2


def penalty_ii(x):
    n = x.shape[0]
    i = index(n, x)[1:]
    y = jnp.exp(i / 10) + jnp.exp((i - 1) / 10)
    e = jnp.exp(x / 10)
    r_mid = math.sqrt(_PENALTY_A) * (e[1:] + e[:-1] - y)
    r_tail = math.sqrt(_PENALTY_A) * (e[1:] - math.exp(-0.1))
    r_last = jnp.sum((n - index(n, x) + 1) * x * x) - 1
    return (x[0] - 0.2) ** 2 + sumsq(r_mid) + sumsq(r_tail) + r_last**2


def variably_dimensioned(x):
    s = jnp.sum(index(x.shape[0], x) * (x - 1))
    return sumsq(x - 1) + s * s + s**4


def trigonometric(x):
    n = x.shape[0]
    c = jnp.cos(x)
    return sumsq(n - jnp.sum(c) + index(n, x) * (1 - c) - jnp.sin(x))


def brown_almost_linear(x):
    n = x.shape[0]
    r = x[:-1] + jnp.sum(x) - (n + 1)
    return sumsq(r) + (jnp.prod(x) - 1) ** 2


def _neighbours(x):
    """``(x_{i-1}, x_{i+1})`` with the boundary values ``x_0 = x_{n+1} = 0``."""
    padded = jnp.pad(x, 1)
    return padded[:-2], padded[2:]


def discrete_boundary_value(x):
    n = x.shape[0]
    h = 1.0 / (n + 1)
    t = index(n, x) * h
    left, right = _neighbours(x)
    return sumsq(2 * x - left - right + h * h * (x + t + 1) ** 3 / 2)


def discrete_integral_equation(x):
    n = x.shape[0]
    h = 1.0 / (n + 1)
    t = index(n, x) * h
    q = (x + t + 1) ** 3
    lower = jnp.cumsum(t * q)  # sum_{j <= i} t_j q_j
    upper_incl = jnp.cumsum(((1 - t) * q)[::-1])[::-1]  # sum_{j >= i}
    upper = jnp.concatenate([upper_incl[1:], jnp.zeros((1,), x.dtype)])  # j > i
    return sumsq(x + h * ((1 - t) * lower + t * upper) / 2)


def broyden_tridiagonal(x):
    left, right = _neighbours(x)
    return sumsq((3 - 2 * x) * x - left - 2 * right + 1)


def broyden_banded(x, lower=5, upper=1):
    n = x.shape[0]
    g = x * (1 + x)
    padded = jnp.pad(g, (lower, upper))
    band = sum(padded[k : k + n] for k in range(lower + upper + 1))  # j in [i-5, i+1]
    return sumsq(x * (2 + 5 * x * x) + 1 - (band - g))


def linear_full_rank(x, m):
    c = 2 * jnp.sum(x) / m + 1
    return sumsq(x - c) + (m - x.shape[0]) * c * c


def linear_rank1(x, m):
    s = jnp.sum(index(x.shape[0], x) * x)
    return sumsq(index(m, x) * s - 1)


def linear_rank1_zero_cols_rows(x, m):
    n = x.shape[0]
    s = jnp.sum(index(n, x)[1 : n - 1] * x[1 : n - 1])
    return sumsq(index(m - 2, x) * s - 1) + 2


def chebyquad(x, m=None):
    n = x.shape[0]
    m = n if m is None else m
    y = 2 * x - 1
    t_prev, t_cur = jnp.ones_like(x), y
    means = [jnp.mean(t_cur)]
    for _ in range(2, m + 1):
        t_prev, t_cur = t_cur, 2 * y * t_cur - t_prev
        means.append(jnp.mean(t_cur))
    k = np.arange(1, m + 1)
    integrals = np.where(k % 2 == 0, -1.0 / np.maximum(k * k - 1.0, 1.0), 0.0)
    return sumsq(jnp.stack(means) - const(integrals, x))


# ------------------------------------------------------------------ builders
# Minimisers below were refined by Newton's method in float64 from the paper's /
# MINPACK's printed solutions; f(xstar) reproduces the paper's values to all digits.

# fmt: off
_PENALTY_II = {  # n: (fstar, xstar)
    4: (9.376293007355442e-06, [
        0.1999993333503804, 0.19131670099277248, 0.48010148533262326, 0.5188454043902002]),
    10: (2.9366053745674605e-04, [
        0.19998360519782363, 0.010350648471292303, 0.019604934480438405, 0.032089067220685656,
        0.04993267739964131, 0.07651399515399361, 0.11862407286950417, 0.19214487233557667,
        0.34732058694184365, 0.3691643741593508]),
}
_CHEBYQUAD = {  # n = m: (fstar, xstar, f0)
    8: (3.5168737256779286e-03, [
        0.043152760151016635, 0.19309084038418609, 0.26632870689027294, 0.5, 0.5,
        0.7336712931097271, 0.8069091596158139, 0.9568472398489833], 0.03861769828593029),
    10: (6.5039548008823085e-03, [
        0.05961990053581272, 0.16670828183586145, 0.2391706589426085, 0.3988842923060445,
        0.3988842923060445, 0.6011157076939555, 0.6011157076939555, 0.7608293410573915,
        0.8332917181641386, 0.9403800994641873], 0.033763265462880075),
}
_CHEBYQUAD.update({n: (0.0, None, None) for n in (1, 2, 3, 4, 5, 6, 7, 9)})
# Zeros of the n = 10 systems (Newton-refined; |f| < 1e-29). Problems 28 and 29 are two
# discretisations of the same boundary value problem and share their solution.
_BVP_XSTAR = {10: [
    -0.04316498251876486, -0.08157715653538687, -0.11448571438052926, -0.14097357686259665,
    -0.1599086961819831, -0.16987720231277492, -0.16908998378120835, -0.15524953522183182,
    -0.125355891678935, -0.07541653368589209]}
_BROYDEN_TRIDIAGONAL_XSTAR = {10: [
    -0.5707221320112248, -0.681806949984275, -0.70221007601766, -0.7055106298950804,
    -0.7049061557287436, -0.7014966070298512, -0.6918893223547983, -0.6657965144058537,
    -0.5960351090263657, -0.4164122575286934]}
_BROYDEN_BANDED_XSTAR = {10: [
    -0.4283028635872503, -0.47659642435629024, -0.5196524636468617, -0.5580993248321808,
    -0.5925061568294574, -0.6245036821994678, -0.6232394714405911, -0.6213938417965734,
    -0.6204535966590874, -0.5864692707204351]}
# Discrete integral equation, n = 10: f(x0) derived by exact rational arithmetic (no
# published value found).
_DIE_F0 = {10: 0.06341684157945264}
# fmt: on


def _need(cond: bool, family: str, n: int, what: str) -> None:
    if not cond:
        raise ValueError(f"{family}: n={n} unsupported ({what})")


def _grid(n: int) -> np.ndarray:
    """``t_i = i/(n+1)``, the grid of problems 28 and 29."""
    return np.arange(1, n + 1) / (n + 1)


@functools.cache
def build_extended_rosenbrock(n: int) -> Problem:
    _need(n >= 2 and n % 2 == 0, "extended_rosenbrock", n, "n must be even")
    x0 = np.tile([-1.2, 1.0], n // 2)
    return Problem(f"extended_rosenbrock_n{n}", 21, n, extended_rosenbrock, x0, 0.0,
                   np.ones(n), f0=12.1 * n)  # fmt: skip


@functools.cache
def build_extended_powell_singular(n: int) -> Problem:
    _need(n >= 4 and n % 4 == 0, "extended_powell_singular", n, "n must be a multiple of 4")
    x0 = np.tile([3.0, -1.0, 0.0, 1.0], n // 4)
    return Problem(f"extended_powell_singular_n{n}", 22, n, extended_powell_singular,
                   x0, 0.0, np.zeros(n), f0=53.75 * n)  # fmt: skip


def _penalty_i_min(n: int) -> tuple[float, float]:
    """``(c, f(c * ones))`` at the minimiser ``c * ones`` of penalty I."""
    a = _PENALTY_A

    def f(c):
        return n * a * (c - 1) ** 2 + (n * c * c - 0.25) ** 2

    roots = np.roots([4.0 * n, 0.0, 2 * a - 1, -2 * a])
    c = min((float(r.real) for r in roots if abs(r.imag) < 1e-12), key=f)
    for _ in range(3):  # polish the root of g(c) = 4n c^3 + (2a-1) c - 2a
        c -= (4 * n * c**3 + (2 * a - 1) * c - 2 * a) / (12 * n * c * c + 2 * a - 1)
    return c, f(c)


@functools.cache
def build_penalty_i(n: int) -> Problem:
    _need(n >= 1, "penalty_i", n, "n >= 1")
    c, fstar = _penalty_i_min(n)
    f0 = _PENALTY_A * (n - 1) * n * (2 * n - 1) / 6 + (n * (n + 1) * (2 * n + 1) / 6 - 0.25) ** 2
    x0 = np.arange(1.0, n + 1)
    return Problem(f"penalty_i_n{n}", 23, n, penalty_i, x0, fstar, np.full(n, c), f0=f0)


@functools.cache
def build_penalty_ii(n: int) -> Problem:
    _need(n in _PENALTY_II, "penalty_ii", n, f"minimum known for n in {sorted(_PENALTY_II)}")
    fstar, xstar = _PENALTY_II[n]
    a, e = _PENALTY_A, math.exp(0.05)  # x0 = 1/2: every exp(x_j/10) = e^0.05
    ys = [math.exp(i / 10) + math.exp((i - 1) / 10) for i in range(2, n + 1)]
    mid = math.fsum((2 * e - y) ** 2 for y in ys)
    f0 = 0.3**2 + a * mid + a * (n - 1) * (e - math.exp(-0.1)) ** 2 + (n * (n + 1) / 8 - 1) ** 2
    return Problem(f"penalty_ii_n{n}", 24, n, penalty_ii, np.full(n, 0.5), fstar, xstar, f0=f0)


@functools.cache
def build_variably_dimensioned(n: int) -> Problem:
    _need(n >= 1, "variably_dimensioned", n, "n >= 1")
    s = -(n + 1) * (2 * n + 1) / 6  # sum_j j (x0_j - 1) = -sum_j j^2 / n
    f0 = (n + 1) * (2 * n + 1) / (6 * n) + s**2 + s**4  # sum (j/n)^2 = (n+1)(2n+1)/(6n)
    x0 = 1 - np.arange(1, n + 1) / n
    return Problem(f"variably_dimensioned_n{n}", 25, n, variably_dimensioned, x0, 0.0,
                   np.ones(n), f0=f0)  # fmt: skip


@functools.cache
def build_trigonometric(n: int) -> Problem:
    _need(n >= 1, "trigonometric", n, "n >= 1")
    u, s = 1 - math.cos(1 / n), math.sin(1 / n)  # f_i(x0) = (n + i) u - s
    f0 = math.fsum(((n + i) * u - s) ** 2 for i in range(1, n + 1))
    return Problem(f"trigonometric_n{n}", 26, n, trigonometric, np.full(n, 1 / n), 0.0,
                   np.zeros(n), f0=f0)  # fmt: skip


@functools.cache
def build_brown_almost_linear(n: int) -> Problem:
    _need(n >= 2, "brown_almost_linear", n, "n >= 2")
    f0 = (n - 1) * ((n + 1) / 2) ** 2 + (1 - 0.5**n) ** 2
    return Problem(f"brown_almost_linear_n{n}", 27, n, brown_almost_linear, np.full(n, 0.5),
                   0.0, np.ones(n), f0=f0)  # fmt: skip


@functools.cache
def build_discrete_boundary_value(n: int) -> Problem:
    _need(n >= 1, "discrete_boundary_value", n, "n >= 1")
    t, h = _grid(n), 1 / (n + 1)
    # x0 = t(t-1) is quadratic, so 2x_i - x_{i-1} - x_{i+1} = -2h^2 exactly.
    f0 = h**4 * math.fsum(((t * t + 1) ** 3 / 2 - 2) ** 2)
    return Problem(f"discrete_boundary_value_n{n}", 28, n, discrete_boundary_value,
                   t * (t - 1), 0.0, _BVP_XSTAR.get(n), f0=f0)  # fmt: skip


@functools.cache
def build_discrete_integral_equation(n: int) -> Problem:
    _need(n >= 1, "discrete_integral_equation", n, "n >= 1")
    t = _grid(n)
    return Problem(f"discrete_integral_equation_n{n}", 29, n, discrete_integral_equation,
                   t * (t - 1), 0.0, _BVP_XSTAR.get(n), f0=_DIE_F0.get(n))  # fmt: skip


@functools.cache
def build_broyden_tridiagonal(n: int) -> Problem:
    _need(n >= 2, "broyden_tridiagonal", n, "n >= 2")
    # at x0 = -1: f_1 = -2, f_n = -3, all others -1
    return Problem(f"broyden_tridiagonal_n{n}", 30, n, broyden_tridiagonal, -np.ones(n),
                   0.0, _BROYDEN_TRIDIAGONAL_XSTAR.get(n), f0=float(n + 11))  # fmt: skip


@functools.cache
def build_broyden_banded(n: int) -> Problem:
    _need(n >= 1, "broyden_banded", n, "n >= 1")
    # at x0 = -1 every x_j (1 + x_j) = 0, so f_i = -7 + 1 = -6
    return Problem(f"broyden_banded_n{n}", 31, n, broyden_banded, -np.ones(n), 0.0,
                   _BROYDEN_BANDED_XSTAR.get(n), f0=36.0 * n)  # fmt: skip


@functools.cache
def build_linear_full_rank(n: int) -> Problem:
    _need(n >= 1, "linear_full_rank", n, "n >= 1")
    m = 2 * n
    f0 = n * (2 * n / m) ** 2 + (m - n) * (1 + 2 * n / m) ** 2
    return Problem(f"linear_full_rank_n{n}", 32, n, functools.partial(linear_full_rank, m=m),
                   np.ones(n), float(m - n), -np.ones(n), f0=f0)  # fmt: skip


@functools.cache
def build_linear_rank1(n: int) -> Problem:
    _need(n >= 1, "linear_rank1", n, "n >= 1")
    m, s0 = 2 * n, n * (n + 1) / 2  # s0 = sum_j j x0_j
    f0 = math.fsum((i * s0 - 1) ** 2 for i in range(1, m + 1))
    xstar = np.full(n, 3 / (2 * m + 1) / s0)  # sum_j j x_j = 3/(2m+1)
    return Problem(f"linear_rank1_n{n}", 33, n, functools.partial(linear_rank1, m=m),
                   np.ones(n), m * (m - 1) / (2 * (2 * m + 1)), xstar, f0=f0)  # fmt: skip


@functools.cache
def build_linear_rank1_zero_cols_rows(n: int) -> Problem:
    _need(n >= 3, "linear_rank1_zero_cols_rows", n, "n >= 3")
    m, s0 = 2 * n, n * (n - 1) / 2 - 1  # s0 = sum_{j=2}^{n-1} j
    f0 = 2 + math.fsum((k * s0 - 1) ** 2 for k in range(1, m - 1))
    xstar = np.full(n, 3 / (2 * m - 3) / s0)  # sum_{j=2}^{n-1} j x_j = 3/(2m-3)
    xstar[[0, -1]] = 1.0  # x_1 and x_n do not enter f
    fstar = (m * m + 3 * m - 6) / (2 * (2 * m - 3))
    return Problem(f"linear_rank1_zero_cols_rows_n{n}", 34, n,
                   functools.partial(linear_rank1_zero_cols_rows, m=m), np.ones(n), fstar,
                   xstar, f0=f0)  # fmt: skip


@functools.cache
def build_chebyquad(n: int) -> Problem:
    _need(n in _CHEBYQUAD, "chebyquad", n, f"minimum known for n in {sorted(_CHEBYQUAD)}")
    fstar, xstar, f0 = _CHEBYQUAD[n]
    x0 = np.arange(1, n + 1) / (n + 1)
    return Problem(f"chebyquad_n{n}", 35, n, chebyquad, x0, fstar, xstar, f0=f0)


FAMILIES = {
    "extended_rosenbrock": (build_extended_rosenbrock, (10,)),
    "extended_powell_singular": (build_extended_powell_singular, (12,)),
    "penalty_i": (build_penalty_i, (4, 10)),
    "penalty_ii": (build_penalty_ii, (4, 10)),
    "variably_dimensioned": (build_variably_dimensioned, (10,)),
    "trigonometric": (build_trigonometric, (10,)),
    "brown_almost_linear": (build_brown_almost_linear, (10,)),
    "discrete_boundary_value": (build_discrete_boundary_value, (10,)),
    "discrete_integral_equation": (build_discrete_integral_equation, (10,)),
    "broyden_tridiagonal": (build_broyden_tridiagonal, (10,)),
    "broyden_banded": (build_broyden_banded, (10,)),
    "linear_full_rank": (build_linear_full_rank, (10,)),
    "linear_rank1": (build_linear_rank1, (10,)),
    "linear_rank1_zero_cols_rows": (build_linear_rank1_zero_cols_rows, (10,)),
    "chebyquad": (build_chebyquad, (8, 10)),
}
