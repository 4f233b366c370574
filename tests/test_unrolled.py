"""Unrolled derivatives (``adjoint="unrolled"``, ``lbfgs(unrolled=True)``): every line
search's update has a finite reverse derivative equal to its forward one; the derivative
of a short, unconverged run is the derivative of what it computed (central finite
differences of the 3-iteration map); a converged run's is the closed form, which is
the implicit derivative (A^-1 on a quadratic); the iterates are those of the default
loops; vmap; the Optax face through a ``lax.scan`` of updates; clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, make_step, needs_x64

import qnjax
from qnjax import _unrolled
from qnjax.linesearch._base import point

DT = jnp.float64 if X64 else jnp.float32
A = jnp.asarray([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.5]], DT)
B0 = jnp.asarray([1.0, -2.0, 0.5], DT)


def quadratic(x, b):
    return 0.5 * x @ A @ x - b @ x


def rosenbrock_c(x, c):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (c - x[:-1]) ** 2)


@needs_x64  # (float32: the updates' derivatives below; CI time)
def test_quadratic_both_modes_take_the_same_iterates_and_vmap_of_the_jacobian_is_a_inverse():
    """The same run either way; reverse mode through it, vmapped over three right-hand
    sides, gives A^-1 for each (one compiled program for both checks: CI time)."""
    def run(b, adjoint):
        return qnjax.minimize(quadratic, jnp.zeros(3, DT), (b,), maxiter=60, adjoint=adjoint)

    unrolled = jax.jit(lambda b: run(b, "unrolled"))(B0)
    default = jax.jit(lambda b: run(b, "implicit"))(B0)
    np.testing.assert_array_equal(np.asarray(unrolled.x), np.asarray(default.x))  # the same run
    assert int(unrolled.nit) == int(default.nit) and int(unrolled.nfev) == int(default.nfev)
    assert int(unrolled.status) == int(default.status)

    bs = jnp.stack([B0, jnp.asarray([0.5, 0.5, 0.5], DT), jnp.asarray([2.0, 1.0, -1.0], DT)])
    rev = np.asarray(jax.jit(jax.vmap(jax.jacrev(lambda b: run(b, "unrolled").x)))(bs))
    want = np.linalg.inv(np.asarray(A, np.float64))
    np.testing.assert_allclose(rev[0], want, atol=1e-8)
    # (runs stopped at working precision: their derivatives converge slower than the iterates)
    np.testing.assert_allclose(rev, np.broadcast_to(want, (3, 3, 3)), atol=1e-4)


@pytest.mark.parametrize("name", sorted(qnjax.linesearch.REGISTRY))
def test_each_search_update_has_a_finite_reverse_derivative(name):
    """One update of each search at trials where candidates it does not pick divide by
    zero (equal slopes, a trial at t = 1 with phi(1) = phi(0)): plain reverse mode gives
    NaN for some of them; through ``forward_derivative`` it is the forward Jacobian."""
    cfg = qnjax.linesearch.REGISTRY[name]()
    one, zero = jnp.asarray(1.0, DT), jnp.asarray(0.0, DT)

    def t_next(f, d, value0, slope0, wrapped):
        def update(c, r, p, finite, v0, s0):
            return c.rule(v0, s0, one, zero)[1](r, p, finite)

        fn = _unrolled.forward_derivative(update) if wrapped else update
        rule0 = cfg.rule(value0, slope0, one, zero)[0]
        return fn(cfg, rule0, point(one, f, d), jnp.asarray(True), value0, slope0)[1]

    grads = {w: jax.jit(jax.grad(lambda *a, w=w: t_next(*a, w), argnums=(0, 1, 2, 3))) for w in (False, True)}
    forward = jax.jit(jax.jacfwd(lambda *a: t_next(*a, False), argnums=(0, 1, 2, 3)))
    nans = 0
    for f, d in ((1.0, -1.0), (0.5, -1.0), (2.0, 0.5), (0.5, -0.5)):
        args = tuple(jnp.asarray(v, DT) for v in (f, d, 1.0, -1.0))
        plain, rev, fwd = (np.asarray(fn(*args)) for fn in (grads[False], grads[True], forward))
        assert np.all(np.isfinite(rev)) and np.all(np.isfinite(fwd))
        np.testing.assert_allclose(rev, fwd, rtol=1e-6, atol=1e-7)
        nans += int(np.any(np.isnan(plain)))
    assert nans > 0  # the case the wrapper exists for


@needs_x64
def test_short_run_is_the_derivative_of_what_it_computed():
    """maxiter=3: x_3(c) is a smooth function of c near 1.3 (no branch changes), so
    central differences of the run itself check the unrolled derivative, and the implicit
    one (NaN by default for an unconverged run) is a different quantity."""

    def x3(c):
        return qnjax.minimize(rosenbrock_c, jnp.zeros(4), (c,), maxiter=3, adjoint="unrolled").x

    run = jax.jit(x3)
    assert int(qnjax.minimize(rosenbrock_c, jnp.zeros(4), (1.3,), maxiter=3).status) == qnjax.Status.MAXITER
    h = 1e-6
    fd = (np.asarray(run(1.3 + h)) - np.asarray(run(1.3 - h))) / (2 * h)
    rev = np.asarray(jax.jit(jax.jacrev(x3))(1.3))
    np.testing.assert_allclose(rev, fd, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(rev)) > 1e-3  # not trivially zero


def test_callback_and_verbose_once_per_iteration_in_both_modes_of_differentiation(capsys):
    """With ``adjoint="unrolled"`` the callback is called and ``verbose`` prints once per
    iteration, in reverse mode too, whose backward pass runs the iterations again (each
    line had printed a second time there, in reverse order); a run the callback stops is
    the run differentiated (its derivative had failed: JAX has no derivative rule for the
    callback's ``pure_callback``), that of the same iterations stopped by ``maxiter``.
    maxiter=9: the iterations in blocks, each checkpointed (``_unrolled.FLAT_LIMIT``)."""
    calls = []

    def stop_at_6(info):
        calls.append(info.nit)
        return info.nit >= 6

    def solve(c, callback=None, verbose=False, maxiter=9):
        return qnjax.minimize(rosenbrock_c, jnp.zeros(4, DT), (c,), maxiter=maxiter, adjoint="unrolled",
                              callback=callback, verbose=verbose).x

    rev = np.asarray(jax.jit(jax.jacrev(lambda c: solve(c, stop_at_6, 1)))(1.3))
    jax.effects_barrier()
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["nit", *map(str, range(7))]
    assert calls == list(range(1, 7))
    calls.clear()
    fwd = np.asarray(jax.jit(jax.jacfwd(lambda c: solve(c, stop_at_6)))(1.3))
    assert calls == list(range(1, 7))
    want = np.asarray(jax.jit(jax.jacfwd(lambda c: solve(c, maxiter=6)))(1.3))
    np.testing.assert_allclose(fwd, want, rtol=1e-5 if X64 else 1e-3)
    np.testing.assert_allclose(rev, want, rtol=1e-5 if X64 else 1e-3)
    assert np.max(np.abs(want)) > 1e-2  # not trivially zero


@needs_x64
def test_optax_face_through_a_scan_of_updates():
    """jax.grad through 12 updates in lax.scan (reverse mode needs unrolled=True): on the
    quadratic they reach x* = A^-1 b, so the derivative is A^-1."""
    x0 = jnp.zeros(3, DT)

    def after(b, unrolled, k=12):
        opt = qnjax.lbfgs(unrolled=unrolled)
        step = make_step(opt, lambda x: quadratic(x, b))
        return jax.lax.scan(lambda c, _: (step(*c), None), (x0, opt.init(x0)), length=k)[0][0]

    rev = jax.jit(jax.jacrev(lambda b: after(b, True)))(B0)
    np.testing.assert_allclose(np.asarray(rev), np.linalg.inv(np.asarray(A, np.float64)), atol=1e-7 if X64 else 2e-3)
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work for lax.while_loop"):
        jax.jit(jax.jacrev(lambda b: after(b, False)))(B0)  # (jit: refused while tracing, nothing compiled)


def test_optax_face_with_projected_bounds_through_a_scan_of_updates():
    """The Optax face with ``bounds_method="projected"`` unrolls too, through the updates'
    rounding nudges that keep params + updates in the box (``_bounds.trial``): 10 updates of
    sum (x - c)^2 in [-1, 1]^3 end at clip(c), so dx/dc holds the clipped variables (0) and
    passes the free one (1)."""
    c0 = jnp.asarray([2.0, -3.0, 0.3], DT)  # (0.5: the first step ties two bounds of the first trial)
    x0 = jnp.zeros(3, DT)
    opt = qnjax.lbfgs(bounds=(-1.0, 1.0), bounds_method="projected", unrolled=True)

    def after(c):
        step = make_step(opt, lambda x: jnp.sum((x - c) ** 2))
        return jax.lax.scan(lambda carry, _: (step(*carry), None), (x0, opt.init(x0)), length=10)[0][0]

    x, jac = jax.jit(lambda c: (after(c), jax.jacrev(after)(c)))(c0)
    assert np.asarray(x)[0] == 1.0 and np.asarray(x)[1] == -1.0  # on the bounds exactly
    np.testing.assert_allclose(np.asarray(x)[2], 0.3, rtol=1e-12 if X64 else 1e-6)
    np.testing.assert_allclose(np.asarray(jac), np.diag([0.0, 0.0, 1.0]), atol=1e-6 if X64 else 1e-4)


@needs_x64  # (one compile of a reverse-mode unrolled solve: CI time)
def test_projected_bounded_solve_unrolls_to_the_active_set_derivative():
    """``bounds_method="projected"`` has no sort, so its iterations unroll: through a
    converged box QP (free variables and both bounds active), dx*/db is A_FF^-1 on the
    free variables and zero on the held ones, as the implicit derivative's closed form
    (test_lbfgsb.py)."""
    rng = np.random.default_rng(0)
    n = 8
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.logspace(0, 2, n)) @ q.T
    b = 40 * rng.normal(size=n)
    a_j = jnp.asarray(a, DT)

    def solve(b):
        return qnjax.minimize(lambda x, b: 0.5 * x @ a_j @ x - b @ x, jnp.full(n, 0.5, DT), (b,), bounds=(0.0, 1.0),
                              bounds_method="projected", adjoint="unrolled", maxiter=20)

    res = solve(jnp.asarray(b, DT))
    assert bool(res.success) and int(res.nit) < 20
    x = np.asarray(res.x)
    free = (x > 0) & (x < 1)
    assert free.any() and (x == 0).any() and (x == 1).any()
    jac = np.asarray(jax.jit(jax.jacrev(lambda b: solve(b).x))(jnp.asarray(b, DT)))
    want = np.zeros((n, n))
    want[np.ix_(free, free)] = np.linalg.inv(a[np.ix_(free, free)])
    np.testing.assert_allclose(jac, want, atol=1e-6)


def test_errors_name_the_fix():
    with pytest.raises(TypeError, match="maxiter as a Python integer"):
        qnjax.minimize(quadratic, jnp.zeros(3, DT), (B0,), maxiter=None, adjoint="unrolled")
    with pytest.raises(NotImplementedError, match="implicit derivatives"):
        qnjax.minimize(quadratic, jnp.zeros(3, DT), (B0,), maxiter=5, bounds=(0.0, None), adjoint="unrolled")
    with pytest.raises(NotImplementedError, match="implicit derivatives"):
        qnjax.lbfgs(unrolled=True, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="adjoint='unrolled' takes none"):
        qnjax.minimize(quadratic, jnp.zeros(3, DT), (B0,), maxiter=5, adjoint="unrolled",
                       implicit_diff=qnjax.ImplicitDiff())
    with pytest.raises(ValueError, match="'implicit' or 'unrolled'"):
        qnjax.minimize(quadratic, jnp.zeros(3, DT), (B0,), adjoint="backprop")
