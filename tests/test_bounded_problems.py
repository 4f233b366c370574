"""Tests for the bound-constrained catalogue: ``problems.bounded()`` and ``scalable_bounded(n)``.

Runs under JAX_ENABLE_X64=1 and =0. The float64 checks (f(xstar) = fstar, the KKT
conditions at xstar, scipy's L-BFGS-B from x0) are skipped in x32 mode; the float32
checks (types, values at xstar to float32 accuracy, the exact minima of the scalable
problems at n = 10**6) run in both.

KKT conditions for ``min f`` on ``[lower, upper]`` at ``x`` with ``g = grad f(x)``:
``g_i = 0`` where ``lower_i < x_i < upper_i``, ``g_i >= 0`` where ``x_i = lower_i <
upper_i``, ``g_i <= 0`` where ``x_i = upper_i > lower_i``, nothing where ``lower_i =
upper_i`` (a fixed variable); together, ``P(x - g) = x`` with ``P`` the projection onto
the box.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_float32_program, needs_x64

from qnjax import problems
from qnjax.problems import _bounded

X64 = bool(jax.config.read("jax_enable_x64"))
BOUNDED = problems.bounded()
SMALL_SCALABLE = problems.scalable_bounded(16)
ORDER = ("hs1", "hs2", "hs3", "hs4", "hs5", "hs25", "hs38", "hs45", "hs110", "rosenbrock_box",
         "freudenstein_roth_box", "helical_valley_box", "bard_box", "box_3d_box", "powell_singular_box",
         "kowalik_osborne_box", "brown_dennis_box", "osborne1_box", "brown_almost_linear_n10_box",
         "linear_full_rank_n10_box", "chebyquad_n8_box", "lbfgsb_driver1", "chained_rosenbrock_box_n5",
         "random_box_qp_n8", "linear_box", "fixed_variables_n6")
# the only starting points outside their box, and where (0-based), as the docstrings say
INFEASIBLE_X0 = {"hs2": [1], "hs45": [0], "box_3d_box": [1], "brown_almost_linear_n10_box": [1],
                 "chebyquad_n8_box": [0, 1, 2],
                 "fixed_variables_n6": [0, 2, 4, 5]}
# From x0, scipy's L-BFGS-B ends here instead of at fstar (see the problems' modules):
# a local minimum (hs2), the plateau at x0 (hs25), a stalled line search (bard_box).
LBFGSB_ENDS_AT = {"hs2": 4.941229317989185, "hs25": 32.835, "bard_box": 1.5145430904485688}


@functools.cache
def value_and_grad(p):
    return jax.jit(jax.value_and_grad(p.fun))


def kkt_violation(p, x, g) -> float:
    """Largest violation of the KKT conditions above (0 at a KKT point)."""
    lo, hi = p.lower, p.upper
    fixed = lo == hi
    at_lo, at_hi = (x <= lo) & ~fixed, (x >= hi) & ~fixed
    inside = ~(at_lo | at_hi | fixed)
    projected = np.max(np.abs(np.clip(x - g, lo, hi) - x))
    wrong_sign = np.concatenate([np.abs(g[inside]), np.maximum(-g[at_lo], 0), np.maximum(g[at_hi], 0)])
    return max(projected, float(np.max(wrong_sign, initial=0.0)))


# ---------------------------------------------------------------- catalogue shape


def test_catalogue_order_and_lookup():
    assert tuple(p.name for p in BOUNDED) == ORDER
    assert problems.bounded() == BOUNDED  # same objects, same order
    names = problems.names()
    assert len(set(names)) == len(names)
    for p in BOUNDED + problems.scalable_bounded():
        assert p.name in names and problems.get(p.name) is p
    assert problems.get("bounded_quartic", n=1_000_000).n == 1_000_000
    assert problems.get("nnls_banded").name == "nnls_banded_n10000"
    with pytest.raises(ValueError):
        problems.get("nnls_banded", n=10)  # a multiple of 4
    # the unconstrained sets are unchanged and unbounded
    for p in problems.mgh() + problems.scalable(16) + problems.cutest():
        assert p.lower is None and p.upper is None and not p.bounded


@pytest.mark.parametrize("p", BOUNDED + SMALL_SCALABLE, ids=lambda p: p.name)
def test_fields(p):
    assert p.bounded
    for v in (p.x0, p.lower, p.upper, p.xstar):
        assert v.dtype == np.float64 and v.shape == (p.n,) and not v.flags.writeable
    assert not np.any(np.isnan(p.lower)) and not np.any(np.isnan(p.upper))
    assert np.all(p.lower <= p.upper) and np.all(p.lower < np.inf) and np.all(p.upper > -np.inf)
    assert np.all(p.lower <= p.xstar) and np.all(p.xstar <= p.upper)
    assert math.isfinite(p.fstar) and p.name.islower()
    outside = np.flatnonzero((p.x0 < p.lower) | (p.x0 > p.upper)).tolist()
    assert outside == INFEASIBLE_X0.get(p.name, []), outside
    assert np.array_equal(p.project(p.x0), np.clip(p.x0, p.lower, p.upper))


def test_problem_bounds_validation():
    f = lambda x: jnp.sum(x * x)
    p = problems.Problem("one_sided", None, 3, f, np.ones(3), 0.0, lower=0.0)
    assert np.array_equal(p.lower, np.zeros(3)) and np.array_equal(p.upper, np.full(3, np.inf))
    assert p.bounded and "bounded" in repr(p)
    assert not problems.Problem("free", None, 3, f, np.ones(3), 0.0).bounded
    with pytest.raises(ValueError, match="lower <= upper"):
        problems.Problem("crossed", None, 2, f, np.ones(2), 0.0, lower=[0.0, 2.0], upper=[1.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        problems.Problem("short", None, 2, f, np.ones(2), 0.0, lower=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="no feasible point"):
        problems.Problem("empty", None, 1, f, np.ones(1), 0.0, lower=[np.inf])


# ----------------------------------------------------------------- float64 checks


@needs_x64
@pytest.mark.parametrize("p", BOUNDED + SMALL_SCALABLE, ids=lambda p: p.name)
def test_xstar_is_a_kkt_point_with_value_fstar(p):
    f, g = value_and_grad(p)(jnp.asarray(p.xstar))
    assert f.dtype == jnp.float64
    assert abs(float(f) - p.fstar) <= 1e-13 * max(1.0, abs(p.fstar)), (float(f), p.fstar)
    assert kkt_violation(p, p.xstar, np.asarray(g)) <= 1e-9 * max(1.0, abs(p.fstar))


@needs_x64
@pytest.mark.parametrize("p", BOUNDED + problems.scalable_bounded(1000), ids=lambda p: p.name)
def test_lbfgsb_from_x0_reaches_fstar(p):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    vg = value_and_grad(p)

    def fun_and_grad(x):
        f, g = vg(jnp.asarray(x))
        return float(f), np.asarray(g, np.float64)

    res = scipy_optimize.minimize(fun_and_grad, p.project(p.x0), jac=True, method="L-BFGS-B",
                                  bounds=list(zip(p.lower, p.upper)),
                                  options=dict(maxiter=20000, maxfun=40000, ftol=1e-15, gtol=1e-10))
    assert np.all((p.lower <= res.x) & (res.x <= p.upper))
    if p.name in LBFGSB_ENDS_AT:
        assert res.fun == pytest.approx(LBFGSB_ENDS_AT[p.name], rel=1e-6), "update LBFGSB_ENDS_AT"
    else:
        assert res.fun <= p.fstar + 1e-8 * max(1.0, abs(p.fstar)), (res.fun, p.fstar, res.message)


def test_box_qp_minimum_is_the_only_kkt_point():
    p = problems.get("random_box_qp_n8")
    q, c = _bounded._QP_Q, _bounded._QP_C
    assert np.all(np.linalg.eigvalsh(q) > 0.1 - 1e-12)
    (x,) = _bounded.box_qp_kkt_points(q, c, p.lower, p.upper)
    assert np.array_equal(x, p.xstar)
    assert p.fstar == pytest.approx(x @ q @ x / 2 + c @ x, rel=1e-15)
    g = q @ x + c
    assert kkt_violation(p, x, g) <= 1e-14
    # 2 variables at each bound with multipliers away from 0, 4 free: nondegenerate
    assert np.count_nonzero(x == 0) == 2 and np.count_nonzero(x == 1) == 2
    assert np.min(np.abs(g[(x == 0) | (x == 1)])) > 1e-2
    # the enumeration itself: for the concave -|x|**2/2 on [-1, 1]**2 each coordinate is
    # KKT at -1, 0 and 1, so all 9 combinations are found (and nothing else)
    points = _bounded.box_qp_kkt_points(-np.eye(2), np.zeros(2), -np.ones(2), np.ones(2))
    assert sorted(map(tuple, points)) == [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]


# ----------------------------------------------------------------- float32 checks


@pytest.mark.parametrize("p", BOUNDED + SMALL_SCALABLE, ids=lambda p: p.name)
def test_float32_in_float32_out(p):
    assert_float32_program(p.fun, p.n)
    for x in (p.project(p.x0), p.xstar):
        f, g = value_and_grad(p)(jnp.asarray(x, jnp.float32))
        assert f.dtype == jnp.float32 and not f.weak_type and g.dtype == jnp.float32
        assert np.isfinite(float(f)) and np.all(np.isfinite(np.asarray(g)))
    assert float(f) == pytest.approx(p.fstar, rel=1e-5, abs=1e-5), (float(f), p.fstar)


def test_scalable_minima_are_exact_at_a_million():
    n = 1_000_000
    exact = {"bounded_quartic": 9 * n / 128, "nnls_banded": 11 * n / 4}
    for p in problems.scalable_bounded(n):
        assert p.n == n and p.fstar == exact[p.name.rsplit("_n", 1)[0]]
        f, g = jax.jit(jax.value_and_grad(p.fun))(jnp.asarray(p.xstar, jnp.float32))
        assert f.dtype == jnp.float32 and g.shape == (n,)
        assert float(f) == p.fstar  # every term and partial sum is exact in float32
        g = np.asarray(g, np.float64)
        assert kkt_violation(p, p.xstar, g) == 0.0
        active = (p.xstar == p.lower) | (p.xstar == p.upper)
        assert 0.45 < active.mean() < 0.55 and np.min(np.abs(g[active])) >= 0.625  # strictly complementary
