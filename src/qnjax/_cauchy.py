"""The compact L-BFGS matrix B and the generalized Cauchy point (L-BFGS-B, step 1).

Compact B (Byrd, Lu, Nocedal & Zhu 1995, "BLNZ", eqs. 3.2-3.4; Byrd, Nocedal &
Schnabel 1994, Theorem 2.3). With the memory's pairs in chronological order,
theta = 1 / gamma (B0 = theta I), D = diag(s_i^T y_i) and L the strictly lower
triangle of S^T Y (L_ij = s_i^T y_j for pair i newer than pair j),

    B = theta I - W M W^T,     W = [Y  theta S],     M = K^-1,
    K = [[-D, L^T], [L, theta S^T S]].

K is inverted by block elimination (scipy's ``formt``): with T = theta S^T S + L D^-1 L^T
(positive definite; its Cholesky factorisation failing clears the memory) and
E = T^-1 L D^-1,  M = [[D^-1 L^T E - D^-1, E^T], [E, T^-1]]. Everything is in the
ring's slot order with chronological order carried by each slot's position
(``_memory.position``): L is masked by "newer than", nothing is permuted, and
empty slots get identity rows in K and zero rows in M.

Generalized Cauchy point (BLNZ Sec. 4, Algorithm CP; N&W Sec. 16.7): the first local
minimiser of the model m(x + z) = g^T z + z^T B z / 2 along the projected path
x(t) = P(x - t g). Variable i leaves the path at its breakpoint
t_i = (x_i - u_i) / g_i (g_i < 0), (x_i - l_i) / g_i (g_i > 0), inf (g_i = 0); those
with t_i = 0 never move. Sorting the finite positive breakpoints t_(0) <= t_(1) <= ...,
segment j runs over [t_(j-1), t_(j)] (t_(-1) = 0) with direction d^j (-g_i for the
variables still moving). Algorithm CP updates p = W^T d^j, c = W^T (x(t_(j-1)) - x),
f' and f'' one breakpoint at a time; they are prefix sums, so every segment is
evaluated at once (no loop over breakpoints: one sort, then cumulative sums):

    G_j  = sum_{i moving in j} g_i^2,      p_j = -sum_{i moving in j} g_i w_i,
    c_j  = t_(j-1) p_j - sum_{k<j} t_(k) g_(k) w_(k),
    f'_j = -G_j + theta t_(j-1) G_j - p_j^T M c_j,      f''_j = theta G_j - p_j^T M p_j,

(w_i the i-th row of W; f'_j, f''_j the model's slope and curvature along d^j at the
segment's start: g^T d^j + d^j^T B z and d^j^T B d^j, with d^j^T z = t_(j-1) G_j). The
Cauchy point lies in the first segment whose minimiser dt* = -f'_j / f''_j comes
before its end (BLNZ's test dt_min < dt), at t_c = t_(j-1) + max(dt*, 0); there
x^c_i = the bound for every variable with t_i <= t_c, x_i - t_c g_i for the other
moving ones, and c = c_j + max(dt*, 0) p_j = W^T (x^c - x), which the subspace step
reuses. This is Algorithm CP's arithmetic regrouped, equal to it in exact arithmetic;
the sums run backwards from the end of the path (moving sets shrink), so no
difference of large sums cancels. The breakpoints need one order over all the leaves:
it is built here, in the scalar dtype (sorted by ``_argsort``), and the result is
returned per leaf.

At large n (SORT_LIMIT) nothing of size (n, 2m) is formed: the Cauchy point is first
looked for before the smallest breakpoint (``_first_segment``, per leaf), then among the
smallest breakpoints (``_smallest``; the variables not listed enter as one tail), with
no pair stored it has a closed form (``_no_pairs``), and only beyond these are all
breakpoints sorted and walked BLOCK at a time (``_blocked``: the prefix sums within a
block, Algorithm CP's forward updates between blocks; at most n / BLOCK trips). Only
``_smallest`` and ``_blocked`` put the leaves in one order (a sharded leaf gathered
across devices; scoped ``GATHERED``); once the active set settles the Cauchy point lies
before the first breakpoint as a rule, and such an iteration gathers nothing. Every path
also returns W^T (M g), M the variables moving along the path, for the subspace step's
products (``_reduced``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _argsort, _memory
from ._tree import matmul as mm


def middle(memory: _memory.Memory):
    """(M, K, theta, ok): the compact form's middle matrix M = K^-1 and K, (2(m+1))^2 in
    slot order ([Y block, S block]), theta = 1 / gamma, and whether T's Cholesky
    factorisation succeeded (M finite)."""
    g = memory.gram
    m1 = g.d.shape[-1]
    sdt = memory.dtype
    valid = _memory.valid(memory)
    pos = _memory.position(memory)
    both = valid[:, None] & valid[None, :]
    eye = jnp.eye(m1, dtype=sdt)
    theta = 1 / memory.gamma
    dvec = jnp.where(valid, g.d, 1)
    low = jnp.where(both & (pos[:, None] > pos[None, :]), g.sy, 0)  # L
    ss = jnp.where(both, g.ss, 0)
    low_d = low / dvec[None, :]  # L D^-1
    t = jnp.where(both, theta * ss + mm(low_d, low.T), eye)
    chol = jnp.linalg.cholesky(t)
    t_inv = jax.scipy.linalg.cho_solve((chol, True), eye)
    e = mm(t_inv, low_d)
    m11 = mm(low_d.T, e) - jnp.diag(1 / dvec)
    mid = jnp.block([[m11, e.T], [e, t_inv]])
    both2 = jnp.tile(both, (2, 2))
    mid = jnp.where(both2, mid, 0)
    k = jnp.block([[-jnp.diag(dvec), low.T], [low, jnp.where(both, theta * ss, eye)]])
    ok = jnp.all(jnp.isfinite(mid))
    return jnp.where(ok, mid, 0), k, theta, ok


def w_rows(memory: _memory.Memory, theta, sdt):
    """W = [Y  theta S] as an (n, 2(m+1)) array over all leaves (slot order, zero columns
    where no pair), in ``sdt``: the temporary that puts every variable in one order."""
    valid = jnp.concatenate([_memory.valid(memory)] * 2)
    m1 = _memory.size(memory) + 1
    blocks = []
    for sb, yb in zip(jax.tree_util.tree_leaves(memory.s), jax.tree_util.tree_leaves(memory.y)):
        flat = lambda b: b.reshape(m1, -1).astype(sdt).T  # noqa: E731
        blocks.append(jnp.concatenate([flat(yb), theta * flat(sb)], axis=1))
    return jnp.where(valid[None, :], jnp.concatenate(blocks, axis=0), 0)


# Beyond this many variables the breakpoints are not all sorted: the Cauchy point is looked
# for before the second breakpoint (once the active set settles it is, as a rule), then among
# the smallest CAPS[1] (``lax.top_k`` on float32 keys, one pass), then CAPS[2]; only then are
# all sorted (``lax.cond``; with no pair stored the Cauchy point has a closed form).
SORT_LIMIT = 4096
CAPS = (1, 1024, 16384)
BLOCK = 16384
# The name scope of what puts the variables of every leaf in one order (a sharded leaf
# gathered): only in ``lax.cond`` branches that a settled iteration does not take.
GATHERED = "gathered"
# Walks longer than this sum by halving (``jax.lax.associative_scan``): XLA:CPU runs
# ``jnp.cumsum`` as a windowed reduction, 3-4x slower at 1,000-4,000 breakpoints.
SCAN_FROM = 16


def _walk(ts, wt, w, p_tail, g_tail, theta, mid, complete, sdt, t0=0.0, q0=0.0):
    """(found, t_c, c) from breakpoints ``ts`` in increasing order (inf: none), ``wt`` = g_i
    of the moving variables among them (0 otherwise), their rows ``w`` of W, and the
    moving variables not among them (p_tail = -sum g_i w_i, g_tail = sum g_i^2).
    ``complete``: ``ts`` holds every finite breakpoint (else the segment after the
    last one has no known end and is not searched: ``found`` says whether t_c was).
    ``t0``, ``q0``: the path walked before ``ts`` (its end, and sum t_(k) g_(k) w_(k))."""
    k, m = w.shape
    is_bp = jnp.isfinite(ts)
    tb = jnp.where(is_bp, ts, 0)
    a = wt[:, None] * w  # g_i w_i of each moving variable
    # One prefix sum over [a backwards, g_i^2 backwards, t_i a forwards]: p and G are
    # sums from the end (sum_{k >= j} + tail, j = 0..k), q from the start (SCAN_FROM).
    scan = functools.partial(jax.lax.associative_scan, jnp.add) if k > SCAN_FROM else jnp.cumsum
    sums = scan(jnp.concatenate([a[::-1], (wt * wt)[::-1, None], tb[:, None] * a], axis=1), axis=0)
    zero = jnp.zeros((1, m + 1), sdt)
    back = jnp.concatenate([sums[::-1, :m + 1], zero])
    p = p_tail - back[:, :m]
    big_g = back[:, m] + g_tail
    q = jnp.concatenate([zero[:, :m], sums[:, m + 1:]]) + q0
    t_prev = jnp.concatenate([jnp.full((1,), t0, sdt), tb])
    t_end = jnp.concatenate([ts, jnp.full((1,), jnp.inf, sdt)])
    c = t_prev[:, None] * p - q
    pm = mm(p, mid)
    fp = -big_g + theta * t_prev * big_g - jnp.sum(pm * c, axis=1)
    fpp = theta * big_g - jnp.sum(pm * p, axis=1)
    dtm = jnp.where(fpp > 0, -fp / jnp.where(fpp > 0, fpp, 1), jnp.where(fp < 0, jnp.inf, 0))
    j = jnp.arange(k + 1)
    last = jnp.sum(is_bp)  # the segment after every breakpoint listed
    stop = (j <= last) & ((dtm < t_end - t_prev) | (big_g <= 0) | ((j == last) & complete))
    stop = stop & ((j < last) | complete)
    js = jnp.argmax(stop)
    step = jnp.clip(dtm[js], 0, t_end[js] - t_prev[js])
    step = jnp.where(jnp.isfinite(step), step, 0)
    return jnp.any(stop), t_prev[js] + step, c[js] + step * p[js]


def _blocked(memory, theta, mid, key, gm, wg, sdt):
    """(t_c, c) with every breakpoint sorted once, walked BLOCK at a time (Algorithm CP's
    forward updates of p, c, G between blocks) until the segment holding t_c: no
    (n, 2(m + 1)) array is formed. ``gm`` = moving g, ``wg`` = W^T gm."""
    n = key.shape[0]
    count = -(-n // BLOCK)
    order = _argsort.argsort(key)
    order = jnp.concatenate([order, jnp.full((count * BLOCK - n,), n, order.dtype)])  # n: no variable
    keys = jnp.concatenate([key, jnp.full((1,), jnp.inf, sdt)])
    gm = jnp.concatenate([gm, jnp.zeros((1,), sdt)])
    finite = jnp.sum(jnp.isfinite(key))

    def body(carry):
        b, t0, q0, p_after, g_after, _, _, _ = carry
        idx = jax.lax.dynamic_slice_in_dim(order, b * BLOCK, BLOCK)
        ts, wt, w = keys[idx], gm[idx], rows(memory, theta, idx, sdt)
        a = wt[:, None] * w
        p_after, g_after = p_after + jnp.sum(a, axis=0), g_after - jnp.sum(wt * wt)
        found, tc, c = _walk(ts, wt, w, p_after, g_after, theta, mid, (b + 1) * BLOCK >= finite, sdt, t0, q0)
        is_bp = jnp.isfinite(ts)
        q0 = q0 + jnp.sum(jnp.where(is_bp, ts, 0)[:, None] * a, axis=0)
        return b + 1, jnp.max(jnp.where(is_bp, ts, t0)), q0, p_after, g_after, found, tc, c

    zero = jnp.zeros((mid.shape[0],), sdt)
    start = (jnp.zeros((), jnp.int32), jnp.zeros((), sdt), zero, -wg, jnp.sum(gm * gm), jnp.asarray(False),
             jnp.zeros((), sdt), zero)
    out = jax.lax.while_loop(lambda c: ~c[5] & (c[0] < count), body, start)
    return out[6], out[7]


def rows(memory, theta, idx, sdt):
    """Rows ``idx`` (flat indices over all leaves) of W = [Y  theta S], gathered leaf by leaf."""
    m1 = _memory.size(memory) + 1
    out, off = jnp.zeros((idx.shape[0], 2 * m1), sdt), 0
    for sb, yb in zip(jax.tree_util.tree_leaves(memory.s), jax.tree_util.tree_leaves(memory.y)):
        size = sb[0].size
        local = jnp.clip(idx - off, 0, max(size - 1, 0))
        # (indexed along the leaf's own axes: a flattening reshape would gather a sharded leaf)
        at = (slice(None),) + tuple(jnp.unravel_index(local, sb.shape[1:]))
        ys, ss = (b[at].astype(sdt).T for b in (yb, sb))
        inside = ((idx >= off) & (idx < off + size))[:, None]
        out = out + jnp.where(inside, jnp.concatenate([ys, theta * ss], axis=1), 0)
        off += size
    return jnp.where(jnp.concatenate([_memory.valid(memory)] * 2)[None, :], out, 0)


def _no_pairs(keys, gms, theta, mid, sdt):
    """(t_c, c = 0) with no pair stored (W = 0): every segment's model is G_j (theta t - 1) in
    slope, so the Cauchy point is at t = 1 / theta unless the path ends first, at the
    last breakpoint of a variable with g_i != 0 (0 if none moves). Per leaf."""
    last = functools.reduce(jnp.maximum, [jnp.max(jnp.where(gm != 0, key, 0), initial=0) for key, gm in zip(keys, gms)],
                            jnp.zeros((), sdt))
    return jnp.minimum(1 / theta, last).astype(sdt), jnp.zeros((mid.shape[0],), sdt)


def _first_segment(memory, theta, mid, keys, gms, wg, sdt):
    """(t_c, c) in the segment before the smallest breakpoint, along which every moving
    variable moves (CAPS[0]: no index needed, and per leaf: an ``argmin`` over n is a slow
    reduction on CPU, and a sharded leaf is not gathered), else from ``_smallest``'s
    levels, which put the leaves in one order (under ``GATHERED``)."""
    t1 = functools.reduce(jnp.minimum, [jnp.min(key, initial=jnp.inf) for key in keys], jnp.full((), jnp.inf, sdt))
    moving = sum((jnp.sum(gm * gm) for gm in gms), jnp.zeros((), sdt))
    found, tc, c_star = _walk(t1[None], jnp.zeros((1,), sdt), jnp.zeros((1, mid.shape[0]), sdt), -wg,
                              moving, theta, mid, ~jnp.isfinite(t1), sdt)

    def later():
        with jax.named_scope(GATHERED):
            key, gm = _cat(keys), _cat(gms)
            if CAPS[1] < key.shape[0]:
                return _smallest(memory, theta, mid, key, gm, wg, sdt, 1)
            return _blocked(memory, theta, mid, key, gm, wg, sdt)

    return jax.lax.cond(found, lambda: (tc, c_star), later)


def _smallest(memory, theta, mid, key, gm, wg, sdt, level):
    """(t_c, c) from the CAPS[level] smallest breakpoints (level >= 1), else the next level,
    else all.

    They are selected on float32 keys (``lax.top_k`` is one pass for float32 only, and
    only while no slice of its outputs is taken): those whose exact key is at most the
    smallest key not selected are certainly the smallest (rounding to float32 may tie
    others), so the other ones selected join the variables not listed, whose p enters as
    wg minus the listed ones' (Algorithm CP's forward update)."""
    n, cap = key.shape[0], CAPS[level]
    if level + 1 < len(CAPS) and CAPS[level + 1] < n:
        later = lambda: _smallest(memory, theta, mid, key, gm, wg, sdt, level + 1)  # noqa: E731
    else:
        later = lambda: _blocked(memory, theta, mid, key, gm, wg, sdt)  # noqa: E731
    idx = jax.lax.top_k(-key.astype(jnp.float32), cap)[1]
    beyond = jnp.min(jnp.where(jnp.zeros(n, bool).at[idx].set(True), jnp.inf, key))
    listed = key[idx] <= beyond
    order = _argsort.argsort(jnp.where(listed, key[idx], jnp.inf))
    idx, listed = idx[order], listed[order]
    ts = jnp.where(listed, key[idx], jnp.inf)
    unlisted = ~jnp.zeros(n, bool).at[idx].set(listed)
    wt = jnp.where(listed, gm[idx], 0)
    w = rows(memory, theta, idx, sdt)
    complete = jnp.sum(jnp.isfinite(key)) <= jnp.sum(listed)
    found, tc, c_star = _walk(ts, wt, w, -(wg - jnp.sum(wt[:, None] * w, axis=0)),
                              jnp.sum(jnp.where(unlisted, gm * gm, 0)), theta, mid, complete, sdt)
    return jax.lax.cond(found, lambda: (tc, c_star), later)


def _cat(leaves):
    """Per-leaf arrays as one vector (the global order of the variables)."""
    return jnp.concatenate([a.reshape(-1) for a in leaves])


def cauchy_point(memory: _memory.Memory, mid, theta, x, g, box, sdt):
    """(x^c, c, free, t_c, W^T (moving g), moving g): the generalized Cauchy point (leaves in
    x's dtypes; bound-hitting variables exactly on their bound), c = W^T (x^c - x), which
    variables are strictly between their bounds at x^c (bool pytree), where it is on the
    path, the products of W with the moving variables' gradient (None up to SORT_LIMIT
    variables) and that gradient (a pytree like x in ``sdt``, zero where a variable does
    not move).

    Beyond SORT_LIMIT variables everything outside ``_smallest``'s levels is per leaf, so
    an iteration whose Cauchy point lies before the first breakpoint (as a rule once the
    active set settles) gathers no sharded leaf: only those levels put the variables in
    one order (scoped ``GATHERED``, which the sharding test looks for)."""
    treedef = jax.tree_util.tree_structure(x)
    sides = [jax.tree_util.tree_leaves(side) for side in (x, g, box.lower, box.upper)]
    keys, gms = [], []
    for xl, gl, lo, hi in zip(*sides):
        xs, gs, lo, hi = (a.astype(sdt) for a in (xl, gl, lo, hi))
        gsafe = jnp.where(gs != 0, gs, 1)
        tb = jnp.where(gs < 0, (xs - hi) / gsafe, jnp.where(gs > 0, (xs - lo) / gsafe, jnp.inf))
        # A variable moves (t_i > 0) while the bound it heads for is not reached; t_i = inf: it
        # never stops. Only the key and the moving variables' gradient gm are kept (no mask or
        # t_i of their own: each would be one more pass at large n); a variable with g_i = 0
        # moves at speed 0, which everything below treats as not moving.
        moving = ((gs < 0) & (xs < hi)) | ((gs > 0) & (xs > lo))
        keys.append(jnp.where(moving, tb, jnp.inf))
        gms.append(jnp.where(moving, gs, 0))
    n = sum(key.size for key in keys)
    zero_p, zero_g = jnp.zeros((mid.shape[0],), sdt), jnp.zeros((), sdt)
    wg = None  # W^T (moving g), at large n (the subspace step's products start from it)
    gm = jax.tree_util.tree_unflatten(treedef, gms)
    if n <= SORT_LIMIT:
        key, gmf = _cat(keys), _cat(gms)
        order = _argsort.argsort(key)
        tc, c_star = _walk(key[order], gmf[order], w_rows(memory, theta, sdt)[order], zero_p, zero_g, theta, mid,
                           True, sdt)[1:]
    else:
        s_t, y_t = _memory.products(memory, gm)
        wg = jnp.concatenate([y_t, theta * s_t])
        tc, c_star = jax.lax.cond(memory.count == 0, lambda: _no_pairs(keys, gms, theta, mid, sdt),
                                  lambda: _first_segment(memory, theta, mid, keys, gms, wg, sdt))
    xc = []
    for (xl, gl, lo, hi), key, gml in zip(zip(*sides), keys, gms):
        lo, hi, gs = lo.astype(sdt), hi.astype(sdt), gl.astype(sdt)
        # (x is in the box)
        point = jnp.where(key <= tc, jnp.where(gs < 0, hi, lo), jnp.clip(xl.astype(sdt) - tc * gml, lo, hi))
        xc.append(jnp.broadcast_to(point, xl.shape).astype(xl.dtype))
    xc = jax.tree_util.tree_unflatten(treedef, xc)
    free = jax.tree.map(lambda v, lo, hi: (v > lo) & (v < hi), xc, box.lower, box.upper)
    return xc, c_star, free, tc, wg, gm
