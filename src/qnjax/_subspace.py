"""The L-BFGS-B search direction: Cauchy point, subspace minimisation, projection.

From the generalized Cauchy point x^c (``_cauchy``) with c = W^T (x^c - x), the
variables strictly inside their bounds at x^c (the free set F, Z the columns of I
that select it) are moved to minimise the quadratic model with the others fixed
(Byrd, Lu, Nocedal & Zhu 1995, Sec. 5.1, the direct primal method). The reduced
gradient (their eq. 5.4) and Hessian are

    r = Z^T (g + theta (x^c - x) - W M c),       B_F = Z^T B Z = theta I - Z^T W M W^T Z,

and by Sherman-Morrison-Woodbury (their eqs. 5.6-5.11), with N = I - M W^T Z Z^T W / theta,

    d^u = -B_F^-1 r = -r / theta - Z^T W N^-1 M W^T Z r / theta^2,

where N^-1 M = (K - W^T Z Z^T W / theta)^-1 (K = M^-1, ``_cauchy.middle``): one
solve with a small symmetric matrix (in float64 for a float32 memory, as M: ``_cauchy``)
whose factorisation failing drops the memory (below).
Where every variable is free at x^c (bounds that bind nothing, an interior iterate), the
model's minimiser over all of them is x - H g wherever x^c lies: d^u = -H g + t_c g, with H
in the inverse compact form (Byrd, Nocedal & Schnabel 1994, eq. 2.6; ``_compact``) from S^T g,
Y^T g, Y^T Y and R (the upper triangle of S^T Y), all kept here. The solve above gives the
same in exact arithmetic, but its S-S block theta S^T S - theta S^T F S is then 0 and comes
out as the rounding of a difference, which the solve amplifies where the pairs are nearly
dependent: Meyer in float32 (f* = 87.9459) with bounds (-inf, inf) stopped PRECISION at
f = 1.1e5, now at 87.72 as without bounds (in float64 it still stops above f*, at 100.4 where
it had at 804.5: there -g no longer resolves Meyer's valley, ``_rescue``). Only the form taken
is computed (a ``lax.cond``: under ``jax.vmap`` both, and a select).
W^T Z Z^T W is the Gram matrix of the rows of W that belong to free variables, and
W^T Z Z^T g their product with the gradient, both kept from one iteration to the next
(``_reduced``). On the free variables x^c - x = -t_c g (the Cauchy point's step), so
r = r0 - Z^T W M c with r0 = (1 - theta t_c) Z^T g, W^T Z r = (1 - theta t_c) W^T Z Z^T g
- (W^T Z Z^T W) M c, and d^u = -r0 / theta + Z^T W (M c - N^-1 M W^T Z r / theta) /
theta: one weighted sum over the memory. The new point is chosen as Morales & Nocedal (2011)
prescribe: x_bar = P(x^c + d^u), projected onto the box; if x_bar - x is not a
descent direction (g^T (x_bar - x) >= 0), the 1995 rule instead: the longest feasible
part of the step measured from the Cauchy point itself (never from a projected
copy), x_bar = x^c + alpha* d^u with alpha* = max {a <= 1 : l <= x^c + a d^u <= u}.
The search direction is d = x_bar - x, taken as a displacement from x rather than as a
difference of points: x^c - x = -t_c g clipped to [l - x, u - x] (a variable past its
breakpoint lands on its bound) and d = (x^c - x) + beta d^u clipped likewise, equal to
P(x^c + beta d^u) - x. A difference of rounded points loses what moves a variable by less
than a unit in its last place: on 3,200 random float32 box least-squares fits with
columns scaled over four decades (the tests' generator), runs reported success above
their minimum 33 times that way and 20 times this way. A direction that is still uphill, like a
failed factorisation, makes the solver clear the memory and search along the
projected steepest-descent path instead (scipy's ``mainlb`` rule); below float64 it keeps
the newest pair and tries again first (``keeps_newest``): on 9,600 such fits, unbatched,
runs reporting success above their minimum went from 25 (M in float64 alone) to 16.

The next ``push`` needs S^T s and Y^T s for the step s = t d. At large n, with every
variable in the scalar dtype (``keeps_products``), they come without a pass over the
memory: with
x_bar = x^c + beta d^u + e (beta = 1, or alpha* when truncated; e = what the projection
changed, zero but in few variables) and d^u = Z Z^T (-r0' / theta + S c_s + Y c_y)
(r0' = (1 - theta t_c) g, the weighted sum's coefficients c_s, c_y),

    S^T d = c_S + beta (-(1 - theta t_c) S^T F g / theta + S^T F S c_s + S^T F Y c_y) + S^T e,

Y^T d likewise, with c = [c_Y, theta c_S] from the Cauchy point and the free set's
kept products; S^T e, Y^T e from e's gathered rows (``_reduced.sparse_products``). They
are kept in the memory's ``last[CS:]`` (unused by L-BFGS-B otherwise).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _bounds, _cauchy, _compact, _free_gram, _memory, _reduced, _tree
from ._products import matvec
from ._xla import where


def direction(memory: _memory.Memory, x, g, box, sdt, stored=True):
    """(d, ok, memory, slope): the L-BFGS-B direction d = x_bar - x (leaves in x's dtypes),
    whether the small factorisations succeeded and d is downhill, the memory with the free
    set's products kept (``_reduced``; ``stored``: whether ``push`` just stored a pair), and
    g^T d in ``sdt`` as the caller would compute it (None where d is rounded to a leaf
    narrower than ``sdt``: the caller takes it of the rounded d)."""
    m1 = _memory.size(memory) + 1
    mid, k, theta, ok = _cauchy.middle(memory)  # (in float64 for a float32 memory: ``_cauchy``)
    xc, c, free, tc, wg, gm = _cauchy.cauchy_point(memory, mid.astype(sdt), theta, x, g, box, sdt)
    gram, fg, memory = _reduced.update(memory, free, g, wg, gm, theta, stored)
    every = functools.reduce(jnp.logical_and, [jnp.all(f) for f in jax.tree_util.tree_leaves(free)], True)
    mask = functools.partial(_bounds.on_free, free=free)
    # r0, W^T Z r and d^u as in the module docstring (x^c - x = -t_c g on the free variables)
    shrink = 1 - theta * tc
    # (r0 formed where it is read, inside the branch: as the branch's operand it was written out, a pass)
    r0 = lambda: mask(jax.tree.map(lambda gl: shrink * gl.astype(sdt), g))  # noqa: E731
    with jax.enable_x64(True):  # the small algebra in M's dtype
        wide = lambda a: a.astype(mid.dtype)  # noqa: E731
        th, gw, fw = wide(theta), wide(gram), wide(fg)
        def solved():  # W (M c - sol / theta) / theta = Y c_y + S c_s
            # (theta (theta S^T F S), not theta^2 S^T F S: theta^2 alone overflows float32 beyond 1.8e19, where
            # the product, of the order of Y^T F Y, does not)
            wzw = jnp.block([[gw[2], th * gw[1]], [th * gw[1].T, th * (th * gw[0])]])
            mc = matvec(mid, wide(c))
            v = (1 - th * wide(tc)) * jnp.concatenate([fw[1], th * fw[0]]) - matvec(wzw, mc)  # W^T Z r
            return mc - jnp.linalg.solve(k - wzw / th, v) / th

        def inverse():  # every variable free at x^c: d^u = -H g + t_c g, H's compact form (module docstring)
            c_s, c_y = _compact.coefficients(memory, fw[0], fw[1], _compact.r_inverse(memory, gw[1].T), gw[2])
            return jnp.concatenate([-th * c_y, -c_s])

        coef = jax.lax.cond(every, inverse, solved)  # (under vmap both, and a select)
        ok = ok & jnp.all(jnp.isfinite(coef))
        coef = where(ok, coef, 0).astype(sdt)
    def step(pairs):  # (pairs False: -r0 / theta alone, as it is with no pair stored)
        return _memory.weighted_sum(memory, -1 / theta, r0(), coef[m1:], coef[:m1] / theta, pairs)

    du = mask(_memory.unless_empty(memory, g, lambda: step(True), lambda: step(False)))
    as_s = lambda tree: jax.tree.map(lambda a: a.astype(sdt), tree)  # noqa: E731
    box_s = _as(box, sdt)
    x_s = as_s(x)
    # Displacements from x, not differences of points (module docstring): x^c - x = -t_c g clipped
    # to the box (a variable past its breakpoint at its bound), P(x^c + v) - x that plus v clipped.
    # (element-wise from arrays that exist anyway, in and out of the branch: nothing more is stored)
    def displaced(scale):  # (P(x^c + scale d^u) - x, x^c + scale d^u - x)
        to_xc = _bounds.displacement(jax.tree.map(lambda a: -tc * a, gm), x_s, box_s)
        point = jax.tree.map(lambda a, b: a + scale * b, to_xc, du)
        return _bounds.displacement(point, x_s, box_s), point

    d, moved = displaced(1)

    def truncation():  # Morales-Nocedal: if the projected point is not downhill, truncate from x^c
        alpha = jnp.minimum(_bounds.max_stepsize(as_s(xc()), du, box_s, sdt), 1)
        d_t, point = displaced(alpha)
        return d_t, alpha, _tree.sub(d_t, point)

    keep = keeps_products(x, sdt)
    if not _free_gram.incremental(x):  # both, and a select (one kernel each under vmap)
        d_t = truncation()[0]
        slopes = _tree.inners([(g, d), (g, d_t)], sdt)
        downhill = _negative(g, d, slopes[0], sdt)
        d = _tree.select(downhill, d, d_t)
        slope = where(downhill, slopes[0], slopes[1])
        ok = ok & (downhill | _negative(g, d_t, slopes[1], sdt))
    else:  # a branch (the truncation's passes are made only when it is taken)
        def truncated():
            d_t, alpha, clipped = truncation()
            slope_t = _tree.inner(g, d_t, sdt)
            return d_t, slope_t, alpha, clipped if keep else None, _negative(g, d_t, slope_t, sdt, branch=True)

        slope = _tree.inner(g, d, sdt)
        downhill = _negative(g, d, slope, sdt, branch=True)
        d, slope, beta, clipped, downhill = jax.lax.cond(
            downhill, lambda: (d, slope, jnp.ones((), sdt), _tree.sub(d, moved) if keep else None, downhill),
            truncated)
        ok = ok & downhill
    # With no pair stored (the first iteration, or after the memory was dropped) x_bar is P(x - gamma g)
    # exactly (t_c = 1 / theta or the path's end, and no subspace step); d is taken as that displacement,
    # clip(-gamma g, l - x, u - x), not as a difference of points, in which a step below x's rounding
    # vanished (f scaled by 1e-20: d was 0, and the run stopped at x0 claiming PRECISION).
    def plain():
        d_p = _bounds.displacement(jax.tree.map(lambda gl: -memory.gamma * gl.astype(sdt), g), x_s, box_s)
        slope_p = _tree.inner(g, d_p, sdt)
        return d_p, slope_p, _negative(g, d_p, slope_p, sdt, branch=_free_gram.incremental(x))

    empty = memory.count == 0
    if not _free_gram.incremental(x):
        d_p, slope_p, ok_p = plain()
        d, slope, ok = _tree.select(empty, d_p, d), where(empty, slope_p, slope), where(empty, ok_p, ok)
    else:
        d, slope, ok = jax.lax.cond(empty, plain, lambda: (d, slope, ok))
    if keep:  # W^T d for ``push``, from kept data (module docstring)
        c_s, c_y = coef[m1:], coef[:m1] / theta
        du_s = -shrink / theta * fg[0] + matvec(gram[0], c_s) + matvec(gram[1].T, c_y)
        du_y = -shrink / theta * fg[1] + matvec(gram[1], c_s) + matvec(gram[2], c_y)
        wd = jnp.stack([c[m1:] / theta + beta * du_s, c[:m1] + beta * du_y])
        wd = wd + _reduced.sparse_products(memory, clipped, sdt)
        wd = where(_memory.valid(memory), wd, 0)
        memory = memory._replace(last=memory.last.at[2:].set(wd))
        # The search depends on wd through ``ok`` (products that are not finite would spoil
        # the next pair's row), so wd's reads of S come before the step's write into S,
        # which XLA then does in place instead of copying the buffer twice.
        ok = ok & jnp.all(jnp.isfinite(wd))
    return _tree.cast_like(d, x), ok, memory, slope if _in_scalar_dtype(x, sdt) else None


def _negative(g, d, slope, sdt, branch=False):
    """Whether g^T d < 0, given ``slope`` = g^T d: in float32 (``_tree.guards_range``), where it
    came out zero because its products underflowed (f scaled by 1e-20: g and d near 1e-20,
    products near 1e-40), decided again with g scaled by a power of two towards 1 (the sign
    is the same); ``branch``: that pass only where ``slope`` is zero (``lax.cond``)."""
    if not _tree.guards_range(sdt):
        return slope < 0

    def scaled():
        return _tree.inner(_tree.scaled_to_unit(g, sdt)[0], d, sdt) < 0

    if branch:
        return jax.lax.cond(slope == 0, scaled, lambda: slope < 0)
    return where(slope == 0, scaled(), slope < 0)


def keeps_newest(usable, sdt):
    """Whether a failed iteration keeps the newest pair (``_memory.clear``'s ``newest``): where
    the direction was not ``usable`` (a failed factorisation, or uphill) below float64. scipy
    drops every pair there, and in float64 so does qnjax; in float32 the pairs grow nearly
    dependent far more often (module docstring), and along -g alone an ill-conditioned problem
    then finds no decrease above f's rounding: the run stopped PRECISION above its minimum."""
    return ~jnp.asarray(usable) if jnp.finfo(sdt).bits < 64 else False


def keeps_products(x, sdt) -> bool:
    """Whether ``direction`` keeps W^T d for ``push`` (static): with many variables
    (``_free_gram.incremental``), every one stored in the scalar dtype (a step rounded to a
    narrower dtype differs from t d by more than the scalar dtype's rounding)."""
    return _free_gram.incremental(x) and _in_scalar_dtype(x, sdt)


def _in_scalar_dtype(x, sdt) -> bool:
    """Whether every leaf of ``x`` is stored in the scalar dtype (static): its vectors are
    then exactly the ones the direction computed, not rounded copies."""
    return all(_tree.dtype_of(a) == sdt for a in jax.tree_util.tree_leaves(x))


def _as(box, sdt):
    return _bounds.Box(*(jax.tree.map(lambda a: a.astype(sdt), side) for side in box))
