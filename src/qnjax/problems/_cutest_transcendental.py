"""CUTEst "other" objectives with exponentials and trigonometric terms, any ``n``.

Most are nonconvex with many stationary points, so ``fstar`` is the value reached
from ``x0`` (see :mod:`qnjax.problems._cutest`); 1-based ``x_i`` as in the SIF files.

* COSINE: ``sum_{i<n} cos(u_i)``, ``u_i = x_i**2 - x_{i+1}/2``, x0 = 1. The map
  ``x -> u`` is a submersion (its Jacobian has -1/2 on the superdiagonal), so every
  local minimum has all ``u_i = pi`` mod 2 pi: ``fstar = -(n-1)`` (reached from x0),
  e.g. at ``x_n = 0``, ``x_i = sqrt(pi + x_{i+1}/2)``.
* CRAGGLVY: extended Cragg & Levy, ``sum_{i=1}^{n/2-1} (exp(x_{2i-1}) - x_{2i})**4
  + 100 (x_{2i} - x_{2i+1})**6 + (tan(x_{2i+1} - x_{2i+2}) + x_{2i+1} - x_{2i+2})**4
  + x_{2i-1}**8 + (x_{2i+2} - 1)**2``, x0 = (1, 2, ..., 2), n even. Minimum computed,
  32.2699115 (n=100) and 336.423148 (n=1000), the same for every method tried (SIF:
  32.270 and 336.42).
* EXTCLIFF: the extended cliff function, ``n/2`` uncoupled copies of CUTEst's CLIFF
  (Buckley #206; the block extension is the one Andrei 2008 lists, whose text was not
  at hand to check: function and start here are CLIFF.SIF's) on the pairs
  ``(x_{2i-1}, x_{2i})``:
  ``(x_{2i-1}/100 - 0.03)**2 - (x_{2i-1} - x_{2i}) + exp(20 (x_{2i-1} - x_{2i}))``,
  x0 = (0, -1, 0, -1, ...), n even. Convex; each pair is least at ``x_{2i-1} = 3``,
  ``x_{2i-1} - x_{2i} = -ln(20)/20``: ``fstar = n/2 (1/20 + ln(20)/20)`` (CLIFF's SIF
  value 0.199786613 per pair).
* GENHUMPS: ``sum_{i<n} sin(20 x_i)**2 sin(20 x_{i+1})**2 + (x_i**2 + x_{i+1}**2)/20``,
  x0 = (-506, -506.2, ..., -506.2) (the SIF's active zeta = 20; the old AMPL model has
  2). Global minimum 0 at 0. Stationary points need ``|x_i| <= 200`` (the humps' slope
  is at most 40, the quadratic's ``|x_i|/5``) and the humps put many local minima
  there, but from x0 L-BFGS-B (m = 3..50), CG and (n = 100) BFGS all reach 0 (below
  1e-16) at n = 100 and 1000, so ``fstar = 0``.
* NONCVXU2: ``sum_i v_i**2 + 4 cos(v_i)``, ``v_i = x_i + x_j + x_k`` with 1-based
  ``j = 1 + (3i - 2 mod n)``, ``k = 1 + (7i - 3 mod n)``, x0 = i. Each term is at least
  ``min_v v**2 + 4 cos v = 2.31680842`` (at ``v = 2 sin v``), and the SIF lists that
  bound, ``2.3168084 n``, as the solution; but ``x -> v`` has rank n - 2 at n = 100 and
  1000, so not every sign pattern of the ``v_i`` is reachable and there are local
  minima just above the bound. L-BFGS-B with m = 5 attains the bound at n = 100; with
  m = 10 (``fstar``) it reaches 231.827727 (n=100) and 2316.92612 (n=1000), 0.06% and
  0.005% above it; other m, BFGS and CG land within 0.3% (n=100) and 0.05% (n=1000),
  on either side of ``fstar``.
* SCHMVETT: Schmidt & Vetters, ``sum_{i<=n-2} -1/(1 + (x_i - x_{i+1})**2)
  - sin((p x_{i+1} + x_{i+2})/2) - exp(-((x_i + x_{i+2})/x_{i+1} - 2)**2)`` with the
  SIF's ``p = 3.14159265``, x0 = 0.5. Each group is >= -3, with equality for all of
  them at ``x = p/(p+1)``: ``fstar = -3 (n-2)``, reached from x0 (SIF: -294 at
  n = 100, -2994 at n = 1000).
* SINQUAD: the SIF as CUTEst decodes it, ``(x_1 - 1)**4 + sum_{1<i<n} (x_i**2 - x_1**2
  + sin(x_i - x_n)) + (x_n**2 - x_1**2)**2``: the middle groups are *not* squared (the
  SIF says "incorrectly decoded version"; the squared form, Andrei's SINQUAD, is
  CUTEst's SINQUAD2). x0 = 0.1. Bounded below (the quartic in ``x_1`` wins); every
  method tried reaches -4005.58467 (n=100) and -294250.494 (n=1000).
* TOINTGSS: Toint's Gaussian problem, ``sum_{i<=n-2} (10/(n-2) + x_{i+2}**2)
  (2 - exp(-(x_i - x_{i+1})**2 / (0.1 + x_{i+2}**2)))``, x0 = 3. Every group is at
  least ``a = 10/(n-2)``, with equality for all at x = 0, so the minimum is 10. From x0
  descent methods drive ``x_3..x_n`` to 0 first and are left with ``x_1 = x_2 = t``
  (``t ~ 1.6`` for L-BFGS-B) and group 2 equal to ``a (2 - exp(-t**2/0.1))``, a plateau
  whose slope (``~ 1e-11``) no gradient test sees: they stop at ``10 + a`` (L-BFGS-B
  m = 3..50, CG; BFGS at ``10 + 2a``). As for MGH's Biggs EXP6, ``fstar`` is the value
  reached, ``10 + 10/(n-2)``, with ``xstar = None`` (not a minimiser); reaching 10
  counts as better.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._cutest import fsum, need, problem, tabulated
from qnjax.problems._mgh_fixed import sumsq

# ------------------------------------------------------------------ functions


def cosine(x):
    return jnp.sum(jnp.cos(x[:-1] ** 2 - x[1:] / 2))


def cragglvy(x):
    a, b, c, d = x[0:-2:2], x[1:-2:2], x[2::2], x[3::2]
    e = c - d
    terms = (
        (jnp.exp(a) - b) ** 4 + 100 * (b - c) ** 6 + (jnp.tan(e) + e) ** 4 + a**8
        + (d - 1) ** 2
    )  # fmt: skip
    return jnp.sum(terms)


def extcliff(x):
    a, d = x[0::2], x[0::2] - x[1::2]
    return sumsq(a / 100 - 0.03) + jnp.sum(jnp.exp(20 * d) - d)


_HUMPS = 20.0


def genhumps(x):
    s = jnp.sin(_HUMPS * x) ** 2
    return jnp.sum(s[:-1] * s[1:]) + (sumsq(x[:-1]) + sumsq(x[1:])) / 20


def _noncvxu2_columns(n: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(1, n + 1)
    return (3 * i - 2) % n, (7 * i - 3) % n  # 0-based j and k


def noncvxu2(x):
    j, k = _noncvxu2_columns(x.shape[0])
    v = x + x[j] + x[k]
    return jnp.sum(v * v + 4 * jnp.cos(v))


_SCHMVETT_PI = 3.14159265  # the SIF file's value


def schmvett(x):
    a, b, c = x[:-2], x[1:-1], x[2:]
    terms = (
        1 / (1 + (a - b) ** 2) + jnp.sin((_SCHMVETT_PI * b + c) / 2)
        + jnp.exp(-(((a + c) / b - 2) ** 2))
    )  # fmt: skip
    return -jnp.sum(terms)


def sinquad(x):
    x1sq = x[0] ** 2
    middle = jnp.sum(x[1:-1] ** 2 - x1sq + jnp.sin(x[1:-1] - x[-1]))
    return (x[0] - 1) ** 4 + middle + (x[-1] ** 2 - x1sq) ** 2


def tointgss(x):
    n = x.shape[0]
    a, b, c = x[:-2], x[1:-1], x[2:]
    c2 = c * c
    return jnp.sum((10 / (n - 2) + c2) * (2 - jnp.exp(-((a - b) ** 2) / (0.1 + c2))))


# ------------------------------------------------------------------ builders
# Minima computed here (module docstring of qnjax.problems._cutest): n -> fstar.
_CRAGGLVY = {100: 32.269911458581774, 1000: 336.4231478729212}
_NONCVXU2 = {100: 231.82772738683525, 1000: 2316.9261219511277}  # local minima
_SINQUAD = {100: -4005.5846706273414, 1000: -294250.49402621656}


@functools.cache
def build_cosine(n: int) -> Problem:
    need(n >= 2, "cosine", n, "n >= 2")
    xstar = np.zeros(n)
    for i in range(n - 2, -1, -1):  # back-substitution, u_i = pi
        xstar[i] = math.sqrt(math.pi + xstar[i + 1] / 2)
    return problem("cosine", n, cosine, 1.0, -(n - 1.0), xstar, f0=(n - 1) * math.cos(0.5))


@functools.cache
def build_cragglvy(n: int) -> Problem:
    need(n >= 4 and n % 2 == 0, "cragglvy", n, "n even, n >= 4")
    x0 = np.full(n, 2.0)
    x0[0] = 1.0
    e, e2 = math.e, math.exp(2.0)
    # first group set has x_{2i-1} = 1, the others 2; all other differences are 0
    f0 = (e - 2) ** 4 + 2 + (n // 2 - 2) * ((e2 - 2) ** 4 + 257)
    fstar = tabulated("cragglvy", n, _CRAGGLVY)
    return problem("cragglvy", n, cragglvy, x0, fstar, f0=f0)


@functools.cache
def build_extcliff(n: int) -> Problem:
    need(n >= 2 and n % 2 == 0, "extcliff", n, "n even")
    d = -math.log(20.0) / 20
    xstar = np.tile([3.0, 3.0 - d], n // 2)
    fstar = n / 2 * (1 / 20 - d)
    f0 = n / 2 * (0.03**2 - 1 + math.exp(20.0))
    x0 = np.tile([0.0, -1.0], n // 2)
    return problem("extcliff", n, extcliff, x0, fstar, xstar, f0=f0)


@functools.cache
def build_genhumps(n: int) -> Problem:
    need(n >= 2, "genhumps", n, "n >= 2")
    x0 = np.full(n, -506.2)
    x0[0] = -506.0
    s = np.sin(_HUMPS * x0) ** 2
    f0 = fsum((s[:-1] * s[1:] + (x0[:-1] ** 2 + x0[1:] ** 2) / 20).tolist())
    return problem("genhumps", n, genhumps, x0, 0.0, np.zeros(n), f0=f0)


@functools.cache
def build_noncvxu2(n: int) -> Problem:
    need(n >= 1, "noncvxu2", n, "n >= 1")
    j, k = _noncvxu2_columns(n)
    x0 = np.arange(1.0, n + 1)
    v = x0 + x0[j] + x0[k]  # integers
    f0 = fsum((v * v).tolist() + [4 * math.cos(t) for t in v])
    return problem("noncvxu2", n, noncvxu2, x0, tabulated("noncvxu2", n, _NONCVXU2), f0=f0)


@functools.cache
def build_schmvett(n: int) -> Problem:
    need(n >= 3, "schmvett", n, "n >= 3")
    p = _SCHMVETT_PI
    xstar = np.full(n, p / (p + 1))
    f0 = (n - 2) * (-2 - math.sin((p + 1) / 4))  # at 0.5: -1 - sin((p+1)/4) - 1
    return problem("schmvett", n, schmvett, 0.5, -3.0 * (n - 2), xstar, f0=f0)


@functools.cache
def build_sinquad(n: int) -> Problem:
    need(n >= 3, "sinquad", n, "n >= 3")
    # at 0.1 every middle group is sin(0) = 0 and the last one 0
    return problem("sinquad", n, sinquad, 0.1, tabulated("sinquad", n, _SINQUAD), f0=0.9**4)


@functools.cache
def build_tointgss(n: int) -> Problem:
    need(n >= 3, "tointgss", n, "n >= 3")
    # at 3 every exponential is 1: each group is 10/(n-2) + 9
    fstar = 10.0 + 10.0 / (n - 2)  # the plateau descent methods stop on (docstring)
    return problem("tointgss", n, tointgss, 3.0, fstar, f0=10.0 + 9.0 * (n - 2))


FAMILIES = {
    name: (build, (100,))
    for name, build in [
        ("cosine", build_cosine), ("cragglvy", build_cragglvy),
        ("extcliff", build_extcliff), ("genhumps", build_genhumps),
        ("noncvxu2", build_noncvxu2), ("schmvett", build_schmvett),
        ("sinquad", build_sinquad), ("tointgss", build_tointgss),
    ]
}  # fmt: skip
