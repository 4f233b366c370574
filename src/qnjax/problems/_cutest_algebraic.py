"""CUTEst "other" objectives that are algebraic (polynomials, ``|r|**(7/3)``), any ``n``.

Written with 1-based ``x_i`` as in the SIF files; conventions and the meaning of
``fstar`` / ``f0``: :mod:`qnjax.problems._cutest`.

* ARWHEAD: ``sum_{i<n} (x_i**2 + x_n**2)**2 - 4 x_i + 3``, x0 = 1; 0 at (1, ..., 1, 0).
* BROYDN7D: ``sum_i |r_i|**(7/3) + sum_{i<=n/2} |x_i + x_{i+n/2}|**(7/3)``,
  ``r_i = 1 - x_{i-1} - 2 x_{i+1} + (3 - 2 x_i) x_i`` (``x_0 = x_{n+1} = 0``), x0 = 1,
  n even. (Andrei and some ports use ``(3 - x_i/2) x_i`` and x0 = -1; the SIF has
  ``3 - 2 x_i`` and 1.) Many local minima, and where a method stops depends on its
  path: at n = 100 L-BFGS-B (m = 3..50) reaches 39.678193, BFGS 40.12, CG 39.83,
  trust-krylov 32.32, TNC 67.65; at n = 1000 L-BFGS-B reaches 393.58 (m = 5, 10),
  393.56 (m = 20, 50) or 393.63 (m = 3), Newton-CG 374.6, but CG 1.2332, close to the
  SIF's (n-less) "1.2701". ``fstar`` is the L-BFGS-B m = 10 local minimum, 39.678193
  (n=100) and 393.583568 (n=1000), a positive definite one; lower counts as better.
* CURLY10: ``sum_i g(q_i)``, ``q_i = sum_{j=i}^{min(i+10, n)} x_j``,
  ``g(q) = q (q (q**2 - 20) - 0.1)``, x0 = 1e-4 i/(n+1). ``x -> q`` is invertible, so
  every local minimum has each ``q_i`` at one of the two minimisers of ``g``: the
  global one ``n g(q+)`` (``q+`` the largest root of ``4 q**3 - 40 q - 0.1``; the SIF's
  -1.003163e5 at n=1000) is reached from x0 by every method tried, at ``x_i = q+`` for
  ``i = n, n-11, ...`` and 0 elsewhere.
* DIXMAANA, DIXMAANE, DIXMAANI (Dixon & Maany 1988, beta = 0; CUTEst's current
  DIXMAANA1/E1/I1 only drop the zero terms): with ``m = n // 3`` and ``t_i = i/n``,
  ``1 + sum_i t_i**k x_i**2 + 1/8 sum_{i<=2m} x_i**2 x_{i+m}**4
  + 1/8 sum_{i<=m} t_i**k x_i x_{i+2m}``, k = 0, 1, 2; x0 = 2. The SIF wants n = 3m;
  for other n the last ``n - 3m`` variables enter the first sum only (so the default
  n = 100 is one variable more than the SIF's n = 99). Convex quadratic part plus
  nonnegative quartic: minimum 1 at 0.
* DQRTIC and QUARTC (identical SIF functions): ``sum_i (x_i - i)**4``, x0 = 2; 0.
* EDENSCH: ``16 + sum_{i<n} (x_i - 2)**4 + (x_i x_{i+1} - 2 x_{i+1})**2
  + (x_{i+1} + 1)**2``, x0 = 8. Minimum computed, 603.284592 (n=100) and 6003.28459
  (n=1000), the same for every method tried (SIF: 219.28 at n = 36).
* ENGVAL1: ``sum_{i<n} (x_i**2 + x_{i+1}**2)**2 - 4 x_i + 3``, x0 = 2. Minimum computed,
  109.088136 (n=100) and 1108.19472 (n=1000), the same for every method tried.
* FLETCHCR: the current SIF is the chained Rosenbrock function
  ``sum_{i<n} 100 (x_{i+1} - x_i**2)**2 + (1 - x_i)**2``, x0 = 0; 0 at ones. (Andrei and
  the old CUTE AMPL model have ``100 (x_{i+1} - x_i + 1 - x_i**2)**2`` instead.)
* NONDQUAR: ``sum_{i<=n-2} (x_i + x_{i+1} + x_n)**4 + (x_1 - x_2)**2
  + (x_{n-1} - x_n)**2``, x0 = (1, -1, 1, -1, ...); 0 at 0 (singular Hessian).
* POWELLSG: MGH 22 (extended Powell singular), n a multiple of 4; 0 at 0.
* POWER: ``(sum_i i x_i**2)**2``, x0 = 1; 0 at 0.
* SPARSQUR: ``sum_i (i/8) (sum_{j in J_i} x_j**2)**2`` with the six (repeatable)
  ``J_i = i, 1 + (2i - 1, 3i - 1, 5i - 1, 7i - 1, 11i - 1 mod n)``, x0 = 0.5; 0 at 0.
* VARDIM: MGH 25 (variably dimensioned); 0 at ones.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._cutest import need, problem, tabulated
from qnjax.problems._mgh_fixed import index, sumsq
from qnjax.problems._mgh_variable import (
    build_extended_powell_singular,
    build_variably_dimensioned,
    extended_powell_singular,
    variably_dimensioned,
)

# ------------------------------------------------------------------ functions


def arwhead(x):
    return jnp.sum((x[:-1] ** 2 + x[-1] ** 2) ** 2 - 4 * x[:-1] + 3)


def _abs_power(r):
    return jnp.abs(r) ** (7 / 3)


def broydn7d(x):
    half = x.shape[0] // 2
    padded = jnp.pad(x, 1)
    r = 1 - padded[:-2] - 2 * padded[2:] + (3 - 2 * x) * x
    return jnp.sum(_abs_power(r)) + jnp.sum(_abs_power(x[:half] + x[half:]))


_CURLY_BAND = 10


def curly10(x):
    n = x.shape[0]
    padded = jnp.pad(x, (0, _CURLY_BAND))
    q = sum(padded[k : k + n] for k in range(_CURLY_BAND + 1))
    return jnp.sum(q * (q * (q * q - 20) - 0.1))


def _dixmaan(x, k):
    n = x.shape[0]
    m = n // 3
    w = (index(n, x) / n) ** k
    quartic = jnp.sum(x[: 2 * m] ** 2 * x[m : 3 * m] ** 4)
    cross = jnp.sum(w[:m] * x[:m] * x[2 * m : 3 * m])
    return 1 + jnp.sum(w * x * x) + (quartic + cross) / 8


def dixmaana(x):
    return _dixmaan(x, 0)


def dixmaane(x):
    return _dixmaan(x, 1)


def dixmaani(x):
    return _dixmaan(x, 2)


def dqrtic(x):
    return jnp.sum((x - index(x.shape[0], x)) ** 4)


def edensch(x):
    y = x[1:]
    return 16 + jnp.sum((x[:-1] - 2) ** 4 + (x[:-1] * y - 2 * y) ** 2 + (y + 1) ** 2)


def engval1(x):
    return jnp.sum((x[:-1] ** 2 + x[1:] ** 2) ** 2 - 4 * x[:-1] + 3)


def fletchcr(x):
    return 100 * sumsq(x[1:] - x[:-1] ** 2) + sumsq(1 - x[:-1])


def nondquar(x):
    quartic = jnp.sum((x[:-2] + x[1:-1] + x[-1]) ** 4)
    return quartic + (x[0] - x[1]) ** 2 + (x[-2] - x[-1]) ** 2


def power(x):
    return jnp.sum(index(x.shape[0], x) * x * x) ** 2


def _sparsqur_columns(n: int) -> np.ndarray:
    i = np.arange(1, n + 1)[:, None]
    return np.concatenate([i - 1, (np.array([2, 3, 5, 7, 11]) * i - 1) % n], axis=1)


def sparsqur(x):
    n = x.shape[0]
    s = jnp.sum((x * x)[_sparsqur_columns(n)], axis=1)
    return jnp.sum(index(n, x) * s * s) / 8


# ------------------------------------------------------------------ builders
# Minima computed here (module docstring of qnjax.problems._cutest): n -> fstar.
_BROYDN7D = {100: 39.67819331092194, 1000: 393.5835679855991}
_EDENSCH = {100: 603.2845920207648, 1000: 6003.284592020764}
_ENGVAL1 = {100: 109.08813614309216, 1000: 1108.1947187850135}


def _curly_min() -> tuple[float, float]:
    """``(q+, g(q+))``: the global minimiser of ``g(q) = q**4 - 20 q**2 - q/10``."""
    q = float(max(np.roots([4.0, 0.0, -40.0, -0.1]).real))
    for _ in range(3):  # Newton polish of 4 q^3 - 40 q - 0.1 = 0
        q -= (4 * q**3 - 40 * q - 0.1) / (12 * q * q - 40)
    return q, q * (q * (q * q - 20) - 0.1)


@functools.cache
def build_arwhead(n: int) -> Problem:
    need(n >= 2, "arwhead", n, "n >= 2")
    xstar = np.ones(n)
    xstar[-1] = 0.0
    return problem("arwhead", n, arwhead, 1.0, 0.0, xstar, f0=3.0 * (n - 1))


@functools.cache
def build_broydn7d(n: int) -> Problem:
    need(n >= 2 and n % 2 == 0, "broydn7d", n, "n even")
    # at x0 = 1: r_1 = 0, r_i = -1 (1 < i < n), r_n = 1, and x_i + x_{i+n/2} = 2
    f0 = (n - 1) + n / 2 * 2 ** (7 / 3)
    return problem("broydn7d", n, broydn7d, 1.0, tabulated("broydn7d", n, _BROYDN7D), f0=f0)


@functools.cache
def build_curly10(n: int) -> Problem:
    need(n >= 2, "curly10", n, "n >= 2")
    q_plus, g_min = _curly_min()
    xstar = np.where((n - np.arange(1, n + 1)) % (_CURLY_BAND + 1) == 0, q_plus, 0.0)
    scale = Fraction(1, 10_000 * (n + 1))  # x0_i = i * scale
    qs = [scale * sum(range(i, min(i + _CURLY_BAND, n) + 1)) for i in range(1, n + 1)]
    f0 = float(sum(q * (q * (q * q - 20) - Fraction(1, 10)) for q in qs))
    x0 = np.arange(1, n + 1) * 1e-4 / (n + 1)
    return problem("curly10", n, curly10, x0, n * g_min, xstar, f0=f0)


def _build_dixmaan(family: str, fun, k: int, n: int) -> Problem:
    need(n >= 3, family, n, "n >= 3")
    m = n // 3

    def power_sum(count):  # sum_{i<=count} (i/n)^k, exactly
        return sum(Fraction(i, n) ** k for i in range(1, count + 1))

    f0 = float(1 + 4 * power_sum(n) + 16 * m + Fraction(1, 2) * power_sum(m))
    return problem(family, n, fun, 2.0, 1.0, np.zeros(n), f0=f0)


@functools.cache
def build_dixmaana(n: int) -> Problem:
    return _build_dixmaan("dixmaana", dixmaana, 0, n)


@functools.cache
def build_dixmaane(n: int) -> Problem:
    return _build_dixmaan("dixmaane", dixmaane, 1, n)


@functools.cache
def build_dixmaani(n: int) -> Problem:
    return _build_dixmaan("dixmaani", dixmaani, 2, n)


def _build_quartic(family: str, n: int) -> Problem:
    need(n >= 1, family, n, "n >= 1")
    f0 = float(sum((2 - i) ** 4 for i in range(1, n + 1)))  # exact integers
    return problem(family, n, dqrtic, 2.0, 0.0, np.arange(1.0, n + 1), f0=f0)


@functools.cache
def build_dqrtic(n: int) -> Problem:
    return _build_quartic("dqrtic", n)


@functools.cache
def build_quartc(n: int) -> Problem:
    return _build_quartic("quartc", n)


@functools.cache
def build_edensch(n: int) -> Problem:
    need(n >= 2, "edensch", n, "n >= 2")
    fstar = tabulated("edensch", n, _EDENSCH)
    return problem("edensch", n, edensch, 8.0, fstar, f0=16.0 + 3681.0 * (n - 1))


@functools.cache
def build_engval1(n: int) -> Problem:
    need(n >= 2, "engval1", n, "n >= 2")
    fstar = tabulated("engval1", n, _ENGVAL1)
    return problem("engval1", n, engval1, 2.0, fstar, f0=59.0 * (n - 1))


@functools.cache
def build_fletchcr(n: int) -> Problem:
    need(n >= 2, "fletchcr", n, "n >= 2")
    return problem("fletchcr", n, fletchcr, 0.0, 0.0, np.ones(n), f0=float(n - 1))


@functools.cache
def build_nondquar(n: int) -> Problem:
    need(n >= 3, "nondquar", n, "n >= 3")
    x0 = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    # every quartic group is (+-1)^4 and both squares are 2^2
    return problem("nondquar", n, nondquar, x0, 0.0, np.zeros(n), f0=float(n + 6))


@functools.cache
def build_powellsg(n: int) -> Problem:
    p = build_extended_powell_singular(n)
    return problem("powellsg", n, extended_powell_singular, p.x0, 0.0, p.xstar, f0=p.f0)


@functools.cache
def build_power(n: int) -> Problem:
    need(n >= 1, "power", n, "n >= 1")
    return problem("power", n, power, 1.0, 0.0, np.zeros(n), f0=(n * (n + 1) / 2) ** 2)


@functools.cache
def build_sparsqur(n: int) -> Problem:
    need(n >= 1, "sparsqur", n, "n >= 1")
    # every inner sum is six times 0.25
    f0 = 0.140625 * n * (n + 1)
    return problem("sparsqur", n, sparsqur, 0.5, 0.0, np.zeros(n), f0=f0)


@functools.cache
def build_vardim(n: int) -> Problem:
    p = build_variably_dimensioned(n)
    return problem("vardim", n, variably_dimensioned, p.x0, 0.0, p.xstar, f0=p.f0)


FAMILIES = {
    name: (build, (100,))
    for name, build in [
        ("arwhead", build_arwhead), ("broydn7d", build_broydn7d),
        ("curly10", build_curly10), ("dixmaana", build_dixmaana),
        ("dixmaane", build_dixmaane), ("dixmaani", build_dixmaani),
        ("dqrtic", build_dqrtic), ("edensch", build_edensch), ("engval1", build_engval1),
        ("fletchcr", build_fletchcr), ("nondquar", build_nondquar),
        ("powellsg", build_powellsg), ("power", build_power), ("quartc", build_quartc),
        ("sparsqur", build_sparsqur), ("vardim", build_vardim),
    ]
}  # fmt: skip
