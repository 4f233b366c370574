"""Property-based tests over random smooth problems (hypothesis): random dtypes among
f16/bf16/f32/f64 and mixtures, random loss scale 1e-12..1e12, random pytree shapes.

Properties: never NaN; never worse than x0; the returned x matches the returned fun;
a non-finite stop happens only when f or its gradient at x0 really is non-finite; the
Optax face keeps every state leaf's type."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import X64, assert_same_types, make_step
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qnjax
from qnjax import Status

STRUCTURES = [
    lambda d: [jnp.zeros((3,), d[0])],
    lambda d: {"a": jnp.zeros((2, 2), d[0]), "b": jnp.zeros((), d[1])},
    lambda d: ((jnp.zeros((5,), d[0]), jnp.zeros((1, 3), d[1])),),
    lambda d: {"w": jnp.zeros((4,), d[1])},
]
FLOATS = ["float16", "bfloat16", "float32"] + (["float64"] if X64 else [])
DTYPE_CHOICES = [(d, d) for d in FLOATS] + [("bfloat16", "float32"), ("float16", "float64" if X64 else "float32")]


def family(params, scale, shift, quartic):
    """scale * sum over leaves of [(x - shift)^2 + quartic (x - shift)^4 + 0.5 sum (x_{i+1} - x_i)^2],
    each leaf upcast to at least float32 (as a user of f16 params would write a loss)."""
    total = jnp.zeros((), scale.dtype)
    for leaf in jax.tree.leaves(params):
        x = jnp.ravel(leaf).astype(jnp.promote_types(leaf.dtype, jnp.float32))
        r = x - shift.astype(x.dtype)
        term = jnp.sum(r**2 + quartic.astype(x.dtype) * r**4) + 0.5 * jnp.sum(jnp.diff(x) ** 2)
        total = total + term.astype(total.dtype)
    return scale * total


# (jitted: one program per example, not one per operation; CI time)
FAMILY, VALUE_AND_GRAD = jax.jit(family), jax.jit(jax.value_and_grad(family))


def problem(data):
    structure = data.draw(st.integers(0, len(STRUCTURES) - 1), label="structure")
    dtypes = data.draw(st.sampled_from(DTYPE_CHOICES), label="dtypes")
    template = STRUCTURES[structure](tuple(jnp.dtype(d) for d in dtypes))
    sdt = qnjax._tree.scalar_dtype(template)
    seed = data.draw(st.integers(0, 2**16), label="seed")
    leaves, treedef = jax.tree.flatten(template)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    x0 = jax.tree.unflatten(treedef, [(3 * jax.random.normal(k, leaf.shape)).astype(leaf.dtype)
                                      for k, leaf in zip(keys, leaves)])
    scale = 10.0 ** data.draw(st.floats(-12, 12), label="log10 scale")
    args = (jnp.asarray(scale, sdt), jnp.asarray(data.draw(st.floats(-2, 2), label="shift"), sdt),
            jnp.asarray(data.draw(st.floats(0, 1), label="quartic"), sdt))
    return x0, args, sdt


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.data())
def test_minimize_properties(data):
    x0, args, sdt = problem(data)
    res = qnjax.minimize(family, x0, args, maxiter=200)
    f0, g0 = VALUE_AND_GRAD(x0, *args)
    assert all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in jax.tree.leaves(res.x))
    assert jax.tree.map(lambda a: a.dtype, res.x) == jax.tree.map(lambda a: a.dtype, x0)
    if int(res.status) == Status.NONFINITE:
        assert not (np.isfinite(float(f0)) and bool(qnjax._tree.all_finite(g0)))
        return
    assert np.isfinite(float(res.fun)) and float(res.fun) <= float(f0)
    eps = float(jnp.finfo(sdt).eps)
    assert abs(float(res.fun) - float(FAMILY(res.x, *args))) <= 64 * eps * abs(float(f0))
    # Low-precision leaves limit how far f can fall; it must still fall a lot.
    assert float(res.fun) <= 0.5 * float(f0) or int(res.status) == Status.GTOL, res.message


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.data())
def test_optax_face_state_types_unchanged(data):
    x0, args, _ = problem(data)
    opt = qnjax.lbfgs(memory_size=4)
    fn = lambda p: family(p, *args)  # noqa: E731
    step = jax.jit(make_step(opt, fn))

    state0 = opt.init(x0)
    params, state = x0, state0
    for _ in range(4):
        params, state = step(params, state)
        assert_same_types(state0, state)
        assert all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in jax.tree.leaves(params))
    if int(state.status) != Status.NONFINITE:
        assert float(state.value) <= float(fn(x0))
