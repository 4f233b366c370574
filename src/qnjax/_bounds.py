"""Box bounds l <= x <= u on a pytree of parameters: their rules and the elementwise
operations L-BFGS-B needs (the projection, the largest feasible step, the projected
gradient, the trial point of a line search).

Rules (``box``):

* ``bounds = (lower, upper)``, each side ``None`` (no bound), a scalar (every
  variable of every leaf), or a pytree with the parameters' structure whose leaves
  broadcast to their parameter's shape; +-inf is no bound, ``lower == upper`` fixes
  a variable. Complex leaves are refused (C has no order; bound the real and
  imaginary parts as two real leaves).
* Each bound is cast to its leaf's dtype rounding *inward* (lower up, upper down):
  a feasible iterate stored in bfloat16 or float32 satisfies the bound as given.
  Where no representable value lies in [lower, upper] (a variable fixed at 0.1 in
  float32), both become the value nearest to lower. Python floats never change a
  leaf's dtype (the bounds take the leaf's, never the reverse).
* Concrete bounds with lower > upper (or NaN, or lower = +inf, upper = -inf: no number lies
  between) raise ``ValueError`` naming the leaf;
  traced ones (under ``jit`` or ``vmap``) are checked by the solver, which then stops
  with ``Status.INFEASIBLE`` before its first iteration (x is x0 clipped, where ``fun``
  was evaluated once, as at every start: no point lies in an empty box).

Operations, for x in the box and a direction d (N&W Sec. 16.7; BLNZ 1995 Sec. 2):

    P(x)_i = min(max(x_i, l_i), u_i)                     the projection,
    t_max = min_i {(u_i - x_i) / d_i : d_i > 0;  (l_i - x_i) / d_i : d_i < 0}
                                                       the largest feasible step,
    ||P(x - g) - x||_inf = max_i |min(max(-g_i, l_i - x_i), u_i - x_i)|
                                                       the stationarity measure,

the last computed in the scalar dtype without forming x - g (so a free variable
contributes |g_i| exactly). A trial point x + t d is projected after it is
rounded to the leaves' dtypes, so rounding can never cross a bound
(scipy#10919), and a variable projected onto a bound sits exactly on it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _tree
from ._xla import where


class Box(NamedTuple):
    """Bounds of a pytree: ``lower``, ``upper`` pytrees with the parameters' structure,
    each leaf in its parameter's dtype and broadcastable to its shape."""

    lower: Any
    upper: Any


def _side(side, params, name):
    """One side as a list of per-leaf values (the parameters' leaf order)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if side is None or np.ndim(side) == 0 and not isinstance(side, (list, tuple, dict)):
        return [side] * len(leaves)
    if len(leaves) == 1 and hasattr(side, "shape"):
        return [side]
    side_leaves, side_def = jax.tree_util.tree_flatten(side, is_leaf=lambda v: v is None)
    if side_def != treedef:
        raise ValueError(f"bounds: {name} must be None, a scalar or a pytree with x0's structure "
                         f"{treedef}, got {side_def}")
    return side_leaves


def _inward(lo, hi, dtype, xp):
    """(lower, upper) in ``dtype``, lower rounded up and upper down where the cast is
    inexact; where no representable value lies in [lower, upper], both the one nearest to
    lower. ``xp``: ``np`` for concrete bounds, given as float64 arrays (computed exactly on
    the host: each of JAX's operations a first call would compile, 5-20 ms each, and
    ``jnp.asarray`` of a NumPy array too), or ``jnp`` for traced ones."""
    select = np.where if xp is np else where
    out = []
    for b, up in ((lo, True), (hi, False)):
        src = xp.result_type(b)
        c = xp.asarray(b).astype(dtype)
        if jnp.issubdtype(src, jnp.floating) and jnp.finfo(src).bits > jnp.finfo(dtype).bits:
            back = c.astype(src)
            towards = xp.asarray(np.inf if up else -np.inf, dtype)
            c = select((back < b) if up else (back > b), xp.nextafter(c, towards), c)
        out.append(c)
    empty = (out[0] > out[1]) & (xp.asarray(lo).astype(xp.result_type(lo, float)) <= hi)
    nearest = xp.asarray(lo).astype(dtype)
    return tuple(select(empty, nearest, c) for c in out)


def box(params, bounds) -> Box:
    """Check and cast ``bounds = (lower, upper)`` for ``params`` (module docstring)."""
    if isinstance(bounds, Box):
        bounds = tuple(bounds)
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"bounds must be a pair (lower, upper), got {type(bounds).__name__}")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    leaves, treedef = jax.tree_util.tree_flatten(params)
    lows, highs = _side(bounds[0], params, "lower"), _side(bounds[1], params, "upper")
    out_l, out_u = [], []
    for path, leaf, lo, hi in zip(paths, leaves, lows, highs):
        dtype = _tree.dtype_of(leaf)
        label = f"x0{path}" if path else "x0"
        lo = -np.inf if lo is None else lo
        hi = np.inf if hi is None else hi
        traced = isinstance(lo, jax.core.Tracer) or isinstance(hi, jax.core.Tracer)
        for b, name in ((lo, "lower"), (hi, "upper")):
            if jnp.issubdtype(jnp.result_type(b), jnp.complexfloating):
                raise TypeError(f"bounds: the {name} bound of {label} is complex; bounds are real")
            try:
                shape = np.broadcast_shapes(np.shape(b), np.shape(leaf))
            except ValueError:
                shape = None
            if shape != np.shape(leaf):
                raise ValueError(f"bounds: the {name} bound of {label} has shape {np.shape(b)}, which does not "
                                 f"broadcast to the leaf's shape {np.shape(leaf)}")
        if jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"bounds: {label} is complex ({dtype}); L-BFGS-B takes real leaves only "
                            "(optimise its real and imaginary parts as two real leaves)")
        if traced:
            lo_c, hi_c = _inward(lo, hi, dtype, jnp)
        else:
            lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
            bad = ~((lo <= hi) & (lo < np.inf) & (hi > -np.inf))  # (a bound of +-inf on the wrong side: empty)
            if np.any(bad):
                raise ValueError(f"bounds: lower > upper (or NaN, lower = +inf, upper = -inf) for {label} at index "
                                 f"{tuple(int(i) for i in np.argwhere(np.broadcast_to(bad, np.shape(leaf)))[0])}")
            lo_c, hi_c = (jax.device_put(np.asarray(c, dtype)) for c in _inward(lo, hi, dtype, np))
        out_l.append(lo_c)
        out_u.append(hi_c)
    return Box(jax.tree_util.tree_unflatten(treedef, out_l), jax.tree_util.tree_unflatten(treedef, out_u))


def binding(params, bounds, state=None):
    """``box(params, bounds)``, or None where concrete ``bounds`` bound nothing (each side None,
    or -inf below and +inf above for every variable) and ``state`` (a resumed run's) has no box
    of its own: ``minimize`` then runs the unconstrained solver, its iterates exactly (traced
    bounds run L-BFGS-B, whose iterates are the unconstrained ones up to rounding)."""
    out = box(params, bounds)
    if getattr(state, "bounds", None) is not None:
        return out
    for side, inf in ((bounds[0], -np.inf), (bounds[1], np.inf)):
        for b in _side(side, params, ""):
            if b is not None and (isinstance(b, jax.core.Tracer) or not np.all(np.asarray(b, np.float64) == inf)):
                return out
    return None


def _leaves(box: Box, like):
    return zip(jax.tree_util.tree_leaves(like), jax.tree_util.tree_leaves(box.lower),
               jax.tree_util.tree_leaves(box.upper))


def project(x, box: Box):
    """P(x): each leaf clipped to its bounds, in its dtype."""
    return jax.tree.map(lambda a, lo, hi: jnp.minimum(jnp.maximum(a, lo.astype(a.dtype)), hi.astype(a.dtype)),
                        x, box.lower, box.upper)


def displacement(v, x, box: Box):
    """P(x + v) - x taken as clip(v, l - x, u - x), per leaf in v's dtypes (complex leaves,
    never bounded, as they are): the same vector, but a step that moves a variable by less
    than a unit in its last place is kept, where the difference of the rounded points
    P(x + v) and x loses it."""
    def one(vl, xl, lo, hi):
        if jnp.iscomplexobj(xl) or jnp.iscomplexobj(vl):
            return vl
        return jnp.clip(vl, (lo - xl).astype(vl.dtype), (hi - xl).astype(vl.dtype))

    return jax.tree.map(one, v, x, box.lower, box.upper)


def contains(x, box: Box):
    """Whether every variable of x lies in its bounds (a bool array)."""
    ok = jnp.asarray(True)
    for leaf, lo, hi in _leaves(box, x):
        if not jnp.iscomplexobj(leaf):
            ok = ok & jnp.all((leaf >= lo.astype(leaf.dtype)) & (leaf <= hi.astype(leaf.dtype)))
    return ok


def inside(x, box: Box):
    """Bool pytree: the variables strictly inside their bounds (every one of a complex leaf)."""
    def one(a, lo, hi):
        if jnp.iscomplexobj(a):
            return jnp.ones(jnp.shape(a), bool)
        return (a > lo.astype(a.dtype)) & (a < hi.astype(a.dtype))

    return jax.tree.map(one, x, box.lower, box.upper)


def on_free(tree, free):
    """``tree`` where the bool pytree ``free`` holds (a free set: :func:`inside`, L-BFGS-B's
    at its Cauchy point), else 0."""
    return jax.tree.map(lambda a, f: where(f, a, jnp.zeros_like(a)), tree, free)


def facts(box: Box, like):
    """(3,) bool: every lower <= upper, lower < +inf and upper > -inf (the box is not empty);
    some bound is finite (constrained); every variable has both bounds finite (boxed)."""
    ok, finite, boxed = jnp.asarray(True), jnp.asarray(False), jnp.asarray(True)
    for leaf, lo, hi in _leaves(box, like):
        if jnp.iscomplexobj(leaf) or not leaf.size:
            continue
        lo, hi = jnp.broadcast_to(lo, leaf.shape), jnp.broadcast_to(hi, leaf.shape)
        ok = ok & jnp.all((lo <= hi) & (lo < jnp.inf) & (hi > -jnp.inf))
        finite = finite | jnp.any(jnp.isfinite(lo) | jnp.isfinite(hi))
        boxed = boxed & jnp.all(jnp.isfinite(lo) & jnp.isfinite(hi))
    return jnp.stack([ok, finite, boxed])


def max_stepsize(x, d, box: Box, sdt):
    """The largest t with l <= x + t d <= u (+inf if none limits it), in ``sdt``."""
    t = jnp.full((), jnp.inf, sdt)
    for (xl, lo, hi), dl in zip(_leaves(box, x), jax.tree_util.tree_leaves(d)):
        if jnp.iscomplexobj(xl) or not xl.size:
            continue
        xs, ds = xl.astype(sdt), dl.astype(sdt)
        room = where(ds > 0, hi.astype(sdt) - xs, where(ds < 0, lo.astype(sdt) - xs, jnp.inf))
        ratio = where(ds != 0, room / where(ds != 0, ds, 1), jnp.inf)
        t = jnp.minimum(t, jnp.maximum(jnp.min(ratio), 0))
    return t


def stationarity(x, g, box: Box, sdt, scale=None):
    """||P(x - g) - x||_inf in ``sdt`` (complex leaves, which are free: max |g|); with ``scale``, ``g``
    is of f times it (``_scale``): scale ||P(x - g / scale) - x||_inf, f's own measure, times scale."""
    m, inverse = jnp.zeros((), sdt), 1 if scale is None else 1 / scale
    for (xl, lo, hi), gl in zip(_leaves(box, x), jax.tree_util.tree_leaves(g)):
        if not xl.size:
            continue
        if jnp.iscomplexobj(xl):
            m = jnp.maximum(m, jnp.max(jnp.abs(gl)).astype(sdt) * inverse)
            continue
        xs, ng = xl.astype(sdt), -gl.astype(sdt) * inverse
        below, above = lo.astype(sdt) - xs, hi.astype(sdt) - xs
        if jnp.ndim(lo) < xl.ndim or jnp.ndim(hi) < xl.ndim:
            # The same values as a select: XLA:CPU's library reductions take the clip below
            # into the reduction but not a bound given as a scalar, which they would read
            # written out at full size; a select they leave to an elementwise pass that
            # takes the scalars in, and reduce its result.
            pg = where(ng < below, below, where(ng > above, above, ng))
            pg = where(jnp.isnan(below) | jnp.isnan(above), below + above, pg)  # (NaN as the clip's)
        else:
            pg = jnp.minimum(jnp.maximum(ng, below), above)
        m = jnp.maximum(m, jnp.max(jnp.abs(pg)))
    return m if scale is None else m * scale


@jax.custom_jvp
def _nudged(w, toward):
    """``jnp.nextafter(w, toward)``, a rounding correction with the derivative of ``w`` (JAX
    has none for ``nextafter``; unrolled derivatives of the projected method go through it)."""
    return jnp.nextafter(w, toward)


@_nudged.defjvp
def _nudged_jvp(primals, tangents):
    return _nudged(*primals), tangents[0]


def trial(params, u, box: Box, exact_updates: bool):
    """The feasible point for the rounded step ``u`` (leaves in params' dtypes):
    ``(update, point)``.

    ``exact_updates=False`` (``minimize``): point = P(params + u), so a variable
    projected onto a bound is exactly on it; the update is u where nothing was
    projected, else point - params (what the memory stores as s).
    ``exact_updates=True`` (the Optax face): point = params + update bit for bit, as
    ``optax.apply_updates`` computes it, and inside the box: update = P(params + u) -
    params, moved by one unit in its last place toward params where rounding the sum
    would cross a bound."""

    def one(p, v, lo, hi):
        if jnp.iscomplexobj(p):  # complex leaves are free
            return v, jax.lax.optimization_barrier(p + v)
        lo, hi = lo.astype(p.dtype), hi.astype(p.dtype)
        raw = jax.lax.optimization_barrier(p + v)
        c = jnp.minimum(jnp.maximum(raw, lo), hi)
        moved = c != raw
        if not exact_updates:
            return where(moved, c - p, v), c
        w = where(moved, c - p, v)
        y = jax.lax.optimization_barrier(p + w)
        w = where(y > hi, _nudged(w, jnp.asarray(-jnp.inf, w.dtype)),
                  where(y < lo, _nudged(w, jnp.asarray(jnp.inf, w.dtype)), w))
        return w, jax.lax.optimization_barrier(p + w)

    pairs = jax.tree.map(one, params, u, box.lower, box.upper)
    treedef = jax.tree_util.tree_structure(params)
    upd = jax.tree_util.tree_unflatten(treedef, [a for a, _ in treedef.flatten_up_to(pairs)])
    point = jax.tree_util.tree_unflatten(treedef, [b for _, b in treedef.flatten_up_to(pairs)])
    return upd, point
