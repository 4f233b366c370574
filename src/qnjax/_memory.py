"""The L-BFGS memory: curvature pairs in a ring buffer and their small Gram matrices.

Notation (Nocedal & Wright 2006, Sec. 7.2; Byrd, Nocedal & Schnabel 1994, "BNS"):
s_k = x_{k+1} - x_k, y_k = q_{k+1} - q_k with q the gradient, S = [s_0 .. s_{k-1}]
and Y likewise, at most m pairs. The products with the memory need small matrices
(BNS eqs. 2.17, 3.5), kept in the ring's slot order, (m + 1) x (m + 1), in the scalar
dtype (``Gram``); each solver keeps only those it reads:

* every solver: the diagonal d_i = <s_i, y_i> (the two-loop recursion needs no more);
* the compact direction (``_compact``): YY = Y^T Y and RI = R^-1, R the upper triangle
  of S^T Y in *chronological* order (R_ij = <s_i, y_j> for pair i no newer than j);
* L-BFGS-B (``_cauchy``, ``_reduced``): SY = S^T Y (its lower triangle and diagonal
  are read) and SS = S^T S.

Chronological order is carried by each slot's position ``pos`` (0 oldest, m - 1
newest, m the free slot); so a new pair writes one row and column at its slot, nothing
is rolled or gathered, and ring order never leaks into the algebra (a known bug of
another JAX L-BFGS-B built R from storage order). R^-1 is kept by appending columns:
[[R, r], [0, rho]]^-1 = [[R^-1, -R^-1 r / rho], [0, 1 / rho]]; dropping the oldest pair
only masks its row and column (the inverse of a trailing block of a triangular matrix
is the trailing block of its inverse), so no triangular solve is needed.

Storage, per leaf: one buffer ``pairs`` of shape (2 (m + 1), *leaf.shape) in the
leaf's dtype, S's slots then Y's (``s`` and ``y`` are its halves), so that each product
with S and Y is one matrix-vector product per leaf over both (on a CPU one product over
the stacked buffer streams it about 1.5 times faster than two). Slot ``head`` is free and
holds the *tentative* pair of the current iteration (``_memory_update``: how it is written,
the curvature guard, the vector-free updates of the small matrices).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _loop, _tree, _xla
from ._products import matvec, vecmat

A, B, CS, CY = 0, 1, 2, 3  # the last direction's data: S^T q, Y^T q, and H q = gamma q + S c_s + Y c_y


class Gram(NamedTuple):
    """The memory's small matrices (module docstring), slot order, scalar dtype; None where
    the solver does not read them."""

    d: jax.Array  # (m + 1,): <s_i, y_i>
    yy: Any = None  # (m + 1, m + 1) Y^T Y: the compact direction
    ri: Any = None  # (m + 1, m + 1) R^-1: the compact direction
    sy: Any = None  # (m + 1, m + 1) S^T Y: L-BFGS-B
    ss: Any = None  # (m + 1, m + 1) S^T S: L-BFGS-B


class Memory(NamedTuple):
    pairs: Any  # pytree, leaves (2 (m + 1), *leaf.shape) in the leaf dtype: S's slots, then Y's
    gram: Gram  # the small matrices, slot order
    last: jax.Array  # (4, m + 1) slot order: a, b, c_s, c_y of the last direction
    scalars: jax.Array  # (5,) scalar dtype: gamma (H0 = gamma I), step (u = step H q), and the tentative
    # pair's <s, y>, <y, y>, <s, s> when it was recorded whole (``_memory_update.record_step`` with ``y``)
    index: jax.Array  # (3,) int32: count (pairs stored), head (the free slot), count before the last clear
    flags: jax.Array  # (3,) bool: tentative (the free slot holds a pair), pending (``_memory_update.complete``),
    # scaled (gamma set)
    free: Any = None  # L-BFGS-B only (``_reduced``): bool pytree, the free set at the last Cauchy point
    fgram: Any = None  # L-BFGS-B only: (3, m + 1, m + 1) S^T F S, Y^T F S, Y^T F Y over that set

    @property
    def s(self):
        """S's slots, leaves (m + 1, *leaf.shape)."""
        return jax.tree.map(lambda b: b[: b.shape[0] // 2], self.pairs)

    @property
    def y(self):
        return jax.tree.map(lambda b: b[b.shape[0] // 2:], self.pairs)

    @property
    def count(self):
        return self.index[0]

    @property
    def head(self):
        return self.index[1]

    @property
    def gamma(self):
        return self.scalars[0]

    @property
    def dtype(self):
        """The scalar dtype."""
        return self.scalars.dtype


# Leaves up to this size use ``_products`` (a multiply and a reduction, fused with their
# neighbours; a batched dot under vmap); larger ones a matrix-vector product (one
# streaming pass). On XLA:CPU the multiply and reduction over (2 (m + 1), n) runs slower
# than the dot from about n = 32 on, with either emitter (n = 1,000, float64: 11-17 us
# against 3-4 us): measured in a solve, an iteration on a cheap objective took 34-50 us
# with leaves of 1,000 taking that form and 19-35 us with dots (n = 4,096: 110-200 ->
# 45-140 us; float32 and float64, both emitters, two runs each). Leaves are never
# flattened: a reshape that merges a sharded axis with another gathers the leaf across
# devices, while a contraction over the leaf's own axes stays local.
SMALL = 16


def _matvec_big(mat, vec):
    """mat (k, *shape) @ vec (*shape) -> (k,), contracting every axis of the leaf."""
    axes = tuple(range(1, mat.ndim))
    if vec.size <= SMALL:
        return matvec(mat, vec)
    return jnp.tensordot(mat, vec, axes=(axes, tuple(range(vec.ndim))), precision=_tree.HIGHEST,
                         preferred_element_type=mat.dtype)


def _vecmat_big(vec, mat):
    """vec (k,) @ mat (k, *shape) -> (*shape)."""
    if math.prod(mat.shape[1:]) <= SMALL:
        return vecmat(vec, mat)
    return jnp.tensordot(vec, mat, axes=1, precision=_tree.HIGHEST, preferred_element_type=mat.dtype)


def init(params, memory_size: int, sdt, bounded: bool = False, compact: bool = True) -> Memory:
    """An empty memory with the small matrices the solver reads: ``compact`` (the compact
    direction's YY and R^-1), ``bounded`` (L-BFGS-B's SY and SS, its free set, empty, and
    the free set's Gram matrices, 0)."""
    m = int(memory_size)

    def ring(p):
        return jnp.zeros((2 * (m + 1),) + jnp.shape(p), _tree.dtype_of(p))

    def square():
        return jnp.zeros((m + 1, m + 1), sdt)

    gram = Gram(d=jnp.zeros((m + 1,), sdt), yy=square() if compact else None, ri=square() if compact else None,
                sy=square() if bounded else None, ss=square() if bounded else None)
    return Memory(
        pairs=jax.tree.map(ring, params), gram=gram, last=jnp.zeros((4, m + 1), sdt),
        scalars=jnp.ones((5,), sdt), index=jnp.zeros((3,), jnp.int32), flags=jnp.zeros((3,), bool),
        free=jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), bool), params) if bounded else None,
        fgram=jnp.zeros((3, m + 1, m + 1), sdt) if bounded else None,
    )


def size(memory: Memory) -> int:
    return memory.gram.d.shape[-1] - 1


def position(memory: Memory):
    """(m + 1,) int32: each slot's chronological position (m - 1 newest, m the free slot)."""
    m = size(memory)
    return (jnp.arange(m + 1, dtype=jnp.int32) - memory.head - 1) % (m + 1)


def valid(memory: Memory):
    """(m + 1,) bool: which slots hold a pair."""
    pos = position(memory)
    return (pos >= size(memory) - memory.count) & (pos < size(memory))


def slot(memory: Memory, j):
    """The slot of chronological position j."""
    return (memory.head + 1 + j) % (size(memory) + 1)


def newest(memory: Memory):
    """The newest pair's slot (chronological position m - 1), the free slot's predecessor."""
    return slot(memory, size(memory) - 1)


def by_window(memory: Memory, many: bool, branch, single: bool = False):
    """``branch(slots)`` with ``slots`` the k newest slots (chronological positions
    m - k .. m - 1; None: all m + 1), k the fewest of a quarter, a half or all of the
    m + 1 (and with ``single``, static, of one) that hold every pair stored, as a
    ``lax.switch`` on the pair count (as many branches for every memory size from 2, one
    size perhaps twice: a sharded program's collectives do not depend on it). Fewer than
    all only where ``many`` (static: many variables, and not under ``jax.vmap``, where a
    switch runs every branch): work over the pairs' rows then costs what the pairs stored
    need, as early in a run, when the active set of L-BFGS-B changes most."""
    m1 = size(memory) + 1
    sizes = tuple(sorted(((1,) if single else ()) + (-(-m1 // 4), -(-m1 // 2), m1))) if many else (m1,)
    branches = [lambda k=k: branch(None if k == m1 else (memory.head - k + jnp.arange(k)) % m1) for k in sizes]
    if len(sizes) == 1:
        return branches[0]()
    return jax.lax.switch(sum((memory.count > k).astype(jnp.int32) for k in sizes[:-1]), branches)


def clear(memory: Memory, where=True, newest=False) -> Memory:
    """Drop every pair if ``where``, but the newest of several where also ``newest`` (the buffers
    keep their contents, masked by ``count``, and the count is kept for :func:`restore`).
    gamma is kept: with no pairs H = gamma I, the last curvature scale seen."""
    where = jnp.asarray(where)
    count = memory.count
    kept = _xla.where(where & (count > 0), count, memory.index[2])
    left = _xla.where(jnp.asarray(newest) & (count > 1), 1, 0)  # (a lone pair goes: no second try of it)
    return memory._replace(
        index=jnp.stack([_xla.where(where, left, count), memory.head, kept]).astype(jnp.int32),
        flags=memory.flags & ~(where & (jnp.arange(3, dtype=jnp.int32) == 1)),
    )


def restore(memory: Memory, where=True) -> Memory:
    """Undo the last :func:`clear` if ``where`` and no pair was stored since (a retry along
    -g that failed too: the solver stops, and the pairs it had describe f's curvature at
    x better than none; ``hess_inv`` reports them). Nothing in the buffers or the Gram
    matrices changed meanwhile: a failed search stores no pair."""
    where = jnp.asarray(where) & (memory.count == 0)
    first = jnp.arange(3, dtype=jnp.int32) == 0
    return memory._replace(index=_xla.where(where & first, memory.index[2], memory.index).astype(jnp.int32))


def write(pairs, i, value):
    """``pairs.at[i].set(value)`` leaf by leaf (row i: S's slot i, or Y's slot i - (m + 1)) for
    an index known to be in range, as a dynamic update slice (no scatter for XLA to expand),
    so the loop-carried buffer is updated in place."""
    return jax.tree.map(lambda buf, v: jax.lax.dynamic_update_index_in_dim(buf, v.astype(buf.dtype), i, 0),
                        pairs, value)


def row(tree, i):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), tree)


# From this many variables, unbatched, a pass over the memory that holds no pair is not made
# (``unless_empty``): its result is then known. Below it, or under ``jax.vmap``, where both branches
# of a ``lax.cond`` run for every member, the pass is made.
SKIP_EMPTY_FROM = 65536


def unless_empty(memory: Memory, tree, made, known):
    """``made()``, a pass over the memory (``tree`` has the variables' shapes), or ``known()``, its
    result with no pair stored, where none is (a ``lax.cond`` from SKIP_EMPTY_FROM variables, not
    batched): the first iteration, and the one after the memory was dropped."""
    if _tree.count(tree) < SKIP_EMPTY_FROM or _loop.batched(tree):
        return made()
    return jax.lax.cond(memory.count == 0, known, made)


def products(memory: Memory, q):
    """(2, m + 1) [S^T q, Y^T q] in slot order, zero where no pair: one matrix-vector
    product per leaf and buffer (each buffer read once), accumulated in the scalar dtype."""
    m = size(memory)
    sdt = memory.dtype
    total = jnp.zeros((2, m + 1), sdt)
    for buf, v in zip(jax.tree_util.tree_leaves(memory.pairs), jax.tree_util.tree_leaves(q)):
        wd = _tree.work_dtype(buf.dtype, sdt)
        vec = v.astype(wd)
        vec = jnp.conj(vec) if jnp.iscomplexobj(vec) else vec  # Re sum conj(b) q = Re sum b conj(q)
        total = total + jnp.real(_matvec_big(buf.astype(wd), vec)).reshape(2, m + 1).astype(sdt)
    return _xla.where(valid(memory), total, 0)


def weighted_sum(memory: Memory, h0, q, c_s, c_y, pairs=True):
    """h0 q + S c_s + Y c_y (slot-order coefficients), leaf by leaf: one pass over S and Y
    (``pairs`` False: h0 q alone, as it is where no pair is stored and the coefficients are 0)."""
    sdt = memory.dtype
    coef = jnp.concatenate([c_s, c_y])

    def one(buf, v):
        wd = _tree.work_dtype(buf.dtype, sdt)
        out = h0.astype(wd) * v.astype(wd)
        if pairs:
            out = out + _vecmat_big(coef.astype(wd), buf.astype(wd))
        return out.astype(v.dtype)

    return jax.tree.map(one, memory.pairs, q)
