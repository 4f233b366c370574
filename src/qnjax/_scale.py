"""f's scale below float64: a power of two chosen at x0, so the run's products stay in range.

Every rule of the solver is homogeneous in f: f times a constant c takes the same iterates
and the same stop (``tests/test_failure.py``), up to the rounding of c f, and for c a power
of two bit for bit, since multiplying by 2^k rounds nothing. Except at the edges of the
dtype's range. Below float64 the products of two gradients (<y, y>, Y^T y, <g, g>, the
memory's small matrices) lose the terms of components below 2^-63 (1.1e-19 in float32:
their squares are below the smallest normal number, which XLA:CPU flushes to zero) and
overflow beyond 2^64. sum_i i x_i^4 (n = 100, x0 = 1) in float32 stopped PRECISION after 69
iterations; times 2^-10 it took 94, times 2^-20 528, and times 2^-30 and 2^-40 it ran out of
evaluations (15,000) with f still falling: its iterates were the plain run's, times the
power of two, bit for bit, until the gradient's components reached 2^-63 (iterations 49, 43,
34 and 24), and then <y, y> lacked the terms that had underflowed.

So below float64 ``minimize`` (with or without bounds) solves sigma f with sigma = 2^e chosen from
f(x0) and g(x0) (:func:`scale_for`). A run's gradients mostly fall from g(x0) towards 0, so
e brings a max |g(x0)_i| below 2^TARGET up to [2^TARGET, 2^(TARGET + 1)) (which leaves 2^83
below it before squares underflow, and 2^43 above, beyond which ``_tree.unoverflowed``'s
guard takes over), and one beyond 2^HIGH, whose squares near the overflow, down to
[2^(HIGH - 1), 2^HIGH) (not further: a far start's gradient, 1e36 for Jennrich-Sampson from
10 x0, falls to a normal size near the minimum, where a scale of 2^-99 underflowed it: three
MGH runs from 10 and 100 x0 ran out of evaluations with it); between, e = 0. Also 2^-DOWN
<= sigma <= 2^UP; where these allow, |sigma f(x0)| stays below 2^F_ROOM (the line search's
trials, which may be far larger than f(x0), keep 2^87 before float32 overflows) and, where
sigma scales down, not below 2^-F_ROOM; and a gradient leaf of a dtype with a smaller range than the scalar dtype's
(float16) stays below 2^-NARROW_ROOM of its largest number. f times a power of two then
runs as f does, to the edge of the range: the quartic above times 1, 2^-10, 2^-20 and 2^-30
takes the same 63 iterations and 64 evaluations, and stops PRECISION; times 2^-40 f itself
falls below float32's smallest normal number near the end (f = 0 at the stop, also
PRECISION). Rosenbrock's function (n = 4, x0 = 0) times 1e-25 to 1e25 takes 32 iterations
and 52 evaluations, as the plain one does (before: 1e-20 and 1e-25 and 1e22 and 1e25 ran out
of 3,000 evaluations, 1e20 took 762 iterations). On the MGH catalogue in float32 (40 problems
from 1, 10 and 100 x0, ``minimize``'s defaults, judged as ``qnjax bench`` judges) the
outcomes are unchanged (114 solved, 2 false successes, 0 false failures; 53 of the 120 runs
moved in the last bits, as any change to a compiled program's arithmetic moves them) and the
evaluations went from 41,516 to 41,349.

The floor of f (``_verdict.floor``: what rounding can hide) is no less than sigma times the
smallest normal number: below that f itself is flushed to 0.

With bounds, two of scipy's rules are not homogeneous in f: the first trial, the whole step
to P(x - g) (H0 = I: ``_first_trial``), and the stationarity measure ||P(x - g) - x||_inf. Both
are kept as they are for f itself: H0 = gamma I has gamma = 1 / sigma until a pair sets it
(:func:`unit_h0`: the identity of f's units; also in the Optax face without
``scale_init_precond``, where no pair sets it), the projected method's step with no pair is
P(x - g / sigma) - x, and the measure is sigma ||P(x - g / sigma) - x||_inf
(``_bounds.stationarity``), compared with sigma ``gtol``. So sigma f takes f's iterates with
bounds too: Rosenbrock (n = 4, from 0) in [-2, 0.8]^4 times 2^30, 2^60, 2^80 and 2^90 takes
the same 19 iterations bit for bit (L-BFGS-B; the projected method 29), where with sigma = 1,
as bounds had before, 2^80 and 2^90 ran out of 3,000 evaluations with both methods; times
1e20, L-BFGS-B had taken 749 iterations, times 1e-20 284 (now 19 and 23). With every bound
infinite L-BFGS-B takes the unconstrained iterates. In float64 sigma is 1 (its squares
underflow only below 1e-154).

``minimize``'s state keeps sigma f and sigma g (``State.scale`` is sigma), and its memory is of
sigma f (its H is f's divided by sigma).

The Optax face with a line search chooses sigma at its first update (``state.count`` 0), from
the value and gradient it is given, and keeps it in ``State.scale``: its update works on
:func:`scaled` (value, grad and the updates it is given times sigma; its memory, f's floor and
start are sigma f's) and returns :func:`unscaled`, so the state's value and gradient stay the
user's (read back by ``optax.value_and_grad_from_state``). In float32, loops over updates until
the status left RUNNING: Rosenbrock times 1e-25 and 1e-20 had not finished after 3,000 updates,
times 1e20 and 1e25 took 880 and 2,072 updates, and the quartic above times 2^-30 had not
finished after 3,000 (11,872 evaluations); each now takes the updates of f times 1 (34, 64).
Without a line search sigma is 1 (the first update, -g / ||g||, is not homogeneous in f).

What leaves the solve is in f's units (:func:`unscaled`): the result's ``fun`` and ``grad``,
the trace's f and max |g_i|, the callback's and the display's values, ``hess_inv``. The
tolerances given in f's units (``gtol`` on max |g_i|, ``fatol`` on f's change) are
multiplied by sigma (:func:`scaled_problem`); with bounds ``gtol`` is on f's projected
gradient (above). A step size is along the run's direction: -H g is the same for f and sigma
f, but a step along -g (the first, and a retry) is 1 / sigma times f's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from . import _tree

TARGET = 20  # max |g(x0)_i| below 2^TARGET brought up to [2^TARGET, 2^(TARGET + 1))
HIGH = 50  # and beyond 2^HIGH down to [2^(HIGH - 1), 2^HIGH)
UP, DOWN = 100, 40  # 2^-DOWN <= sigma <= 2^UP (sigma and 1 / sigma normal numbers in float32 and bfloat16)
F_ROOM = 40  # |sigma f(x0)| < 2^F_ROOM
NARROW_ROOM = 8  # a leaf of fewer exponent bits: sigma max |g_i| < 2^-NARROW_ROOM its largest number


def _exponent(a):
    """e with 2^(e - 1) <= |a| < 2^e (0 for a = 0)."""
    return jnp.frexp(a)[1]


def _narrow(leaf, sdt) -> bool:
    """Whether ``leaf``'s dtype has a smaller range than the scalar dtype (static: float16)."""
    return jnp.finfo(_tree.dtype_of(leaf)).maxexp < jnp.finfo(sdt).maxexp


def scale_for(value, grad):
    """sigma (the scalar dtype, ``value``'s) for f(x0) = ``value`` and g(x0) = ``grad`` (module
    docstring); 1 in float64, and where f or g is not finite or g is 0 (the run stops at x0).
    No derivative flows through it (``adjoint="unrolled"``)."""
    sdt = value.dtype
    if not _tree.guards_range(sdt):
        return jnp.ones((), sdt)
    value, grad = jax.lax.stop_gradient((value, grad))
    gmax = _tree.norm_inf(grad, sdt)
    eg = _exponent(gmax)
    e = jnp.where(eg <= TARGET, TARGET + 1 - eg, jnp.where(eg > HIGH, HIGH - eg, 0))
    ef = _exponent(value)  # (2^-F_ROOM <= |sigma f(x0)| < 2^F_ROOM, but where g asks no scale down)
    e = jnp.where(value != 0, jnp.maximum(jnp.minimum(e, F_ROOM - ef), jnp.minimum(1 - F_ROOM - ef, 0)), e)
    for leaf in jax.tree.leaves(grad):
        if _narrow(leaf, sdt) and leaf.size:
            room = jnp.finfo(_tree.dtype_of(leaf)).maxexp - NARROW_ROOM
            e = jnp.minimum(e, room - _exponent(jnp.max(jnp.abs(leaf)).astype(sdt)))
    ok = jnp.isfinite(value) & jnp.isfinite(gmax) & (gmax > 0)
    return jnp.ldexp(jnp.ones((), sdt), jnp.where(ok, jnp.clip(e, -DOWN, UP), 0))


def times(tree, factor):
    """Each leaf times ``factor`` (a power of two in the scalar dtype), exactly where the
    result is in the leaf's range; a leaf of a smaller range than ``factor``'s dtype is
    multiplied in that dtype (2^40 is not a float16)."""
    def one(a):
        if jnp.finfo(_tree.dtype_of(a)).maxexp < jnp.finfo(factor.dtype).maxexp:
            wide = _tree.work_dtype(_tree.dtype_of(a), factor.dtype)  # (complex64 by a float64: complex128)
            return (a.astype(wide) * factor.astype(wide)).astype(a.dtype)
        return a * factor.astype(_tree.dtype_of(a))  # (a complex leaf: factor + 0j, exact)

    return jax.tree.map(one, tree)


@jax.tree_util.register_pytree_node_class
class Scaled:
    """``objective`` times ``scale``: ``(params, args) -> (scale f, scale g, aux)``."""

    def __init__(self, objective, scale):
        self.objective, self.scale = objective, scale

    def __call__(self, params, args):
        value, grad, aux = self.objective(params, args)
        return value * self.scale.astype(value.dtype), times(grad, self.scale), aux

    def tree_flatten(self):
        return (self.objective, self.scale), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def scaled_problem(objective, solver, scale):
    """(``objective`` of scale f, ``solver`` with its tolerances in f's units times ``scale``)."""
    def times_scale(tol):
        return None if tol is None else tol * scale

    return Scaled(objective, scale), dataclasses.replace(solver, gtol=times_scale(solver.gtol),
                                                         fatol=times_scale(solver.fatol))


def unit_h0(state):
    """``state`` with its memory's H0 = gamma I the identity of f's own units, gamma = 1 / ``state.scale``,
    where no pair has set gamma yet (module docstring: with bounds, and without
    ``scale_init_precond``, where gamma is never set)."""
    memory = state.memory
    gamma = jnp.where(memory.flags[2], memory.gamma, 1 / state.scale).astype(memory.dtype)
    return state._replace(memory=memory._replace(scalars=memory.scalars.at[0].set(gamma)))


def resumed(state):
    """``state`` as a resumed run (``minimize(..., state=...)``) continues from it: in float64, where
    sigma is always 1, with that 1 a constant of the program, as a fresh run's program has it (an input
    sigma kept f's and g's multiplications by it, LLVM fused other multiply-adds, and 14 of 40 MGH
    problems resumed after 5 iterations parted from their one runs in the last bits)."""
    if _tree.guards_range(state.value.dtype):
        return state
    return state._replace(scale=jnp.ones_like(state.scale))


def unscaled(state):
    """``state`` with f and its gradient in the user's units (``value``, ``grad`` divided by
    ``state.scale``, exactly): what the trace, the callback, the display and the result show,
    and the Optax face's state."""
    inverse = 1 / state.scale
    return state._replace(value=state.value * inverse, grad=times(state.grad, inverse))


def scaled(state):
    """``state`` with f and its gradient times ``state.scale`` (the solver's units; the inverse
    of :func:`unscaled`): what the Optax face's update works on."""
    return state._replace(value=state.value * state.scale, grad=times(state.grad, state.scale))
