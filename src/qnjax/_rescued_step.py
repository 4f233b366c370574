"""The iteration after a rescue (``_rescue``) searches along the rescue's step p itself.

The rescue stores the pair (p, H p) of truncated CG on H p = -g, whose residual is
r = -g - H p, and asks for p (``State.newton``'s third entry). The BFGS update gives
H_+ y = s (N&W eq. 6.17), so the quasi-Newton direction after it would be

    -H_+ g = H_+ (H p + r) = p + H_+ r,

p only where CG solved the equation. Where it stopped short (n > its products, or a
Hessian beyond 1 / eps), H_+ r, the memory's largest inverse curvatures times r, could swamp
p: a float32 least-squares fit whose Hessian's condition number is 1.9e7, rescued with a
good p (cosine 0.999 with the exact Newton step, its model's decrease 0.867 of the 0.869
left), got a direction of cosine 0.12 with p and 600 times longer; its search failed, and
the run stopped PRECISION 0.2% above its minimum. So the next direction is p, the memory's
newest s (``pending``: the rescue asked and this iteration's ``push`` stored the pair), once
(``taken``). The compact direction forms it as its weighted sum with h0 = 0 and one
coefficient (``_compact``: no pass of its own); the two-loop recursion and the projected
method select it (``along``); L-BFGS-B also takes its slope g^T p and, for ``push``'s kept
products, S^T p and Y^T p, the newest rows of SS and SY that ``push`` wrote
(``along_subspace``).

Measured (float32; ``python benchmarks/box_fits.py --face optax --batched --seeds 0-15``,
loops over ``qnjax.lbfgs`` under ``jax.vmap``, 6,400 fits a method): the runs that reported
success above their minimum fell from 1 to 0 (unbounded) and from 3 to 0 (L-BFGS-B), 0 for
the projected method before and after; the four now end within 4.2e-7 of f* (relative).
One L-BFGS-B fit that had stopped PRECISION 10% above f* (within the bench's tolerance of a
fit whose f* is 1.2e-4, batched and not) now goes on lowering f, a little at each update, to
the loop's limit (a false failure there: 7% above f* after 2,000 updates). The float32
catalogue (``qnjax bench --solvers qnjax --set all --starts 1,10,100 --dtype float32``):
227 of 237 solved before and after; the false successes
fell from 3 to 2 (Meyer from 100 times its start, which had stopped PRECISION at f = 1.25e9,
runs to the iteration limit), and 8 runs changed their iteration counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _memory, _tree
from ._memory import CS
from ._rescue import enabled
from ._state import State
from ._xla import where


def pending(state: State, stored, solver):
    """Whether this iteration's direction is the last rescue's step p (module docstring): the
    rescue asked for it and this iteration's ``push`` stored its pair (the newest s is p).
    None where ``solver``'s rescues are off (static)."""
    return None if not enabled(state, solver) else (state.newton[2] > 0) & stored


def taken(state: State, solver, origin=False):
    """``State.newton`` once an iteration has searched (its direction was p or not: p once); where x
    is at the origin (``_origin.at_origin``), as if a model had been taken at f: none is wanted."""
    if not enabled(state, solver):
        return state.newton
    return jnp.stack([where(origin, state.value, state.newton[0]), state.newton[1], jnp.zeros_like(state.value)])


def along(newest, memory, d, scale=1.0):
    """d, or where ``newest`` scale times the memory's newest s (p): a select, for the
    directions that do not form p from their coefficients (``_compact``'s does)."""
    if newest is None:
        return d
    p = _memory.row(memory.s, _memory.newest(memory))
    return _tree.select(newest, _tree.scale(jnp.asarray(scale).astype(memory.dtype), p, d), d)


def along_subspace(newest, kept, grad, d, usable, memory, slope):
    """L-BFGS-B's (d, usable, memory, g^T d) from ``_subspace.direction``'s, or where ``newest``
    holds those of p: its slope, and with ``kept`` [S^T p, Y^T p] for ``push`` (its rows of SS
    and SY, which ``push`` wrote: no pass)."""
    if newest is None:
        return d, usable, memory, slope
    d = along(newest, memory, d)
    if kept:
        j, ok = _memory.newest(memory), _memory.valid(memory)
        rows = jnp.stack([where(ok, memory.gram.ss[j], 0), where(ok, memory.gram.sy[j], 0)])
        memory = memory._replace(last=where(newest, memory.last.at[CS:].set(rows), memory.last))
    if slope is not None:  # (else the solver takes d's slope from d; a pass over g and p only for p's)
        slope = jax.lax.cond(newest, lambda: _tree.inner(grad, d, memory.dtype).astype(slope.dtype), lambda: slope)
    return d, usable | newest, memory, slope
