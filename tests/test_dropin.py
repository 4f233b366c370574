"""qnjax.lbfgs as a drop-in for optax.lbfgs: the behaviours optax's own L-BFGS tests check,
written again from what they check (optax's convention for complex gradients, no line
search, the signature, a loss of another dtype), and both faces under strict dtype
promotion."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import X64, assert_same_types, needs_x64, searches_for_mode

import qnjax

DT = jnp.float64 if X64 else jnp.float32
CT = jnp.complex128 if X64 else jnp.complex64
TOL = 1e-5 if X64 else 2e-3


def run_optax_style(opt, fun, params, maxiter=500, tol=1e-6):
    """The loop optax's tests use: its own value_and_grad, gradients conjugated (optax's
    documented convention for complex parameters), stop when ||grad|| < tol."""
    vg = jax.value_and_grad(fun)

    def cond(c):
        _, _, k, g = c
        return (optax.tree.norm(g) >= tol) & (k < maxiter)

    def body(c):
        p, s, k, _ = c
        value, grad = vg(p)
        grad = optax.tree.conj(grad)
        updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(p, updates), s, k + 1, grad

    g0 = optax.tree.conj(jax.grad(fun)(params))
    return jax.jit(lambda p: jax.lax.while_loop(cond, body, (p, opt.init(p), 0, g0)))(params)


MAT = np.array([[1, -2], [3, 4], [-4 + 2j, 5 - 3j], [-2 - 2j, 6]])


def f_complex(z):
    return jnp.sum(jnp.abs(jnp.asarray(MAT, z.dtype) @ z) ** 1.5)


def f_real(x):
    return f_complex(x[..., 0, :] + 1j * x[..., 1, :])


@pytest.mark.parametrize("search", searches_for_mode(["more-thuente", "zoom", "backtracking"]))
def test_complex_follows_optax_convention(search):
    """Given conjugated gradients, the complex problem's iterates are the real problem's."""
    opt = qnjax.lbfgs(linesearch=qnjax.linesearch.get(search))
    z0 = jnp.asarray([1 - 1j, 0 + 1j], CT)
    x0 = jnp.stack([z0.real, z0.imag])
    z, *_ = run_optax_style(opt, f_complex, z0, tol=1e-6)
    x, *_ = run_optax_style(opt, f_real, x0, tol=1e-6)
    np.testing.assert_allclose(np.asarray(z), np.asarray(x[0] + 1j * x[1]), atol=1e-3 if X64 else 3e-2)
    assert float(f_complex(z)) < 1e-3 * float(f_complex(z0))  # the minimum is 0 at z = 0


def test_complex_rosenbrock_reaches_the_minimum():
    def rosen_c(z):
        x = jnp.concatenate([z.real, z.imag])
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    z0 = jnp.zeros(5, CT)
    z, state, *_ = run_optax_style(qnjax.lbfgs(), rosen_c, z0, tol=1e-8)
    np.testing.assert_allclose(np.asarray(z), (1 + 1j) * np.ones(5), atol=TOL if X64 else 5e-2)


def test_value_and_grad_from_state_gives_optax_convention():
    """The state's gradient is in the convention update expects, so the README loop works for
    complex parameters too."""
    c = jnp.asarray([1.0 + 2.0j, -0.5j], CT)

    def fun(z):
        return jnp.sum(jnp.abs(z - c) ** 2) + 0.1 * jnp.sum(jnp.abs(z) ** 4)

    opt = qnjax.lbfgs()
    vg = qnjax.value_and_grad_from_state(fun)
    z = jnp.zeros(2, CT)
    state = opt.init(z)
    value, grad = vg(z, state=state)
    np.testing.assert_allclose(np.asarray(grad), np.conj(np.asarray(jax.grad(fun)(z))), rtol=1e-6)
    step = jax.jit(lambda z, s: _step(opt, vg, fun, z, s))
    for _ in range(30):
        z, state = step(z, state)
    ref = qnjax.minimize(fun, jnp.zeros(2, CT))
    np.testing.assert_allclose(np.asarray(z), np.asarray(ref.x), atol=1e-5 if X64 else 1e-3)


def _step(opt, vg, fun, params, state):
    value, grad = vg(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    return optax.apply_updates(params, updates), state


def plain_lbfgs(fun, x, lr, steps, m):
    """L-BFGS with a fixed step, written from N&W Algorithm 7.4/7.5 in numpy: the first step
    scaled by min(1, 1 / ||g||), H0 = gamma I afterwards, pairs with <s, y> <= eps ||s|| ||y||
    skipped (qnjax's documented curvature guard)."""
    grad = jax.grad(fun)
    x = np.asarray(x, np.float64)
    g = np.asarray(grad(jnp.asarray(x)), np.float64)
    pairs, gamma = [], None
    for _ in range(steps):
        q = g.copy()
        alphas = []
        for s, y in reversed(pairs):
            a = (s @ q) / (s @ y)
            alphas.append(a)
            q -= a * y
        q *= gamma if gamma is not None else min(1.0, 1.0 / np.linalg.norm(g))
        for (s, y), a in zip(pairs, reversed(alphas)):
            q += (a - (y @ q) / (s @ y)) * s
        u = -lr * q
        x_new = x + u
        g_new = np.asarray(grad(jnp.asarray(x_new)), np.float64)
        s, y = u, g_new - g
        if s @ y > np.finfo(np.float64).eps * np.linalg.norm(s) * np.linalg.norm(y):
            pairs = (pairs + [(s, y)])[-m:]
            gamma = (s @ y) / (y @ y)
        x, g = x_new, g_new
    return x


PROBLEMS = {
    "rosenbrock": (lambda x: jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2), np.zeros(2)),
    "matyas": (lambda p: 0.26 * (p[0] ** 2 + p[1] ** 2) - 0.48 * p[0] * p[1], np.ones(2) * 6.0),
    "zakharov": (lambda x: (lambda s1, s2: s1 + s2**2 + s2**4)(
        jnp.sum(x**2), jnp.sum(0.5 * jnp.arange(1, x.size + 1, dtype=x.dtype) * x)),
        np.array([600.0, 700.0, 200.0, 100.0, 90.0, 1e3])),
}


@needs_x64
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_no_linesearch_matches_the_plain_algorithm(name):
    """linesearch=None: the update is -learning_rate H g and value_fn is never called."""
    fun, x0 = PROBLEMS[name]
    calls = []

    def never(x):
        calls.append(1)
        raise AssertionError("value_fn must not be called without a line search")

    lr, steps = 1e-3, 15
    opt = qnjax.lbfgs(lr, memory_size=5, linesearch=None)  # learning_rate positionally, as optax

    @jax.jit  # (a call of value_fn would raise while tracing)
    def step(params, state):
        updates, state = opt.update(jax.grad(fun)(params), state, params, value_fn=never)
        return optax.apply_updates(params, updates), state

    params, state = jnp.asarray(x0), opt.init(jnp.asarray(x0))
    for _ in range(steps):
        params, state = step(params, state)
    assert calls == []
    assert np.isinf(float(state.value))  # no line search: the state holds no value
    np.testing.assert_allclose(np.asarray(params), plain_lbfgs(fun, x0, lr, steps, 5), rtol=1e-6, atol=1e-8)


def test_signature_is_optax_s():
    opt = qnjax.lbfgs(1e-3)  # a learning rate, as in optax, not a memory size
    state = opt.init(jnp.ones(3, DT))
    assert state.memory.s.shape == (11, 3)  # memory_size 10 (+ the free slot)
    opt = qnjax.lbfgs(None, 4, False)
    assert opt.init(jnp.ones(3, DT)).memory.s.shape == (5, 3)
    with pytest.raises(TypeError, match="qnjax.linesearch.Zoom"):
        qnjax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=20))
    with pytest.raises(TypeError, match="qnjax.linesearch.Backtracking"):
        qnjax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(max_backtracking_steps=20))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="memory_size"):
            qnjax.lbfgs(memory_size=bad)
        with pytest.raises(ValueError, match="memory_size"):
            qnjax.minimize(lambda x: jnp.sum(x**2), jnp.ones(2, DT), memory_size=bad)


def test_inject_hyperparams_with_memory_size_static():
    """optax.inject_hyperparams makes an array of every numeric argument, memory_size (which
    sizes the state) included: the error names the fix, and with it the injected learning
    rate is a hyperparameter of the state, the update that of plain lbfgs."""
    with pytest.raises(TypeError, match=r"static_args=\('memory_size',\)"):
        optax.inject_hyperparams(qnjax.lbfgs)(learning_rate=0.5).init(jnp.ones(2, DT))
    fun = lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)  # noqa: E731
    x = jnp.asarray([-1.2, 1.0], DT)
    value, grad = jax.value_and_grad(fun)(x)
    updates = []
    for opt in (optax.inject_hyperparams(qnjax.lbfgs, static_args=("memory_size",))(learning_rate=0.5),
                qnjax.lbfgs(0.5)):
        state = opt.init(x)
        updates.append(opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)[0])
        if len(updates) == 1:
            assert float(state.hyperparams["learning_rate"]) == 0.5
    np.testing.assert_array_equal(np.asarray(updates[0]), np.asarray(updates[1]))
    assert np.all(np.asarray(updates[0]) != 0)


def test_learning_rate_and_schedules_scale_the_update():
    """Without a line search the update is -learning_rate H g; a schedule gets the count."""
    fun = lambda x: jnp.sum((x - 3.0) ** 2 * jnp.arange(1, 5, dtype=x.dtype))  # noqa: E731
    x = jnp.zeros(4, DT)

    def two_updates(lr):
        opt = qnjax.lbfgs(lr, linesearch=None)
        params, state, out = x, opt.init(x), []
        for _ in range(2):
            u, state = opt.update(jax.grad(fun)(params), state, params)
            params = optax.apply_updates(params, u)
            out.append(np.asarray(u))
        return out

    ones, halves, scheduled = two_updates(None), two_updates(0.5), two_updates(lambda count: 0.5 ** count)
    np.testing.assert_allclose(halves[0], 0.5 * ones[0], rtol=1e-6)
    np.testing.assert_allclose(scheduled[0], ones[0], rtol=1e-6)  # count 0: 0.5 ** 0 = 1
    assert not np.allclose(scheduled[1], ones[1])  # count 1: a step half as long from the same memory


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "complex64"]
                         + (["float64", "complex128"] if X64 else []))
def test_state_is_type_stable_with_a_loss_of_another_dtype(dtype):
    """optax's own stability test: learning rate, a value given in float16 (bfloat16 for
    float16 params), the update inside lax.cond, jitted; the state's types never change."""
    dtype = jnp.dtype(dtype)
    target = jnp.asarray([1.0, -2.0, 0.5], dtype)

    def objective(p):
        return jnp.sum(jnp.abs(p - target) ** 2).astype(jnp.float32)

    opt = qnjax.lbfgs(learning_rate=0.1)

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(objective)(params)
        grad = optax.tree.conj(grad)
        value = value.astype(jnp.float16 if dtype != jnp.float16 else jnp.bfloat16)
        cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
        updates, state = jax.lax.cond(
            cond, lambda: opt.update(grad, state, params, value=value, grad=grad, value_fn=objective),
            lambda: (jax.tree.map(jnp.zeros_like, params), state))
        return optax.apply_updates(params, updates), state

    params = jnp.zeros(3, dtype)
    state = opt.init(params)
    new_params, new_state = step(params, state)
    new_params, new_state = step(new_params, new_state)
    assert_same_types(state, new_state)
    assert new_params.dtype == dtype


@needs_x64
@pytest.mark.parametrize("dtype", ["float64", "complex64", "mixed", "f_in_float32"])
def test_both_faces_under_strict_promotion(dtype):
    """JAX's own test suite runs with jax.numpy_dtype_promotion('strict'). (complex64 has a
    float32 scalar dtype under x64, mixed a float32 and a float64 leaf, f_in_float32 float64
    leaves and f returned in float32: ``_verdict.value_dtype``.)"""
    if dtype == "mixed":
        x0 = {"a": jnp.zeros(2, jnp.float32), "b": jnp.zeros(2, jnp.float64)}
        fun = lambda p: jnp.sum((p["a"] - 1) ** 2).astype(jnp.float64) + jnp.sum((p["b"] + 2) ** 2)  # noqa: E731
    elif dtype == "f_in_float32":
        x0 = jnp.zeros(3, jnp.float64)
        fun = lambda x: jnp.sum((x.astype(jnp.float32) - jnp.asarray([1.0, -2.0, 0.5], jnp.float32)) ** 2)  # noqa: E731
    else:
        dt = jnp.dtype(dtype)
        x0 = jnp.zeros(3, dt)
        shift = jnp.asarray([1 + 1j, -2, 0.5j] if jnp.issubdtype(dt, jnp.complexfloating) else [1.0, -2.0, 0.5], dt)
        fun = lambda z: jnp.sum(jnp.abs(z - shift) ** 2)  # noqa: E731
    with jax.numpy_dtype_promotion("strict"):
        res = qnjax.minimize(fun, x0)
        assert bool(res.success), res.message
        opt = qnjax.lbfgs()
        vg = qnjax.value_and_grad_from_state(fun)
        params, state = x0, opt.init(x0)
        step = jax.jit(lambda p, s: _step(opt, vg, fun, p, s))
        for _ in range(5):
            params, state = step(params, state)
    assert float(state.value) < float(fun(x0)) * 1e-3


@pytest.mark.parametrize("method", ["lbfgsb", "projected"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bounded_runs_under_strict_promotion(dtype, method):
    """Both bounds methods under jax.numpy_dtype_promotion('strict'), in a box and with bounds
    that bind nothing (L-BFGS-B's inverse form of H where every variable is free, its small
    algebra in float64 for float32: a float32 gamma times a float64 vector, and an int64
    arange beside the int32 ring index under x64, were refused)."""
    if dtype == "float64" and not X64:
        pytest.skip("needs x64")
    dt = jnp.dtype(dtype)
    weights = jnp.arange(1, 5, dtype=dt)
    fun = lambda x: jnp.sum(weights * (x - 0.3) ** 2) + jnp.sum(x[1:] * x[:-1])  # noqa: E731
    with jax.numpy_dtype_promotion("strict"):
        for bounds in ((0.0, 1.0), (-jnp.inf, 10.0)):
            res = qnjax.minimize(fun, jnp.full(4, 0.9, dt), bounds=bounds, bounds_method=method)
            assert bool(res.success) and int(res.nit) > 2, res.message


def test_status_loop_ends_with_success_soon_after_the_loss_settles():
    """The README's loop: stop on state.status; it ends with a success code, at most two
    updates after the loss last changed."""
    fun = lambda x: jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)  # noqa: E731
    opt = qnjax.lbfgs()
    vg = qnjax.value_and_grad_from_state(fun)
    step = jax.jit(lambda p, s: _step(opt, vg, fun, p, s))
    params = jnp.asarray([-1.2, 1.0, -1.2, 1.0], DT)
    state = opt.init(params)
    values = []
    for _ in range(500):
        params, state = step(params, state)
        values.append(float(state.value))
        if qnjax.Status(int(state.status)) != qnjax.Status.RUNNING:
            break
    status = qnjax.Status(int(state.status))
    assert status.success, status
    last_change = max(i for i in range(len(values)) if i == 0 or values[i] != values[i - 1])
    assert len(values) - 1 - last_change <= 2, values[-5:]
    assert values[-1] < 1e-8
