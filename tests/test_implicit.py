"""Derivatives of minimize's solution (implicit function theorem): closed forms, finite
differences, forward = reverse, second order, the envelope theorem, vmap/jit, aux, and
NaN (never a plausible number) when the solve or the linear solve fails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, X64, needs_x64, x64_off_only

import qnjax

DT = jnp.float64 if X64 else jnp.float32
TOL = 1e-9 if X64 else 2e-4
A = jnp.asarray([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.5]], DT)
B0 = jnp.asarray([1.0, -2.0, 0.5], DT)


def quadratic(x, b):
    return 0.5 * x @ A @ x - b @ x


def solution(b):
    return qnjax.minimize(quadratic, jnp.zeros(3, DT), (b,)).x


def test_quadratic_dx_db_is_a_inverse_both_modes():
    want = np.linalg.inv(np.asarray(A, np.float64))
    np.testing.assert_allclose(jax.jit(jax.jacrev(solution))(B0), want, rtol=TOL, atol=TOL)
    # <u, J v> both ways: jvp and vjp are one linear map and its transpose.
    u, v = jnp.asarray([0.3, -1.0, 2.0], DT), jnp.asarray([1.0, 0.5, -0.25], DT)
    jv = jax.jit(lambda b, v: jax.jvp(solution, (b,), (v,))[1])(B0, v)
    uj = jax.jit(lambda b, u: jax.vjp(solution, b)[1](u)[0])(B0, u)
    assert float(u @ jv) == pytest.approx(float(uj @ v), rel=10 * TOL)


def test_ridge_regression_through_a_closure():
    """x*(lam) = (M^T M + lam I)^-1 M^T y, dx*/dlam = -(M^T M + lam I)^-1 x*; lam is closed
    over (fun is data: the array is a traced input)."""
    rng = np.random.default_rng(0)
    M = jnp.asarray(rng.normal(size=(20, 4)), DT)
    y = jnp.asarray(rng.normal(size=20), DT)

    def fit(lam):
        return qnjax.minimize(lambda x: 0.5 * jnp.sum((M @ x - y) ** 2) + 0.5 * lam * x @ x, jnp.zeros(4, DT)).x

    lam = jnp.asarray(0.7, DT)
    Mn, yn = np.asarray(M, np.float64), np.asarray(y, np.float64)
    K = Mn.T @ Mn + 0.7 * np.eye(4)
    x_star = np.linalg.solve(K, Mn.T @ yn)
    want = -np.linalg.solve(K, x_star)
    np.testing.assert_allclose(jax.jit(jax.jacfwd(fit))(lam), want, rtol=10 * TOL, atol=10 * TOL)


@needs_x64
def test_argmin_of_quartic_to_1e13():
    """x*(c) = argmin (x - c)^2 + 0.1 x^4: 2(x - c) + 0.4 x^3 = 0, so dx*/dc = 2 / (2 + 1.2 x*^2)."""
    def xstar(c):
        return qnjax.minimize(lambda x, c: jnp.sum((x - c) ** 2 + 0.1 * x**4), jnp.zeros(1), (c,)).x[0]

    grad = jax.jit(jax.grad(xstar))
    for c in (0.5, 2.0, -3.0):
        x = float(xstar(c))
        assert abs(float(grad(c)) - 2 / (2 + 1.2 * x * x)) <= 1e-13


@needs_x64
def test_logistic_regression_hypergradient_against_finite_differences():
    """d(validation loss)/d(log l2) through an L2-regularised logistic fit; and the second
    derivative against finite differences of the first."""
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.normal(size=(60, 5)))
    w_true = rng.normal(size=5)
    labels = jnp.asarray((rng.uniform(size=60) < 1 / (1 + np.exp(-np.asarray(X) @ w_true))).astype(float))
    Xv, yv = X[40:], labels[40:]

    def train(w, log_l2):
        z = X[:40] @ w
        return jnp.mean(jnp.logaddexp(0, z) - labels[:40] * z) + 0.5 * jnp.exp(log_l2) * w @ w

    def validation(log_l2):
        w = qnjax.minimize(train, jnp.zeros(5), (log_l2,)).x
        z = Xv @ w
        return jnp.mean(jnp.logaddexp(0, z) - yv * z)

    t, h = -1.0, 1e-5
    value, g = jax.jit(validation), jax.jit(jax.grad(validation))  # one compilation each
    fd = (value(t + h) - value(t - h)) / (2 * h)
    assert float(g(t)) == pytest.approx(float(fd), rel=1e-6, abs=1e-10)  # fd: h = 1e-5 over a run stopped at rounding
    fd2 = (g(t + h) - g(t - h)) / (2 * h)
    assert float(jax.jit(jax.hessian(validation))(t)) == pytest.approx(float(fd2), rel=1e-5, abs=1e-8)


def test_envelope_theorem_for_the_optimal_value():
    def f(x, theta):
        return jnp.sum((x - theta) ** 2 + 0.1 * x**4) + theta[0] * x[1]

    theta = jnp.asarray([0.5, -1.0, 2.0], DT)
    res = qnjax.minimize(f, jnp.zeros(3, DT), (theta,))
    got = jax.grad(lambda th: qnjax.minimize(f, jnp.zeros(3, DT), (th,)).fun)(theta)
    want = jax.grad(f, argnums=1)(res.x, theta)
    np.testing.assert_allclose(got, want, rtol=10 * TOL, atol=10 * TOL)


@x64_off_only  # batching and aux: the same in both modes
def test_vmap_jit_aux_and_x0():
    thetas = jnp.stack([B0, 2 * B0, -B0])
    jacs = jax.jit(jax.vmap(jax.jacrev(solution)))(thetas)
    np.testing.assert_allclose(jacs, np.broadcast_to(np.linalg.inv(np.asarray(A, np.float64)), (3, 3, 3)),
                               rtol=TOL, atol=TOL)

    def with_aux(b):
        return qnjax.minimize(lambda x, b: (quadratic(x, b), 2 * x), jnp.zeros(3, DT), (b,), has_aux=True).aux

    np.testing.assert_allclose(jax.jit(jax.jacfwd(with_aux))(B0), 2 * np.linalg.inv(np.asarray(A, np.float64)),
                               rtol=TOL, atol=TOL)
    dx0 = jax.jit(jax.grad(lambda x0: jnp.sum(qnjax.minimize(quadratic, x0, (B0,)).x)))(jnp.ones(3, DT))
    np.testing.assert_array_equal(dx0, np.zeros(3))  # x* does not depend on where the run started


@x64_off_only  # which failures give NaN does not depend on the precision mode
def test_failures_are_nan_and_the_opt_ins_are_finite():
    # Not converged: NaN by default, finite with accept_unconverged.
    def early(b, **kw):
        return qnjax.minimize(lambda x, b: quadratic(x, b) + 0.1 * jnp.sum(x**4), jnp.zeros(3, DT), (b,),
                              maxiter=1, **kw).x

    lenient = qnjax.ImplicitDiff(accept_unconverged=True)
    rev, fwd, accepted = jax.jit(lambda b: (jax.jacrev(early)(b), jax.jacfwd(early)(b),  # (one program: CI time)
                                            jax.jacrev(lambda b: early(b, implicit_diff=lenient))(b)))(B0)
    assert np.isnan(np.asarray(rev)).all() and np.isnan(np.asarray(fwd)).all()
    assert np.isfinite(np.asarray(accepted)).all()

    # The linear solve: negative curvature met, or no convergence within maxiter, is NaN.
    indefinite = jax.jit(lambda: qnjax._implicit.conjugate_gradient(
        lambda v: v * jnp.asarray([1.0, -1.0], DT), jnp.ones(2, DT), lambda r: r, qnjax.ImplicitDiff(), DT))()
    assert np.isnan(np.asarray(indefinite)).all()
    short = qnjax.ImplicitDiff(maxiter=1, precondition=False)
    assert np.isnan(np.asarray(jax.jit(jax.jacfwd(lambda b: qnjax.minimize(quadratic, jnp.zeros(3, DT), (b,),
                                                                            implicit_diff=short).x))(B0))).all()

    # x* is not unique along x0 - x1 (a singular Hessian, right-hand side in its range): CG
    # gives the derivative of the solution the run selects; a ridge gives the ridge's answer.
    def flat(x, c):
        return (x[0] + x[1] - c) ** 2

    def xs(c, **kw):
        return qnjax.minimize(flat, jnp.zeros(2, DT), (c,), **kw).x

    c = jnp.asarray(1.0, DT)
    dx_dc = jax.jit(jax.jacfwd(lambda c, ridge: xs(c, implicit_diff=qnjax.ImplicitDiff(ridge=ridge))))
    np.testing.assert_allclose(dx_dc(c, 0.0), [0.5, 0.5], rtol=10 * TOL)
    ridge = 0.5  # a traced setting: the same compiled program
    got = dx_dc(c, ridge)
    H = np.asarray([[2.0, 2.0], [2.0, 2.0]]) + ridge * np.eye(2)
    np.testing.assert_allclose(got, np.linalg.solve(H, [2.0, 2.0]), rtol=10 * TOL)


def test_primal_run_is_unchanged_by_differentiation():
    plain = qnjax.minimize(quadratic, jnp.zeros(3, DT), (B0,))
    primal, _ = jax.jvp(lambda b: qnjax.minimize(quadratic, jnp.zeros(3, DT), (b,)).x, (B0,), (B0,))
    np.testing.assert_array_equal(primal, plain.x)


def test_dense_solver_agrees_with_cg_and_catches_a_singular_hessian():
    """ImplicitDiff(solver="dense"): A^-1 for the quadratic, the free block and the bound's
    derivative with an active bound, and NaN for a singular Hessian even when the right-hand side
    lies in its range (CG then returns the selected solution's derivative); a ridge makes
    it regular again."""
    dense = qnjax.ImplicitDiff(solver="dense")

    def solve(b, lower, implicit_diff):
        return qnjax.minimize(quadratic, jnp.zeros(3, DT), (b,), bounds=(lower, None), implicit_diff=implicit_diff).x

    jac = jax.jit(jax.jacfwd(solve, argnums=(0, 1)), static_argnums=2)
    free = jnp.full(3, -10.0, DT)  # no bound active: x* = A^-1 b
    d_b, _ = jac(B0, free, dense)
    np.testing.assert_allclose(d_b, np.linalg.inv(np.asarray(A, np.float64)), rtol=TOL, atol=TOL)
    active = jnp.asarray([-10.0, 0.0, -10.0], DT)  # x*_1 would be negative: held at its bound 0
    db, dl = jac(B0, active, dense)
    a = np.asarray(A, np.float64)
    f, inv_ff = [0, 2], np.linalg.inv(a[np.ix_([0, 2], [0, 2])])
    want_db, want_dl = np.zeros((3, 3)), np.zeros((3, 3))
    want_db[np.ix_(f, f)] = inv_ff  # the free block solves A_FF dx_F = db_F; x_1 stays on its bound
    want_dl[1, 1] = 1.0  # x_1 follows its bound, and the free ones follow x_1: -A_FF^-1 A_F1
    want_dl[f, 1] = -inv_ff @ a[f, 1]
    np.testing.assert_allclose(db, want_db, rtol=10 * TOL, atol=10 * TOL)
    np.testing.assert_allclose(dl, want_dl, rtol=10 * TOL, atol=10 * TOL)

    def flat(x, c):
        return (x[0] + x[1] - c) ** 2

    dx_dc = jax.jit(jax.jacfwd(lambda c, ridge: qnjax.minimize(
        flat, jnp.zeros(2, DT), (c,), implicit_diff=qnjax.ImplicitDiff(ridge=ridge, solver="dense")).x))
    c = jnp.asarray(1.0, DT)
    assert np.all(np.isnan(np.asarray(dx_dc(c, 0.0))))
    H = np.asarray([[2.0, 2.0], [2.0, 2.0]]) + 0.5 * np.eye(2)
    np.testing.assert_allclose(dx_dc(c, 0.5), np.linalg.solve(H, [2.0, 2.0]), rtol=10 * TOL)

    with pytest.raises(ValueError, match="cg.*dense"):
        qnjax.ImplicitDiff(solver="lu")
    with pytest.raises(TypeError, match="real parameters"):
        jax.jacfwd(lambda c: qnjax.minimize(lambda z, c: jnp.sum(jnp.abs(z - c) ** 2), jnp.zeros(2, jnp.complex64),
                                            (c,), implicit_diff=dense).x)(jnp.asarray(1.0, jnp.float32))


def test_an_eager_grad_runs_the_solve_and_the_tangent_as_programs():
    """``jax.grad`` of a solve called outside ``jax.jit``: JAX evaluates the derivative rule's
    linearisation and its transpose eagerly, so the rule's tangent is one compiled program
    (``_implicit._tangent``: its known part and its transpose), not its dozens of
    operations each compiled on its own. The derivative is the closed form's: x* = 2a/3."""
    a, x0 = jnp.linspace(0.5, 1.5, 7, dtype=DT), jnp.zeros(7, DT)  # (a size of this test only: nothing cached)

    def optimum(a):  # f* = sum(a^2) / 3
        return qnjax.minimize(lambda x: jnp.sum((x - a) ** 2) + 0.5 * jnp.sum(x ** 2), x0).fun

    del COMPILES.names[:]
    g = jax.grad(optimum)(a)
    names = COMPILES.names
    others = [name for name in names if name not in ("jit(_solve)", "jit(_tangent)")]
    assert {"jit(_solve)", "jit(_tangent)"} <= set(names) and len(others) <= 2, names  # (JAX's seed of 1)
    np.testing.assert_allclose(g, 2 * a / 3, rtol=1e-4 if X64 else 1e-3)


@pytest.mark.parametrize("bounds", [None, (-5.0, 5.0)])
def test_reverse_mode_where_a_leaf_of_x_does_not_depend_on_the_data(bounds):
    """x = {"a": t, "b": 1} for f = (a - t)^2 + (b - 1)^2: d a / d t = 1, d b / d t = 0, in
    reverse mode as in forward (the right-hand side's "b" leaf, zero whatever t, had made
    ``jax.grad`` fail in custom_linear_solve's transpose rule)."""
    def f(p, t):
        return (p["a"] - t) ** 2 + (p["b"] - 1.0) ** 2

    def x(t):
        return qnjax.minimize(f, {"a": jnp.zeros((), DT), "b": jnp.zeros((), DT)}, args=(t,), bounds=bounds).x

    t = jnp.asarray(2.0, DT)
    for leaf, want in (("a", 1.0), ("b", 0.0)):
        got = jax.grad(lambda s, leaf=leaf: x(s)[leaf])(t)
        np.testing.assert_allclose(float(got), want, atol=TOL)
        np.testing.assert_allclose(float(jax.jacfwd(lambda s, leaf=leaf: x(s)[leaf])(t)), want, atol=TOL)
