"""Walking the generalized Cauchy point's path, segment by segment (L-BFGS-B, step 1).

Along the projected path x(t) = P(x - t g) (``_cauchy``) variable i stops at its
breakpoint t_i; with the finite positive breakpoints sorted, t_(0) <= t_(1) <= ...,
segment j runs over [t_(j-1), t_(j)] (t_(-1) = 0) with direction d^j (-g_i for the
variables still moving). Algorithm CP (Byrd, Lu, Nocedal & Zhu 1995, "BLNZ", Sec. 4;
N&W Sec. 16.7) updates p = W^T d^j, c = W^T (x(t_(j-1)) - x), f' and f'' one breakpoint
at a time; they are prefix sums, so every segment is evaluated at once (``walk``: no loop
over breakpoints, one prefix sum):

    G_j  = sum_{i moving in j} g_i^2,      p_j = -sum_{i moving in j} g_i w_i,
    c_j  = t_(j-1) p_j - sum_{k<j} t_(k) g_(k) w_(k),
    f'_j = -G_j + theta t_(j-1) G_j - p_j^T M c_j,      f''_j = theta G_j - p_j^T M p_j,

(w_i the i-th row of W = [Y  theta S], M the compact form's middle matrix; f'_j, f''_j
the model's slope and curvature along d^j at the segment's start: g^T d^j + d^j^T B z
and d^j^T B d^j, with d^j^T z = t_(j-1) G_j). The Cauchy point lies in the first segment
whose minimiser dt* = -f'_j / f''_j comes before its end (BLNZ's test dt_min < dt), at
t_c = t_(j-1) + max(dt*, 0), with c = c_j + max(dt*, 0) p_j = W^T (x^c - x), which the
subspace step reuses. This is Algorithm CP's arithmetic regrouped, equal to it in exact
arithmetic; the sums run backwards from the end of the path (moving sets shrink), so no
difference of large sums cancels.

Which breakpoints are walked: first only the segment before the smallest one
(``first_segment``, per leaf: every moving variable moves along it), where the Cauchy
point lies once the active set settles, as a rule; with no pair stored it has a closed
form (``no_pairs``). Beyond, at large n, the CAPS[1] smallest breakpoints (``lax.top_k``
on float32 keys, one pass; the variables not listed enter as one tail), then CAPS[2],
and only then all of them, sorted once and walked BLOCK at a time (``_blocked``: the
prefix sums within a block, Algorithm CP's forward updates between blocks; at most
n / BLOCK trips; BLOCK_ELSEWHERE off a CPU): nothing of size (n, 2m) is formed. A trip
takes the prefix sums only where the slope may reach 0 within its block (``_slope_bound``), and
forms the block's rows of W only then (else a product of each half, Y and theta S, gives
its sums and a reduction its row norms). A level is tried only where it may hold t_c (REACH). Only
those levels put the leaves' variables in one order (a sharded leaf gathered across
devices), under the name scope GATHERED. They read every slot's columns of W (those of
slots without a pair are zero): one width, compiled once (docs/performance.md, "Large n").

REACH: a walk that ends before t_c (the segment after its last listed breakpoint not
searched) knows that segment's model exactly; its minimiser, ``reach`` = t_(last) +
max(-f'/f'', 0) (inf where it falls without end), estimates where the path's model stops
falling (as if no variable stopped: one that does lowers the curvature, and may raise the
slope). Where more than REACH_MARGIN times a level's cap of breakpoints lie at or before it,
the level is skipped (the next level, or all sorted, comes at once). Either way t_c is Algorithm
CP's; only the cost changes. In the second iteration of nonnegative least squares at
n = 10^6 (``problems.scalable_bounded``; t_c beyond 500,000 of 750,000 breakpoints) the
first segment's reach lies beyond 500,000 of them, and both levels (about 14 ms of
``lax.top_k`` and their walks, float32) are skipped.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _argsort, _memory, _slope_bound, _xla
from ._tree import matmul as mm
from ._xla import where

CAPS = (1, 1024, 16384)
# A level is skipped where more than REACH_MARGIN times its cap of breakpoints lie at or before
# the reach of the walk before it (REACH): skipping one that would have held t_c costs a sort of
# every breakpoint, trying one that does not a top_k of its cap.
REACH_MARGIN = 4
# Breakpoints per trip of ``_blocked``'s walk on a CPU, and on other platforms, where each
# trip is a dozen kernel launches whatever it holds (``_xla.by_platform``). With 16,384
# on an NVIDIA H200, whole bounded runs at n = 1e7 (``benchmarks/bounded.py``'s problems) spent
# most of their time in the launches of hundreds of trips; see ``_free_gram.CHUNK_ELSEWHERE``.
BLOCK = 16384
BLOCK_ELSEWHERE = 1 << 18
# The name scope of what puts the variables of every leaf in one order (a sharded leaf
# gathered): only in ``lax.cond`` branches that a settled iteration does not take.
GATHERED = "gathered"
# Walks longer than this take their prefix sums by blocks (``prefix_sums``): XLA:CPU runs
# ``jnp.cumsum`` as a windowed reduction, 3-4x slower at 1,000-4,000 breakpoints.
SCAN_FROM = 16
# ``prefix_sums``' block: (16,384 x 45) sums ran in 0.91 ms at 32 as by halving
# (``jax.lax.associative_scan``, 2 log2(k) passes), 1.13 ms at 8 and 16; the bounded solve's
# program is smaller: a first call beyond 4,096 variables took 3.4-3.6 s instead of 3.9-4.0 at
# n = 2 10^4 (Rosenbrock's function in [-2, 0.8]^n), 3.9-4.0 s instead of 4.5-4.6 for nonnegative
# least squares at 10^6 (``problems.scalable_bounded``, float32), iterations as fast.
PREFIX_BLOCK = 32


def prefix_sums(s):
    """The inclusive prefix sums of ``s`` (k, c) down its rows: within each PREFIX_BLOCK rows a
    product with a lower triangle of ones, then the same for the blocks' totals (recursively),
    each block's offset added: a few passes, where summing by halving takes 2 log2(k)."""
    k, c = s.shape
    if k <= PREFIX_BLOCK:
        return mm(jnp.tril(jnp.ones((k, k), s.dtype)), s)
    blocks = jnp.concatenate([s, jnp.zeros((-k % PREFIX_BLOCK, c), s.dtype)]).reshape(-1, PREFIX_BLOCK, c)
    within = jnp.einsum("ij,bjc->bic", jnp.tril(jnp.ones((PREFIX_BLOCK,) * 2, s.dtype)), blocks, precision="highest")
    before = jnp.concatenate([jnp.zeros((1, c), s.dtype), prefix_sums(within[:, -1])[:-1]])
    return (within + before[:, None]).reshape(-1, c)[:k]


def walk(ts, wt, w, p_tail, g_tail, theta, mid, complete, sdt, t0=0.0, q0=0.0):
    """(found, t_c, c, reach) from breakpoints ``ts`` in increasing order (inf: none), ``wt`` = g_i
    of the moving variables among them (0 otherwise), their rows ``w`` of W, and the
    moving variables not among them (p_tail = -sum g_i w_i, g_tail = sum g_i^2).
    ``complete``: ``ts`` holds every finite breakpoint (else the segment after the
    last one has no known end and is not searched: ``found`` says whether t_c was, and
    ``reach`` is where that segment's model, extended, stops falling: REACH).
    ``t0``, ``q0``: the path walked before ``ts`` (its end, and sum t_(k) g_(k) w_(k))."""
    k, m = w.shape
    is_bp = jnp.isfinite(ts)
    tb = where(is_bp, ts, 0)
    a = wt[:, None] * w  # g_i w_i of each moving variable
    # One prefix sum over [a backwards, g_i^2 backwards, t_i a forwards]: p and G are
    # sums from the end (sum_{k >= j} + tail, j = 0..k), q from the start (SCAN_FROM).
    scan = prefix_sums if k > SCAN_FROM else functools.partial(jnp.cumsum, axis=0)
    sums = scan(jnp.concatenate([a[::-1], (wt * wt)[::-1, None], tb[:, None] * a], axis=1))
    zero = jnp.zeros((1, m + 1), sdt)
    back = jnp.concatenate([sums[::-1, :m + 1], zero])
    p = p_tail - back[:, :m]
    big_g = back[:, m] + g_tail
    q = jnp.concatenate([zero[:, :m], sums[:, m + 1:]]) + q0
    t_prev = jnp.concatenate([jnp.full((1,), t0, sdt), tb])
    t_end = jnp.concatenate([ts, jnp.full((1,), jnp.inf, sdt)])
    c = t_prev[:, None] * p - q
    dtm = _model_steps(p, c, big_g, theta, t_prev, mid, sdt)
    j = jnp.arange(k + 1)
    last = jnp.sum(is_bp)  # the segment after every breakpoint listed
    stop = (j <= last) & ((dtm < t_end - t_prev) | (big_g <= 0) | ((j == last) & complete))
    stop = stop & ((j < last) | complete)
    js = jnp.argmax(stop)
    step = jnp.clip(dtm[js], 0, t_end[js] - t_prev[js])
    step = where(jnp.isfinite(step), step, 0)
    return jnp.any(stop), t_prev[js] + step, c[js] + step * p[js], t_prev[last] + jnp.maximum(dtm[last], 0)


def _model_steps(p, c, big_g, theta, t_prev, mid, sdt):
    """Each segment's dt* = -f'_j / f''_j (inf where its model falls without end, 0 where it
    rises) in ``sdt``, computed in ``_xla.small_dtype`` (float64 for float32): with f scaled by
    s, G and p scale as s^2, theta as s and M as 1 / s, so f'' = theta G - p^T M p as s^3. In
    float32 it underflowed (XLA:CPU flushes subnormals to 0): sum i x_i^4 in [-2, 2]^100 from
    x0 = 1 reached f = 4e-21, where f'' came out 0, every Cauchy point went to the path's end
    and each search took 10 evaluations to come back (1,955 in 241 iterations; with f scaled
    by 2^20, 53 in 49)."""
    with jax.enable_x64(True):
        p, c, big_g, theta, t_prev, mid = _xla.widened(sdt, p, c, big_g, theta, t_prev, mid)
        pm = mm(p, mid)
        fp = -big_g + theta * t_prev * big_g - jnp.sum(pm * c, axis=1)
        fpp = theta * big_g - jnp.sum(pm * p, axis=1)
        return where(fpp > 0, -fp / where(fpp > 0, fpp, 1), where(fp < 0, jnp.inf, 0)).astype(sdt)


def _blocked(memory, theta, mid, key, gm, wg, sdt):
    """(t_c, c) with every breakpoint sorted once, walked BLOCK at a time (Algorithm CP's
    forward updates of p, c, G between blocks) until the segment holding t_c: no
    (n, 2(m + 1)) array is formed. ``gm`` = moving g, ``wg`` = W^T gm."""
    order = _argsort.argsort(key)
    walk_in = functools.partial(_walk_blocks, memory, theta, mid, key, gm, wg, sdt, order)
    return _xla.by_platform(key.shape[0], BLOCK, BLOCK_ELSEWHERE, walk_in)


def _walk_blocks(memory, theta, mid, key, gm, wg, sdt, order, block):
    """``_blocked``'s walk, ``block`` breakpoints a trip, in the ``order`` that sorts ``key``;
    a trip whose slope stays negative by ``_slope_bound`` only updates p, c, G (no prefix sum)."""
    n = key.shape[0]
    block = min(block, n)
    count = -(-n // block)
    order = jnp.concatenate([order, jnp.full((count * block - n,), n, order.dtype)])  # n: no variable
    keys = jnp.concatenate([key, jnp.full((1,), jnp.inf, sdt)])
    gm = jnp.concatenate([gm, jnp.zeros((1,), sdt)])
    finite = jnp.sum(jnp.isfinite(key))
    mid_norm = jnp.sqrt(jnp.sum(mid * mid))
    zero = jnp.zeros((mid.shape[0],), sdt)

    def body(carry):
        b, t0, q0, p_before, g_before, _, _, _ = carry
        idx = jax.lax.dynamic_slice_in_dim(order, b * block, block)
        ts, wt = keys[idx], gm[idx]
        is_bp = jnp.isfinite(ts)
        # The block's rows of W, its Y and theta S halves as gathered: its sums sum a_k and
        # sum t_(k) a_k (a_k = g_(k) w_(k)) are a product of each, its row norms a reduction,
        # and the whole rows are formed only in a block that is walked.
        ys, ss = halves(memory, theta, idx, sdt)
        coef = jnp.stack([wt, where(is_bp, ts, 0) * wt])
        sums = jnp.concatenate([mm(coef, ys), mm(coef, ss)], axis=1)
        norms = jnp.sqrt(jnp.sum(ys * ys, axis=1) + jnp.sum(ss * ss, axis=1))
        p_after, g_after = p_before + sums[0], g_before - jnp.sum(wt * wt)
        complete = (b + 1) * block >= finite
        scan = complete | _slope_bound.rises_within(ts, wt, norms, theta, mid, mid_norm, t0, q0, p_before, g_before,
                                                    sdt)
        found, tc, c = jax.lax.cond(
            scan, lambda: walk(ts, wt, jnp.concatenate([ys, ss], axis=1), p_after, g_after, theta, mid, complete,
                               sdt, t0, q0)[:3],
            lambda: (jnp.asarray(False), jnp.zeros((), sdt), zero))
        return b + 1, jnp.max(where(is_bp, ts, t0)), q0 + sums[1], p_after, g_after, found, tc, c

    start = (jnp.zeros((), jnp.int32), jnp.zeros((), sdt), zero, -wg, jnp.sum(gm * gm), jnp.asarray(False),
             jnp.zeros((), sdt), zero)
    out = jax.lax.while_loop(lambda c: ~c[5] & (c[0] < count), body, start)
    return out[6], out[7]


def halves(memory, theta, idx, sdt):
    """(Y, theta S) rows ``idx`` (flat indices over all leaves): two (len(idx), m + 1) arrays
    in ``sdt``, zero in slots without a pair and at indices beyond the variables (gathered
    leaf by leaf)."""
    valid = _memory.valid(memory)[None, :]
    ys = ss = jnp.zeros((idx.shape[0], valid.shape[1]), sdt)
    off = 0
    for sb, yb in zip(jax.tree_util.tree_leaves(memory.s), jax.tree_util.tree_leaves(memory.y)):
        size = sb[0].size
        local = jnp.clip(idx - off, 0, max(size - 1, 0))
        # (indexed along the leaf's own axes: a flattening reshape would gather a sharded leaf)
        at = (slice(None),) + tuple(jnp.unravel_index(local, sb.shape[1:]))
        inside = ((idx >= off) & (idx < off + size))[:, None]
        ys = ys + where(inside, yb[at].astype(sdt).T, 0)
        ss = ss + where(inside, sb[at].astype(sdt).T, 0)
        off += size
    return where(valid, ys, 0), where(valid, theta * ss, 0)


def rows(memory, theta, idx, sdt):
    """Rows ``idx`` (flat indices over all leaves) of W = [Y  theta S]: (len(idx), 2(m + 1))."""
    return jnp.concatenate(halves(memory, theta, idx, sdt), axis=1)


def no_pairs(keys, gms, theta, mid, sdt):
    """(t_c, c = 0) with no pair stored (W = 0): every segment's model is G_j (theta t - 1) in
    slope, so the Cauchy point is at t = 1 / theta unless the path ends first, at the
    last breakpoint of a variable with g_i != 0 (0 if none moves). Per leaf."""
    last = functools.reduce(jnp.maximum, [jnp.max(where(gm != 0, key, 0), initial=0)
                                          for key, gm in zip(keys, gms)], jnp.zeros((), sdt))
    return jnp.minimum(1 / theta, last).astype(sdt), jnp.zeros((mid.shape[0],), sdt)


def first_segment(memory, theta, mid, keys, gms, wg, sdt, later=None):
    """(t_c, c) in the segment before the smallest breakpoint, along which every moving
    variable moves (CAPS[0]: no index needed, and per leaf: an ``argmin`` over n is a slow
    reduction on CPU, and a sharded leaf is not gathered), else from ``later()`` (by
    default ``_smallest``'s levels, which put the leaves in one order under ``GATHERED``)."""
    t1 = functools.reduce(jnp.minimum, [jnp.min(key, initial=jnp.inf) for key in keys], jnp.full((), jnp.inf, sdt))
    moving = sum((jnp.sum(gm * gm) for gm in gms), jnp.zeros((), sdt))
    found, tc, c_star, reach = walk(t1[None], jnp.zeros((1,), sdt), jnp.zeros((1, mid.shape[0]), sdt), -wg,
                                    moving, theta, mid, ~jnp.isfinite(t1), sdt)

    def levels():
        with jax.named_scope(GATHERED):
            return _onward(memory, theta, mid, cat(keys), cat(gms), wg, sdt, reach)

    return jax.lax.cond(found, lambda: (tc, c_star), levels if later is None else later)


def _onward(memory, theta, mid, key, gm, wg, sdt, reach):
    """(t_c, c) beyond the smallest breakpoint: from each level of CAPS (below n) whose cap
    covers the breakpoints up to the ``reach`` of the walk before it (REACH), else from all
    of them sorted (``_blocked``). Each level is one ``lax.cond`` after the other (nothing
    compiled twice)."""
    n = key.shape[0]
    tried = [level for level in range(1, len(CAPS)) if CAPS[level] < n]
    if not tried:
        return _blocked(memory, theta, mid, key, gm, wg, sdt)
    out = (jnp.asarray(False), jnp.zeros((), sdt), jnp.zeros((mid.shape[0],), sdt), reach)
    for level in tried:
        # (the count, a pass over the keys, only where t_c is not found yet)
        worth = jax.lax.cond(out[0], lambda: jnp.asarray(False),
                             lambda out=out, level=level: jnp.sum(key <= out[3]) <= REACH_MARGIN * CAPS[level])
        out = jax.lax.cond(worth, lambda level=level: _smallest(memory, theta, mid, key, gm, wg, sdt, level),
                           lambda out=out: out)
    return jax.lax.cond(out[0], lambda: out[1:3], lambda: _blocked(memory, theta, mid, key, gm, wg, sdt))


def _smallest(memory, theta, mid, key, gm, wg, sdt, level):
    """``walk``'s (found, t_c, c, reach) over the CAPS[level] smallest breakpoints (level >= 1).

    They are selected on float32 keys (``lax.top_k`` is one pass for float32 only, and
    only while no slice of its outputs is taken): those whose exact key is at most the
    smallest key not selected are certainly the smallest (rounding to float32 may tie
    others), so the other ones selected join the variables not listed, whose p enters as
    wg minus the listed ones' (Algorithm CP's forward update)."""
    n, cap = key.shape[0], CAPS[level]
    idx = jax.lax.top_k(-key.astype(jnp.float32), cap)[1]
    beyond = jnp.min(where(jnp.zeros(n, bool).at[idx].set(True), jnp.inf, key))
    listed = key[idx] <= beyond
    order = _argsort.argsort(where(listed, key[idx], jnp.inf))
    idx, listed = idx[order], listed[order]
    ts = where(listed, key[idx], jnp.inf)
    unlisted = ~jnp.zeros(n, bool).at[idx].set(listed)
    wt = where(listed, gm[idx], 0)
    w = rows(memory, theta, idx, sdt)
    complete = jnp.sum(jnp.isfinite(key)) <= jnp.sum(listed)
    return walk(ts, wt, w, -(wg - jnp.sum(wt[:, None] * w, axis=0)), jnp.sum(where(unlisted, gm * gm, 0)), theta,
                mid, complete, sdt)


def cat(leaves):
    """Per-leaf arrays as one vector (the global order of the variables)."""
    return jnp.concatenate([a.reshape(-1) for a in leaves])
