"""qnjax.minimize: status codes, consistency, jit/vmap/no recompile, aux and args."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, X64, needs_x64, rosenbrock

import qnjax
from qnjax import Status

DT = jnp.float64 if X64 else jnp.float32
EPS = float(jnp.finfo(DT).eps)


def quadratic(x, scale=1.0):
    return scale * jnp.sum(jnp.arange(1, x.size + 1, dtype=x.dtype) * (x - 1) ** 2)


@jax.custom_jvp
def uphill(x):
    """f = sum x^2, whose custom gradient points uphill: no line search can succeed."""
    return jnp.sum(x**2)


@uphill.defjvp
def _uphill_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return uphill(x), jnp.sum(-2 * x * t)


def check_consistent(res, fun, x0):
    """Returned x and fun agree (to f's rounding at x0's scale: near a minimum a
    recompiled f differs by many relative ulps; the exact pairing is tested with a
    host-evaluated f below); x is never worse than x0; nothing NaN."""
    f_x = float(fun(res.x))
    np.testing.assert_allclose(float(res.fun), f_x, rtol=8 * EPS, atol=8 * EPS * float(fun(x0)))
    assert float(res.fun) <= float(fun(x0))
    assert bool(qnjax._tree.all_finite(res.x)) and np.isfinite(float(res.fun))


def test_rosenbrock_converges():
    x0 = jnp.array([-1.2, 1.0] * 3, DT)
    res = qnjax.minimize(rosenbrock, x0)
    # Stationary to working precision, or (float32) exactly at the minimum with a zero gradient.
    assert int(res.status) in (Status.PRECISION, Status.GTOL) and bool(res.success)
    # Stationary to working precision: Rosenbrock's valley makes x as accurate as sqrt(eps).
    np.testing.assert_allclose(res.x, np.ones(6), atol=1e-7 if X64 else 2e-3)
    check_consistent(res, rosenbrock, x0)
    assert res.x.dtype == DT and res.fun.dtype == DT
    assert res.nit.dtype == jnp.int32 and res.nfev.dtype == jnp.int32
    assert res.nfev >= res.nit + 1
    assert res.message == Status(int(res.status)).message
    assert res.jac is res.grad


@pytest.mark.parametrize(
    "kwargs, status",
    [
        (dict(gtol=1e-2), Status.GTOL),
        (dict(ftol=1e-1), Status.FTOL),
        (dict(maxiter=3), Status.MAXITER),
        (dict(maxiter=0), Status.MAXITER),  # scipy's: x0 returned, no iteration
        (dict(maxfev=7), Status.MAXFEV),
        (dict(maxfev=1), Status.MAXFEV),  # the evaluation at x0 spends the budget
    ],
)
def test_stopping_rules(kwargs, status):
    x0 = jnp.array([-1.2, 1.0] * 3, DT)
    res = qnjax.minimize(rosenbrock, x0, **kwargs)
    assert int(res.status) == status, res.message
    assert bool(res.success) == status.success
    check_consistent(res, rosenbrock, x0)
    gnorm = float(jnp.max(jnp.abs(res.grad)))
    if status == Status.GTOL:
        assert gnorm <= 1e-2
    if status == Status.MAXITER:
        assert int(res.nit) == kwargs["maxiter"]
    if status == Status.MAXFEV:
        assert int(res.nfev) <= kwargs["maxfev"]
    if int(res.nit) == 0:
        np.testing.assert_array_equal(res.x, x0)
        assert int(res.nfev) == 1
    if status == Status.FTOL:
        assert gnorm > 1e-2  # stopped by the f test, not the gradient test


def test_linesearch_failure_keeps_last_good_point():
    x0 = jnp.array([1.0, -2.0], DT)
    res = qnjax.minimize(uphill, x0)
    assert res.status == Status.LINESEARCH_FAILED and not bool(res.success)
    np.testing.assert_array_equal(res.x, x0)
    assert float(res.fun) == float(uphill(x0))


def test_result_keeps_the_weak_types_of_x0():
    """x and grad come back with x0's types, weak type included (a weakly typed x0 had come back
    strong), eagerly, under jit and vmap, and derivatives of the solution still flow."""
    f = lambda p, c: (p["a"] - c) ** 2 + jnp.sum((p["b"] - c) ** 2)  # noqa: E731
    x0 = {"a": jnp.asarray(1.0), "b": jnp.ones(2, DT)}  # "a" weakly typed
    c = jnp.asarray(2.0, DT)
    for res in (qnjax.minimize(f, x0, (c,)), jax.jit(lambda x, c: qnjax.minimize(f, x, (c,)))(x0, c)):
        for out in (res.x, res.grad):
            assert (out["a"].dtype, out["a"].weak_type, out["b"].dtype, out["b"].weak_type) == (DT, True, DT, False)
        np.testing.assert_allclose(res.x["a"], 2.0, rtol=1e-5)
    batched = jax.vmap(lambda c: qnjax.minimize(f, x0, (c,)).x)(jnp.asarray([2.0, 3.0], DT))
    assert batched["a"].weak_type and not batched["b"].weak_type
    da = jax.grad(lambda c: qnjax.minimize(f, x0, (c,)).x["a"])(c)
    np.testing.assert_allclose(da, 1.0, rtol=1e-4)


def test_unbounded_below_has_its_own_status():
    """f = -|x|^2 falls until its next trials overflow: UNBOUNDED (not a failed search, whose
    message asks whether the gradient matches f), x finite and f(x) within 2^10 of -max (below
    float64, f times the run's power of two, ``_scale``, which is above 1 here); in the Optax
    face too."""
    f = lambda x: -jnp.sum(x**2)  # noqa: E731
    x0 = jnp.array([1.0, 0.5], DT)
    res = qnjax.minimize(f, x0)
    assert Status(int(res.status)) == Status.UNBOUNDED and not bool(res.success), res.message
    assert "unbounded below" in res.message
    assert np.all(np.isfinite(np.asarray(res.x))) and float(res.fun) == float(f(res.x))
    scale = float(res.state.scale)
    assert float(res.fun) * scale <= -float(jnp.finfo(DT).max) / 2**10 and (scale > 1) == (DT == jnp.float32)

    opt = qnjax.lbfgs()
    step = jax.jit(lambda p, s: _optax_step(opt, f, p, s))
    params, state = x0, opt.init(x0)
    for _ in range(200):
        params, state = step(params, state)
        if int(state.status) != Status.RUNNING:
            break
    assert Status(int(state.status)) == Status.UNBOUNDED
    assert np.all(np.isfinite(np.asarray(params)))


def _optax_step(opt, f, params, state):
    import optax

    value, grad = qnjax.value_and_grad_from_state(f)(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(params, updates), state


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_nonfinite_at_x0(bad):
    f = lambda x: jnp.sum(x**2) * bad  # noqa: E731
    x0 = jnp.array([1.0, 2.0], DT)
    res = qnjax.minimize(f, x0)
    assert res.status == Status.NONFINITE and not bool(res.success)
    np.testing.assert_array_equal(res.x, x0)
    assert int(res.nfev) == 1 and int(res.nit) == 0


def test_already_at_minimum():
    res = qnjax.minimize(quadratic, jnp.ones(3, DT))
    assert bool(res.success) and int(res.nit) == 0 and int(res.nfev) == 1


def test_no_recompile_and_traced_options():
    def f(x, a):
        return jnp.sum(a * (x - 1.0) ** 2 + (x - 1.0) ** 4)

    x0, x1 = jnp.zeros(4, DT), jnp.full(4, 0.5, DT)
    a1, a2 = jnp.asarray(2.0, DT), jnp.asarray(3.0, DT)
    r1 = qnjax.minimize(f, x0, (a1,))
    before = COMPILES.count
    r2 = qnjax.minimize(f, x1, (a2,), ftol=1e-3, gtol=1e-3, maxiter=50,
                        linesearch=qnjax.linesearch.MoreThuente(c2=0.5))
    assert COMPILES.count == before  # new data, tolerances and line-search settings: no recompile
    r3 = qnjax.minimize(f, x1, (a2,), gtol=np.float64(1e-3), fatol=np.float32(0), maxiter=np.int64(50))
    assert COMPILES.count == before  # numpy scalars instead of Python numbers: the same program
    assert bool(r1.success) and bool(r2.success) and bool(r3.success)


def test_fun_is_data_fresh_closures_compile_once():
    """The scipy habit: a fresh lambda (or partial) over new data on every call."""
    import functools

    def loss(p, d):
        return jnp.sum((p - d) ** 2 * (1 + jnp.arange(p.size, dtype=p.dtype)))

    x0 = jnp.zeros(3, DT)
    data = [jnp.full(3, i, DT) for i in range(6)]
    qnjax.minimize(lambda p: loss(p, data[0]), x0)
    before = COMPILES.count
    for d in data[1:3]:
        res = qnjax.minimize(lambda p: loss(p, d), x0)  # noqa: B023
        np.testing.assert_allclose(res.x, d, atol=1e-6 if X64 else 1e-3)
    for d in data[3:]:
        res = qnjax.minimize(functools.partial(loss, d=d), x0)
        np.testing.assert_allclose(res.x, d, atol=1e-6 if X64 else 1e-3)
        res = qnjax.minimize(jax.tree_util.Partial(loss, d=d), x0)
        np.testing.assert_allclose(res.x, d, atol=1e-6 if X64 else 1e-3)
    # a partial over keywords differs from a lambda only in how fun is called: at most one more program
    assert COMPILES.count - before <= 2


def _rule_with_centre(centre):
    """sum x^2 whose custom derivative is that of sum (x - centre)^2: the same forward
    computation and rule name for every centre, a different gradient."""

    @jax.custom_jvp
    def f(x):
        return jnp.sum(x**2)

    @f.defjvp
    def f_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return f(x), jnp.sum(2 * (x - centre) * t)

    return f


def test_a_custom_derivative_rule_keys_the_compiled_solve():
    """A solve is keyed by fun's forward jaxpr (``_objective``), which names a custom rule
    but does not hold it: objectives with one are keyed by their differentiated jaxpr,
    so two rules behind the same forward computation and name get their own gradients
    (a shared program would return the first rule's gradient for both)."""
    x0 = jnp.full(3, 2.0, DT)
    for centre in (0.5, -1.0):
        res = qnjax.minimize(_rule_with_centre(centre), x0, maxiter=3)
        np.testing.assert_allclose(res.grad, 2 * (res.x - centre), rtol=4 * EPS, atol=4 * EPS)


SHIFT = jnp.asarray(1.0, DT)


def _shifted(x):
    return jnp.sum((x - SHIFT) ** 2)


def test_a_module_level_array_is_read_at_each_call():
    """Arrays fun closes over, module-level ones too, are traced inputs read at every call
    (not frozen by a cache of traces keyed by the function), with one compiled solve."""
    global SHIFT
    x0 = jnp.zeros(2, DT)
    try:
        np.testing.assert_allclose(qnjax.minimize(_shifted, x0).x, 1.0, rtol=1e-4)
        before = COMPILES.count
        SHIFT = jnp.asarray(-3.0, DT)
        np.testing.assert_allclose(qnjax.minimize(_shifted, x0).x, -3.0, rtol=1e-4)
        assert COMPILES.count == before
    finally:
        SHIFT = jnp.asarray(1.0, DT)


def test_jit_of_minimize():
    x0 = jnp.array([-1.2, 1.0], DT)
    res = jax.jit(lambda x: qnjax.minimize(rosenbrock, x))(x0)
    ref = qnjax.minimize(rosenbrock, x0)
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-5)
    assert int(res.nit) == int(ref.nit)


def test_vmap_over_x0_matches_single_solves():
    x0s = jnp.array([[-1.2, 1.0], [0.0, 0.0], [2.0, 2.0]], DT)
    batched = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x))(x0s)
    for i in range(3):
        single = qnjax.minimize(rosenbrock, x0s[i])
        # Batched reductions round differently, and Rosenbrock amplifies that in float32.
        np.testing.assert_allclose(batched.x[i], single.x, rtol=1e-4 if X64 else 3e-2)
        assert bool(batched.success[i]) and bool(single.success)


@pytest.mark.parametrize("direction", ["compact", "two-loop"])
def test_vmap_member_that_finished_waits_unchanged(direction):
    """Under vmap the loop runs while any member runs, and a finished member is not
    selected back but left untouched (``qnjax._loop``): its whole result, state, memory
    and trace included, is bit for bit the one it gets in a batch that stops with it."""
    n = 12

    def fun(x, cond):
        return 0.5 * jnp.sum(cond ** jnp.linspace(0.0, 1.0, n, dtype=DT) * (x - 1.0) ** 2)

    solve = jax.jit(jax.vmap(lambda c: qnjax.minimize(fun, jnp.zeros(n, DT), (c,), gtol=1e-3, memory_size=3,
                                                      direction=direction, trace=3)))
    quick, slow = 1.0, 1e3
    alone = solve(jnp.asarray([quick, quick], DT))
    mixed = solve(jnp.asarray([quick, slow], DT))
    assert int(mixed.nit[1]) > int(mixed.nit[0]) + 5 and bool(jnp.all(mixed.success))
    first = lambda tree: jax.tree.map(lambda a: np.asarray(a)[0], tree)  # noqa: E731  (numpy: no jax program)
    jax.tree.map(np.testing.assert_array_equal, first(mixed), first(alone))


A = jnp.logspace(0.0, 3.0, 20, dtype=DT)


@jax.custom_jvp
def noisy_quadratic(x):
    """4 + sum a_i (x_i - 1)^2 / 2 plus a deterministic error of up to 5 units in the last
    place of 4 (drawn from x's bits), with the exact gradient: f's rounding at its floor."""
    bits = jax.lax.bitcast_convert_type(jnp.sum(x * jnp.arange(1, x.size + 1, dtype=DT)),
                                        jnp.int64 if X64 else jnp.int32)
    return 4 + 0.5 * jnp.sum(A * (x - 1) ** 2) + (bits % 11 - 5).astype(DT) * EPS * 4


@noisy_quadratic.defjvp
def _noisy_quadratic_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return noisy_quadratic(x), jnp.sum(A * (x - 1) * t)


def test_searches_at_the_floor_of_f_end_after_a_few_trials():
    """Where f is at its rounding floor (``noisy_quadratic`` once the run stops with
    PRECISION), each search ends once the slopes of its trials bound phi's fall below
    f's rounding (``linesearch._base``, ``negligible``): at most ``HOPELESS_AFTER``
    evaluations, never a step that raises f, and the run stops again with PRECISION.
    Without it these searches spent 6-8 trials each (in the Rosenbrock batch of
    ``benchmarks/scale.py``, up to 15); under ``jax.vmap`` the whole batch waits for the
    slowest member's search."""
    from qnjax.linesearch._base import HOPELESS_AFTER

    res = qnjax.minimize(noisy_quadratic, jnp.zeros(20, DT))
    assert Status(int(res.status)) == Status.PRECISION, res.message
    value_and_grad, scale = jax.value_and_grad(noisy_quadratic), res.state.scale  # (the state's f is scale f)
    solver = qnjax.LBFGS()
    scaled = lambda x: (lambda v, g: (v * scale, g * scale, None))(*value_and_grad(x))  # noqa: E731
    step = jax.jit(lambda s: solver.step_with_search(s, scaled)[1:])
    state, spent = res.state._replace(status=jnp.asarray(int(Status.RUNNING), jnp.int32)), []
    for _ in range(8):
        new, search = step(state)
        spent.append(int(search.nfev))
        assert float(new.value) <= float(state.value)
        state = new
        if Status(int(state.status)) != Status.RUNNING:
            break
    assert Status(int(state.status)) == Status.PRECISION
    assert max(spent) <= HOPELESS_AFTER, spent


def test_aux_and_args_pytree_params():
    def fun(p, target, weight):
        r = p["w"] @ p["m"] - target
        loss = weight * jnp.sum(r**2) + (jnp.sum(p["m"] ** 2) + jnp.sum(p["w"] ** 2)) * 1e-3
        return loss, {"residual": r}

    p0 = {"w": jnp.ones(3, DT), "m": jnp.ones((3, 2), DT)}
    target = jnp.asarray([1.0, -2.0], DT)
    res = qnjax.minimize(fun, p0, (target, jnp.asarray(2.0, DT)), has_aux=True)
    assert bool(res.success)
    np.testing.assert_allclose(res.aux["residual"], res.x["w"] @ res.x["m"] - target, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(res.fun), float(fun(res.x, target, 2.0)[0]), rtol=8 * EPS)


def test_mixed_precision_pytree_and_complex():
    c = jnp.asarray([1.0 + 2.0j, -0.5j], jnp.complex64)

    def f(p):
        return jnp.sum(jnp.abs(p["z"] - c) ** 2) + jnp.sum((p["h"].astype(jnp.float32) - 3.0) ** 2)

    p0 = {"z": jnp.zeros(2, jnp.complex64), "h": jnp.zeros(3, jnp.bfloat16)}
    res = qnjax.minimize(f, p0)
    assert res.x["h"].dtype == jnp.bfloat16 and res.x["z"].dtype == jnp.complex64
    np.testing.assert_allclose(res.x["z"], c, atol=1e-3)
    np.testing.assert_allclose(np.asarray(res.x["h"], np.float32), 3.0, atol=2e-2)


@needs_x64  # (the float64 leaf makes the scalar dtype float64)
def test_a_complex64_leaf_beside_a_float64_one_moves_in_both_parts():
    """f's power-of-two scaling (``_scale.times``) multiplied the complex64 leaf's gradient
    in float64, the scalar dtype, which dropped its imaginary part: z's imaginary part never
    moved and the run stopped PRECISION, success claimed, at f = 7.44 (the minimum: -0.558)."""
    c = jnp.asarray([1.0 + 2.0j, 1.0 + 2.0j], jnp.complex64)

    def f(p):
        d = p["z"] - c
        return (jnp.sum(jnp.real(d * jnp.conj(d))) + jnp.sum((p["r"] - jnp.asarray([2.0, -3.0, 0.5])) ** 2)
                + 0.5 * jnp.sum(p["r"]) * jnp.real(p["z"][0]))

    res = qnjax.minimize(f, {"z": jnp.zeros(2, jnp.complex64), "r": jnp.zeros(3, jnp.float64)})
    wide = qnjax.minimize(f, {"z": jnp.zeros(2, jnp.complex128), "r": jnp.zeros(3, jnp.float64)})
    assert bool(wide.success) and res.x["z"].dtype == jnp.complex64
    np.testing.assert_allclose(np.asarray(res.x["z"]), np.asarray(wide.x["z"]), atol=1e-5)
    np.testing.assert_allclose(float(res.fun), float(wide.fun), rtol=1e-6)


def _host_rosenbrock(x):
    x = np.asarray(x, np.float64)
    f = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return f, g


@jax.custom_jvp
def host_rosenbrock(x):
    """Rosenbrock evaluated by numpy on the host: the same x always gives the same bits."""
    shape = (jax.ShapeDtypeStruct((), x.dtype), jax.ShapeDtypeStruct(x.shape, x.dtype))
    out = lambda x: tuple(np.asarray(a, x.dtype) for a in _host_rosenbrock(x))  # noqa: E731
    return jax.pure_callback(out, shape, x)[0]


@host_rosenbrock.defjvp
def _host_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    shape = (jax.ShapeDtypeStruct((), x.dtype), jax.ShapeDtypeStruct(x.shape, x.dtype))
    out = lambda x: tuple(np.asarray(a, x.dtype) for a in _host_rosenbrock(x))  # noqa: E731
    f, g = jax.pure_callback(out, shape, x)
    return f, jnp.sum(g * t)


@pytest.mark.parametrize("kwargs", [{}, dict(maxiter=7), dict(maxfev=9), dict(ftol=1e-3)])
def test_returned_x_and_fun_are_the_same_point_exactly(kwargs):
    x0 = jnp.array([-1.2, 1.0, 0.5], DT)
    res = qnjax.minimize(host_rosenbrock, x0, **kwargs)
    f, g = _host_rosenbrock(np.asarray(res.x))
    assert float(res.fun) == float(np.asarray(f, DT))
    np.testing.assert_array_equal(np.asarray(res.grad), np.asarray(g, DT))
    assert float(res.fun) < float(host_rosenbrock(x0))
