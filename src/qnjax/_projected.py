"""Projected L-BFGS: box bounds without a Cauchy point, sort-free and gather-free.

L-BFGS-B (``_subspace``) finds its free set from the generalized Cauchy point, which
puts every variable's breakpoint in one order: a sort, and across devices a gather of
the sharded variables. The two-metric projection method (Bertsekas 1982; with
quasi-Newton metrics, Kim, Sra & Dhillon 2010) needs only elementwise operations and
reductions. At x in the box with gradient g, the *binding* variables are those on a
bound that the gradient pushes out of the box,

    A = {i : x_i = l_i and g_i > 0} U {i : x_i = u_i and g_i < 0},

F the others, P_F the projector onto F's coordinates, H the L-BFGS inverse Hessian
(the compact form, ``_compact``). The direction

    d = -P_F H P_F g

is downhill unless P_F g = 0 (g^T d = -(P_F g)^T H (P_F g) < 0, H positive definite),
and then x is stationary: the projected gradient P(x - g) - x is zero exactly when
P_F g is (a binding variable's component is zero; a free one on its bound pushed
inwards has the same sign as -g). A free variable on its bound that d pushes out is
held too (d_i = 0: the arc would hold it at once); what is left may be uphill, and then
the solver drops the memory and searches along -gamma P_F g, which is downhill and
moves no variable out of the box. With no pair stored (the first iteration, a retry)
the step is L-BFGS-B's projected-gradient step instead: d = P(x - g) - x with H = I (not
the scale of the pairs a retry dropped) and scipy's first trial, along the ray up to the
largest feasible step. Otherwise the search runs along the projected arc
x(t) = P(x + t d) (every trial in the box, no largest step), phi(t) = f(x(t)), with
slope phi'(t) = g(x(t))^T d(t), d(t) the direction without the variables the arc holds
on a bound at t (up to the largest feasible step, none: g^T d). The pair stored is the
step taken, s = x(t) - x, with y = g(x(t)) - g; where the arc held a variable, s is not
t d, and <s, y>, <s, s> are computed from the vectors instead of the search's slopes.

The compact form's vector-free bookkeeping (``_memory_update.complete``) needs S^T g and
Y^T g of the whole gradient; the direction needs them of P_F g: two products with the
memory (one product of two columns took as long on a CPU: 8.0 against 7.9 ms with the
mask at n = 10^6, float32, one product alone 3.3 ms), then the weighted sum, so an
iteration reads the memory three times where the unconstrained one reads it twice, plus
a few elementwise passes.
The iterates are not L-BFGS-B's (nor scipy's), and often more: this is the method for
sharded problems (where L-BFGS-B's Cauchy point gathers), for unrolled derivatives
with bounds (the Cauchy point's sort has none), and where a smaller program matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _bounds, _compact, _loop, _memory, _memory_update, _tree
from ._scale import times
from ._xla import where


def _pushing_out(x, v, box):
    """Bool pytree: the variables on a bound that a step along ``v`` would leave the box by
    (none in a complex leaf: complex leaves take no bounds)."""
    def one(xl, vl, lo, hi):
        if jnp.iscomplexobj(xl):
            return jnp.zeros(jnp.shape(xl), bool)
        return ((xl <= lo) & (vl < 0)) | ((xl >= hi) & (vl > 0))

    return jax.tree.map(one, x, v, box.lower, box.upper)


def _zero(tree, mask):
    return jax.tree.map(lambda v, b: where(b, jnp.zeros_like(v), v), tree, mask)


def binding(x, g, box):
    """Bool pytree: the binding set A, the variables on a bound that -g pushes out."""
    return _pushing_out(x, jax.tree.map(jnp.negative, g), box)


def direction(memory: _memory.Memory, x, g, box, scale=1.0):
    """(d, memory): d = -P_F H P_F g (module docstring) without the components that would
    leave the box at once (a free variable on its bound that -H P_F g pushes out: the arc
    holds it there), the memory's pending column completed from the whole gradient's
    products, and this direction's data recorded. With no pair stored (the first
    iteration, a retry after the memory was dropped) d = P(x - g) - x, L-BFGS-B's (scipy's
    restart: H = I, not the dropped pairs' scale; with ``g`` of f times ``scale``, ``_scale``, the
    identity of f's units, d = P(x - g / scale) - x): both computed and one selected, or from
    ``_memory.SKIP_EMPTY_FROM`` variables, not batched, a ``lax.cond`` (no pass is made
    for the other)."""
    def quasi_newton():
        held = binding(x, g, box)
        d, done = _compact.inverse_hessian(memory, g, -1.0, v=_zero(g, held))
        return _zero(d, jax.tree.map(jnp.logical_or, held, _pushing_out(x, d, box))), done

    def gradient():  # (no pair: nothing to complete, and the recorded products are zero)
        d = _bounds.displacement(times(g, -1 / jnp.asarray(scale, memory.dtype)), x, box)
        done = memory._replace(flags=memory.flags & jnp.array([True, False, True]))
        return d, _memory_update.record(done, jnp.zeros_like(memory.last))

    if _tree.count(x) < _memory.SKIP_EMPTY_FROM or _loop.batched(x):
        # (with no pair, quasi_newton's memory is gradient's: its products and coefficients are 0)
        d, done = quasi_newton()
        return _tree.select(memory.count == 0, gradient()[0], d), done
    return jax.lax.cond(memory.count == 0, gradient, quasi_newton)


def slope(g, d, point, box, sdt, on_ray):
    """phi'(t) at ``point`` = x(t): g^T d where the trial went along the ray x + t d
    (``on_ray``: t at most the largest feasible step, nothing held), else :func:`arc_slope`
    (a ``lax.cond``: most trials are on the ray, and g^T d reads two vectors, not five)."""
    return jax.lax.cond(on_ray, lambda: _tree.inner(g, d, sdt), lambda: arc_slope(g, d, point, box, sdt))


def arc_slope(g, d, point, box, sdt):
    """phi'(t) along the projected arc at ``point`` = x(t) with gradient ``g`` there: g^T d
    over the variables the arc does not hold on a bound (those on one that d pushes out)."""
    return _tree.inner(g, _zero(d, _pushing_out(point, d, box)), sdt)
