"""The two-loop recursion equals the dense BFGS inverse-Hessian recursion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import X64
from qnjax import _memory

DT = jnp.float64 if X64 else jnp.float32
RTOL = 1e-10 if X64 else 2e-4


def dense_h(pairs, n):
    """H from N&W eq. 7.19 over (s, y) pairs, oldest first, H0 = gamma I (eq. 7.20)."""
    if not pairs:
        return np.eye(n)
    s, y = pairs[-1]
    h = np.eye(n) * (s @ y) / (y @ y)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def random_pairs(rng, k, n):
    a = rng.normal(size=(n, n))
    hess = a @ a.T + n * np.eye(n)  # SPD, so <s, y> > 0
    pairs = []
    for _ in range(k):
        s = rng.normal(size=n)
        pairs.append((s, hess @ s + 0.01 * rng.normal(size=n)))
    return pairs


def as_tree(v):
    """A flat vector as a pytree: a (2, 2) leaf, a complex leaf (2 numbers) and a 0-d leaf."""
    c = jnp.asarray(v[4:5] + 1j * v[5:6], jnp.complex128 if X64 else jnp.complex64)
    return {"a": jnp.asarray(v[:4].reshape(2, 2), DT), "c": c, "z": jnp.asarray(v[6], DT)}


def as_vec(tree):
    c = np.asarray(tree["c"])
    return np.concatenate([np.ravel(tree["a"]), c.real, c.imag, np.ravel(tree["z"])]).astype(np.float64)


@pytest.mark.parametrize("k", [0, 1, 3, 5, 9])
def test_two_loop_matches_dense_bfgs(k):
    m, n = 5, 7
    rng = np.random.default_rng(k)
    pairs = random_pairs(rng, k, n)
    mem = _memory.init(as_tree(np.zeros(n)), m, DT)
    push = jax.jit(_memory.push)
    for s, y in pairs:
        mem, stored = push(mem, as_tree(s), as_tree(y))
        assert bool(stored)
    g = rng.normal(size=n)
    got = as_vec(jax.jit(_memory.two_loop)(mem, as_tree(g)))
    want = dense_h(pairs[-m:], n) @ g  # only the last m pairs are kept (ring buffer)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
    assert int(mem.head) == k % m
    assert int(jnp.sum(mem.rho > 0)) == min(k, m)


def test_curvature_guard_skips_bad_pairs():
    mem = _memory.init(jnp.zeros(3, DT), 4, DT)
    s = jnp.asarray([1.0, 0.0, 0.0], DT)
    for y, ok in [([-1.0, 0, 0], False), ([0.0, 1, 0], False), ([np.nan, 0, 0], False), ([2.0, 0, 0], True)]:
        new, stored = _memory.push(mem, s, jnp.asarray(y, DT))
        assert bool(stored) == ok
        if not ok:
            np.testing.assert_array_equal(new.rho, mem.rho)
            assert int(new.head) == int(mem.head)
        mem = new
    assert float(mem.rho[0]) == pytest.approx(0.5)
    assert float(mem.gamma) == pytest.approx(0.5)


def test_clear_and_low_precision_leaves_accumulate_in_scalar_dtype():
    mem = _memory.init({"h": jnp.zeros(4, jnp.bfloat16)}, 3, jnp.float32)
    assert mem.s["h"].dtype == jnp.bfloat16 and mem.rho.dtype == jnp.float32
    s = {"h": jnp.full(4, 0.1, jnp.bfloat16)}
    mem, stored = _memory.push(mem, s, s)
    assert bool(stored) and mem.rho.dtype == jnp.float32
    d = _memory.two_loop(mem, s)
    assert d["h"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(d["h"], np.float32), np.asarray(s["h"], np.float32), rtol=1e-2)
    assert bool(_memory.is_empty(_memory.clear(mem)))


def test_step_retries_along_steepest_descent_after_a_bad_memory():
    """A memory whose direction goes uphill: the step does not move, drops the memory and
    flags a retry; the next step searches along -g and moves; only then can failure be final."""
    from qnjax import _objective, _step
    from qnjax.linesearch import Zoom

    fun = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    x = jnp.zeros(3, DT)
    vg = _objective.value_and_grad(fun, x, DT)
    mem = _memory.init(x, 2, DT)
    s = jnp.ones(3, DT)
    # y = -s, rho = -1/3 (bypassing push's curvature guard): H = P - s s^T / 3 with P the
    # projector orthogonal to s, and g is parallel to s, so H g = -g: d = -H g goes uphill.
    mem = mem._replace(s=mem.s.at[0].set(s), y=mem.y.at[0].set(-s), rho=mem.rho.at[0].set(-1.0 / 3),
                       head=jnp.asarray(1, jnp.int32))
    f0, p0 = vg(x)
    d = -_memory.two_loop(mem, p0[0])
    assert float(jnp.dot(p0[0], d)) > 0  # the planted direction is not a descent direction
    first = jax.jit(_step.lbfgs_step, static_argnums=(5,))(Zoom(), mem, x, f0, p0, vg)
    assert bool(first.retry) and not bool(first.failed)
    np.testing.assert_array_equal(first.params, x)
    assert bool(_memory.is_empty(first.memory)) and int(first.nfev) == 0
    second = jax.jit(_step.lbfgs_step, static_argnums=(5,))(Zoom(), first.memory, x, first.value, first.payload, vg)
    assert not bool(second.retry) and not bool(second.failed)
    assert float(second.value) < float(f0)
