"""The free variables' Gram matrices W^T Z Z^T W and products W^T Z Z^T g from scratch
(``_reduced`` keeps and updates them; Byrd, Lu, Nocedal & Zhu 1995, eqs. 5.6-5.11).

With F = Z Z^T the 0/1 diagonal of the free variables and g the gradient, ``full``
computes G = [S^T F S, Y^T F S, Y^T F Y] and [S^T F g, Y^T F g] in the memory's slot
order, zero where no pair is stored. ``_reduced`` calls it where its update would
gather too many rows, and at every iteration at most SMALL_N variables (``incremental``
False: a pass is cheap there, and under ``vmap`` a ``lax.cond`` would run every branch).

It is one pass over S and Y that also gives the products with g; a leaf longer than
CHUNK (8-byte elements) is read in chunks of its first axis (one long contraction with
2(m + 1) outputs per side is far slower as a single dot on a CPU than as many small
ones; CHUNK_ELSEWHERE off a CPU). The pass costs O(n k^2) for the k slots it reads and is
bound by that arithmetic (at n = 10^6 and m = 10, all 11 slots, about 25 ms in float32
and 63 ms in float64 on 2 cores). The active set changes most early in a run, while the
memory holds few pairs, so at many variables (and not under ``jax.vmap``) only the
fewest newest slots (a quarter, a half, or all; from ONE_SLOT_FROM variables also the
newest alone) that hold every pair are read (3 of 11 slots: 6 and 16 ms).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from . import _cauchy, _loop, _memory, _tree, _xla
from ._xla import where

# Variables up to which the products are recomputed at every iteration (``incremental``).
SMALL_N = 4096
# Elements of a leaf per trip of the recompute (``_window``) on a CPU, and on other
# platforms (``_xla.by_platform``). On an NVIDIA H200 at n = 1e7 (20 iterations, stopping
# tests off; the quartic and NNLS of ``problems.scalable_bounded``, float32 and float64), with
# CHUNK and ``_segments.BLOCK`` everywhere a bounded iteration took 9.9, 8.8, 16.5 and 17.3 ms
# (an unconstrained one 1.2, 2.3, 1.1 and 2.0): over a thousand trips a run, each a few small
# matrix products and their reductions. With 2^18 for both: 2.6, 4.0, 4.7 and 5.6 ms. 2^20
# ran as fast at n = 1e7, but at n = 1e6 (one piece each) the first bounded solve had not
# compiled after 140 s there. On a CPU the piece is counted in 8-byte elements: a narrower
# work dtype takes proportionally more of them (``_chunk``), so a piece holds the same bytes
# (a piece of 8,192 float32 elements was too small: nonnegative least squares at n = 1e6,
# ``problems.scalable_bounded``, 20 iterations, float32, whose recomputes read up to all 11
# slots, ran in 305-317 ms with 8,192, 274-281 with 16,384 or 32,768 and 303-305 with 65,536
# or more; in float64 8,192 and 32,768 ran alike, 780-782 ms; the quartic alike in both).
CHUNK = 8192
CHUNK_ELSEWHERE = 1 << 18
# From this many variables the recompute also has a branch for the memory's one newest slot (the
# second iteration's one pair, where the active set changes most): at n = 10^6 (the quartic of
# ``problems.scalable_bounded``) that iteration took 15-17 instead of 25-26 ms in float32 and 38-41
# instead of 56-57 ms in float64, while one more branch made the first bounded call at n = 10^4
# about 0.1-0.2 s (of 3.1) longer: below, it is left out.
ONE_SLOT_FROM = 1 << 18


def _chunk(dtype):
    """CHUNK for pieces of ``dtype``: the same bytes as CHUNK 8-byte elements."""
    return max(1, CHUNK * 8 // jnp.dtype(dtype).itemsize)


def _block(pairs, f, sdt, g=None):
    """[S^T F S, Y^T F S, Y^T F Y] of one leaf's stacked (2 k, *shape) rows (or a cut of them
    along the leaf's axes) and mask; with ``g`` (the same cut of the gradient) also
    [S^T F g, Y^T F g], from the same reads of the rows."""
    wd = _tree.work_dtype(pairs.dtype, sdt)
    k = pairs.shape[0] // 2
    s, y = pairs[:k].astype(wd), pairs[k:].astype(wd)
    fs, fy = where(f[None], s, 0), where(f[None], y, 0)
    axes = (tuple(range(1, s.ndim)),) * 2
    products = [jnp.tensordot(a, b, axes, precision=_tree.HIGHEST) for a, b in ((fs, s), (fy, s), (fy, y))]
    gram = jnp.stack(products).astype(sdt)
    if g is None:
        return gram
    gv = (tuple(range(1, s.ndim)), tuple(range(g.ndim)))
    return gram, jnp.stack([jnp.tensordot(a, g.astype(wd), gv, precision=_tree.HIGHEST) for a in (fs, fy)]).astype(sdt)


def full(memory: _memory.Memory, free, g=None):
    """(3, m + 1, m + 1) [S^T F S, Y^T F S, Y^T F Y] (zero where no pair) from scratch, and
    with ``g`` also (2, m + 1) [S^T F g, Y^T F g]: one pass over the fewest newest slots that
    hold every pair stored (``_memory.by_window``; all at few variables, ``incremental``)."""
    many = incremental(free) and not _loop.batched(free)
    single = _tree.count(free) >= ONE_SLOT_FROM
    return _memory.by_window(memory, many, functools.partial(_window, memory, free, g), single)


def _window(memory: _memory.Memory, free, g, slots):
    """``full`` from the memory's ``slots`` (None: every slot), a leaf longer than ``_chunk``
    in chunks of its first axis."""
    m1 = _memory.size(memory) + 1
    sdt = memory.dtype
    k = m1 if slots is None else slots.shape[0]
    take = (lambda a: a) if slots is None else (lambda a: a[jnp.concatenate([slots, m1 + slots])])  # noqa: E731
    total = _zeros(k, sdt, g)
    gs = [None] * len(jax.tree_util.tree_leaves(free)) if g is None else jax.tree_util.tree_leaves(g)
    for pb, f, gl in zip(jax.tree_util.tree_leaves(memory.pairs), jax.tree_util.tree_leaves(free), gs):
        chunk = _chunk(_tree.work_dtype(pb.dtype, sdt))
        part = _xla.by_platform(f.size, chunk, CHUNK_ELSEWHERE,
                                    functools.partial(_chunked, take, k, pb, f, gl, sdt))
        total = jax.tree.map(jnp.add, total, part)
    gram, prods = (total, None) if g is None else total
    valid = _memory.valid(memory)
    if slots is not None:  # (the slots are distinct: k <= m + 1 in a row)
        gram = jnp.zeros((3, m1, m1), sdt).at[:, slots[:, None], slots[None, :]].set(gram)
        prods = None if g is None else jnp.zeros((2, m1), sdt).at[:, slots].set(prods)
    gram = where(valid[:, None] & valid[None, :], gram, 0)
    return gram if g is None else (gram, where(valid, prods, 0))


def _zeros(k, sdt, g):
    """``_block``'s sums over ``k`` slots before any variable: the Gram matrices, and with ``g``
    the products with it."""
    return jnp.zeros((3, k, k), sdt) if g is None else (jnp.zeros((3, k, k), sdt), jnp.zeros((2, k), sdt))


def _chunked(take, k, pb, f, g, sdt, chunk):
    """``_block`` of one leaf (``k`` slots taken), in pieces of its first axis of about
    ``chunk`` elements."""
    if f.size <= chunk:
        return _block(take(pb), f, sdt, g)
    rows = max(1, chunk // math.prod(f.shape[1:]))
    count = f.shape[0] // rows

    def piece(i, acc):
        # (the stacked buffer itself is cut: S and Y sliced out of it first would be
        # copied whole before the loop)
        cut = lambda a, axis: jax.lax.dynamic_slice_in_dim(a, i * rows, rows, axis)  # noqa: E731
        part = _block(take(cut(pb, 1)), cut(f, 0), sdt, None if g is None else cut(g, 0))
        return jax.tree.map(jnp.add, acc, part)

    total = jax.lax.fori_loop(0, count, piece, _zeros(k, sdt, g))
    if count * rows < f.shape[0]:
        rest = _block(take(pb[:, count * rows:]), f[count * rows:], sdt, None if g is None else g[count * rows:])
        total = jax.tree.map(jnp.add, total, rest)
    return total


def incremental(params) -> bool:
    """Whether the products are kept and updated (many variables; static): else recomputed."""
    n = _tree.count(params)
    return n > SMALL_N and n > _cauchy.SORT_LIMIT
