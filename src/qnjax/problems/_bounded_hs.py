"""Hock & Schittkowski problems whose only constraints are bounds on the variables.

Source: W. Hock and K. Schittkowski, *Test Examples for Nonlinear Programming Codes*,
Lecture Notes in Economics and Mathematical Systems 187, Springer, 1981 (the "book").
The problems below are all of the book's problems with bounds as their only
constraints: 1, 2, 3, 4, 5, 25, 38, 45 and 110. Objectives, bounds, starting points,
minimisers and minimum values are the book's, with 0-based ``x[0] = x_1``:

* HS1: ``100 (x2 - x1**2)**2 + (1 - x1)**2``, ``x2 >= -1.5``; ``x0 = (-2, 1)``;
  ``f* = 0`` at ``(1, 1)`` (the bound is inactive).
* HS2: the same objective with ``x2 >= 1.5``; ``x0 = (-2, 1)`` is infeasible in ``x2``.
  Book: ``f* = 0.0504261879`` at ``x* = (1.224370749, 1.5)``. With ``x2 = 1.5`` on its
  bound, ``x1`` is the largest root of ``400 t**3 - 598 t - 2 = 0``,
  ``t = 2a cos(arccos(3/(598 a))/3)``, ``a = sqrt(598/1200)``: 1.2243707487363527. That
  is the global minimum; the box also holds a local one, ``f = 4.941229317989185`` at
  ``(-1.2210262421071016, 1.5)`` (the negative root), and that is where L-BFGS-B goes
  from the projected start ``(-2, 1.5)`` (scipy's L-BFGS-B, any memory): a KKT point
  the bench accepts by its projected gradient.
* HS3: ``x2 + 1e-5 (x2 - x1)**2``, ``x2 >= 0``; ``x0 = (10, 1)``; ``f* = 0`` at ``(0, 0)``
  (a singular minimum: ``x1`` is determined by a curvature of 2e-5 only).
* HS4: ``(x1 + 1)**3 / 3 + x2``, ``x1 >= 1``, ``x2 >= 0``; ``x0 = (1.125, 0.125)``;
  ``f* = 8/3`` at ``(1, 0)``, a vertex (both bounds active, gradient ``(4, 1)``).
* HS5: ``sin(x1 + x2) + (x1 - x2)**2 - 1.5 x1 + 2.5 x2 + 1``, ``-1.5 <= x1 <= 4``,
  ``-3 <= x2 <= 3``; ``x0 = (0, 0)``; ``f* = -sqrt(3)/2 - pi/3`` at
  ``(1/2 - pi/3, -1/2 - pi/3)``, interior.
* HS25: ``sum_{i=1}^{99} (-i/100 + exp(-(u_i - x2)**x3 / x1))**2`` with
  ``u_i = 25 + (-50 ln(i/100))**(2/3)``, ``0.1 <= x1 <= 100``, ``0 <= x2 <= 25.6``,
  ``0 <= x3 <= 5``; ``x0 = (100, 12.5, 3)``; ``f* = 0`` at ``(50, 25, 1.5)``. It is MGH's
  Gulf research problem (:func:`qnjax.problems._mgh_fixed.gulf`, which writes
  ``|u_i - x2|``; on the box ``u_i - x2 >= u_99 - 25.6 > 0``, so they agree). At ``x0``
  every exponential is below 2e-10: ``f = sum (i/100)**2 = 32.835`` on a plateau
  with ``max|g| ~ 2e-8``, so a gradient test stops there (scipy's L-BFGS-B does, after
  one iteration); only the ``f*`` test tells that it is not solved.
* HS38: the Wood / Colville function (MGH 14, :func:`qnjax.problems._mgh_fixed.wood`)
  on ``[-10, 10]**4``; ``x0 = (-3, -1, -3, -1)``; ``f* = 0`` at ``(1, 1, 1, 1)``.
* HS45: ``2 - x1 x2 x3 x4 x5 / 120``, ``0 <= x_i <= i``; ``x0 = (2, 2, 2, 2, 2)`` is
  infeasible in ``x1``; ``f* = 1`` at ``(1, 2, 3, 4, 5)``, a vertex.
* HS110: ``sum_{i=1}^{10} (ln(x_i - 2)**2 + ln(10 - x_i)**2) - (prod_i x_i)**0.2``,
  ``2.001 <= x_i <= 9.999``; ``x0 = 9``; book: ``f* = -45.77846971`` at
  ``x_i = 9.35025655``, interior.

Verified numerically here (float64): scipy's L-BFGS-B with ``gtol=1e-12, ftol=0`` from
the projected ``x0`` and from 20 random points of the box, then Newton's method on the
free variables with the exact Hessian. Every ``f*`` of the book is confirmed to the
digits printed, and every ``x*`` but HS110's, whose minimiser is
``x_i = 9.350265833069384`` (the root of the derivative along ``x = t (1, ..., 1)``,
where symmetry puts it; Newton on all ten variables agrees): the book's 9.35025655
differs in the sixth digit (``f`` there is 2.8e-9 higher; the book's ``f*`` is the
minimum's, rounded). The stored values are the exact closed forms (HS1, 3, 4, 5, 25,
38, 45), the root above (HS2) and, for HS110, ``f(x*)`` at the refined minimiser.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._mgh_fixed import const, gulf, wood


def rosenbrock2(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def hs3(x):
    return x[1] + const(1e-5, x) * (x[1] - x[0]) ** 2


def hs4(x):
    return (x[0] + 1) ** 3 / 3 + x[1]


def hs5(x):
    return jnp.sin(x[0] + x[1]) + (x[0] - x[1]) ** 2 - const(1.5, x) * x[0] + const(2.5, x) * x[1] + 1


def hs45(x):
    return 2 - jnp.prod(x) / 120


def hs110(x):
    return jnp.sum(jnp.log(x - 2) ** 2 + jnp.log(10 - x) ** 2) - jnp.prod(x) ** const(0.2, x)


_HS2_X = [1.2243707487363527, 1.5]
_HS110_X = 9.350265833069384
_INF = math.inf

# fmt: off
PROBLEMS = (
    Problem("hs1", None, 2, rosenbrock2, x0=[-2.0, 1.0], fstar=0.0, xstar=[1.0, 1.0],
            lower=[-_INF, -1.5], upper=[_INF, _INF]),
    Problem("hs2", None, 2, rosenbrock2, x0=[-2.0, 1.0], fstar=0.050426187893607075, xstar=_HS2_X,
            lower=[-_INF, 1.5], upper=[_INF, _INF]),
    Problem("hs3", None, 2, hs3, x0=[10.0, 1.0], fstar=0.0, xstar=[0.0, 0.0],
            lower=[-_INF, 0.0], upper=[_INF, _INF]),
    Problem("hs4", None, 2, hs4, x0=[1.125, 0.125], fstar=8 / 3, xstar=[1.0, 0.0],
            lower=[1.0, 0.0], upper=[_INF, _INF]),
    Problem("hs5", None, 2, hs5, x0=[0.0, 0.0], fstar=-math.sqrt(3) / 2 - math.pi / 3,
            xstar=[0.5 - math.pi / 3, -0.5 - math.pi / 3], lower=[-1.5, -3.0], upper=[4.0, 3.0]),
    Problem("hs25", None, 3, gulf, x0=[100.0, 12.5, 3.0], fstar=0.0, xstar=[50.0, 25.0, 1.5],
            lower=[0.1, 0.0, 0.0], upper=[100.0, 25.6, 5.0]),
    Problem("hs38", None, 4, wood, x0=[-3.0, -1.0, -3.0, -1.0], fstar=0.0, xstar=[1.0, 1.0, 1.0, 1.0],
            lower=np.full(4, -10.0), upper=np.full(4, 10.0)),
    Problem("hs45", None, 5, hs45, x0=np.full(5, 2.0), fstar=1.0, xstar=[1.0, 2.0, 3.0, 4.0, 5.0],
            lower=np.zeros(5), upper=[1.0, 2.0, 3.0, 4.0, 5.0]),
    Problem("hs110", None, 10, hs110, x0=np.full(10, 9.0), fstar=-45.77846970744629, xstar=np.full(10, _HS110_X),
            lower=np.full(10, 2.001), upper=np.full(10, 9.999)),
)
# fmt: on
