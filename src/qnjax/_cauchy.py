"""The compact L-BFGS matrix B and the generalized Cauchy point (L-BFGS-B, step 1).

Compact B (Byrd, Lu, Nocedal & Zhu 1995, "BLNZ", eqs. 3.2-3.4; Byrd, Nocedal &
Schnabel 1994, Theorem 2.3). With the memory's pairs in chronological order,
theta = 1 / gamma (B0 = theta I), D = diag(s_i^T y_i) and L the strictly lower
triangle of S^T Y (L_ij = s_i^T y_j for pair i newer than pair j),

    B = theta I - W M W^T,     W = [Y  theta S],     M = K^-1,
    K = [[-D, L^T], [L, theta S^T S]].

K is inverted by block elimination (scipy's ``formt``): with T = theta S^T S + L D^-1 L^T
(positive definite; its Cholesky factorisation failing drops pairs, ``_subspace``) and
E = T^-1 L D^-1,  M = [[D^-1 L^T E - D^-1, E^T], [E, T^-1]]. Everything is in the
ring's slot order with chronological order carried by each slot's position
(``_memory.position``): L is masked by "newer than", nothing is permuted, and
empty slots get identity rows in K and zero rows in M.

This small algebra (M, K, and the subspace step's solve) runs in float64 for a float32
memory (``_xla.small_dtype``; under ``jax.enable_x64`` whatever the precision mode, the memory's own
Gram matrices staying float32): T's condition number grows past float32's 1 / eps as
pairs become nearly dependent (a box fit of 8 variables, 5 of them free, holds 10 pairs),
and there T's float32 factorisation failed where T, formed in float64 from the same float32
entries, was positive definite (smallest eigenvalue 2.7e-3 against 9.0e6). On 9,600 random
float32 box least-squares fits (8 variables, columns scaled over four decades, unbatched),
runs reporting success above their minimum went from 33 to 25, and to 16 with the newest
pair kept after such a failure (``_subspace.keeps_newest``).

Generalized Cauchy point (BLNZ Sec. 4, Algorithm CP; N&W Sec. 16.7): the first local
minimiser of the model m(x + z) = g^T z + z^T B z / 2 along the projected path
x(t) = P(x - t g). Variable i leaves the path at its breakpoint
t_i = (x_i - u_i) / g_i (g_i < 0), (x_i - l_i) / g_i (g_i > 0), inf (g_i = 0); those
with t_i = 0 never move. The path's segments between breakpoints are walked by
``_segments`` (Algorithm CP as prefix sums); at t_c, x^c_i is the bound for every
variable with t_i <= t_c and x_i - t_c g_i for the other moving ones. The breakpoints
need one order over all the leaves: where it is built, it is in the scalar dtype (sorted
by ``_argsort``), and the result is returned per leaf.

Up to SORT_LIMIT variables all breakpoints are sorted and walked at once, in an
unbatched solve of more than FIRST_FROM variables only if the Cauchy point does not lie
before the smallest one (``_segments.first_segment``, a ``lax.cond``). Beyond, the
breakpoints are walked as ``_segments`` selects them, and everything else is per leaf.
Every path also returns W^T (M g), M the variables moving along the path, for the
subspace step's products (``_reduced``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _argsort, _bounds, _loop, _memory, _segments, _tree, _xla
from ._tree import matmul as mm
from ._xla import where


def middle(memory: _memory.Memory):
    """(M, K, theta, ok): the compact form's middle matrix M = K^-1 and K, (2(m+1))^2 in
    slot order ([Y block, S block]) and in ``_xla.small_dtype`` (module docstring: operate on
    them under ``jax.enable_x64``), theta = 1 / gamma in the memory's dtype, and whether
    T's Cholesky factorisation succeeded (M finite)."""
    with jax.enable_x64(True):
        return _middle(memory, _xla.small_dtype(memory.dtype))


def _middle(memory: _memory.Memory, wide):
    g = memory.gram
    m1 = g.d.shape[-1]
    valid = _memory.valid(memory)
    pos = _memory.position(memory)
    both = valid[:, None] & valid[None, :]
    eye = jnp.eye(m1, dtype=wide)
    theta = 1 / memory.gamma
    th = theta.astype(wide)
    dvec = where(valid, g.d.astype(wide), 1)
    low = where(both & (pos[:, None] > pos[None, :]), g.sy.astype(wide), 0)  # L
    ss = where(both, g.ss.astype(wide), 0)
    low_d = low / dvec[None, :]  # L D^-1
    t = where(both, th * ss + mm(low_d, low.T), eye)
    chol = jnp.linalg.cholesky(t)
    t_inv = jax.scipy.linalg.cho_solve((chol, True), eye)
    e = mm(t_inv, low_d)
    m11 = mm(low_d.T, e) - jnp.diag(1 / dvec)
    mid = jnp.block([[m11, e.T], [e, t_inv]])
    both2 = jnp.tile(both, (2, 2))
    mid = where(both2, mid, 0)
    k = jnp.block([[-jnp.diag(dvec), low.T], [low, where(both, th * ss, eye)]])
    ok = jnp.all(jnp.isfinite(mid))
    return where(ok, mid, 0), k, theta, ok


def w_rows(memory: _memory.Memory, theta, sdt):
    """W = [Y  theta S] as an (n, 2(m+1)) array over all leaves (slot order, zero columns
    where no pair), in ``sdt``: the temporary that puts every variable in one order."""
    valid = jnp.concatenate([_memory.valid(memory)] * 2)
    m1 = _memory.size(memory) + 1
    blocks = []
    for sb, yb in zip(jax.tree_util.tree_leaves(memory.s), jax.tree_util.tree_leaves(memory.y)):
        flat = lambda b: b.reshape(m1, -1).astype(sdt).T  # noqa: E731
        blocks.append(jnp.concatenate([flat(yb), theta * flat(sb)], axis=1))
    return where(valid[None, :], jnp.concatenate(blocks, axis=0), 0)


# Beyond this many variables the breakpoints are not all sorted: ``_segments`` selects them.
SORT_LIMIT = 4096
# From this many variables up to SORT_LIMIT, an unbatched solve first looks for the Cauchy
# point before the smallest breakpoint (``_segments.first_segment``) and sorts only if it is
# beyond (``lax.cond``: as a rule, once the active set settles, no sort). Measured, 40 iterations of
# bounded Rosenbrock, float32: n = 100 0.055 -> 0.037 ms an iteration, 1,000 0.27-0.43 ->
# 0.07-0.12, 4,000 1.1-1.4 -> 0.3; below about 30 variables the branch costs more than the
# sort it saves. Under ``jax.vmap`` both branches of a ``lax.cond`` run (1,000 batched 10-D
# problems: 1.12x the time), so a batched solve sorts (``_loop.batched``).
FIRST_FROM = 64


def cauchy_point(memory: _memory.Memory, mid, theta, x, g, box, sdt):
    """(x^c, c, free, t_c, W^T (moving g), moving g): the generalized Cauchy point (a function
    of no arguments that forms it, leaves in x's dtypes; bound-hitting variables exactly on
    their bound), c = W^T (x^c - x), which
    variables are strictly between their bounds at x^c (bool pytree), where it is on the
    path, the products of W with the moving variables' gradient (None up to SORT_LIMIT
    variables) and that gradient (a pytree like x in ``sdt``, zero where a variable does
    not move).

    Beyond SORT_LIMIT variables everything but ``_segments``' selection levels is per
    leaf, so an iteration whose Cauchy point lies before the first breakpoint (as a rule
    once the active set settles) gathers no sharded leaf: only those levels put the
    variables in one order (scoped ``_segments.GATHERED``, which the sharding test looks
    for)."""
    treedef = jax.tree_util.tree_structure(x)
    sides = [jax.tree_util.tree_leaves(side) for side in (x, g, box.lower, box.upper)]
    keys, gms = [], []
    for xl, gl, lo, hi in zip(*sides):
        xs, gs, lo, hi = (a.astype(sdt) for a in (xl, gl, lo, hi))
        gsafe = where(gs != 0, gs, 1)
        tb = where(gs < 0, (xs - hi) / gsafe, where(gs > 0, (xs - lo) / gsafe, jnp.inf))
        # A variable moves (t_i > 0) while the bound it heads for is not reached; t_i = inf: it
        # never stops. Only the key and the moving variables' gradient gm are kept (no mask or
        # t_i of their own: each would be one more pass at large n); a variable with g_i = 0
        # moves at speed 0, which everything below treats as not moving.
        moving = ((gs < 0) & (xs < hi)) | ((gs > 0) & (xs > lo))
        keys.append(where(moving, tb, jnp.inf))
        gms.append(where(moving, gs, 0))
    n = _tree.count(keys)
    zero_p, zero_g = jnp.zeros((mid.shape[0],), sdt), jnp.zeros((), sdt)
    wg = None  # W^T (moving g), at large n (the subspace step's products start from it)
    gm = jax.tree_util.tree_unflatten(treedef, gms)

    def all_sorted():
        key, gmf = _segments.cat(keys), _segments.cat(gms)
        order = _argsort.argsort(key)
        return _segments.walk(key[order], gmf[order], w_rows(memory, theta, sdt)[order], zero_p, zero_g, theta,
                              mid, True, sdt)[1:3]

    if n <= SORT_LIMIT and (n <= FIRST_FROM or _loop.batched(x)):
        tc, c_star = all_sorted()
    else:
        s_t, y_t = _memory.unless_empty(memory, gm, lambda: _memory.products(memory, gm),
                                        lambda: jnp.zeros((2, mid.shape[0] // 2), sdt))
        products = jnp.concatenate([y_t, theta * s_t])
        if n <= SORT_LIMIT:
            tc, c_star = _segments.first_segment(memory, theta, mid, keys, gms, products, sdt, later=all_sorted)
        else:
            wg = products
            tc, c_star = jax.lax.cond(memory.count == 0, lambda: _segments.no_pairs(keys, gms, theta, mid, sdt),
                                      lambda: _segments.first_segment(memory, theta, mid, keys, gms, wg, sdt))
    def xc():
        point = []
        for (xl, gl, lo, hi), key, gml in zip(zip(*sides), keys, gms):
            lo, hi, gs = lo.astype(sdt), hi.astype(sdt), gl.astype(sdt)
            # (x is in the box)
            at = where(key <= tc, where(gs < 0, hi, lo), jnp.clip(xl.astype(sdt) - tc * gml, lo, hi))
            point.append(jnp.broadcast_to(at, xl.shape).astype(xl.dtype))
        return jax.tree_util.tree_unflatten(treedef, point)

    # (x^c is formed where it is read: the free set, in the kernel that writes the mask, and in the
    # subspace step's truncation, a branch; written out once to be read twice it was a pass)
    return xc, c_star, _bounds.inside(xc(), box), tc, wg, gm
