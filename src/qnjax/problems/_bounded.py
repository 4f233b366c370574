"""Small bound-constrained problems built for L-BFGS-B tests, and the bounded catalogue.

:func:`catalogue` returns, in this order, the Hock-Schittkowski box problems
(:mod:`qnjax.problems._bounded_hs`), Gay's boxed Moré-Garbow-Hillstrom problems
(:mod:`qnjax.problems._bounded_mgh`) and the five problems defined here. Numerical
verification below means: float64, scipy's L-BFGS-B (``gtol=1e-12, ftol=0``) from the
projected ``x0`` and from 20 random points of the box, then Newton's method with the
exact Hessian on the free variables; no start found a lower minimum.

* ``lbfgsb_driver1`` (n = 25): the example of ``driver1.f`` in L-BFGS-B 3.0 (C. Zhu,
  R. H. Byrd, P. Lu and J. Nocedal, "Algorithm 778: L-BFGS-B", ACM TOMS 23(4), 1997;
  J. L. Morales and J. Nocedal, ACM TOMS 38(1), 2011):
  ``f = 4 [(x_1 - 1)**2 / 4 + sum_{i=2}^{n} (x_i - x_{i-1}**2)**2]``, odd ``i`` (1-based)
  in ``[1, 100]``, even ``i`` in ``[-100, 100]``, ``x0 = 3``. ``f* = 0`` at ``x = 1``
  (every term vanishes there and it is feasible), where the odd variables sit on their
  lower bound with zero gradient (a degenerate vertex).
* ``chained_rosenbrock_box_n5``: ``sum_{i=1}^{4} 100 (x_{i+1} - x_i**2)**2 + (1 - x_i)**2``
  with every ``x_i`` in ``[1.1, 2]``, ``x0 = 2``: the box excludes the unconstrained
  minimiser ``x = 1``. ``f* = 1.3806398052217077`` (verified numerically), with ``x_1 = 1.1`` on its lower bound,
  ``x_5 = 2`` on its upper bound and the three others inside.
* ``random_box_qp_n8``: ``f = x'Qx/2 + c'x`` on ``[0, 1]**8`` with
  ``Q = M'M/8 + I/10`` and ``c = -Q x_t``, where ``M`` (8 x 8 standard normal) and
  ``x_t`` (uniform on ``[-0.5, 1.5]**8``, the unconstrained minimiser) are drawn in that
  order from ``numpy.random.default_rng(0)``. ``Q`` is positive definite, so the
  minimiser is the unique KKT point; :func:`box_qp_kkt_points` finds it exactly by
  enumerating the ``3**8`` assignments of each variable to its lower bound, its upper
  bound or free (two at each bound with nonzero multipliers, four free). ``x0 = 1/2``.
* ``linear_box``: ``f = -x_1`` on ``[-1, 1]**2``, ``x0 = (0, 0)``; ``f* = -1`` on the
  edge ``x_1 = 1`` (``xstar = (1, 0)``; the minimiser is not unique and the Hessian is 0,
  so a quasi-Newton memory never sees curvature).
* ``fixed_variables_n6``: the chained Rosenbrock function of six variables with
  ``x_3 = 0.5`` and ``x_6 = 2`` fixed (``lower == upper``), ``x_1 >= 0``,
  ``x_2 in [0, 2]``, ``x_5 in [0, 1.5]`` and ``x_4`` free: fixed, one-sided, two-sided
  and free variables at once. The sign bounds exclude the mirror minima at negative
  ``x_1``, ``x_2``, ``x_5`` (``f = 75.28``, ``188.9``) that descent from ``x0`` otherwise
  finds. ``x0`` is the standard Rosenbrock start ``(-1.2, 1, -1.2, 1, -1.2, 1)``,
  infeasible in ``x_1``, ``x_3``, ``x_5`` and ``x_6``. ``f* = 71.92705035806578`` (verified
  numerically), with only the fixed variables at a bound.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._mgh_fixed import const

_INF = math.inf


def lbfgsb_driver1(x):
    return (x[0] - 1) ** 2 + 4 * jnp.sum((x[1:] - x[:-1] ** 2) ** 2)


def chained_rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def linear_box(x):
    return -x[0]


def _box_qp_data(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    q = m.T @ m / n + np.eye(n) / 10
    target = rng.uniform(-0.5, 1.5, n)
    return q, -q @ target


_QP_Q, _QP_C = _box_qp_data()


def random_box_qp(x):
    q, c = const(_QP_Q, x), const(_QP_C, x)
    return jnp.sum(x * jnp.matmul(q, x, precision="highest")) / 2 + jnp.sum(c * x)  # (float32 on GPUs too)


def box_qp_kkt_points(q, c, lower, upper) -> list[np.ndarray]:
    """Every KKT point of ``min x'qx/2 + c'x`` on ``[lower, upper]`` (finite bounds), by
    enumeration: for each assignment of the variables to lower / upper / free, the free
    ones solve ``q_FF x_F = -(c_F + q_FA x_A)``; the point counts if it is feasible and
    the gradient ``g = qx + c`` has ``g_i >= 0`` at a lower and ``<= 0`` at an upper
    bound. Duplicates (a free variable landing on a bound) are merged. For positive
    definite ``q`` the result is the one minimiser."""
    q, c = np.asarray(q, np.float64), np.asarray(c, np.float64)
    lower, upper = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    points: list[np.ndarray] = []
    for where in itertools.product((0, 1, 2), repeat=len(c)):
        where = np.array(where)
        free = where == 2
        x = np.where(where == 0, lower, upper)
        if free.any():
            rhs = -(c[free] + q[np.ix_(free, ~free)] @ x[~free])
            x[free] = np.linalg.solve(q[np.ix_(free, free)], rhs)
            if np.any(x < lower) or np.any(x > upper):
                continue
        g = q @ x + c
        if np.all(g[where == 0] >= 0) and np.all(g[where == 1] <= 0):
            if not any(np.allclose(x, p, rtol=0, atol=1e-12) for p in points):
                points.append(x)
    return points


@functools.cache
def _random_box_qp() -> Problem:
    n = len(_QP_C)
    (xstar,) = box_qp_kkt_points(_QP_Q, _QP_C, np.zeros(n), np.ones(n))
    fstar = float(xstar @ _QP_Q @ xstar / 2 + _QP_C @ xstar)
    return Problem(f"random_box_qp_n{n}", None, n, random_box_qp, np.full(n, 0.5), fstar, xstar,
                   lower=np.zeros(n), upper=np.ones(n))


_DRIVER1_N = 25
_DRIVER1_LOWER = np.where(np.arange(_DRIVER1_N) % 2 == 0, 1.0, -100.0)  # odd 1-based i: [1, 100]

# fmt: off
_ROSENBROCK5_X = [1.1, 1.113490353497463, 1.1970338390751891, 1.4158242496159232, 2.0]
_FIXED_X = [0.8425882987219756, 0.709020944968841, 0.5, 0.9949943106173613, 1.364359664753204, 2.0]


@functools.cache
def problems() -> tuple[Problem, ...]:
    """The five problems of this module, in the order of the module docstring."""
    return (
        Problem("lbfgsb_driver1", None, _DRIVER1_N, lbfgsb_driver1, np.full(_DRIVER1_N, 3.0), 0.0,
                np.ones(_DRIVER1_N), lower=_DRIVER1_LOWER, upper=np.full(_DRIVER1_N, 100.0)),
        Problem("chained_rosenbrock_box_n5", None, 5, chained_rosenbrock, np.full(5, 2.0), 1.3806398052217077,
                _ROSENBROCK5_X, lower=np.full(5, 1.1), upper=np.full(5, 2.0)),
        _random_box_qp(),
        Problem("linear_box", None, 2, linear_box, [0.0, 0.0], -1.0, [1.0, 0.0], lower=[-1.0, -1.0],
                upper=[1.0, 1.0]),
        Problem("fixed_variables_n6", None, 6, chained_rosenbrock, [-1.2, 1.0] * 3, 71.92705035806578, _FIXED_X,
                lower=[0.0, 0.0, 0.5, -_INF, 0.0, 2.0], upper=[_INF, 2.0, 0.5, _INF, 1.5, 2.0]),
    )
# fmt: on


def catalogue() -> tuple[Problem, ...]:
    """The bounded catalogue: Hock-Schittkowski, then the boxed MGH, then this module's."""
    from qnjax.problems import _bounded_hs, _bounded_mgh

    return _bounded_hs.PROBLEMS + _bounded_mgh.problems() + problems()
