"""qnjax.lbfgs as an Optax transformation: type stability by construction, and the maths."""

import functools

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import COMPILES, X64, assert_same_types, leaf_types, make_step, needs_x64, rosenbrock

import qnjax


def loss_any(params):
    """A smooth real loss of any float/complex pytree: sum of |p - 0.5|^2 + 0.1 |p|^4 per leaf,
    each leaf computed in its own dtype, summed in float32 or wider."""
    total = jnp.zeros((), jnp.float32)
    for p in jax.tree.leaves(params):
        r = jnp.abs(p - jnp.asarray(0.5, p.dtype)) ** 2 + 0.1 * jnp.abs(p) ** 4
        total = total + jnp.sum(r).astype(jnp.promote_types(total.dtype, r.dtype))
    return total


def f64(shape=(3,)):
    return jnp.linspace(-1.0, 2.0, int(np.prod(shape)), dtype=jnp.float64).reshape(shape)


CASES = {
    "f16": lambda: jnp.linspace(-1, 2, 3, dtype=jnp.float16),
    "bf16": lambda: jnp.linspace(-1, 2, 3, dtype=jnp.bfloat16),
    "f32": lambda: jnp.linspace(-1, 2, 3, dtype=jnp.float32),
    "c64": lambda: jnp.linspace(-1, 2, 3, dtype=jnp.float32) * (1 + 1j),
    "scalar0d": lambda: jnp.asarray(3.0, jnp.float32),
    "mixed_f16_f32": lambda: {"a": jnp.ones(2, jnp.float16), "b": (jnp.zeros((2, 2), jnp.float32),)},
    "f64": lambda: f64(),
    "c128": lambda: f64() * (1 + 1j),
    "mixed_f32_f64": lambda: {"a": jnp.ones(2, jnp.float32), "b": f64((2, 2))},
    "mixed_f64_f32": lambda: {"a": f64((2, 2)), "b": jnp.ones(2, jnp.float32)},
    "mixed_f32_c128": lambda: [jnp.ones(2, jnp.float32), f64() * 1j, jnp.asarray(1.0, jnp.bfloat16)],
}
X64_ONLY = {"f64", "c128", "mixed_f32_f64", "mixed_f64_f32", "mixed_f32_c128"}


def run_loop(kind, step, params, state, n=6):
    if kind == "python":
        for _ in range(n):
            params, state = step(params, state)
        return params, state
    if kind == "jit":
        jitted = jax.jit(step)
        for _ in range(n):
            params, state = jitted(params, state)
        return params, state
    if kind == "fori_loop":
        return jax.lax.fori_loop(0, n, lambda i, c: step(*c), (params, state))
    if kind == "while_loop":
        def body(c):
            i, p, s = c
            return (i + 1, *step(p, s))
        return jax.lax.while_loop(lambda c: c[0] < n, body, (0, params, state))[1:]
    if kind == "scan":
        return jax.lax.scan(lambda c, _: (step(*c), None), (params, state), length=n)[0]
    if kind in ("eqx_checkpointed", "eqx_lax"):
        k = kind.split("_")[1]
        return eqxi.scan(lambda c, _: (step(*c), None), (params, state), None, length=n, kind=k)[0]
    raise ValueError(kind)


LOOPS = ["jit", "fori_loop", "while_loop", "scan", "eqx_checkpointed", "eqx_lax"]


# Every dtype case inside lax.scan (optax#1210's setting), and every other loop with the
# widest mixed case the mode has (float16 and float32 leaves; with x64, float32, complex128
# and bfloat16): the full cross product adds compile time, not coverage.
WIDEST_MIXED = "mixed_f32_c128" if X64 else "mixed_f16_f32"
PAIRS = [("scan", case) for case in sorted(CASES)] + [(loop, WIDEST_MIXED) for loop in LOOPS if loop != "scan"]


@pytest.mark.parametrize("loop, case", PAIRS)
def test_state_types_fixed_at_init(loop, case):
    """Run in lax.scan (types and values); the other loops carry the same step, so what they
    can change is the types: traced (jax.eval_shape, a loop that changes the carry's type
    fails there too), not compiled (CI time)."""
    if case in X64_ONLY and not X64:
        pytest.skip("needs x64")
    params = CASES[case]()
    opt = qnjax.lbfgs(memory_size=3)
    state = opt.init(params)
    assert_same_types(state, state)  # nothing weak at init
    run = functools.partial(run_loop, loop, make_step(opt, loss_any))
    new_params, new_state = run(params, state) if loop == "scan" else jax.eval_shape(run, params, state)
    assert_same_types(state, new_state)
    assert leaf_types(new_params) == leaf_types(params)
    if loop != "scan":
        return
    assert bool(jnp.isfinite(new_state.value))
    assert float(new_state.value) < float(loss_any(params))
    # count: updates that moved x (one may drop the memory and move on the next, at the end)
    assert 4 <= int(new_state.count) <= 6


# With bounds (L-BFGS-B inside the transformation): the real dtype cases in lax.scan, and a
# mixed case in a loop that carries the state differently; the projected method
# (``bounds_method="projected"``, another memory) in three of them.
BOUNDED_PAIRS = [("scan", case, "lbfgsb") for case in ("bf16", "f16", "f32", "mixed_f32_f64", "mixed_f64_f32")] + [
    ("eqx_checkpointed", "mixed_f16_f32", "lbfgsb"), ("scan", "bf16", "projected"),
    ("scan", "mixed_f32_f64", "projected"), ("eqx_checkpointed", "mixed_f16_f32", "projected")]


@pytest.mark.parametrize("loop, case, method", BOUNDED_PAIRS)
def test_state_types_fixed_at_init_with_bounds(loop, case, method):
    if case in X64_ONLY and not X64:
        pytest.skip("needs x64")
    params = jax.tree.map(lambda p: jnp.clip(p, -0.5, 0.25), CASES[case]())  # a feasible start
    opt = qnjax.lbfgs(memory_size=3, bounds=(-0.5, 0.25), bounds_method=method)  # Python floats: weak, must not promote
    state = opt.init(params)
    run = functools.partial(run_loop, loop, make_step(opt, loss_any))
    new_params, new_state = run(params, state) if loop == "scan" else jax.eval_shape(run, params, state)
    assert_same_types(state, new_state)
    assert leaf_types(new_params) == leaf_types(params)
    if loop != "scan":  # (types only, as above)
        return
    for p in jax.tree.leaves(new_params):
        assert bool(jnp.all((p >= jnp.asarray(-0.5, p.dtype)) & (p <= 0.25)))  # 0.25 is exact in every dtype
    assert float(new_state.value) <= float(loss_any(params))  # (scalar0d starts at its solution, 0.25)
    assert int(new_state.status) in (qnjax.Status.RUNNING, qnjax.Status.GTOL, qnjax.Status.PRECISION)


def test_scalar_dtype_rule():
    dt = jnp.float64 if X64 else jnp.float32
    assert qnjax.lbfgs().init(jnp.ones(2, jnp.bfloat16)).value.dtype == jnp.float32
    assert qnjax.lbfgs().init({"a": jnp.ones(2, jnp.float32), "b": jnp.ones(1, dt) * 1j}).value.dtype == dt
    assert qnjax.lbfgs(scalar_dtype=jnp.float64).init(jnp.ones(2, jnp.float16)).value.dtype == dt


@needs_x64
@pytest.mark.parametrize("kind", ["lax", "checkpointed"])
def test_seed_scenario_scan_x64(kind):
    """optax issue #1210: L-BFGS inside lax.scan / equinox.internal.scan with x64, 100 steps."""
    opt = qnjax.lbfgs()
    params = jnp.array([-1.2, 1.0, -1.2, 1.0])
    step = make_step(opt, rosenbrock)
    body = lambda c, _: (step(*c), None)  # noqa: E731
    if kind == "lax":
        (params, state), _ = jax.lax.scan(body, (params, opt.init(params)), length=100)
    else:
        (params, state), _ = eqxi.scan(body, (params, opt.init(params)), None, length=100, kind=kind)
    np.testing.assert_allclose(params, np.ones(4), atol=1e-6)
    assert float(state.value) < 1e-12
    assert state.count.dtype == jnp.int32 and state.nfev.dtype == jnp.int32


def test_jitted_step_compiles_once():
    traces = []
    opt = qnjax.lbfgs()
    inner = make_step(opt, rosenbrock)

    @jax.jit
    def step(params, state):
        traces.append(1)
        return inner(params, state)

    params = jnp.array([-1.2, 1.0], jnp.float32)
    state = opt.init(params)
    for _ in range(10):
        params, state = step(params, state)
    assert len(traces) == 1


def test_vmap_over_problems():
    opt = qnjax.lbfgs()
    shifts = jnp.linspace(0.0, 2.0, 5, dtype=jnp.float32)

    def solve(shift):
        loss = lambda p: rosenbrock(p - shift)  # noqa: E731
        params = jnp.array([-1.2, 1.0], jnp.float32) + shift
        return run_loop("fori_loop", make_step(opt, loss), params, opt.init(params), n=60)

    params, state = jax.jit(jax.vmap(solve))(shifts)
    np.testing.assert_allclose(params, 1.0 + np.stack([shifts, shifts], 1), atol=2e-3)
    assert state.value.shape == (5,) and state.memory.pairs.shape == (5, 22, 2)  # S, Y: 10 pairs, free slot


def test_complex_params_match_the_real_problem():
    """A real loss of complex z equals the same loss of (Re z, Im z): the iterates must agree."""
    c = jnp.asarray([1.0 - 2.0j, 0.5 + 0.25j, -1.0j], jnp.complex64)

    def f_complex(z):
        return jnp.sum(jnp.abs(z - c) ** 2 + 0.3 * jnp.abs(z) ** 4 + (z * c).real)

    def f_real(xy):
        return f_complex(xy[0] + 1j * xy[1])

    z = jnp.zeros(3, jnp.complex64)
    xy = jnp.zeros((2, 3), jnp.float32)
    opt = qnjax.lbfgs()
    sz, sx = opt.init(z), opt.init(xy)
    stz, stx = jax.jit(make_step(opt, f_complex)), jax.jit(make_step(opt, f_real))
    for _ in range(8):
        z, sz = stz(z, sz)
        xy, sx = stx(xy, sx)
        np.testing.assert_allclose(np.asarray(z), np.asarray(xy[0] + 1j * xy[1]), rtol=1e-4, atol=1e-5)
    assert float(sz.value) == pytest.approx(float(sx.value), rel=1e-5)
    assert int(sz.nfev) == int(sx.nfev)


@needs_x64
def test_float32_params_float64_loss():
    loss = lambda p: rosenbrock(p.astype(jnp.float64))  # noqa: E731
    params = jnp.array([-1.2, 1.0], jnp.float32)
    opt = qnjax.lbfgs()
    state = opt.init(params)
    new_params, new_state = run_loop("scan", make_step(opt, loss), params, state, n=40)
    assert_same_types(state, new_state)
    assert float(new_state.value) < 1e-6


@needs_x64
def test_optax_value_and_grad_from_state_works_on_our_state():
    opt = qnjax.lbfgs()
    params = jnp.array([-1.2, 1.0])
    state = opt.init(params)
    step = jax.jit(make_step(opt, rosenbrock, optax.value_and_grad_from_state))

    for _ in range(40):
        params, state = step(params, state)
    np.testing.assert_allclose(params, [1.0, 1.0], atol=1e-6)
    # The stored value/grad are those of the returned params (no extra evaluation needed).
    np.testing.assert_allclose(state.value, rosenbrock(params), rtol=1e-12)


def test_composes_in_optax_chain():
    opt = optax.chain(optax.clip_by_global_norm(1e3), qnjax.lbfgs())
    params = jnp.array([-1.2, 1.0], jnp.float32)
    state = opt.init(params)
    step = jax.jit(make_step(opt, rosenbrock))
    for _ in range(60):
        params, state = step(params, state)
    np.testing.assert_allclose(params, [1.0, 1.0], atol=1e-2)
    assert optax.tree_utils.tree_get(state, "count").dtype == jnp.int32


@pytest.mark.skipif(X64, reason="float32 and keyword passing: runs with x64 off (eager updates: 10 s)")
def test_extra_args_reach_value_fn():
    def loss(p, target):
        return jnp.sum((p - target) ** 2)

    opt = qnjax.lbfgs()
    params = jnp.zeros(3, jnp.float32)
    state = opt.init(params)
    target = jnp.asarray([1.0, 2.0, 3.0], jnp.float32)
    for _ in range(3):
        value, grad = jax.value_and_grad(loss)(params, target)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss, target=target)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, target, rtol=1e-5)


def test_updates_reproduce_the_stored_point_exactly():
    """params + updates (as optax.apply_updates adds) is the point whose value is stored."""
    opt = qnjax.lbfgs()
    params = {"w": jnp.array([-1.2, 1.0], jnp.float32), "b": jnp.asarray(0.3, jnp.bfloat16)}
    loss = lambda p: rosenbrock(p["w"]) + (p["b"].astype(jnp.float32) - 1) ** 2  # noqa: E731
    state = opt.init(params)
    value, grad = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    new = optax.apply_updates(params, updates)
    # Equal up to the rounding of f itself (XLA may compile the loss differently in two
    # programs); without the barriers in _step the bf16 leaf made this 2e-4 off.
    np.testing.assert_allclose(float(state.value), float(loss(new)), rtol=4 * np.finfo(np.float32).eps)
    assert float(state.value) < float(value)


@pytest.mark.parametrize("bounds", [None, (-1.0, {"a": 2.0, "b": None})])
def test_init_called_eagerly_is_one_program_with_the_traced_init_state(bounds):
    """``init`` outside ``jit`` builds the state in one compiled program (its operations one by
    one were a dozen programs, each compiled at a first call), and that state is the one a
    jitted ``init`` builds: values, dtypes, shapes and weak types."""
    params = {"a": jnp.zeros(5, jnp.float32), "b": jnp.ones((2, 3), jnp.bfloat16)}  # (shapes of this test only)
    opt = qnjax.lbfgs(memory_size=7, bounds=bounds)
    del COMPILES.names[:]
    state = opt.init(params)
    qnjax.lbfgs(memory_size=7, bounds=bounds).init(params)  # (a new transformation: the same program)
    assert COMPILES.names == ["jit(fresh)"]  # (compiled, or taken from the suite's persistent cache)
    traced = jax.jit(opt.init)(params)
    assert_same_types(traced, state)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b, equal_nan=True)), traced, state))


@pytest.mark.parametrize("bounds", [None, (-2.0, 0.9)])
def test_updates_called_eagerly_are_one_program_and_the_jitted_updates(bounds):
    """Outside ``jax.jit``, ``update`` and ``qnjax.value_and_grad_from_state`` each run as one
    compiled program (their hundreds of operations one by one had been compiled at a first
    call and dispatched one at a time after: 4.9 s, then 0.5 s an update on 2-D Rosenbrock);
    ``value_fn`` is data, so a new closure over new data each update compiles nothing new; and
    the iterates are the jitted step's (to rounding: the two programs are compiled apart)."""
    data = [jnp.asarray(1.0 + 0.001 * i, jnp.float32) for i in range(6)]  # (a new array each update)
    x0 = jnp.array([-1.2, 0.8, 0.5], jnp.float32)  # (a size of this test only)
    opt = qnjax.lbfgs(memory_size=6, bounds=bounds)

    def eager_run():
        x, state = x0, opt.init(x0)
        for i, d in enumerate(data):
            if i == 1:
                del COMPILES.names[:]
            loss = lambda p, d=d: d * rosenbrock(p)  # noqa: E731  (new each update)
            value, grad = qnjax.value_and_grad_from_state(loss)(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss)
            x = optax.apply_updates(x, updates)
        return x, state

    x, state = eager_run()
    assert COMPILES.names == []  # (after the first update)

    @jax.jit
    def jitted_step(x, state, d):
        loss = lambda p: d * rosenbrock(p)  # noqa: E731
        value, grad = qnjax.value_and_grad_from_state(loss)(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(x, updates), state

    y, other = x0, opt.init(x0)
    for d in data:
        y, other = jitted_step(y, other, d)
    assert_same_types(other, state)
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    assert int(state.count) == int(other.count) and int(state.status) == int(other.status)


def test_an_eager_update_whose_extra_argument_is_not_an_array_stays_eager():
    """``value_fn`` may branch in Python on an extra argument that is not an array (a flag):
    such eager calls are not compiled as one program (the flag would be traced), and work."""
    def loss(p, shifted=False):
        return jnp.sum((p - (2.0 if shifted else 1.0)) ** 2)

    opt = qnjax.lbfgs()
    x = jnp.zeros(3, jnp.float32)
    state = opt.init(x)
    for _ in range(4):
        value, grad = qnjax.value_and_grad_from_state(loss)(x, shifted=True, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=loss, shifted=True)
        x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(x, 2.0, rtol=1e-5)
    assert qnjax.Status(int(state.status)).success
