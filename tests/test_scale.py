"""f's power-of-two scale below float64 (``_scale``): f times 2^-k runs as f does, to the edge of
float32's range, and everything that leaves the solve is in f's own units."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import x64_off_only

import qnjax
from qnjax import Status, _scale

F32 = jnp.float32
WEIGHTS = jnp.arange(1, 101, dtype=F32)
X0 = jnp.ones(100, F32)


def quartic(x, c):
    """sum_i i x_i^4 times c: its minimum (0 at 0) is degenerate, so |g| falls by 20 orders."""
    return c * jnp.sum(WEIGHTS * x**4)


def run(c, **kw):
    return qnjax.minimize(quartic, X0, (jnp.asarray(c, F32),), trace=500, **kw)


def test_f_times_a_power_of_two_runs_as_f_to_the_edge_of_the_range():
    """sum_i i x_i^4 in float32 times 2^-k: the same iterates, times 2^-k, bit for bit, and the
    same stop. Unscaled, the runs parted where the gradient's components fell below 2^-63 (their
    squares underflow): 2^-20 took 528 iterations instead of 69, 2^-30 ran out of evaluations."""
    plain = run(1.0)
    assert Status(int(plain.status)) == Status.PRECISION and bool(plain.success)
    for k in (20, 30):
        res = run(2.0**-k)
        assert (int(res.nit), int(res.nfev), int(res.status)) == (int(plain.nit), int(plain.nfev), int(plain.status))
        np.testing.assert_array_equal(np.asarray(res.x), np.asarray(plain.x))
        np.testing.assert_array_equal(res.trace.as_numpy()["fun"], plain.trace.as_numpy()["fun"] * 2.0**-k)
        assert float(res.state.scale) == float(plain.state.scale) * 2.0**k


def test_what_leaves_the_solve_is_in_fs_units():
    """fun, grad, the trace, the callback and hess_inv are f's (not scale f's), and the state
    says its scale."""
    c = jnp.asarray(2.0**-30, F32)
    seen = []
    res = qnjax.minimize(quartic, X0, (c,), trace=500, callback=lambda r: seen.append((r.x, r.fun, r.grad)) and None)
    plain = qnjax.minimize(quartic, X0, (jnp.asarray(1.0, F32),))
    assert float(res.state.scale) > 2.0**30  # (a power of two: max |g(x0)| brought to 2^20)
    # (f and g at x, as this process computes them: another program, which may round otherwise)
    np.testing.assert_allclose(float(res.fun), float(quartic(res.x, c)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.grad), np.asarray(jax.grad(quartic)(res.x, c)), rtol=1e-6)
    assert float(res.fun) == float(plain.fun) * 2.0**-30  # (the same run: f's values times 2^-30)
    assert float(res.trace.as_numpy()["fun"][-1]) == float(res.fun)
    np.testing.assert_array_equal(res.trace.as_numpy()["gnorm"][-1], np.max(np.abs(np.asarray(res.grad))))
    x, fun, grad = seen[-1]
    np.testing.assert_array_equal(x, np.asarray(res.x))
    assert float(fun) == float(res.fun) and np.array_equal(grad, np.asarray(res.grad))
    # (the same memory, of the same scaled f: H of f times 2^-30 is 2^30 times f's, exactly)
    v = jnp.linspace(-1, 1, 100, dtype=F32)
    np.testing.assert_array_equal(np.asarray(res.hess_inv @ v), np.asarray(plain.hess_inv @ v) * 2.0**30)


def test_tolerances_are_in_fs_units():
    """gtol on max |g_i| and fatol on f's change, as given (the solve's are times its scale)."""
    c = jnp.asarray(2.0**-30, F32)
    gtol = 1e-9 * 2.0**-30
    res = qnjax.minimize(quartic, X0, (c,), gtol=gtol)
    same = qnjax.minimize(quartic, X0, (jnp.asarray(1.0, F32),), gtol=1e-9)
    assert Status(int(res.status)) == Status.GTOL and float(jnp.max(jnp.abs(res.grad))) <= gtol
    assert (int(res.nit), int(res.nfev)) == (int(same.nit), int(same.nfev))
    res = qnjax.minimize(quartic, X0, (c,), fatol=1e-3 * 2.0**-30, ftol=0.0)
    same = qnjax.minimize(quartic, X0, (jnp.asarray(1.0, F32),), fatol=1e-3, ftol=0.0)
    assert Status(int(res.status)) == Status.FTOL and (int(res.nit), int(res.nfev)) == (int(same.nit), int(same.nfev))


def test_a_resumed_run_keeps_its_scale():
    """minimize(state=res.state) goes on with the state's scale: the run split in two is the
    run whole."""
    c = (jnp.asarray(2.0**-30, F32),)
    whole = qnjax.minimize(quartic, X0, c)
    first = qnjax.minimize(quartic, X0, c, maxiter=20)
    second = qnjax.minimize(quartic, first.x, c, state=first.state)
    assert float(second.state.scale) == float(first.state.scale) != 1
    # (the leaf's type is init's, as every state leaf's: a resumed run compiles no new program)
    fresh = qnjax.LBFGS().init(X0, jnp.asarray(1.0, F32), X0).scale
    for s in (first.state.scale, second.state.scale):
        assert (s.dtype, s.weak_type, s.shape) == (fresh.dtype, fresh.weak_type, fresh.shape) == (F32, False, ())
    assert (int(second.nit), int(second.nfev)) == (int(whole.nit), int(whole.nfev))
    np.testing.assert_array_equal(np.asarray(second.x), np.asarray(whole.x))


def test_batched_members_have_their_own_scale():
    """Under jax.vmap over f's factor each member is scaled alone: every member runs as the
    plain f."""
    cs = jnp.asarray([1.0, 2.0**-20, 2.0**-30, 2.0**10], F32)
    res = jax.vmap(lambda c: qnjax.minimize(quartic, X0, (c,)))(cs)
    np.testing.assert_array_equal(np.asarray(res.nit), int(res.nit[0]))
    for x in np.asarray(res.x):
        np.testing.assert_array_equal(x, np.asarray(res.x[0]))
    np.testing.assert_array_equal(np.asarray(res.state.scale) * np.asarray(cs), float(res.state.scale[0]))
    plain = qnjax.minimize(quartic, X0, (cs[0],))  # (another program: the same run up to rounding)
    assert abs(int(res.nit[0]) - int(plain.nit)) <= 3 and float(plain.state.scale) == float(res.state.scale[0])


def test_a_float16_leaf_keeps_its_gradient_in_range():
    """A leaf of a smaller range than the scalar dtype (float16: largest 65504) bounds the scale
    (its gradient times the scale stays below 2^8), and the run reaches the minimum."""
    def f(p):
        return 1e-6 * (jnp.sum((p["a"].astype(F32) - 3) ** 2) + jnp.sum((p["b"] - 1) ** 2))

    p0 = {"a": jnp.zeros(4, jnp.float16), "b": jnp.zeros(3, F32)}
    res = qnjax.minimize(f, p0)
    assert bool(res.success), res.message
    np.testing.assert_allclose(np.asarray(res.x["a"], np.float32), 3, atol=4e-3)  # (2 float16 steps)
    g0 = jax.grad(f)(p0)["a"]
    scale = float(res.state.scale)
    assert 1 < scale and scale * float(jnp.max(jnp.abs(g0))) < 2.0**8


def test_every_bound_infinite_is_scaled_as_no_bound():
    """Traced infinite bounds (a box, L-BFGS-B) are scaled as no bound: the run is the unconstrained
    one (up to rounding: L-BFGS-B's small algebra is in float64, ``_subspace``)."""
    c = (jnp.asarray(2.0**-30, F32),)
    inf = jnp.asarray(jnp.inf, F32)
    boxed = jax.jit(lambda lo, hi: qnjax.minimize(quartic, X0, c, bounds=(lo, hi)))(-inf, inf)
    free = jax.jit(lambda: qnjax.minimize(quartic, X0, c))()  # (compiled alike: XLA's defaults)
    assert float(boxed.state.scale) == float(free.state.scale) > 1 and boxed.state.bounds is not None
    assert bool(boxed.success) and bool(free.success) and abs(int(boxed.nit) - int(free.nit)) <= 3
    np.testing.assert_allclose(np.asarray(boxed.x), np.asarray(free.x), rtol=1e-3)


def optax_loop(c, updates=3, **kw):
    """(params, state) after ``updates`` updates of ``qnjax.lbfgs(**kw)`` on the quartic times c, the
    README's loop (``optax.value_and_grad_from_state`` reads the state's value and grad)."""
    fun = lambda x: quartic(x, c)  # noqa: E731
    opt = qnjax.lbfgs(**kw)
    update = jax.jit(lambda g, s, x, v: opt.update(g, s, x, value=v, grad=g, value_fn=fun))
    params, state = X0, opt.init(X0)
    for _ in range(updates):
        value, grad = optax.value_and_grad_from_state(fun)(params, state=state)
        u, state = update(grad, state, params, value)
        params = optax.apply_updates(params, u)
    return params, state


@pytest.mark.parametrize("case", ["float64", "optax-no-search"])
def test_scale_is_one_where_f_is_not_scaled(case):
    """Not in float64, and not in the Optax face without a line search (its first update,
    -g / ||g||, is not homogeneous in f)."""
    c = jnp.asarray(2.0**-30, F32)
    if case == "float64":
        if not jax.config.jax_enable_x64:
            pytest.skip("needs jax_enable_x64")
        state = qnjax.minimize(lambda x: jnp.sum(x**4), jnp.ones(3, jnp.float64)).state
    else:
        state = optax_loop(c, linesearch=None, learning_rate=1e-3)[1]
    assert float(state.scale) == 1.0 and state.scale.dtype == state.value.dtype


def rosenbrock(x, c):
    return c * jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


@x64_off_only  # (float32 programs, the same in either mode)
@pytest.mark.parametrize("face", ["lbfgsb", "projected", "optax"])
def test_with_bounds_f_times_a_power_of_two_runs_as_f(face):
    """Rosenbrock (n = 4, from 0) in [-2, 0.8]^4 times 2^30 (scale 1: max |g(x0)| = 2^31) and
    times 2^80 and 2^90 (scale 2^-40): the same iterates, bit for bit, to the same stop.
    With the scale 1 that bounds had before, 2^80 and 2^90 ran out of 3,000 evaluations in
    float32 with both methods."""
    def run(k):
        c = jnp.asarray(2.0**k, F32)
        if face == "optax":
            fun = lambda x: rosenbrock(x, c)  # noqa: E731
            opt = qnjax.lbfgs(bounds=(-2.0, 0.8))
            update = jax.jit(lambda g, s, x, v: opt.update(g, s, x, value=v, grad=g, value_fn=fun))
            x, state, fs = jnp.zeros(4, F32), opt.init(jnp.zeros(4, F32)), []
            while int(state.status) == Status.RUNNING and len(fs) < 200:
                value, grad = optax.value_and_grad_from_state(fun)(x, state=state)
                u, state = update(grad, state, x, value)
                x = optax.apply_updates(x, u)
                fs.append(float(state.value) / 2.0**k)
            return x, np.asarray(fs), (int(state.count), int(state.nfev), int(state.status)), state
        res = qnjax.minimize(rosenbrock, jnp.zeros(4, F32), (c,), bounds=(-2.0, 0.8), bounds_method=face,
                             trace=200, maxfev=3000)
        return res.x, res.trace.as_numpy()["fun"] / 2.0**k, (int(res.nit), int(res.nfev), int(res.status)), res.state

    x30, f30, counts30, state30 = run(30)
    assert Status(counts30[2]).success and float(state30.scale) == 1.0
    for k in (80, 90):
        x, f, counts, state = run(k)
        assert counts == counts30 and float(state.scale) == 2.0**-40
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x30))
        np.testing.assert_array_equal(f, f30)


@x64_off_only  # (float32 programs, the same in either mode)
def test_with_bounds_the_first_trial_and_the_stationarity_are_fs_own():
    """The scale leaves scipy's rules that are not homogeneous in f as they are for f: the first
    trial is the whole step to P(x - g) of f's own gradient (1/2 ||x - a||^2 in a box that holds
    a ends at a after one iteration, though its scale is 2^19: P(x - 2^19 g) would put x on the
    box's corner), and the projected gradient is f's, ||P(x - g) - x||, times the scale."""
    a = jnp.asarray([1.0, 2.0, 3.0], F32)
    res = qnjax.minimize(lambda x: 0.5 * jnp.sum((x - a) ** 2), jnp.zeros(3, F32), bounds=(-10.0, 10.0))
    assert float(res.state.scale) == 2.0**19 and int(res.nit) == 1 and Status(int(res.status)) == Status.GTOL
    np.testing.assert_array_equal(np.asarray(res.x), np.asarray(a))
    box = res.state.bounds
    x = jnp.asarray([-10.0, 0.5, 9.9], F32)
    g = jnp.asarray([3.0, -0.25, -4.0], F32)  # (held, free, free with P cutting its step to 0.1)
    solver = qnjax._solver.LBFGS()
    plain = float(solver.stationarity(x, g, box))
    assert plain == pytest.approx(0.25)
    assert float(solver.stationarity(x, g * 2.0**19, box, jnp.asarray(2.0**19, F32))) == plain * 2.0**19


@x64_off_only  # (float32 programs, the same in either mode)
def test_below_float64_a_whole_step_within_fs_rounding_is_not_the_first_trial():
    """Rosenbrock in [-2, 0.8]^4 times 1e-30 from 0 (scale 2^100): scipy's whole first step,
    P(x - g), moves x by 2e-30 and promises a decrease far below f's rounding; the first trial
    is then a step of unit length in x, as where it promised less than the smallest normal
    number (``_first_trial``). Taken, that step left a search that could not reach a decrease
    by extrapolating, and the run ended LINESEARCH_FAILED at x0."""
    plain = qnjax.minimize(rosenbrock, jnp.zeros(4, F32), (jnp.asarray(1.0, F32),), bounds=(-2.0, 0.8))
    res = qnjax.minimize(rosenbrock, jnp.zeros(4, F32), (jnp.asarray(1e-30, F32),), bounds=(-2.0, 0.8))
    assert bool(res.success) and float(res.state.scale) == 2.0**100
    np.testing.assert_allclose(float(res.fun) / 1e-30, float(plain.fun), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(res.x), np.asarray(plain.x), atol=1e-3)


@x64_off_only  # (float32 programs, the same in either mode)
def test_the_optax_face_runs_f_times_a_power_of_two_as_f():
    """The Optax face chooses its scale at the first update, as ``minimize`` does at x0: the
    quartic times 2^-30 takes the updates of the quartic, bit for bit, to the same stop (unscaled,
    a loop of 3,000 updates did not finish), and the state's value and grad stay the user's (what
    ``optax.value_and_grad_from_state`` reads), with the scale in the state's own type."""
    plain, plain_state = optax_loop(jnp.asarray(1.0, F32), updates=80)
    c = jnp.asarray(2.0**-30, F32)
    params, state = optax_loop(c, updates=80)
    assert Status(int(plain_state.status)).success and int(state.status) == int(plain_state.status)
    assert int(state.count) == int(plain_state.count) and int(state.nfev) == int(plain_state.nfev)
    np.testing.assert_array_equal(np.asarray(params), np.asarray(plain))
    assert float(state.value) == float(plain_state.value) * 2.0**-30
    np.testing.assert_array_equal(np.asarray(state.grad), np.asarray(plain_state.grad) * 2.0**-30)
    np.testing.assert_allclose(float(state.value), float(quartic(params, c)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.grad), np.asarray(jax.grad(quartic)(params, c)), rtol=1e-6)
    assert float(state.scale) == float(plain_state.scale) * 2.0**30 > 2.0**30
    assert (state.scale.dtype, state.scale.shape, state.scale.weak_type) == (F32, (), False)


def test_choose_caps():
    """The scale: max |g(x0)| below 2^20 up to [2^20, 2^21), beyond 2^50 down to 2^50, at most 2^100
    up and 2^40 down, |scale f(x0)| < 2^40; 1 where f or g is not finite or g is 0."""
    def scale_of(value, grad):
        return float(_scale.scale_for(jnp.asarray(value, F32), jnp.asarray(grad, F32)))

    assert scale_of(1.0, [0.75, -0.1]) == 2.0**21  # (0.75 2^21 = 1.5 2^20)
    assert scale_of(2.0**30, [1.0]) == 2.0**9  # (|f| capped: 2^30 2^9 < 2^40)
    assert scale_of(0.0, [2.0**-60]) == 2.0**80 and scale_of(1.0, [2.0**30]) == 1.0  # (2^20 to 2^50: as it is)
    assert scale_of(0.0, [2.0**60]) == 2.0**-11  # (beyond 2^50: down to [2^49, 2^50))
    assert scale_of(0.0, [2.0**-110]) == 2.0**100 and scale_of(0.0, [2.0**100]) == 2.0**-40  # (the caps)
    assert scale_of(1.0, [2.0**-60]) == 2.0**39  # (|f| capped: 2^39 < 2^40)
    assert scale_of(0.0, [2.0**-5]) == 2.0**25
    assert scale_of(2.0**-30, [2.0**60]) == 2.0**-10  # (|f| kept above 2^-40 where g scales down)
    assert scale_of(np.inf, [1.0]) == scale_of(1.0, [np.nan]) == scale_of(1.0, [0.0]) == 1.0


@x64_off_only  # (float32 programs, the same in either mode)
def test_without_scale_init_precond_h0_is_the_identity_of_fs_units():
    """``qnjax.lbfgs(scale_init_precond=False)``: H0 = I of f itself, not of f times the scale
    (2^15 here), so the float32 updates follow float64's, where the scale is 1 (H0 = I of the
    scaled f made the first trials 2^15 times longer)."""
    def updates(dtype):
        w = jnp.linspace(1, 4, 6, dtype=dtype)
        fun = lambda x: jnp.sum(w * (x - 1) ** 2) + jnp.sum(x**4) / 4  # noqa: E731
        opt = qnjax.lbfgs(scale_init_precond=False)
        update = jax.jit(lambda g, s, x, v: opt.update(g, s, x, value=v, grad=g, value_fn=fun))
        x, state, out = jnp.full(6, 3.0, dtype), opt.init(jnp.full(6, 3.0, dtype)), []
        for _ in range(4):
            value, grad = optax.value_and_grad_from_state(fun)(x, state=state)
            u, state = update(grad, state, x, value)
            x = optax.apply_updates(x, u)
            out.append(np.asarray(u, np.float64))
        return np.stack(out), state

    u32, state = updates(F32)
    assert float(state.scale) == 2.0**15
    with jax.enable_x64(True):
        u64, _ = updates(jnp.float64)
    np.testing.assert_allclose(u32, u64, rtol=1e-4, atol=1e-5)
