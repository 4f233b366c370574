"""Moré-Garbow-Hillstrom problems 1-20 (small, mostly fixed dimension).

Source: J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing Unconstrained
Optimization Software", ACM Trans. Math. Softw. 7(1):17-41, 1981 (the "paper"), and
its Fortran companion, Algorithm 566 (same issue, pp. 136-140). Problems 21-35 (the
ones defined for any ``n``) are in :mod:`qnjax.problems._mgh_variable`.

Form. Every problem is the paper's least-squares sum ``f(x) = sum_i f_i(x)**2`` of
``m`` residuals ``f_i``, written here with 0-based ``x[0] = x_1`` etc. Data tables,
starting points ``x0`` and the dimensions ``m`` are the paper's; where it leaves ``m``
free we use the paper's tabulated choice: Jennrich-Sampson m=10, Gulf m=99, Box m=10,
Brown-Dennis m=20, Biggs m=13. Watson (20, m=31) is registered at n = 6, 9 and 12,
the dimensions for which the paper gives the minimum (2.28767e-3, 1.39976e-6 and
4.72238e-10). Gulf uses ``|y_i - x_2|`` (the printed "y_i m i x_2" is a
typesetting error for the minus sign, as in Algorithm 566). The helical valley angle
is ``atan2(x_2, x_1)/(2 pi)`` mapped into ``(-1/4, 3/4]``, which equals the paper's
piecewise ``arctan`` definition wherever that is defined.

``fstar`` is the value a local method is expected to reach from ``x0``, i.e. the best
known minimum reachable from the standard start; where the paper lists several
minima they are:

* 2 Freudenstein-Roth: global ``f = 0`` at (5, 4); local ``f = 48.9842...`` at
  (11.41..., -0.8968...). From ``x0`` descent methods (MINPACK, L-BFGS-B) reach the
  *local* one, so ``fstar`` / ``xstar`` are the local minimum.
* 8 Bard: ``f = 8.21487e-3``; also ``f = 17.4286...`` at (0.8406..., -inf, -inf).
* 15 Kowalik-Osborne: ``f = 3.07505e-4``; also ``f = 1.02734e-3`` at
  (+inf, -14.07..., -inf, -inf).
* 12 Box: ``f = 0`` at (1, 10, 1), at (10, 1, -1) and wherever ``x_1 = x_2, x_3 = 0``;
  ``xstar = (1, 10, 1)``.
* 18 Biggs EXP6 (m=13): global ``f = 0`` at (1, 10, 1, 5, 4, 3); the paper also lists
  ``f = 5.65565e-3`` for m=13. That value is what gradient methods reach from ``x0``:
  ``x0`` has ``x_1 = x_5`` and ``x_3 = x_6``, a subspace the gradient flow never
  leaves, and its best point (1.7114..., 17.683..., 1.1631..., 5.1866..., 1.7114...,
  1.1631...) is a *saddle* of the full problem (a step along ``x_1 - x_5`` lowers f,
  after which L-BFGS-B reaches 0). ``fstar = 5.65565e-3`` (reaching 0 counts as
  better) and ``xstar = None``, since that point is not a minimiser.
* 6 Jennrich-Sampson, 10 Meyer, 3 Powell badly scaled, 4 Brown badly scaled: a single
  minimum, but badly scaled (exponentials); a generic L-BFGS may stop short of it
  (see the known-failure list in ``tests/test_problems.py``).

Minimisers ``xstar`` given to 17 digits were computed here (L-BFGS-B, then Newton's
method with the exact Hessian, in float64) and match the solutions printed by MINPACK;
``fstar = fun(xstar)`` and agrees with the paper's value to the printed digits.

``f0 = f(x0)``: values confirmed against published initial values -- the MINPACK-1
least-squares driver reference output (``initial l2 norm of the residuals``, 8
digits, problems Rosenbrock, Freudenstein-Roth, helical valley, Powell singular,
Bard, Kowalik-Osborne, Meyer, Box (m=10), Jennrich-Sampson (m=10), Brown-Dennis
(m=20), Osborne 1, Osborne 2) and J. Burkardt's TEST_OPT output (6 digits: Powell
badly scaled, Brown badly scaled, Beale, Gaussian, Wood, Biggs); the value stored is
the full-precision one, and Watson's is 30 for every n (all 29 residuals are -1 at
``x0 = 0``, plus ``f_31 = -1``). Gulf (m=99) has no published ``f(x0)`` that we could
find; its ``f0`` is derived (an independent scalar evaluation with compensated
summation) and marked so.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem


def const(data, x: jax.Array) -> jax.Array:
    """A data constant as an array of ``x``'s dtype (never upcasts, never weak)."""
    return jnp.asarray(data, dtype=x.dtype)


def sumsq(r: jax.Array) -> jax.Array:
    return jnp.sum(r * r)


def index(m: int, x: jax.Array) -> jax.Array:
    """``i = 1..m`` in ``x``'s dtype."""
    return jnp.arange(1, m + 1, dtype=x.dtype)


def fixed_family(problem: Problem):
    """A family entry ``(builder, dims)`` for a problem with one dimension only."""

    def build(n: int) -> Problem:
        if n != problem.n:
            raise ValueError(f"{problem.name!r} is defined for n={problem.n} only, got n={n}")
        return problem

    return build, (problem.n,)


# ---------------------------------------------------------------------------- 1-7


def rosenbrock(x):
    return sumsq(jnp.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]]))


def freudenstein_roth(x):
    r1 = -13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1]
    r2 = -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]
    return sumsq(jnp.stack([r1, r2]))


def powell_badly_scaled(x):
    r1 = 1e4 * x[0] * x[1] - 1
    r2 = jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001
    return sumsq(jnp.stack([r1, r2]))


def brown_badly_scaled(x):
    return sumsq(jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2]))


def beale(x):
    y = const([1.5, 2.25, 2.625], x)
    powers = jnp.stack([x[1], x[1] * x[1], x[1] * x[1] * x[1]])
    return sumsq(y - x[0] * (1 - powers))


def jennrich_sampson(x, m=10):
    i = index(m, x)
    return sumsq(2 + 2 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1])))


def helical_valley(x):
    theta = jnp.arctan2(x[1], x[0]) / (2 * math.pi)
    theta = jnp.where(theta < -0.25, theta + 1, theta)
    r1 = 10 * (x[2] - 10 * theta)
    r2 = 10 * (jnp.sqrt(x[0] * x[0] + x[1] * x[1]) - 1)
    return sumsq(jnp.stack([r1, r2, x[2]]))


# --------------------------------------------------------------------------- 8-12

_BARD_Y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39,
           0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]  # fmt: skip


def bard(x):
    u = index(15, x)
    v = 16 - u
    w = jnp.minimum(u, v)
    return sumsq(const(_BARD_Y, x) - (x[0] + u / (v * x[1] + w * x[2])))


_GAUSSIAN_Y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
               0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009]  # fmt: skip


def gaussian(x):
    t = (8 - index(15, x)) / 2
    return sumsq(x[0] * jnp.exp(-x[1] * (t - x[2]) ** 2 / 2) - const(_GAUSSIAN_Y, x))


_MEYER_Y = [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744,
            8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872]  # fmt: skip


def meyer(x):
    t = 45 + 5 * index(16, x)
    return sumsq(x[0] * jnp.exp(x[1] / (t + x[2])) - const(_MEYER_Y, x))


_GULF_T = np.arange(1, 100) / 100.0
_GULF_Y = 25 + (-50 * np.log(_GULF_T)) ** (2 / 3)


def gulf(x):
    t, y = const(_GULF_T, x), const(_GULF_Y, x)
    return sumsq(jnp.exp(-(jnp.abs(y - x[1]) ** x[2]) / x[0]) - t)


def box_3d(x, m=10):
    t = index(m, x) / 10
    c = jnp.exp(-t) - jnp.exp(-10 * t)
    return sumsq(jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * c)


# -------------------------------------------------------------------------- 13-16


def powell_singular(x):
    r = jnp.stack([
        x[0] + 10 * x[1],
        math.sqrt(5) * (x[2] - x[3]),
        (x[1] - 2 * x[2]) ** 2,
        math.sqrt(10) * (x[0] - x[3]) ** 2,
    ])  # fmt: skip
    return sumsq(r)


def wood(x):
    r = jnp.stack([
        10 * (x[1] - x[0] ** 2),
        1 - x[0],
        math.sqrt(90) * (x[3] - x[2] ** 2),
        1 - x[2],
        math.sqrt(10) * (x[1] + x[3] - 2),
        (x[1] - x[3]) / math.sqrt(10),
    ])  # fmt: skip
    return sumsq(r)


_KOWALIK_Y = [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627,
              0.0456, 0.0342, 0.0323, 0.0235, 0.0246]  # fmt: skip
_KOWALIK_U = [4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625]


def kowalik_osborne(x):
    u = const(_KOWALIK_U, x)
    model = x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])
    return sumsq(const(_KOWALIK_Y, x) - model)


def brown_dennis(x, m=20):
    t = index(m, x) / 5
    a = x[0] + t * x[1] - jnp.exp(t)
    b = x[2] + x[3] * jnp.sin(t) - jnp.cos(t)
    return sumsq(a * a + b * b)


# -------------------------------------------------------------------------- 17-19

_OSBORNE1_Y = [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818,
               0.784, 0.751, 0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558,
               0.538, 0.522, 0.506, 0.490, 0.478, 0.467, 0.457, 0.448, 0.438,
               0.431, 0.424, 0.420, 0.414, 0.411, 0.406]  # fmt: skip


def osborne1(x):
    t = 10 * (index(33, x) - 1)
    model = x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4])
    return sumsq(const(_OSBORNE1_Y, x) - model)


def biggs_exp6(x, m=13):
    t = index(m, x) / 10
    y = jnp.exp(-t) - 5 * jnp.exp(-10 * t) + 3 * jnp.exp(-4 * t)
    model = x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1]) + x[5] * jnp.exp(-t * x[4])
    return sumsq(model - y)


_OSBORNE2_Y = [1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725,
               0.746, 0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724,
               0.649, 0.649, 0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495,
               0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429,
               0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632,
               0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
               0.428, 0.292, 0.162, 0.098, 0.054]  # fmt: skip


def osborne2(x):
    t = (index(65, x) - 1) / 10
    model = (
        x[0] * jnp.exp(-t * x[4])
        + x[1] * jnp.exp(-((t - x[8]) ** 2) * x[5])
        + x[2] * jnp.exp(-((t - x[9]) ** 2) * x[6])
        + x[3] * jnp.exp(-((t - x[10]) ** 2) * x[7])
    )
    return sumsq(const(_OSBORNE2_Y, x) - model)


# ----------------------------------------------------------------------------- 20


def watson(x):
    n = x.shape[0]
    t = np.arange(1, 30) / 29.0
    powers = const(t[:, None] ** np.arange(n), x)  # t_i ** (j - 1), j = 1..n
    b = jnp.sum(powers * x, axis=1)
    a = jnp.sum(powers[:, : n - 1] * (index(n - 1, x) * x[1:]), axis=1)
    r = a - b * b - 1
    return sumsq(r) + x[0] * x[0] + (x[1] - x[0] * x[0] - 1) ** 2


# Minimisers refined by Newton's method in float64 from MINPACK's printed solutions.
# fmt: off
_WATSON = {  # n: (fstar, xstar)
    6: (2.2876700535523513e-03, [
        -0.015725086401458248, 1.01243486936911, -0.23299162595673872, 1.2604300877996124,
        -1.5137289227222848, 0.992996432431137]),
    9: (1.3997601380950402e-06, [
        -1.5307036521406e-05, 0.9997897039319482, 0.01476396369357118, 0.14634232829921465,
        1.0008211030053817, -2.6177311405206094, 4.104403164480901, -3.143612278557787,
        1.0526264080105212]),
    12: (4.72238110585743e-10, [
        -6.638060466233847e-09, 1.0000016441178619, -0.0005639322103187322,
        0.3478205405035279, -0.15673150409160624, 1.0528151771855025, -3.247271153397692,
        7.2884348978260975, -10.271848241192561, 9.074113646982738, -4.541375466654817,
        1.0120118885461267]),
}
# fmt: on


@functools.cache
def build_watson(n: int) -> Problem:
    if n not in _WATSON:
        raise ValueError(f"watson: n={n} unsupported (minimum known for n in {sorted(_WATSON)})")
    fstar, xstar = _WATSON[n]
    return Problem(f"watson_n{n}", 20, n, watson, np.zeros(n), fstar, xstar, f0=30.0)


# ---------------------------------------------------------------------- catalogue

# fmt: off
_PROBLEMS = [
    Problem("rosenbrock", 1, 2, rosenbrock, x0=[-1.2, 1.0], fstar=0.0,
            xstar=[1.0, 1.0], f0=24.2),
    Problem("freudenstein_roth", 2, 2, freudenstein_roth, x0=[0.5, -2.0],
            fstar=48.984253679240005,
            xstar=[11.412778986690977, -0.8968052532844054], f0=400.5),
    Problem("powell_badly_scaled", 3, 2, powell_badly_scaled, x0=[0.0, 1.0], fstar=0.0,
            xstar=[1.098159329699679e-05, 9.106146739867674], f0=1.1352617173483783),
    Problem("brown_badly_scaled", 4, 2, brown_badly_scaled, x0=[1.0, 1.0], fstar=0.0,
            xstar=[1e6, 2e-6], f0=999998000002.999996),
    Problem("beale", 5, 2, beale, x0=[1.0, 1.0], fstar=0.0, xstar=[3.0, 0.5],
            f0=14.203125),
    Problem("jennrich_sampson", 6, 2, jennrich_sampson, x0=[0.3, 0.4],
            fstar=124.36218235561479,
            xstar=[0.2578252136703641, 0.2578252136703641], f0=4171.306161960493),
    Problem("helical_valley", 7, 3, helical_valley, x0=[-1.0, 0.0, 0.0], fstar=0.0,
            xstar=[1.0, 0.0, 0.0], f0=2500.0),
    Problem("bard", 8, 3, bard, x0=[1.0, 1.0, 1.0], fstar=8.214877306578976e-03,
            xstar=[0.08241055974797876, 1.1330360921363862, 2.343695178556989],
            f0=41.68169586167801),
    Problem("gaussian", 9, 3, gaussian, x0=[0.4, 1.0, 0.0], fstar=1.1279327696191114e-08,
            xstar=[0.39895613783875666, 1.0000190844878059, 0.0], f0=3.888106991166884e-06),
    Problem("meyer", 10, 3, meyer, x0=[0.02, 4000.0, 250.0], fstar=87.94585517065312,
            xstar=[0.005609636471026585, 6181.346346286594, 345.22363462414404],
            f0=1693607809.4361455),
    Problem("gulf_research_development", 11, 3, gulf, x0=[5.0, 2.5, 0.15], fstar=0.0,
            xstar=[50.0, 25.0, 1.5], f0=12.110705825569488),  # f0 derived, unpublished
    Problem("box_3d", 12, 3, box_3d, x0=[0.0, 10.0, 20.0], fstar=0.0,
            xstar=[1.0, 10.0, 1.0], f0=1031.1538106093983),
    Problem("powell_singular", 13, 4, powell_singular, x0=[3.0, -1.0, 0.0, 1.0],
            fstar=0.0, xstar=[0.0, 0.0, 0.0, 0.0], f0=215.0),
    Problem("wood", 14, 4, wood, x0=[-3.0, -1.0, -3.0, -1.0], fstar=0.0,
            xstar=[1.0, 1.0, 1.0, 1.0], f0=19192.0),
    Problem("kowalik_osborne", 15, 4, kowalik_osborne, x0=[0.25, 0.39, 0.415, 0.39],
            fstar=3.0750560384923723e-04,
            xstar=[0.1928069345790379, 0.19128232873436654, 0.12305650692632054,
                   0.13606233068379464], f0=5.31317227210854e-03),
    Problem("brown_dennis", 16, 4, brown_dennis, x0=[25.0, 5.0, -5.0, -1.0],
            fstar=85822.20162635627,
            xstar=[-11.594439904762163, 13.203630051207202, -0.4034394881768596,
                   0.23677877445573633], f0=7926693.336997433),
    Problem("osborne1", 17, 5, osborne1, x0=[0.5, 1.5, -1.0, 0.01, 0.02],
            fstar=5.464894697482454e-05,
            xstar=[0.375410052106952, 1.9358469127123545, -1.4646871366134102,
                   0.012867534640057266, 0.02212269966167267], f0=0.8790262935446402),
    Problem("biggs_exp6", 18, 6, biggs_exp6, x0=[1.0, 2.0, 1.0, 1.0, 1.0, 1.0],
            fstar=5.655649925499902e-03, xstar=None, f0=0.7790700756559703),  # saddle
    Problem("osborne2", 19, 11, osborne2,
            x0=[1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5],
            fstar=4.013773629354766e-02,
            xstar=[1.3099771546273007, 0.43155379460298926, 0.6336616989607241,
                   0.5994305347859165, 0.754183226328012, 0.904288579859632,
                   1.3658118352370288, 4.823698817227156, 2.3986848661317546,
                   4.568874597667672, 5.6753414705806415],
            f0=2.0934195142120644),
]
# fmt: on

FAMILIES = {p.name: fixed_family(p) for p in _PROBLEMS}
FAMILIES["watson"] = (build_watson, (6, 9, 12))
