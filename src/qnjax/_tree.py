"""Dtype rules and pytree arithmetic shared by every qnjax algorithm.

Parameters stay pytrees; each leaf keeps its own dtype. All scalars (values,
slopes, step sizes, inner products) live in one *scalar dtype*, decided at
``init``: the widest real float among the leaves (the real part's dtype for
complex leaves), at least ``float32``, canonicalised for the current x64 mode;
or the dtype the user gives explicitly.

Complex parameters are treated as real vectors in R^{2n}. For a real loss
f(z), ``jax.grad`` returns the *conjugate* of the steepest-ascent direction;
:func:`real_grad` conjugates complex leaves so that every formula below is the
real-space one, with inner product <a, b> = Re sum(conj(a) * b)
(= sum(a.real * b.real + a.imag * b.imag)). Inner products accumulate in the
scalar dtype, so bf16/f16 leaves are summed in at least float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_params(params, what: str = "params") -> None:
    """Raise ``TypeError`` naming the first leaf whose dtype is not float/complex."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{what}{jax.tree_util.keystr(path)} has dtype {dtype}; qnjax optimises "
                "floating-point or complex leaves only (cast it with .astype, "
                "or close over it as a constant)"
            )


def scalar_dtype(params, dtype=None) -> np.dtype:
    """The state's scalar dtype for ``params`` (see module docstring)."""
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"scalar_dtype must be a real float dtype, got {dtype}")
        return jax.dtypes.canonicalize_dtype(dtype)
    widest = jnp.dtype(jnp.float32)
    for leaf in jax.tree_util.tree_leaves(params):
        real = jnp.finfo(jnp.result_type(leaf)).dtype
        widest = jnp.promote_types(widest, real)
    return jax.dtypes.canonicalize_dtype(widest)


def real_grad(grad):
    """Conjugate complex leaves: JAX's grad of a real loss -> real-space gradient."""
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, grad)


def _work_dtype(leaf, sdt):
    """The leaf's dtype widened to the scalar precision (complex stays complex)."""
    return jnp.promote_types(jnp.result_type(leaf), sdt)


def inner(a, b, sdt):
    """Real inner product <a, b> of two pytrees, accumulated in ``sdt``."""
    return inners([(a, b)], sdt)[0]


def inners(pairs, sdt):
    """The inner products <a, b> of several pairs of pytrees, as a (len(pairs),) array.

    Each leaf's products are summed in one reduction (one compiled kernel for all
    the pairs: XLA:CPU's compile time grows with the number of kernels)."""
    total = jnp.zeros((len(pairs),), sdt)
    leaves = [(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)) for a, b in pairs]
    for j in range(len(leaves[0][0])):
        wd = _work_dtype(leaves[0][0][j], sdt)
        terms = []
        for xs, ys in leaves:
            x, y = xs[j].astype(wd), ys[j].astype(wd)
            terms.append(x.real * y.real + x.imag * y.imag if jnp.iscomplexobj(x) else x * y)
        stacked = jnp.stack(terms).reshape(len(pairs), -1)
        total = total + jnp.sum(stacked, axis=1).astype(sdt)
    return total


def norm_inf(a, sdt):
    """max |a_i| over all leaves (modulus for complex), in ``sdt``; 0 for no leaves."""
    m = jnp.zeros((), sdt)
    for x in jax.tree_util.tree_leaves(a):
        if x.size:
            m = jnp.maximum(m, jnp.max(jnp.abs(x)).astype(sdt))
    return m


def all_finite(a):
    ok = jnp.asarray(True)
    for x in jax.tree_util.tree_leaves(a):
        ok = ok & jnp.all(jnp.isfinite(x))
    return ok


def combine(alpha, x, beta, y):
    """alpha * x + beta * y, leaf by leaf, computed at the scalar precision (the
    dtype of ``alpha``), kept in each leaf's dtype."""
    def one(u, v):
        wd = _work_dtype(u, alpha.dtype)
        return (alpha * u.astype(wd) + beta * v.astype(wd)).astype(v.dtype)

    return jax.tree.map(one, x, y)


def step_update(t, d, like):
    """The update ``t * d`` in each leaf's dtype (``like`` gives the dtypes).

    The trial point is always ``x + step_update(t, d, x)`` leaf by leaf, which is
    bit-for-bit what ``optax.apply_updates`` computes from the returned updates.
    """
    return jax.tree.map(
        lambda u, x: (t * u.astype(_work_dtype(u, t.dtype))).astype(jnp.result_type(x)), d, like
    )


def add(x, u):
    return jax.tree.map(lambda a, b: (a + b).astype(jnp.result_type(a)), x, u)


def sub(x, u):
    return jax.tree.map(lambda a, b: (a - b).astype(jnp.result_type(a)), x, u)


def zeros_like(x):
    return jax.tree.map(lambda a: jnp.zeros(jnp.shape(a), jnp.result_type(a)), x)


def cast_like(x, like):
    """Cast each leaf of ``x`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda a, b: jnp.asarray(a).astype(jnp.result_type(b)), x, like)
