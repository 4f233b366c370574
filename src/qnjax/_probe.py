"""Curvature from a failed search: a probe pair, x stays and the memory learns.

Below float64 an ill-conditioned problem's f stops showing the decrease a step makes long
before its minimum. Near x, f's rounding (a few units in its last place) exceeds what the
quasi-Newton model promises along d, because the memory has not seen a direction of low
curvature yet: with the columns of a least-squares matrix scaled from 1e-2 to 1e2, the
model promised a decrease of 1e-7 of f along d where 4e-3 of f was left. The search along
d then finds no decrease, the memory is dropped, the search along -g finds none either
(its decrease is that of the stiffest directions), and the run ends PRECISION well above
its minimum: 17 and 19 of two sets of 400 such random float32 fits.

The gradient still measures what f cannot. A trial x + t d of the search whose slope
exceeds phi'(0) gives a curvature pair

    s = t d,   y = g(x + t d) - g(x),   s^T y = t (phi'(t) - phi'(0)) > 0,

secant information at x whether or not x moves there (on a quadratic y = A s exactly; the
BFGS update needs s^T y > 0, not that x + s be the next iterate: Nocedal & Wright 2006,
Sec. 6.1). So where x stays after a search along the quasi-Newton direction that found
no decrease, or whose point is a tie beyond those allowed (``_verdict``), that trial's
pair goes to the memory as a step's would (the curvature guard included), the memory is
kept, and the next iteration searches along the new d = -H g; x does not move, so no step
raises f. The trial is the search's point, or for a FAILED search the last trial whose
slope exceeds phi'(0) (``linesearch._base``, ``keep_probe``: its gradient sits in the
slot of the best point's while no decrease is found, so no gradient more is carried).
Not after a search that ran out of trials with a decrease within f's noise: it spent its
budget chasing rounding, and a probe would pay that again (BRYBND, n = 100, at its
float32 minimum: 10 probes of 13 evaluations each).

Signal, not rounding: a probe is taken only where the search's smallest trial measures
the same curvature along d, (phi'(t) - phi'(0)) / t, within a factor AGREE. A gradient
above its rounding noise does (exactly, on a quadratic); at a minimum, a pair from a step
within the gradient's noise would not, and such pairs made ``hess_inv`` wrong by a factor 5
in a direction (``tests/test_memory.py``, the run stopped after a failed retry).

At most MAX_PROBES in a row, counted since the last step that lowered f by more than its
rounding noise (``State.probes``). At a minimum the pairs only confirm the model, the
searches keep failing, and the run stops as before (the memory dropped, -g, PRECISION)
after those searches more, each of a few evaluations (a search ends once its slopes say
phi cannot fall by more than f's rounding). On two sets of 400 such fits the runs that
report success above their minimum fell from 17 and 19 to 1 and 1, at more evaluations
(median 150 -> 192 and 194; with 5 probes, 1 and 2 at 180); in boxes, from 9 and 7 to 6
and 2 (L-BFGS-B) and from 1 and 3 to 0 and 0 (``bounds_method="projected"``).

Where: below float64 only (float64 resolves 1e-16 of f, and its runs keep scipy's steps)
and in ``minimize`` (the Optax face's pairs are differences of q between calls).

Bookkeeping: the next direction completes the newest pair's products from what its pass
gives, S^T y = S^T q' - S^T q (``_memory_update.complete``; L-BFGS-B's W^T F y from
W^T F g, ``_reduced``), q' the gradient where it is computed, which after a probe is q
itself. So the recorded S^T q, Y^T q (S^T F g, Y^T F g over the free set F) are lowered
by S^T y, Y^T y (S^T F y, Y^T F y): one pass over the memory, in a ``lax.cond`` taken
only with a probe.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _bounds, _memory, _tree
from ._xla import where
from .linesearch import LineSearchStatus

MAX_PROBES = 10
AGREE = 2.0


def enabled(sdt, whole: bool) -> bool:
    """Whether a solve has probes at all (static): below float64, pairs recorded whole."""
    return whole and jnp.finfo(sdt).bits < 64


def trial(res):
    """The point(t, f, phi'(t)) whose gradient ``res.grad`` holds: a FAILED search's probe, else
    the search's point."""
    return where(res.status == LineSearchStatus.FAILED, res.probe, jnp.stack([res.stepsize, res.value, res.slope]))


def taken(state, res, moved, empty, slope0, stepsize):
    """(probe, t, phi'(t)): whether this iteration probes (x stays after a search along the
    quasi-Newton direction, a memory, that has a trial of positive curvature, fewer than
    MAX_PROBES in a row; None where the search kept no probe, :func:`enabled` false) and the
    pair's step and slope: the probe's trial, else the step taken (``stepsize``)."""
    if res.probe is None:
        return None, stepsize, res.slope
    t, _, slope = trial(res)
    # Signal, not rounding: two trials measure the same curvature along d (within a factor
    # AGREE), as a gradient above its rounding noise does, and noise at a minimum does not.
    t_s, _, slope_s = res.smallest
    c, c_s = (slope - slope0) / t, (slope_s - slope0) / t_s
    agree = (t_s < t) & (c_s > 0) & (c <= AGREE * c_s) & (c_s <= AGREE * c)
    probe = ~moved & ~empty & (res.status != LineSearchStatus.DECREASE) & (t > 0) & (slope > slope0) & agree
    probe = probe & (state.probes < MAX_PROBES)
    return probe, where(probe, t, stepsize), where(probe, slope, res.slope)


def count(state, judged, probe, value):
    """The new ``probes``: one more after a probe, 0 after a step that lowered f (to ``value``)
    by more than its rounding noise (a lucky rounding does not start the count again)."""
    if probe is None:
        return state.probes
    lowered = judged.moved & (state.value - value > judged.noise)
    return where(probe, state.probes + 1, where(lowered, 0, state.probes)).astype(jnp.int32)


def complete_later(memory: _memory.Memory, probe, y, u):
    """(memory, u): the memory with its recorded S^T q, Y^T q (L-BFGS-B: S^T F g, Y^T F g)
    lowered by S^T y, Y^T y (S^T F y, Y^T F y) where ``probe`` (module docstring; the two-loop
    recursion keeps no products), and the step ``u`` to write next, made to depend on them."""
    if probe is None or (memory.gram.ri is None and memory.free is None):
        return memory, u

    def lower():
        v = y()
        if memory.free is not None:  # L-BFGS-B: over the free set F
            v = _bounds.on_free(v, memory.free)
        a, b = _memory.products(memory, v)
        return memory.last.at[:2].add(-jnp.stack([a, b]))

    last = jax.lax.cond(probe, lower, lambda: memory.last)
    # (u + 0 * a product: the row written next depends on the read of the buffer in the branch,
    # so XLA orders that read first and writes the buffer in place instead of copying it)
    after = 0 * jnp.where(jnp.isfinite(last[0, 0]), last[0, 0], 0)
    return memory._replace(last=last), jax.tree.map(lambda a: a + after.astype(a.dtype), u)


def pair_grad(probe, res, new_grad):
    """The gradient at the pair's end: the probe's (a FAILED search's payload) or the step's."""
    return new_grad if probe is None else res.grad.grad


def stays(probe, params, u, x_new):
    """(u, x after the iteration): ``params`` where it probed (u, the pair's s, as it is)."""
    return u, x_new if probe is None else _tree.select(probe, params, x_new)


def either(probe, moved):
    """Whether the iteration has a pair: it ``moved`` x, or probed."""
    return moved if probe is None else moved | probe


def unless(probe, failed):
    """Whether the memory is dropped: the search ``failed`` and the iteration did not probe."""
    return failed if probe is None else failed & ~probe
