"""``bounds_method="projected"`` (``qnjax._projected``): its direction and its arc checked
against dense linear algebra and finite differences. The solves themselves (KKT
conditions, published optima, every evaluated point in the box, vmap, both faces) are
test_lbfgsb.py's, run with each method; the sharded programs are in
tests/multidevice/test_8_devices.py."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64

import qnjax
from qnjax import _bounds, _free_gram, _memory, _memory_update, _projected, bench, problems
from qnjax.bench import _run, _solvers

DT = jnp.float64 if X64 else jnp.float32
TOL = 1e-9 if X64 else 2e-3


def rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_direction_is_the_masked_quasi_newton_step():
    """After 14 iterations of 6-D Rosenbrock in [-2, 0.5]^6 (x_1 held on its upper bound,
    a full memory of 10 pairs that has wrapped), the next direction equals
    -P_F H P_F g with H the memory's inverse Hessian formed densely (``hess_inv``: the
    memory the next iteration uses) and F the variables not held on a bound (then without
    the components that would leave the box at once), and it is downhill."""
    x0, box, k = jnp.linspace(-1.5, 0.25, 6, dtype=DT), (-2.0, 0.5), 14
    res = qnjax.minimize(rosenbrock, x0, maxiter=k, bounds=box, bounds_method="projected")
    assert int(res.nit) == k and int(res.state.memory.count) == 10
    x, g = np.asarray(res.x, np.float64), np.asarray(res.grad, np.float64)
    held = ((x <= -2.0) & (g > 0)) | ((x >= 0.5) & (g < 0))
    assert held.any() and not held.all()
    memory, _ = _memory_update.push(res.state.memory, None)
    # (the state's gradient: of f times its scale, as its memory is, ``_scale``)
    d, _ = jax.jit(_projected.direction)(memory, res.x, res.state.grad, res.state.bounds)
    h = np.asarray(res.hess_inv.todense(), np.float64)
    gf = np.where(held, 0.0, g)
    want = -np.where(held, 0.0, h @ gf)
    want = np.where(((x <= -2.0) & (want < 0)) | ((x >= 0.5) & (want > 0)), 0.0, want)
    np.testing.assert_allclose(np.asarray(d, np.float64), want, rtol=TOL, atol=TOL * np.abs(want).max())
    assert g @ np.asarray(d, np.float64) < 0
    np.testing.assert_array_equal(np.asarray(_projected.binding(res.x, res.grad, res.state.bounds)), held)


def test_arc_slope_is_the_derivative_along_the_projected_path():
    """phi(t) = f(P(x + t d)): its slope at a point where the path holds some variables on a
    bound (``arc_slope``) equals the one-sided difference quotient, and differs from g^T d
    there; at a point where none is held it is g^T d."""
    c = jnp.asarray([3.0, -2.0, 0.5, 0.2], DT)

    def f(x):
        return jnp.sum((x - c) ** 2 * jnp.arange(1.0, 5.0, dtype=DT)) + x[0] * x[3]

    box = _bounds.box(jnp.zeros(4, DT), (-1.0, 1.0))
    x = jnp.asarray([0.5, -0.5, 0.0, 0.9], DT)
    d = jnp.asarray([1.0, -1.0, 0.25, 0.5], DT)

    def path(t):
        return jnp.clip(x + t * d, -1.0, 1.0)

    grad = jax.grad(f)
    for t, clipped in ((0.1, False), (0.7, True)):
        p = path(t)
        slope = float(_projected.arc_slope(grad(p), d, p, box, DT))
        h = 1e-6 if X64 else 1e-2
        quotient = (float(f(path(t + h))) - float(f(p))) / h
        assert abs(slope - quotient) <= (1e-4 if X64 else 5e-2) * max(1.0, abs(quotient)), (t, slope, quotient)
        plain = float(grad(p) @ d)
        assert (abs(plain - slope) > 1e-3) == clipped, (t, plain, slope)


def test_bench_runs_the_projected_method_on_bounded_problems_only():
    """``qnjax bench --bounded`` compares both methods (``qnjax-projected``); without
    --bounded the name is refused."""
    names = [a.name for a in _run.make_adapters(("qnjax", "qnjax-projected"), ("more-thuente",), pytest.fail,
                                                bounded=True)]
    assert names == ["qnjax[more-thuente]", "qnjax-projected[more-thuente]"]
    assert "qnjax-projected" in _solvers.BOUNDED_SOLVER_NAMES
    with pytest.raises(ValueError, match="--bounded"):
        _run.make_adapters(("qnjax-projected",), ("more-thuente",), pytest.fail)
    assert bench.main(["--solvers", "qnjax-projected", "--problems", "rosenbrock", "--dtype", "float32"]) == 2


def test_unknown_bounds_method_is_refused():
    with pytest.raises(ValueError, match="bounds method"):
        qnjax.minimize(rosenbrock, jnp.zeros(3, DT), bounds=(0.0, 1.0), bounds_method="cauchy")


@pytest.mark.skipif(X64, reason="batching is exact in either mode: runs with x64 off")
def test_large_batches_are_vmapped_and_equal_single_runs():
    """Beyond ``_free_gram.incremental``'s size L-BFGS-B's batch members take their iterations
    in turn (its branches); the projected method has none, so ``_minimize`` vmaps its batch:
    each member ends as its single run does (iterations, evaluations, x), and the batch's
    program sorts nothing."""
    n = _free_gram.SMALL_N + 904
    assert _free_gram.incremental(jnp.zeros(n))
    (nnls,) = [p for p in problems.scalable_bounded(n) if p.name.startswith("nnls")]
    starts = jnp.asarray(np.clip(np.random.default_rng(0).uniform(-0.5, 2.0, (2, n)), 0.0, None), DT)

    def solve(x0):
        return qnjax.minimize(nnls.fun, x0, bounds=(nnls.lower, nnls.upper), gtol=1e-2, bounds_method="projected")

    batched = jax.jit(jax.vmap(solve))
    batch = batched(starts)
    for i in range(2):
        one = jax.jit(solve)(starts[i])
        assert bool(one.success) and bool(batch.success[i])
        assert int(batch.nit[i]) == int(one.nit) and int(batch.nfev[i]) == int(one.nfev)
        np.testing.assert_allclose(np.asarray(batch.x[i]), np.asarray(one.x), rtol=1e-5, atol=1e-6)
    text = batched.lower(starts).compile().as_text()
    assert not re.search(r"\bsort\(", text)


@pytest.mark.skipif(X64, reason="one size, one mode (CI time): runs with x64 off")
def test_a_large_solve_branches_on_the_empty_memory():
    """From ``_memory.SKIP_EMPTY_FROM`` variables (unbatched) the direction is a ``lax.cond``
    on the empty memory (the projected-gradient step, or the quasi-Newton one): the banded
    nonnegative least squares at 65,536 variables reaches its minimum (f* = 11 n / 4, half
    the variables on their bound) with the first-order conditions."""
    n = _memory.SKIP_EMPTY_FROM
    (nnls,) = [p for p in problems.scalable_bounded(n) if p.name.startswith("nnls")]
    res = qnjax.minimize(nnls.fun, jnp.asarray(nnls.x0, DT), bounds=(nnls.lower, nnls.upper), gtol=1e-2,
                         bounds_method="projected")
    assert bool(res.success), res.message
    np.testing.assert_allclose(float(res.fun), nnls.fstar, rtol=1e-5)
    x, g = np.asarray(res.x, np.float64), np.asarray(res.grad, np.float64)
    assert np.all(x >= 0) and np.max(np.abs(np.clip(x - g, 0, None) - x)) <= 1e-2
    assert np.sum(x == 0) >= n // 2
