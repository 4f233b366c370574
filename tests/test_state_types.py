"""Tests for check_state_types and keep_state_types.

On real optax optimizers the tests assert relations that hold whatever upstream does
(the report equals a drift computed by hand; the wrapper compiles once and computes the
same numbers), so a fix in optax does not turn them red. Measured with optax 0.2.8 /
jax 0.10.2: optax.lbfgs() had 3 drifting state leaves (its line search's info scalars,
weak -> strong) and a jitted step was traced twice without the wrapper. A deterministic
drifting toy (``weak_at_init``) pins the checker's behaviour itself.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from qnjax._state_types import LeafChange, _weaken, check_state_types, keep_state_types

X64 = bool(jax.config.read("jax_enable_x64"))
needs_x64 = pytest.mark.skipif(not X64, reason="needs JAX_ENABLE_X64=1")


def quadratic(p):
    return jnp.sum((p["x"] - 1.0) ** 2) + 10.0 * jnp.sum(p["y"] ** 2)


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def quad_params(dtype=jnp.float32):
    return {"x": jnp.zeros(3, dtype), "y": jnp.ones(2, dtype)}


def types_by_path(tree):
    return {
        jax.tree_util.keystr(path): jax.typeof(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def aval_key(aval):
    return (tuple(aval.shape), aval.dtype, aval.weak_type)


def fmt(aval):
    shape = ",".join(str(d) for d in aval.shape)
    return f"{aval.dtype}[{shape}]" + (" weak" if aval.weak_type else "")


def manual_states(opt, params, fn, steps=3):
    """init + `steps` jitted updates, done by hand (independent of the module)."""

    @jax.jit
    def step(p, s):
        v, g = jax.value_and_grad(fn)(p)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=fn)
        return optax.apply_updates(p, u), s

    s = opt.init(params)
    states = [s]
    for _ in range(steps):
        params, s = step(params, s)
        states.append(s)
    return states


# ---------------------------------------------------------------------------
# 1. check_state_types on real optax optimizers


def manual_drift(states):
    """The leaves whose type differs from init's in any later state, by hand."""
    init_types = types_by_path(states[0])
    later = [types_by_path(s) for s in states[1:]]
    drift = {}
    for path, aval in init_types.items():
        first = next((t[path] for t in later if aval_key(t[path]) != aval_key(aval)), None)
        if first is not None:
            drift[path] = (fmt(aval), fmt(first))
    return drift


class WeakState(NamedTuple):
    scale: jax.Array


def weak_at_init():
    """A state leaf created from a Python float (weak) and updated into a strong one."""

    def init(params):
        return WeakState(scale=jnp.asarray(1.0))  # weakly typed

    def update(updates, state, params=None, **extra_args):
        return updates, WeakState(scale=state.scale * jnp.ones((), jnp.float32))

    return optax.GradientTransformationExtraArgs(init, update)


@pytest.mark.parametrize("make", [optax.lbfgs, weak_at_init], ids=["optax.lbfgs", "weak_at_init"])
def test_report_is_exactly_the_real_drift(make):
    params = quad_params()
    changes = check_state_types(make(), params, quadratic)
    assert all(isinstance(c, LeafChange) for c in changes)
    assert len({c.path for c in changes}) == len(changes)  # each leaf reported once
    drift = manual_drift(manual_states(make(), params, quadratic))
    assert {c.path: (c.before, c.after) for c in changes} == drift
    if make is weak_at_init:  # a Python float at init: weak, in the default float dtype
        assert changes == [LeafChange(".scale", f"{'float64' if X64 else 'float32'}[] weak", "float32[]")]


def test_report_without_jit_and_with_fn_args():
    def shifted(p, shift, *, scale):
        return scale * jnp.sum((p - shift) ** 2)

    x0 = jnp.zeros(4, jnp.float32)
    for make in (optax.lbfgs, weak_at_init):
        changes = check_state_types(make(), x0, shifted, jit=False, steps=2,
                                    fn_args=(jnp.float32(2.0),), fn_kwargs={"scale": 3.0})
        drift = manual_drift(manual_states(make(), x0, lambda p: shifted(p, jnp.float32(2.0), scale=3.0), steps=2))
        assert {c.path for c in changes} == set(drift)
    assert [c.path for c in check_state_types(weak_at_init(), x0, shifted, jit=False, steps=1,
                                              fn_args=(jnp.float32(2.0),), fn_kwargs={"scale": 3.0})] == [".scale"]


@pytest.mark.parametrize("opt", [optax.sgd(1e-2), optax.adam(1e-3)], ids=["sgd", "adam"])
def test_stable_optimizers_report_nothing(opt):
    assert check_state_types(opt, quad_params(), quadratic) == []


# ---------------------------------------------------------------------------
# 2. keep_state_types(optax.lbfgs())


def test_wrapped_lbfgs_is_stable_and_keeps_init_types():
    params = quad_params()
    wrapped = keep_state_types(optax.lbfgs())
    assert isinstance(wrapped, optax.GradientTransformationExtraArgs)
    assert check_state_types(wrapped, params, quadratic, steps=4) == []
    assert check_state_types(wrapped, params, quadratic, steps=2, jit=False) == []
    states = manual_states(wrapped, params, quadratic, steps=3)
    init_types = {k: aval_key(v) for k, v in types_by_path(states[0]).items()}
    for s in states[1:]:
        assert {k: aval_key(v) for k, v in types_by_path(s).items()} == init_types


def _count_traces(opt, n_calls=10):
    traces = [0]

    def step(p, s):
        traces[0] += 1  # runs once per trace
        v, g = jax.value_and_grad(rosenbrock)(p)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=rosenbrock)
        return optax.apply_updates(p, u), s

    jstep = jax.jit(step)
    p = jnp.array([-1.2, 1.0, -1.2, 1.0], jnp.float32)
    s = opt.init(p)
    for _ in range(n_calls):
        p, s = jstep(p, s)
    jax.block_until_ready(p)
    return traces[0], float(rosenbrock(p))


@pytest.mark.parametrize("make", [optax.lbfgs, lambda: optax.chain(weak_at_init(), optax.lbfgs())],
                         ids=["optax.lbfgs", "with_weak_at_init"])
def test_jit_compiles_once_with_wrapper(make):
    n_wrapped, loss_wrapped = _count_traces(keep_state_types(make()))
    n_raw, loss_raw = _count_traces(make())
    assert n_wrapped == 1
    drifts = bool(check_state_types(make(), jnp.array([-1.2, 1.0, -1.2, 1.0], jnp.float32), rosenbrock))
    assert (n_raw > 1) == drifts  # without the wrapper, a drifting state retraces
    np.testing.assert_allclose(loss_wrapped, loss_raw, rtol=1e-5)  # same numbers


@needs_x64
def test_wrapped_lbfgs_in_scan_x64():
    opt = keep_state_types(optax.lbfgs())
    x0 = jnp.array([-1.2, 1.0, -1.2, 1.0], jnp.float64)

    def body(carry, _):
        p, s = carry
        v, g = jax.value_and_grad(rosenbrock)(p)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=rosenbrock)
        return (optax.apply_updates(p, u), s), v

    init = (x0, opt.init(x0))
    (p, s), values = jax.jit(lambda c: jax.lax.scan(body, c, None, length=20))(init)
    assert p.dtype == jnp.float64
    assert values.shape == (20,)
    assert float(rosenbrock(p)) < 0.1 * float(rosenbrock(x0))
    assert jax.tree.map(lambda x: aval_key(jax.typeof(x)), s) == jax.tree.map(
        lambda x: aval_key(jax.typeof(x)), init[1]
    )


# ---------------------------------------------------------------------------
# 3. shape / structure changes are errors


class HistState(NamedTuple):
    hist: jax.Array


def growing_history():
    def init(params):
        return HistState(hist=jnp.zeros((1,), jnp.float32))

    def update(updates, state, params=None):
        return updates, HistState(hist=jnp.concatenate([state.hist, jnp.ones((1,), jnp.float32)]))

    return optax.GradientTransformation(init, update)


def growing_tree():
    def init(params):
        return {"a": jnp.zeros((), jnp.int32)}

    def update(updates, state, params=None):
        return updates, {"a": state["a"] + 1, "extra": jnp.zeros((), jnp.float32)}

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("use_jit", [False, True])
def test_shape_change_raises_with_path(use_jit):
    opt = keep_state_types(growing_history())
    p = jnp.ones(2, jnp.float32)
    update = jax.jit(opt.update) if use_jit else opt.update
    with pytest.raises(ValueError, match=r"\.hist") as exc:
        update(p, opt.init(p), p)
    assert "shape" in str(exc.value)
    # and the checker reports it
    assert check_state_types(growing_history(), p, lambda q: jnp.sum(q**2), steps=1) == [
        LeafChange(".hist", "float32[1]", "float32[2]")
    ]


@pytest.mark.parametrize("use_jit", [False, True])
def test_tree_change_raises_with_path(use_jit):
    opt = keep_state_types(growing_tree())
    p = jnp.ones(2, jnp.float32)
    update = jax.jit(opt.update) if use_jit else opt.update
    with pytest.raises(ValueError, match=r"tree structure.*\['extra'\]"):
        update(p, opt.init(p), p)
    changes = check_state_types(growing_tree(), p, lambda q: jnp.sum(q**2), steps=2)
    assert [c.path for c in changes] == ["<tree>"]
    assert "extra" in changes[0].after and "extra" not in changes[0].before


# ---------------------------------------------------------------------------
# 4. dtype / weak_type drift of toy optimizers


class CountState(NamedTuple):
    count: jax.Array
    acc: jax.Array


def weakening_counter():
    """int32 counter replaced by a Python-int-derived (weak, default-int) value."""

    def init(params):
        return CountState(count=jnp.zeros((), jnp.int32), acc=jnp.zeros((), jnp.float32))

    def update(updates, state, params=None):
        return updates, CountState(count=jnp.asarray(7), acc=state.acc + 1.0)

    return optax.GradientTransformation(init, update)


def promoting_accumulator():
    """float32 accumulator promoted to float64 and int32 counter to int64 (x64 only)."""

    def init(params):
        return CountState(count=jnp.zeros((), jnp.int32), acc=jnp.zeros((3,), jnp.float32))

    def update(updates, state, params=None):
        return updates, CountState(
            count=state.count.astype(jnp.int64) + 1, acc=state.acc + jnp.float64(0.25)
        )

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("use_jit", [False, True])
def test_counter_weakening_reported_and_fixed(use_jit):
    p = jnp.ones(3, jnp.float32)
    f = lambda q: jnp.sum(q**2)  # noqa: E731
    int_name = "int64" if X64 else "int32"
    assert check_state_types(weakening_counter(), p, f, jit=use_jit) == [
        LeafChange(".count", "int32[]", f"{int_name}[] weak")
    ]
    wrapped = keep_state_types(weakening_counter())
    assert check_state_types(wrapped, p, f, jit=use_jit) == []
    update = jax.jit(wrapped.update) if use_jit else wrapped.update
    _, s = update(p, wrapped.init(p), p)
    assert aval_key(jax.typeof(s.count)) == ((), jnp.dtype(jnp.int32), False)
    assert int(s.count) == 7 and float(s.acc) == 1.0


@needs_x64
@pytest.mark.parametrize("use_jit", [False, True])
def test_x64_promotion_reported_and_fixed(use_jit):
    p = jnp.ones(3, jnp.float32)
    f = lambda q: jnp.sum(q**2)  # noqa: E731
    assert check_state_types(promoting_accumulator(), p, f, jit=use_jit) == [
        LeafChange(".count", "int32[]", "int64[]"),
        LeafChange(".acc", "float32[3]", "float64[3]"),
    ]
    wrapped = keep_state_types(promoting_accumulator())
    assert check_state_types(wrapped, p, f, jit=use_jit, steps=4) == []
    update = jax.jit(wrapped.update) if use_jit else wrapped.update
    s = wrapped.init(p)
    for _ in range(4):
        _, s = update(p, s, p)
    assert s.count.dtype == jnp.int32 and s.acc.dtype == jnp.float32
    assert int(s.count) == 4
    np.testing.assert_array_equal(np.asarray(s.acc), np.full(3, 1.0, np.float32))


@pytest.mark.parametrize("dtype", ["float32", "int32", "float64", "int64"])
def test_reweakening_and_unweakening(dtype):
    """Weak <-> strong round trips keep dtype and values, eagerly and under jit."""
    if dtype.endswith("64") and not X64:
        pytest.skip("needs JAX_ENABLE_X64=1")
    dt = jnp.dtype(dtype)

    def init(params):
        # a weakly typed leaf of dtype `dt` (e.g. weak float32 even with x64 on)
        return {"weak": _weaken(jnp.full((2,), 3, dt), dt), "strong": jnp.full((2,), 3, dt)}

    def update(updates, state, params=None):
        # swap the weak_types: weak -> strong, strong -> weak
        return updates, {
            "weak": jax.lax.convert_element_type(state["weak"] + 1, dt),
            "strong": _weaken(state["strong"] + 1, dt),
        }

    raw = optax.GradientTransformation(init, update)
    p = jnp.zeros(2, jnp.float32)
    s0 = raw.init(p)
    assert aval_key(jax.typeof(s0["weak"])) == ((2,), dt, True)
    assert {c.path for c in check_state_types(raw, p, lambda q: jnp.sum(q**2))} == {
        "['weak']", "['strong']"
    }
    wrapped = keep_state_types(raw)
    for upd in (wrapped.update, jax.jit(wrapped.update)):
        _, s1 = upd(p, s0, p)
        assert aval_key(jax.typeof(s1["weak"])) == ((2,), dt, True)
        assert aval_key(jax.typeof(s1["strong"])) == ((2,), dt, False)
        np.testing.assert_array_equal(np.asarray(s1["weak"]), np.full(2, 4, dt))
        np.testing.assert_array_equal(np.asarray(s1["strong"]), np.full(2, 4, dt))


# ---------------------------------------------------------------------------
# 5. plain GradientTransformation and chains


def strict_plain_sgd(lr=0.1):
    """A plain GradientTransformation whose update rejects extra keyword arguments."""
    inner = optax.sgd(lr)

    def update(updates, state, params=None):
        return inner.update(updates, state, params)

    return optax.GradientTransformation(inner.init, update)


def test_plain_gradient_transformation_through_both():
    plain = strict_plain_sgd()
    assert not isinstance(plain, optax.GradientTransformationExtraArgs)
    x0 = jnp.array([-1.2, 1.0], jnp.float32)
    assert check_state_types(plain, x0, rosenbrock) == []  # no extra kwargs passed
    assert check_state_types(optax.scale(-0.01), x0, rosenbrock, jit=False) == []
    wrapped = keep_state_types(plain)
    assert isinstance(wrapped, optax.GradientTransformationExtraArgs)
    assert check_state_types(wrapped, x0, rosenbrock) == []
    # extra args are accepted by the wrapper and dropped before the strict update
    g = jax.grad(rosenbrock)(x0)
    u, _ = wrapped.update(g, wrapped.init(x0), x0, value=rosenbrock(x0), grad=g, value_fn=rosenbrock)
    np.testing.assert_allclose(np.asarray(u), -0.1 * np.asarray(g), rtol=1e-6)
    # optax.sgd itself
    assert check_state_types(keep_state_types(optax.sgd(1e-2)), x0, rosenbrock) == []


def test_chain_clip_lbfgs():
    x0 = jnp.array([-1.2, 1.0, -1.2, 1.0], jnp.float32)
    chained = optax.chain(optax.clip_by_global_norm(1.0), optax.lbfgs())
    changes = check_state_types(chained, x0, rosenbrock)
    assert len(changes) == 3 and all(c.path.startswith("[1][2].info.") for c in changes)
    wrapped = keep_state_types(optax.chain(optax.clip_by_global_norm(1.0), optax.lbfgs()))
    assert check_state_types(wrapped, x0, rosenbrock) == []
    trace_count, loss = _count_traces(wrapped)
    assert trace_count == 1
    assert loss < float(rosenbrock(x0))
