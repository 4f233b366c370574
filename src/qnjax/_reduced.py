"""The free variables' Gram matrices W^T Z Z^T W and products W^T Z Z^T g, kept from one
iteration to the next.

L-BFGS-B's subspace step (``_subspace``; Byrd, Lu, Nocedal & Zhu 1995, "BLNZ",
eqs. 5.6-5.11) needs, with F = Z Z^T the 0/1 diagonal of the variables free at the
Cauchy point and g the gradient,

    G = [S^T F S, Y^T F S, Y^T F Y]   ((m + 1) x (m + 1) each, the memory's slot order),
    S^T F g,  Y^T F g.

From scratch G is O(n m^2) flops and each product a pass over the memory, several
times an iteration's other work at large n. Between iterations the memory gains one
pair (s, y) and, once the active set settles, F changes in few variables, so they are
updated from few gathered rows, as scipy's L-BFGS-B updates G (``formk``, BLNZ Sec. 5).
With w_i = (y_i, s_i) the i-th rows of Y and S, F' the previous free set and g' the
previous gradient:

    G = G' + sum_{i entering F} w_i w_i^T - sum_{i leaving F} w_i w_i^T    (pairs stored before),
    W^T F g = W^T (M g) - sum_{i in M, not in F} g_i w_i       (M the variables moving
                                                                along the Cauchy path: the
                                                                Cauchy point's product),
    S^T F s = S^T s - sum_{i not in F} s_i s_i-row,   Y^T F s likewise (S^T s, Y^T s from
                                                                ``push``),
    W^T F y = W^T F g - W^T F g',  W^T F g' = W^T F' g' + sum_{entering} g'_i w_i
                                              - sum_{leaving} g'_i w_i,    g' = g - y,

and the new pair's own entries (its slot held another pair) s^T F y = s^T y - sum_{i not
in F} s_i y_i and y^T F y = sum_{i in F} y_i^2 (one pass over y).
The rows gathered are the union of these sets: at most CHANGES, else at most MANY_CHANGES
(a second branch, from 4 MANY_CHANGES variables: ``lax.top_k`` of the larger count, about
3.5 ms at n = 10^6 on 2 cores, where the recompute reads every slot, about 25 ms in float32
and 63 in float64). Rosenbrock's function in [-2, 0.8]^n at n = 10^6 from a random start in
the box (bounds as arrays) changes F in 1,000 to 20,000 variables an iteration for hundreds
of iterations: with CHANGES alone, nearly every iteration recomputed, and 200 iterations
took 11.9 s in float32 and 22.4 s in float64; now 7.0-7.6 and 11.6-11.7 (65,536 for the
second cap: 7.5 and 13.5; the branch changes only how G is formed, so the iterates are the
same up to rounding). The branch is compiled too: a bounded solve at n = 10^5 (float32)
compiled in 8.1-8.2 s instead of 7.4-8.1 (three fresh processes each). What the kept G
accumulates there in float32, against G recomputed (which it had been at nearly every
iteration): 2.3e-5, 2.6e-5 and 1.3e-5 of its largest entry after 40, 100 and 200 iterations
(a recompute, where more than MANY_CHANGES change, resets it), and f after 40 iterations 2
parts in 10^5 from the recomputing run's. The memory keeps F, G
and [S^T F g, Y^T F g] (``Memory.free``, ``Memory.fgram``, ``Memory.last``; F empty and
both zero at ``init``, which agree): a pair's entries are right from the iteration it is
stored in, and a slot becomes valid again only by being rewritten. With no pair stored
all are 0; with more than MANY_CHANGES changes, or at few variables (``incremental``), they
are recomputed (``_free_gram``). Rows gathered the same way give the products of the
memory with a vector that is zero in most variables (``sparse_products``, for ``_subspace``'s
W^T d). Everything is per leaf except where rows are gathered, which puts the leaves in
one order (``_segments.GATHERED``: a sharded leaf's mask gathered across devices, its rows
taken by index on their own devices): in a ``lax.cond`` branch taken only when some
variable changed, so a settled iteration gathers nothing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _memory, _segments, _tree
from ._free_gram import full, incremental
from ._tree import matmul as mm
from ._xla import where

CHANGES = 1024
# The free set's update gathers at most CHANGES rows, else at most MANY_CHANGES, else it recomputes.
MANY_CHANGES = 16384


def _gather(memory: _memory.Memory, mask, sdt, cap=None):
    """(idx, rows): the flat indices of the at most ``cap`` (default CHANGES; at least one) variables set
    in the flat bool vector ``mask`` (padded with others) and their rows [y_i, s_i],
    (cap, 2 (m + 1)) (at most n)."""
    k = min(CHANGES if cap is None else cap, mask.shape[0])
    idx = jax.lax.top_k(mask.astype(jnp.float32), k)[1]
    return idx, _segments.rows(memory, jnp.ones((), sdt), idx, sdt)


def _leaves(*trees):
    return zip(*(jax.tree_util.tree_leaves(t) for t in trees))


def _cat(tree, dtype):
    return _segments.cat([a.astype(dtype) for a in jax.tree_util.tree_leaves(tree)])


def sparse_products(memory: _memory.Memory, e, sdt):
    """(2, m + 1) [S^T e, Y^T e] for a pytree ``e`` that is zero in most variables: 0 with
    no pass over the memory when it is zero everywhere, from its gathered rows when at
    most CHANGES variables are not (the leaves put in one order, ``_segments.GATHERED``),
    else one pass (``_memory.products``)."""
    m1 = _memory.size(memory) + 1
    leaves = [a.astype(sdt) for a in jax.tree_util.tree_leaves(e)]
    # How many are nonzero, as sum |sign(e_i)| in ``sdt`` (exact to 2^24 in float32, and beyond
    # still above CHANGES; NaN makes it NaN, and the full pass): in one reduction per leaf that
    # writes nothing. XLA:CPU's library (YNN) reduces after the sign in one kernel, where a select
    # (a comparison) is an element-wise pass of its own that writes its result for the reduction
    # to read (1e6 float32 variables: 0.12 ms against 0.24).
    zero = jnp.zeros((), sdt)
    count = sum((jnp.sum(jnp.abs(jnp.sign(a))) for a in leaves), zero)

    def gathered():
        with jax.named_scope(_segments.GATHERED):
            ef = _cat(leaves, sdt)
            idx, rows = _gather(memory, ef != 0, sdt)
            v = ef[idx]  # (0 where top_k listed a zero)
            return jnp.stack([mm(v, rows[:, m1:]), mm(v, rows[:, :m1])])

    return jax.lax.switch(where(count == 0, 0, where(count <= CHANGES, 1, 2)),
                          [lambda: jnp.zeros((2, m1), sdt), gathered, lambda: jnp.stack(_memory.products(memory, e))])


def _newest(memory: _memory.Memory, buffer, sdt):
    """The newest pair's s or y (``buffer``), per leaf in ``sdt`` (read where it is used: a
    copy passed on would be a pass)."""
    row = _memory.row(buffer, _memory.newest(memory))
    return [a.astype(sdt) for a in jax.tree_util.tree_leaves(row)]


def _changes(now, before, gm, s_new, stored):
    """The masks of the variables whose rows the update needs (module docstring): those
    entering or leaving F, those moving along the path (gm = moving g != 0) but not in F,
    and those not in F where the new pair's s_i != 0 (if one was stored)."""
    return now != before, (gm != 0) & ~now, stored & ~now & (s_new != 0)


def _row_sums(memory: _memory.Memory, free, gm, g, stored, cap):
    """What the gathered rows add (module docstring): to G, to W^T F g (minus), to the new
    pair's S^T F s and Y^T F s (minus), and to W^T F g'. Run when some variable changed:
    the leaves are put in one order here (``_segments.GATHERED``)."""
    m1 = _memory.size(memory) + 1
    sdt = memory.dtype
    with jax.named_scope(_segments.GATHERED):
        now, before = (_cat(t, bool) for t in (free, memory.free))
        gm, gf, s_new = _cat(gm, sdt), _cat(g, sdt), _cat(_newest(memory, memory.s, sdt), sdt)
        idx, rows = _gather(memory, functools.reduce(jnp.logical_or, _changes(now, before, gm, s_new, stored)),
                            sdt, cap)
        # (the masks at the gathered rows only)
        changed, out, moved = _changes(now[idx], before[idx], gm[idx], s_new[idx], stored)
        ys, ss = rows[:, :m1], rows[:, m1:]
        sign = where(changed, where(now[idx], 1, -1), 0).astype(sdt)
        gram = jnp.stack([mm((ss * sign[:, None]).T, ss), mm((ys * sign[:, None]).T, ss),
                          mm((ys * sign[:, None]).T, ys)])
        g_out = where(out, gm[idx], 0)
        s_out = where(moved, s_new[idx], 0)
        newest = _memory.newest(memory)
        d_old = sign * (gf[idx] - ys[:, newest])  # g'_i = g_i - y_i on the gathered rows
        return gram, jnp.stack([mm(g_out, ss), mm(g_out, ys), mm(s_out, ss), mm(s_out, ys), mm(d_old, ss),
                                mm(d_old, ys)])


def _updated(memory: _memory.Memory, free, gm, g, wg, stored, count, cap):
    """G and [S^T F g, Y^T F g] from the kept ones and, where some variable changed, the
    gathered rows (module docstring); per leaf otherwise."""
    m1 = _memory.size(memory) + 1
    sdt = memory.dtype
    gram, sums = jax.lax.cond(count > 0, lambda: _row_sums(memory, free, gm, g, stored, cap),
                              lambda: (jnp.zeros((3, m1, m1), sdt), jnp.zeros((6, m1), sdt)))
    fgram = memory.fgram + gram
    fg = wg - sums[0:2]  # [S^T F g, Y^T F g]

    def newest_pair():
        newest = _memory.newest(memory)
        st_fs = memory.gram.ss[newest] - sums[2]
        yt_fs = memory.gram.sy[newest] - sums[3]  # its own entry: s^T F y = s^T y - (rows)
        old = memory.last[:2] + sums[4:6]  # W^T F g' (stale at ``newest``)
        st_fy, yt_fy = fg - old
        # the new pair's own entries: s^T F y is yt_fs's (the column below is written last),
        # y^T F y one pass over y
        y_new = _newest(memory, memory.y, sdt)
        yy = sum((jnp.sum(where(f, y * y, 0)) for f, y in zip(jax.tree_util.tree_leaves(free), y_new)),
                 jnp.zeros((), sdt))
        yt_fy = where(jnp.arange(m1) == newest, yy, yt_fy)
        i = jnp.arange(m1, dtype=jnp.int32)
        in_row, in_col = (i == newest)[:, None], (i == newest)[None, :]
        # row "newest" of Y^T F S is <y_new, F s_j>; its column is <y_i, F s_new>.
        rows_new = jnp.stack([st_fs, st_fy, yt_fy])[:, None, :]
        cols_new = jnp.stack([st_fs, yt_fs, yt_fy])[:, :, None]
        return where(in_col[None], cols_new, where(in_row[None], rows_new, fgram))

    fgram = jax.lax.cond(stored, newest_pair, lambda: fgram)
    return fgram, fg


def update(memory: _memory.Memory, free, g, wg, gm, theta, stored):
    """(G, [S^T F g, Y^T F g], memory keeping F and both) for the bool pytree ``free``, the
    gradient ``g``, the Cauchy point's W^T (M g) = ``wg`` ([Y, theta S] order; None: recompute)
    with ``gm`` = M g (a pytree), and whether ``push`` just ``stored`` a pair."""
    m1 = _memory.size(memory) + 1
    sdt = memory.dtype
    if not incremental(free):
        fgram, fg = full(memory, free, g)
    else:
        # (the masks are formed again where rows are gathered: here only their count, per
        # leaf, in passes that write no mask; counted in float32, which XLA:CPU sums in one
        # pass where an int32 sum writes its words first: exact to 2^24 and, beyond,
        # still far above CHANGES, all that is asked of it)
        s_new = _newest(memory, memory.s, sdt)
        one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
        count = sum((jnp.sum(where(functools.reduce(jnp.logical_or, _changes(now, before, gml, s, stored)),
                                       one, zero))
                     for (now, before, gml), s in zip(_leaves(free, memory.free, gm), s_new)), zero)
        wg = jnp.stack([wg[m1:] / theta, wg[:m1]])
        # (the second cap only where it leaves most variables out: gathering them all is no
        # cheaper than the recompute, and a sharded leaf's gather of every row was all its memory)
        caps = [CHANGES] + ([MANY_CHANGES] if 4 * MANY_CHANGES <= _tree.count(free) else [])
        branch = where(memory.count == 0, 0, 1 + sum((count > cap).astype(jnp.int32) for cap in caps))
        fgram, fg = jax.lax.switch(branch, [
            lambda: (jnp.zeros_like(memory.fgram), jnp.zeros((2, m1), sdt)),
            *[functools.partial(_updated, memory, free, gm, g, wg, stored, count, cap) for cap in caps],
            lambda: full(memory, free, g)])
    both = _memory.valid(memory)[:, None] & _memory.valid(memory)[None, :]
    fg = where(_memory.valid(memory), fg, 0)
    fgram = where(both, fgram, 0)
    last = memory.last.at[:2].set(fg)
    return fgram, fg, memory._replace(free=free, fgram=fgram, last=last)
