"""CUTEst sums of squares and quadratics (classification "S"/"Q"), any ``n``.

Written with 0-based ``x[0] = x_1``; every sum runs over the SIF file's index range.
Conventions and the meaning of ``fstar`` / ``f0``: :mod:`qnjax.problems._cutest`.

* BDQRTIC: ``sum_{i<=n-4} (3 - 4 x_i)**2 + (x_i**2 + 2 x_{i+1}**2 + 3 x_{i+2}**2
  + 4 x_{i+3}**2 + 5 x_n**2)**2``, x0 = 1. Minimum computed: 378.769192 (n=100),
  3983.81795 (n=1000); the SIF lists 378.769 and 3983.82.
* BRYBND: Broyden banded (MGH 31) *as the SIF file encodes it*: row ``i`` is
  ``2 x_i + 5 x_i**3 - sum_{j in J_i} (x_j + x_j**2)``, ``J_i = [i-5, i+1] \\ {i}``,
  with no ``+1`` constant, and in the middle rows ``6 <= i <= n-2`` the SIF swaps the
  powers: ``2 x_i + 5 x_i**2 - sum_{j<i} (x_j + x_j**3) - x_{i+1} - x_{i+1}**2``.
  x0 = 1 (MGH: -1). Zero residual at x = 0, so ``fstar = 0``. n >= 7.
* CHAINWOO: chained Woods, ``1 + sum_{i=1}^{n/2-1} [100 (x_{2i} - x_{2i-1}**2)**2 +
  (1 - x_{2i-1})**2 + 90 (x_{2i+2} - x_{2i+1}**2)**2 + (1 - x_{2i+1})**2 +
  10 (x_{2i} + x_{2i+2} - 2)**2 + (x_{2i} - x_{2i+2})**2 / 10]``, x0 = (-3, -1, -3, -1,
  -2, ..., -2); n even. Global minimum 1 at ones, but the chain has many local minima
  and which one a method reaches from x0 depends on its path: at n = 100 scipy's
  L-BFGS-B reaches 1 with m = 5, 12.4217 with m = 10, 20 or 50, 16.60 with m = 3;
  BFGS 23.29, CG 8.147; at n = 1000 L-BFGS-B ends between 148.9 (m = 50) and 471.5
  (m = 5), CG at 1. ``fstar`` is the L-BFGS-B m = 10 local minimum, 12.4217 (n=100)
  and 302.225 (n=1000), with a positive definite Hessian; lower counts as better.
* DQDRTIC: ``sum_{i<=n-2} x_i**2 + 100 x_{i+1}**2 + 100 x_{i+2}**2``, x0 = 3; 0 at 0.
* EXTROSNB: ``(x_1 - 1)**2 + 100 sum_{i>=2} (x_i - x_{i-1}**2)**2``, x0 = -1; 0 at ones.
* FREUROTH: MGH 2 chained: ``sum_{i<n} (x_i - 13 + ((5 - x_{i+1}) x_{i+1} - 2) x_{i+1})**2
  + (x_i - 29 + ((1 + x_{i+1}) x_{i+1} - 14) x_{i+1})**2``, x0 = (0.5, -2, 0, ..., 0).
  Unlike MGH 2 (n = 2) no zero residual exists for n > 2 (a pair's residuals vanish
  only at ``(x_i, x_{i+1}) = (5, 4)``); every method tried (L-BFGS-B m = 3..50, CG, BFGS)
  reaches the same minimum, 11964.5773 (n=100) and 121469.710 (n=1000); the SIF lists
  1.1965e4 and 1.2147e5.
* GENROSE: ``1 + sum_{i>=2} 100 (x_i - x_{i-1}**2)**2 + (x_i - 1)**2``, x0 = i/(n+1);
  1 at ones.
* LIARWHD: ``sum_i 4 (x_i**2 - x_1)**2 + (x_i - 1)**2``, x0 = 4; 0 at ones.
* MOREBV: the MGH 28 discrete boundary value problem (same function and start as
  ``discrete_boundary_value``); 0.
* NONDIA: ``(x_1 - 1)**2 + 100 sum_{i>=2} (x_1 - x_{i-1}**2)**2``, x0 = -1; 0 at ones.
* PENALTY1: MGH 23 (penalty I, ``a = 1e-5``), x0 = i; minimum in closed form for any n.
* SROSENBR: MGH 21 (extended Rosenbrock), n even. The SIF's first start point decodes
  to (1.2, 1, 0, ..., 0) by a typo; its corrected second start (Dec 2024) is MGH's
  (-1.2, 1, -1.2, 1, ...), used here. 0 at ones.
* TQUARTIC: ``(x_1 - 1)**2 + sum_{i>=2} (x_1**2 - x_i**2)**2``, x0 = 0.1; 0 at ones.
* TRIDIA: ``(x_1 - 1)**2 + sum_{i>=2} i (2 x_i - x_{i-1})**2``, x0 = 1; 0 at
  ``x_i = 2**(1-i)``.
* WOODS: MGH 14 on each block of 4 (``10 (x_2 + x_4 - 2)**2 + (x_2 - x_4)**2 / 10``
  form), x0 = (-3, -1, -3, -1, ...), n a multiple of 4; 0 at ones.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._cutest import fsum, need, problem, tabulated
from qnjax.problems._mgh_fixed import index, sumsq
from qnjax.problems._mgh_variable import (
    build_discrete_boundary_value,
    build_extended_rosenbrock,
    build_penalty_i,
    discrete_boundary_value,
    extended_rosenbrock,
    penalty_i,
)

# ------------------------------------------------------------------ functions


def bdqrtic(x):
    n = x.shape[0]
    q = x * x
    inner = q[: n - 4] + 2 * q[1 : n - 3] + 3 * q[2 : n - 2] + 4 * q[3 : n - 1]
    return sumsq(3 - 4 * x[: n - 4]) + sumsq(inner + 5 * q[n - 1])


_BRYBND_LOWER, _BRYBND_UPPER = 5, 1


def brybnd(x):
    n, lo = x.shape[0], _BRYBND_LOWER
    powers = jnp.stack([x, x * x, x * x * x])  # rows x, x**2, x**3

    def below(p):  # sum_{j=i-5}^{i-1} p_j
        padded = jnp.pad(p, (lo, 0))
        return sum(padded[k : k + n] for k in range(lo))

    lin_lo, sq_lo, cb_lo = (below(p) for p in powers)
    up = jnp.pad(powers, ((0, 0), (0, _BRYBND_UPPER)))[:, 1:]  # x_{i+1} (0 past the end)
    row = np.arange(1, n + 1)
    middle = (row > lo) & (row < n - _BRYBND_UPPER)
    corner = 2 * x + 5 * powers[2] - lin_lo - sq_lo - up[0] - up[1]
    centre = 2 * x + 5 * powers[1] - lin_lo - cb_lo - up[0] - up[1]
    return sumsq(jnp.where(middle, centre, corner))


def chainwoo(x):
    a, b, c, d = x[0:-2:2], x[1:-2:2], x[2::2], x[3::2]
    terms = (
        100 * (b - a * a) ** 2 + (1 - a) ** 2 + 90 * (d - c * c) ** 2 + (1 - c) ** 2
        + 10 * (b + d - 2) ** 2 + (b - d) ** 2 / 10
    )  # fmt: skip
    return 1 + jnp.sum(terms)


def dqdrtic(x):
    return sumsq(x[:-2]) + 100 * (sumsq(x[1:-1]) + sumsq(x[2:]))


def extrosnb(x):
    return (x[0] - 1) ** 2 + 100 * sumsq(x[1:] - x[:-1] ** 2)


def freuroth(x):
    y = x[1:]
    r = x[:-1] - 13 + ((5 - y) * y - 2) * y
    s = x[:-1] - 29 + ((1 + y) * y - 14) * y
    return sumsq(r) + sumsq(s)


def genrose(x):
    return 1 + 100 * sumsq(x[1:] - x[:-1] ** 2) + sumsq(x[1:] - 1)


def liarwhd(x):
    return 4 * sumsq(x * x - x[0]) + sumsq(x - 1)


def nondia(x):
    return (x[0] - 1) ** 2 + 100 * sumsq(x[0] - x[:-1] ** 2)


def tquartic(x):
    return (x[0] - 1) ** 2 + sumsq(x[0] ** 2 - x[1:] ** 2)


def tridia(x):
    i = index(x.shape[0], x)[1:]  # 2..n
    return (x[0] - 1) ** 2 + jnp.sum(i * (2 * x[1:] - x[:-1]) ** 2)


def woods(x):
    b = x.reshape(-1, 4)
    x1, x2, x3, x4 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    terms = (
        100 * (x2 - x1 * x1) ** 2 + (1 - x1) ** 2 + 90 * (x4 - x3 * x3) ** 2 + (1 - x3) ** 2
        + 10 * (x2 + x4 - 2) ** 2 + (x2 - x4) ** 2 / 10
    )  # fmt: skip
    return jnp.sum(terms)


# ------------------------------------------------------------------ builders
# Minima computed here (module docstring of qnjax.problems._cutest): n -> fstar.
_BDQRTIC = {100: 378.76919180868424, 1000: 3983.817950576536}
_CHAINWOO = {100: 12.42170910807114, 1000: 302.2248353601855}  # local minima
_FREUROTH = {100: 11964.57734865419, 1000: 121469.71010945167}


def _brybnd_f0(n: int) -> float:
    # at x = 1 every power is 1: row i has 7 - 2 k_i with k_i band neighbours
    return fsum((7.0 - 2 * (min(i - 1, 5) + min(n - i, 1))) ** 2 for i in range(1, n + 1))


@functools.cache
def build_bdqrtic(n: int) -> Problem:
    need(n >= 5, "bdqrtic", n, "n >= 5")
    return problem("bdqrtic", n, bdqrtic, 1.0, tabulated("bdqrtic", n, _BDQRTIC),
                   f0=226.0 * (n - 4))  # fmt: skip


@functools.cache
def build_brybnd(n: int) -> Problem:
    need(n >= 7, "brybnd", n, "n >= lower + upper + 1 = 7")
    return problem("brybnd", n, brybnd, 1.0, 0.0, np.zeros(n), f0=_brybnd_f0(n))


@functools.cache
def build_chainwoo(n: int) -> Problem:
    need(n >= 4 and n % 2 == 0, "chainwoo", n, "n even, n >= 4")
    x0 = np.full(n, -2.0)
    x0[:4] = [-3.0, -1.0, -3.0, -1.0]
    # blocks (x_{2i-1}, x_{2i}, x_{2i+1}, x_{2i+2}) at x0: (-3, -1, -3, -1) gives 19192
    # (MGH's Wood f0), (-3, -1, -2, -2) gives 13515.1 and (-2, -2, -2, -2) gives 7218
    f0 = 1 + 19192.0 + (13515.1 + 7218.0 * (n // 2 - 3) if n > 4 else 0.0)
    fstar = tabulated("chainwoo", n, _CHAINWOO)
    return problem("chainwoo", n, chainwoo, x0, fstar, f0=f0)


@functools.cache
def build_dqdrtic(n: int) -> Problem:
    need(n >= 3, "dqdrtic", n, "n >= 3")
    return problem("dqdrtic", n, dqdrtic, 3.0, 0.0, np.zeros(n), f0=1809.0 * (n - 2))


@functools.cache
def build_extrosnb(n: int) -> Problem:
    need(n >= 2, "extrosnb", n, "n >= 2")
    return problem("extrosnb", n, extrosnb, -1.0, 0.0, np.ones(n), f0=4.0 + 400 * (n - 1))


@functools.cache
def build_freuroth(n: int) -> Problem:
    need(n >= 2, "freuroth", n, "n >= 2")
    x0 = np.zeros(n)
    x0[:2] = [0.5, -2.0]
    # residual pairs at x0: (19.5, -4.5) (MGH 2's f0 = 400.5), then (-15, -31) for
    # (x_2, x_3) = (-2, 0), then (-13, -29) for every (0, 0)
    f0 = 400.5 + (1186.0 + 1010.0 * (n - 3) if n > 2 else 0.0)
    return problem("freuroth", n, freuroth, x0, tabulated("freuroth", n, _FREUROTH), f0=f0)


@functools.cache
def build_genrose(n: int) -> Problem:
    need(n >= 2, "genrose", n, "n >= 2")
    t = np.arange(1, n + 1) / (n + 1)
    f0 = 1 + fsum((100 * (t[1:] - t[:-1] ** 2) ** 2 + (t[1:] - 1) ** 2).tolist())
    return problem("genrose", n, genrose, t, 1.0, np.ones(n), f0=f0)


@functools.cache
def build_liarwhd(n: int) -> Problem:
    need(n >= 2, "liarwhd", n, "n >= 2")
    return problem("liarwhd", n, liarwhd, 4.0, 0.0, np.ones(n), f0=585.0 * n)


@functools.cache
def build_morebv(n: int) -> Problem:
    p = build_discrete_boundary_value(n)
    return problem("morebv", n, discrete_boundary_value, p.x0, 0.0, p.xstar, f0=p.f0)


@functools.cache
def build_nondia(n: int) -> Problem:
    need(n >= 2, "nondia", n, "n >= 2")
    return problem("nondia", n, nondia, -1.0, 0.0, np.ones(n), f0=4.0 + 400 * (n - 1))


@functools.cache
def build_penalty1(n: int) -> Problem:
    p = build_penalty_i(n)
    return problem("penalty1", n, penalty_i, p.x0, p.fstar, p.xstar, f0=p.f0)


@functools.cache
def build_srosenbr(n: int) -> Problem:
    p = build_extended_rosenbrock(n)
    return problem("srosenbr", n, extended_rosenbrock, p.x0, 0.0, p.xstar, f0=p.f0)


@functools.cache
def build_tquartic(n: int) -> Problem:
    need(n >= 2, "tquartic", n, "n >= 2")
    return problem("tquartic", n, tquartic, 0.1, 0.0, np.ones(n), f0=0.81)


@functools.cache
def build_tridia(n: int) -> Problem:
    need(n >= 2, "tridia", n, "n >= 2")
    xstar = 2.0 ** -np.arange(n)
    return problem("tridia", n, tridia, 1.0, 0.0, xstar, f0=n * (n + 1) / 2 - 1.0)


@functools.cache
def build_woods(n: int) -> Problem:
    need(n >= 4 and n % 4 == 0, "woods", n, "n a multiple of 4")
    x0 = np.tile([-3.0, -1.0, -3.0, -1.0], n // 4)
    return problem("woods", n, woods, x0, 0.0, np.ones(n), f0=19192.0 * n / 4)


FAMILIES = {
    name: (build, (100,))
    for name, build in [
        ("bdqrtic", build_bdqrtic), ("brybnd", build_brybnd), ("chainwoo", build_chainwoo),
        ("dqdrtic", build_dqdrtic), ("extrosnb", build_extrosnb),
        ("freuroth", build_freuroth), ("genrose", build_genrose),
        ("liarwhd", build_liarwhd), ("morebv", build_morebv), ("nondia", build_nondia),
        ("penalty1", build_penalty1), ("srosenbr", build_srosenbr),
        ("tquartic", build_tquartic), ("tridia", build_tridia), ("woods", build_woods),
    ]
}  # fmt: skip
