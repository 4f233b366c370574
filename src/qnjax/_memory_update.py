"""Writing a curvature pair into the memory (``_memory``): the tentative pair, the
curvature guard and the vector-free updates of the small matrices.

Slot ``head`` is free and holds the *tentative* pair of the current iteration, written
one of two ways:

* whole (``minimize``: q is the gradient, and the line search's last evaluation gives
  q_{k+1}): after the search ``record_step`` writes s[head] = u_k and y[head] =
  q_{k+1} - q_k with the pair's products (<s, y> and <s, s> from the search's slopes
  and <d, d>, <y, y> in one pass over the two gradients), and the next ``push(q=None)``
  reads and writes no row;
* by differences (the Optax face: q is given at each call, and may be any transformed
  gradient): ``push`` left q_k in y[head], ``record_step`` writes s[head] = u_k, and the
  next ``push`` turns it into y[head] = q_{k+1} - q_k in place, reads s back for the
  products, and leaves q_{k+1} in the next free slot.

Either way the pair is then stored (``push``: head moves on, the oldest pair's slot
becomes free when m are stored) if it passes the curvature guard

    <s, y> > eps ||s|| ||y||      (eps of the scalar dtype)

with every product finite: the angle between s and y is measurably below 90
degrees, which keeps H positive definite (N&W Sec. 6.1) and is invariant to
scaling f or x. A rejected pair stays in the free slot and is overwritten.
Writes are dynamic update slices of the loop-carried buffers (in place), the small
matrices' included: one row or column each (under ``jax.vmap`` a select over a whole
matrix would move every member's (m + 1)^2 entries).

Vector-free bookkeeping (Chen, Wang, Zhou & Gao, NeurIPS 2014): one pass computes
a = S^T q, b = Y^T q for the direction, and the new pair's column of R and of YY comes,
one iteration later, from what that pass gives anyway: S^T y = a' - a, Y^T y = b' - b
with a' = S^T q_{k+1} (``pending``, filled by :func:`complete`). The new pair's own
<s, y>, <y, y>, <s, s> come with it (above). So an iteration reads S and Y twice: once
for a, b and once for the weighted sum. L-BFGS-B's steps are not multiples of H q: its
pairs' rows of SY and SS come from S^T s, Y^T s of their own (``push``'s ``direct`` and
``kept``). Small values are packed into few arrays and updated with masks (each
loop-carried value and each scatter costs compiled kernels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _tree, _xla
from ._memory import CS, A, B, Memory, products, row, size, valid, write
from ._memory import newest as _newest
from ._products import matvec


def pair(u, grad, new_grad, t, slope0, slope, dd, moved, sdt, along_ray=True):
    """The whole pair of a step u = t d for :func:`record_step`: y = g_new - g (zero where
    x stays: ``moved`` False, g_new = g) and the products <s, y>, <y, y>, <s, s>. <y, y> is
    one pass over the two gradients; <s, y> = t (phi'(t) - phi'(0)) and <s, s> = t^2 <d, d>
    come from the search's slopes and the direction's norm (vector-free: no pass over s),
    where every leaf is at least as wide as the scalar dtype and the step went along the
    ray x + t d (``along_ray``, a bool or a traced one: not where the projected method's
    arc held variables on a bound, ``_projected``); else, and for narrower leaves (rounded
    when stored), the products are taken of the vectors."""
    y = jax.tree.map(lambda a, b: a - b, new_grad, grad)
    wide = all(jnp.finfo(_tree.dtype_of(leaf)).bits >= jnp.finfo(sdt).bits for leaf in jax.tree_util.tree_leaves(u))

    def from_slopes():  # (of g - g_new: XLA would write y out first to share it between the sum and the store)
        minus_y = jax.tree.map(lambda a, b: b - a, new_grad, grad)
        yy = _tree.inner(minus_y, minus_y, sdt)
        return jnp.stack([_xla.where(moved, t * (slope - slope0), 0), yy, _xla.where(moved, t * t * dd, 0)])

    def from_vectors():
        return jnp.stack(_tree.inners([(u, y), (y, y), (u, u)], sdt))

    if not wide:
        prods = from_vectors()
    elif along_ray is True:
        prods = from_slopes()
    else:
        prods = jax.lax.cond(along_ray, from_slopes, from_vectors)
    return dict(y=y, prods=prods.astype(sdt))


def complete(memory: Memory, a, b) -> Memory:
    """Fill the newest pair's column of R^-1 and its column and row of YY from a = S^T q,
    b = Y^T q at the point after it (slot order, masked): S^T y = a - a_old, Y^T y =
    b - b_old (a memory without the compact direction's matrices is returned as it is)."""
    g = memory.gram
    if g.ri is None:
        return memory
    m = size(memory)
    newest = _newest(memory)
    i = jnp.arange(m + 1, dtype=jnp.int32)
    fill = memory.flags[1] & valid(memory) & (i != newest)
    r = _xla.where(fill, a - memory.last[A], 0)
    yv = _xla.where(fill, b - memory.last[B], 0)
    ri = -matvec(g.ri, r) * g.ri[newest, newest]
    # (each first write depends on its matrix's read: XLA orders the read first, in place)
    gram = g._replace(ri=_set_line(g.ri, newest, 1, ri, fill),
                      yy=_set_line(_set_line(g.yy, newest, 1, yv, fill), newest, 0, yv, fill))
    return memory._replace(gram=gram, flags=memory.flags & jnp.array([True, False, True]))


def _set_line(mat, i, axis, value, where):
    """``mat`` (m + 1, m + 1) with row (``axis`` 0) or column (``axis`` 1) i set to ``value``
    where ``where`` holds: one line read and written in place (a gather and a scatter
    under vmap), not a select over the matrix, which under vmap moved every member's
    (m + 1)^2 entries. A matrix's first write in an iteration must depend on what is read
    of it before, so that XLA orders those reads first and updates the loop-carried
    matrix in place instead of copying it."""
    old = jax.lax.dynamic_index_in_dim(mat, i, axis=axis, keepdims=False)
    return jax.lax.dynamic_update_index_in_dim(mat, _xla.where(where, value, old), i, axis)


def record(memory: Memory, last) -> Memory:
    """Keep the direction's data for the next ``push``: ``last`` = [a, b, c_s, c_y] (q is
    in the free slot already, and the update is recorded by :func:`record_step`)."""
    return memory._replace(last=last)


def _keep(active, new, old):
    """The row to write: ``new``, or ``old`` where ``active`` is False (a finished member of
    a batch: its write changes nothing and costs a row, not a select over the buffer)."""
    return new if active is None else _tree.select(active, _tree.cast_like(new, old), old)


def record_step(memory: Memory, u, step, active=None, y=None, prods=None) -> Memory:
    """The update u = step * H q taken after the line search goes to the free slot of s
    (not where ``active`` is False: there the buffer keeps its row). With ``y`` (the
    change of q over the step, known when q is the gradient the search evaluated at the
    new point: ``minimize``) the pair is written whole, y to the free slot of y, with
    its products ``prods`` = (<s, y>, <y, y>, <s, s>): the next :func:`push` (with
    ``q=None``) then reads neither row and writes nothing to the buffers."""
    sdt = memory.scalars.dtype
    step = jnp.asarray(step).astype(sdt)
    h = memory.head
    pairs = write(memory.pairs, h, _keep(active, u, row(memory.pairs, h)))
    products = memory.scalars[2:]
    if y is not None:
        y_row = size(memory) + 1 + h
        # (the row a finished member keeps is read from the buffer just written, not from the
        # one passed in: under jax.vmap both writes are scatters, and a read of the old buffer
        # after the first made XLA copy the whole loop-carried buffer twice an iteration)
        pairs = write(pairs, y_row, _keep(active, y, row(pairs, y_row)))
        products = jnp.asarray(prods).astype(sdt)
    return memory._replace(
        pairs=pairs,
        scalars=jnp.concatenate([jnp.stack([memory.gamma, step]), products]),
        flags=memory.flags | jnp.array([True, False, False]),
    )


def after_write(memory: Memory, value):
    """``value`` as it is, computed only once ``memory``'s buffers are written (it reads one
    element of each: ``_xla.once``). L-BFGS-B's s = P(x + t d) - x reads x, and x's new value
    is written over x in place: formed from a step that follows the write of s, it needs no
    copy of x (XLA drops an optimization barrier's order: it copied x, 4 MB an iteration at
    10^6 float32 variables)."""
    never = memory.count < 0
    for buf in jax.tree_util.tree_leaves(memory.pairs):
        if buf.size:
            never = never & jnp.isnan(buf[(0,) * buf.ndim])  # (no reshape: a sharded leaf is not gathered)
    return _xla.once(never, value)


def guard(sy, yy, ss):
    """The curvature guard (module docstring) on a pair's <s, y>, <y, y>, <s, s> (scalar dtype):
    <s, y> > eps ||s|| ||y||, every product finite, and 1 / <s, y>, <s, y> / <y, y> too."""
    eps = jnp.finfo(sy.dtype).eps
    ok = (sy > eps * jnp.sqrt(yy * ss)) & jnp.isfinite(sy) & jnp.isfinite(yy) & jnp.isfinite(ss)
    return ok & jnp.isfinite(1 / sy) & jnp.isfinite(sy / yy)


def push(memory: Memory, q, scale_init: bool = True, direct: bool = False, kept: bool = False, active=None):
    """Turn the tentative pair into (s, y) with y = q - q_old and store it if it passes
    the curvature guard; q goes to the free slot of y, the next tentative pair's start.
    With ``q`` None the pair was recorded whole (:func:`record_step` with ``y``): only the
    guard and the small matrices are updated, from its recorded products.
    The new pair's row of L-BFGS-B's SY and SS needs S^T s and Y^T s: with ``direct`` from
    a pass over the memory; with ``kept`` from [S^T d, Y^T d] of the direction d (s =
    step_taken * d), which ``_subspace`` keeps in ``last[CS:]`` without a pass. The compact
    direction's YY and R^-1 get the pair's diagonal entries and R^-1 its (zero) row; their
    column waits for :func:`complete`. Returns the new memory and whether the pair was
    stored. Where ``active`` is False (a finished member of a batch) nothing is stored and
    the buffers and small matrices keep every entry (``_loop``)."""
    m = size(memory)
    sdt = memory.dtype
    h = memory.head
    g = memory.gram
    y_row = m + 1  # Y's slot i is row y_row + i of ``pairs``
    s = row(memory.pairs, h) if q is not None or direct else None
    if q is None:
        prods = memory.scalars[2:]
    else:
        q_old = row(memory.pairs, y_row + h)
        y = jax.tree.map(lambda old, new: new.astype(old.dtype) - old, q_old, q)
        prods = _tree.inners([(s, y), (y, y), (s, s)], sdt)
    if g.sy is not None:
        if kept:  # (record_step keeps -t for a step t d: L-BFGS-B's scale is 1)
            st_s, yt_s = _xla.where(valid(memory), -memory.scalars[1] * memory.last[CS:], 0)
        elif direct:
            st_s, yt_s = products(memory, s)
        else:
            raise ValueError("L-BFGS-B's pairs need direct=True or kept=True (S^T s, Y^T s)")
    pairs = memory.pairs
    if q is not None:
        # The row written depends on the products (adding 0 * <s, y>: a rejected pair's row is
        # overwritten below), so every read of the old buffer comes before the write and XLA
        # updates the loop-carried buffer in place instead of copying it.
        after = jnp.zeros((), sdt) * (prods[0] + (jnp.sum(yt_s) if direct and g.sy is not None else 0))
        pairs = write(pairs, y_row + h, jax.tree.map(lambda new: new + after.astype(new.dtype), y))
    sy, yy, ss = prods[0], prods[1], prods[2]
    store = memory.flags[0] & guard(sy, yy, ss) & (True if active is None else active)
    store = _xla.once(memory.count < 0, store)  # (read by every write below; count >= 0)
    # Divisions by what a stored pair has (a rejected one's may be zero): the values are
    # the same, and a derivative taken through this update (``_unrolled``) sees no 1 / 0.
    sy_ok, yy_ok = _xla.where(store, sy, 1), _xla.where(store, yy, 1)

    at = jnp.arange(m + 1, dtype=jnp.int32) == h
    gram = g._replace(d=_xla.where(store & at, sy, g.d))
    if g.ri is not None:  # R^-1's and YY's row h: zero but the diagonal (complete fills YY's)
        gram = gram._replace(ri=_set_line(g.ri, h, 0, _xla.where(at, 1 / sy_ok, 0), store),
                             yy=_set_line(g.yy, h, 0, _xla.where(at, yy, 0), store))
    if g.sy is not None:  # row h of SY: <s, y_j> (L-BFGS-B reads SY's lower triangle); SS symmetric
        ss_line = _xla.where(at, ss, st_s)
        gram = gram._replace(sy=_set_line(g.sy, h, 0, _xla.where(at, sy, yt_s), store),
                             ss=_set_line(_set_line(g.ss, h, 0, ss_line, store), h, 1, ss_line, store))

    gamma = sy_ok / yy_ok if scale_init else memory.gamma  # (H0 = I: as init set it, ``_scale.unit_h0``)
    new_head = _xla.where(store, (h + 1) % (m + 1), h)
    if q is not None:  # q: the next tentative pair's start
        pairs = write(pairs, y_row + new_head, _keep(active, q, q_old))
    stored = memory._replace(
        pairs=pairs,
        gram=gram,
        scalars=jnp.concatenate([jnp.stack([_xla.where(store, gamma, memory.gamma), memory.scalars[1]]),
                                 memory.scalars[2:]]),
        index=jnp.stack([_xla.where(store, jnp.minimum(memory.count + 1, m), memory.count), new_head,
                         memory.index[2]]).astype(jnp.int32),
        flags=jnp.stack([jnp.asarray(False), _xla.where(store, True, memory.flags[1]), memory.flags[2] | store]),
    )
    return stored, store
