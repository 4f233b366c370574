"""The free variables' Gram matrices W^T Z Z^T W, kept from one iteration to the next.

L-BFGS-B's subspace step (``_subspace``; Byrd, Lu, Nocedal & Zhu 1995, "BLNZ",
eqs. 5.6-5.11) needs, with F = Z Z^T the 0/1 diagonal of the variables free at the
Cauchy point,

    S^T F S,   Y^T F S,   Y^T F Y        ((m + 1) x (m + 1) each, the memory's slot order).

From scratch that is O(n m^2) flops, several times an iteration's other work at large
n. Between iterations the memory gains one pair and, once the active set settles, F
changes in few variables, so they are updated as scipy's L-BFGS-B does (``formk``, BLNZ
Sec. 5): with w_i = (y_i, s_i) the i-th rows of Y and S,

    G_new = G_old + sum_{i entering F} w_i w_i^T - sum_{i leaving F} w_i w_i^T

for the pairs stored before (the at most CHANGES changed rows gathered), and the
newest pair's row and column are recomputed over the new F (products of the memory
with F s and F y). The memory keeps F and G (``Memory.free``, ``Memory.fgram``; F
empty and G = 0 at ``init``, which agree): a pair's entries are right from the
iteration it is stored in, and a slot becomes valid again only by being rewritten.
With no pair stored G is simply 0; with more changes, or at most SMALL_N variables
(where a pass is cheap and a ``lax.cond`` under ``vmap`` would run every branch), G is
recomputed: one pass over S and Y, a leaf longer than CHUNK in chunks of its first
axis (one long contraction with 2(m + 1) outputs per side is far slower as a single
dot on CPU than as many small ones).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from . import _cauchy, _memory, _tree

SMALL_N = 4096
CHANGES = 1024
CHUNK = 8192


def _block(s, y, f, sdt):
    """[S^T F S, Y^T F S, Y^T F Y] of one leaf's (m + 1, *shape) buffers and mask."""
    wd = _tree.work_dtype(s.dtype, sdt)
    s, y = s.astype(wd), y.astype(wd)
    fs, fy = jnp.where(f[None], s, 0), jnp.where(f[None], y, 0)
    axes = (tuple(range(1, s.ndim)),) * 2
    return jnp.stack([jnp.tensordot(a, b, axes) for a, b in ((fs, s), (fy, s), (fy, y))]).astype(sdt)


def full(memory: _memory.Memory, free):
    """(3, m + 1, m + 1) [S^T F S, Y^T F S, Y^T F Y] (zero where no pair) from scratch."""
    m1 = _memory.size(memory) + 1
    sdt = memory.gram.dtype
    total = jnp.zeros((3, m1, m1), sdt)
    for sb, yb, f in zip(jax.tree_util.tree_leaves(memory.s), jax.tree_util.tree_leaves(memory.y),
                         jax.tree_util.tree_leaves(free)):
        if f.size <= CHUNK:
            total = total + _block(sb, yb, f, sdt)
            continue
        rows = max(1, CHUNK // math.prod(f.shape[1:]))
        count = f.shape[0] // rows

        def chunk(i, acc, sb=sb, yb=yb, f=f, rows=rows):
            cut = lambda a, axis: jax.lax.dynamic_slice_in_dim(a, i * rows, rows, axis)  # noqa: E731
            return acc + _block(cut(sb, 1), cut(yb, 1), cut(f, 0), sdt)

        total = jax.lax.fori_loop(0, count, chunk, total)
        if count * rows < f.shape[0]:
            total = total + _block(sb[:, count * rows:], yb[:, count * rows:], f[count * rows:], sdt)
    both = _memory.valid(memory)[:, None] & _memory.valid(memory)[None, :]
    return jnp.where(both, total, 0)


def _flat_bool(tree):
    return jnp.concatenate([a.reshape(-1) for a in jax.tree_util.tree_leaves(tree)])


def _updated(memory: _memory.Memory, free, now, changed):
    """G for ``free`` from the kept one: the changed rows' outer products, then the
    newest pair's row and column."""
    m1 = _memory.size(memory) + 1
    sdt = memory.gram.dtype
    idx = jax.lax.top_k(changed.astype(jnp.float32), CHANGES)[1]
    sign = jnp.where(changed[idx], jnp.where(now[idx], 1, -1), 0).astype(sdt)
    rows = _cauchy.rows(memory, jnp.ones((), sdt), idx, sdt)  # (CHANGES, 2 (m + 1)): [y_i, s_i]
    ys, ss = rows[:, :m1], rows[:, m1:]
    fgram = memory.fgram + jnp.stack([(ss * sign[:, None]).T @ ss, (ys * sign[:, None]).T @ ss,
                                      (ys * sign[:, None]).T @ ys])
    newest = (memory.head + m1 - 1) % m1
    mask = lambda tree: jax.tree.map(lambda a, f: jnp.where(f, a, 0), tree, free)  # noqa: E731
    st_fs, yt_fs = _memory.products(memory, mask(_memory.row(memory.s, newest)))
    st_fy, yt_fy = _memory.products(memory, mask(_memory.row(memory.y, newest)))
    i = jnp.arange(m1, dtype=jnp.int32)
    in_row, in_col = (i == newest)[:, None], (i == newest)[None, :]
    # row "newest" of Y^T F S is <y_new, F s_j>; its column is <y_i, F s_new>.
    rows_new = jnp.stack([st_fs, st_fy, yt_fy])[:, None, :]
    cols_new = jnp.stack([st_fs, yt_fs, yt_fy])[:, :, None]
    fgram = jnp.where(in_col[None], cols_new, jnp.where(in_row[None], rows_new, fgram))
    both = _memory.valid(memory)[:, None] & _memory.valid(memory)[None, :]
    return jnp.where(both, fgram, 0)


def update(memory: _memory.Memory, free):
    """(G, memory with F and G kept) for the bool pytree ``free`` (module docstring)."""
    now = _flat_bool(free)
    if now.shape[0] <= SMALL_N:
        fgram = full(memory, free)
    else:
        changed = now != _flat_bool(memory.free)
        branch = jnp.where(memory.count == 0, 0, jnp.where(jnp.sum(changed) <= CHANGES, 1, 2))
        fgram = jax.lax.switch(branch, [lambda: jnp.zeros_like(memory.fgram),
                                        lambda: _updated(memory, free, now, changed),
                                        lambda: full(memory, free)])
    return fgram, memory._replace(free=free, fgram=fgram)
