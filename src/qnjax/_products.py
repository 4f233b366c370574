"""Small matrix-vector products: fused for one problem, one batched dot under ``jax.vmap``.

The solvers multiply small matrices by vectors all the time: the (m + 1) x (m + 1) Gram
matrices by coefficient vectors (``_compact``, ``_memory``, ``_subspace``), and the
memory's (2 (m + 1), *shape) buffers by a leaf when the leaf is small (``_memory``).

    matvec(A, v) = A v,   (A v)_i = sum_j A_ij v_j     (A: (k, *shape), v: shape)
    vecmat(v, A) = v^T A, (v^T A)_j = sum_i v_i A_ij   (v: (k,),       A: (k, *shape))

For one problem each is a multiply and a reduction, which XLA fuses with the operations
around it: at small n an iteration's cost is its number of compiled kernels, and a dot
would be a kernel of its own with its operands copied. Under ``jax.vmap`` the same
expression becomes a reduction over a short axis for each of the batch's members,
which XLA:CPU runs 2-3 times slower than one batched matrix product (1,000 problems,
11 x 11: about 100 us against 30 us). So each product carries its own batching rule
(``jax.custom_batching.custom_vmap``) that emits one ``dot_general`` with the batch as a
batch dimension (or as a free one when only one operand is batched), at full precision
(``_tree.HIGHEST``). The two forms agree to rounding (the summation order differs).

A float64 ``vecmat`` over at most UNROLL rows (the memory's weighted sum of its 2 (m + 1)
slots, a Gram matrix's rows) is batched faster still written out, v_0 A_0 + v_1 A_1 + ...,
an element-wise kernel over the batch: on 2 CPU cores, 1,000 float64 members, the (22, 10)
slots' sum took 16 us against 96 as the batched dot, and 1,000 batched 10-D Rosenbrock
solves (float64, 50 iterations, ``benchmarks/scale.py --parts 2``'s batch) 45.8-46.4 ms
against 48.9-50.0 (best of 30, three alternating runs). In float32 it was as fast (56 against
61 ms) but rounded worse: batched float32 box fits through the Optax face (``python
benchmarks/box_fits.py --face optax --batched --seeds 0-15``: 6,400 fits for each of its three
methods) claimed success above their minimum 11 times against the dot's 4; summed pairwise, it
was no faster than the dot. ``matvec`` keeps the dot: written out, the memory's products with
a vector (22 sums of 10 terms) made that batch 56-57 ms.

``custom_vmap`` functions cannot be differentiated in reverse mode, so each product is
wrapped in ``jax.custom_jvp`` with the product rule written in the plain form (linear in
the tangents, so it transposes): the unrolled derivatives and the implicit function
theorem's products differentiate through them as before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._tree import HIGHEST

# Rows up to which a batched ``vecmat`` is written out as a sum (module docstring).
UNROLL = 32


def _plain_matvec(a, v):
    return jnp.sum(a * v[None], axis=tuple(range(1, a.ndim)))


def _plain_vecmat(v, a):
    return jnp.sum(v.reshape((-1,) + (1,) * (a.ndim - 1)) * a, axis=0)


def _written_vecmat(v, a, v_batched, a_batched):
    """Batched ``vecmat`` as the sum sum_i v_i A_i written out (batch axis first), or None
    beyond UNROLL rows, below float64 (module docstring) or for operands of two dtypes.
    (``lax`` operations: they keep a float64 operand float64 where a vmapped loop's body is
    traced again with x64 off, ``_tree.matmul``.)"""
    k = a.shape[a_batched]
    if not 0 < k <= UNROLL or v.dtype != a.dtype or jnp.finfo(a.dtype).bits < 64:
        return None
    out_shape = (v.shape[0] if v_batched else a.shape[0],) + a.shape[1 + a_batched:]  # (one is batched)
    total = None
    for i in range(k):
        vi = jax.lax.index_in_dim(v, i, axis=int(v_batched), keepdims=False)  # () or (B,)
        ai = jax.lax.index_in_dim(a, i, axis=int(a_batched), keepdims=False)  # ([B], *shape)
        vi = jax.lax.broadcast_in_dim(vi, out_shape, (0,) if v_batched else ())
        ai = jax.lax.broadcast_in_dim(ai, out_shape, tuple(range(len(out_shape) - ai.ndim, len(out_shape))))
        term = jax.lax.mul(vi, ai)
        total = term if total is None else jax.lax.add(total, term)
    return total


def _batched(plain, contracting, written=None):
    """``plain(a, b)`` with a vmap rule that is one dot_general, or ``written(a, b, a_batched,
    b_batched)`` where that gives a value; ``contracting(na, nb)`` gives the contracted axes of
    unbatched operands of na and nb dimensions."""

    @jax.custom_batching.custom_vmap
    def product(a, b):
        return plain(a, b)

    @product.def_vmap
    def rule(axis_size, in_batched, a, b):
        a_batched, b_batched = in_batched
        out = None if written is None else written(a, b, a_batched, b_batched)
        if out is not None:
            return out, True
        ca, cb = contracting(a.ndim - a_batched, b.ndim - b_batched)
        ca = tuple(i + a_batched for i in ca)
        cb = tuple(i + b_batched for i in cb)
        batch = ((0,), (0,)) if a_batched and b_batched else ((), ())
        # (no result dtype named where the operands share one: a float64 one under jax.enable_x64
        # with x64 off became float32 where vmap of a loop traced its body again, ``_tree.matmul``)
        out = jax.lax.dot_general(a, b, ((ca, cb), batch), precision=HIGHEST,
                                  preferred_element_type=None if a.dtype == b.dtype else a.dtype)
        if b_batched and not a_batched:  # (the batch axis comes after a's free axes)
            out = jnp.moveaxis(out, a.ndim - len(ca), 0)
        return out, True

    @jax.custom_jvp
    def f(a, b):
        return product(a, b)

    @f.defjvp
    def f_jvp(primals, tangents):
        (a, b), (da, db) = primals, tangents
        return f(a, b), plain(da, b) + plain(a, db)

    return f


# matvec: a's trailing axes against all of v's; vecmat: the leading axis of both.
matvec = _batched(_plain_matvec, lambda na, nb: (tuple(range(1, na)), tuple(range(nb))))
vecmat = _batched(_plain_vecmat, lambda na, nb: ((0,), (0,)), _written_vecmat)
