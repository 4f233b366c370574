"""Unrolled differentiation: the solve as a loop that reverse mode can go through.

``minimize(..., adjoint="unrolled")`` differentiates the iterations themselves, as a
program (every step size, every curvature pair), instead of the optimality condition
(``_implicit``). That derivative is the one of what the run computed, whether or not it
converged: the choice for a short run stopped early on purpose (a few iterations of a
learned inner loop, meta-learning), or as a reference for the implicit derivative. At a
converged solution the two agree to the accuracy of the solve (tested); implicit
differentiation is cheaper and needs no memory per iteration, so it is the default.

Everything the run computed is differentiated, the step sizes included (a trial step is
a smooth function of the earlier trials' values and slopes; holding the steps constant
instead gives derivatives that need not approach the solution's, as Gilbert (1992)
warned for quasi-Newton iterations). A search picks its next trial among candidates
with ``where``, and an unpicked one may divide by zero: reverse mode would turn that
into NaN, so the trial's derivative goes through its forward-mode Jacobian
(:func:`forward_derivative`). Where a pair is rejected the memory's update
divides by what it kept instead (``_memory_update.push``). L-BFGS-B is not supported (the
Cauchy point's sort); its implicit derivatives are.

JAX cannot transpose a ``while_loop``, so in this mode both loops have a static trip
count, and what is not needed is skipped by ``lax.cond`` (a finished run costs nothing
more per iteration):

* the line search runs at most its ``max_steps`` trials (``linesearch._base.run``,
  ``fixed_steps``);
* the iterations (:func:`loop`) run at most 2 ``maxiter`` times (an iteration whose
  search fails along the quasi-Newton direction is retried along -g without counting:
  at most one retry per iteration), then a run still going stops with MAXITER.

Memory. Reverse mode keeps, for every iteration it differentiates, what that iteration
needs: here only its input state (each iteration is ``jax.checkpoint``-ed, so its line
search's trials are recomputed during the backward pass), and the iterations are
grouped in about sqrt(N) blocks of sqrt(N) (N = 2 ``maxiter``), each block
checkpointed too (two-level checkpointing; Griewank & Walther 2008, Sec. 12.3): the
backward pass stores the state at the start of every block and, while it goes through
one block, the states inside it: about 2 sqrt(N) states (each holds the memory, 2
(m + 1) n numbers), not N, for one extra forward pass; a short run (N <= ``FLAT_LIMIT``)
is one loop, where blocks would save little. A line search's trials are
checkpointed one by one, without blocks: while the backward pass goes through one
iteration it stores that iteration's trial states (at most ``max_steps``, each a
gradient and a few scalars), fewer numbers than one state's memory; blocks there would
only make the program larger (3 iterations on Rosenbrock, reverse mode: 25,900 lines of
optimised HLO instead of 29,300, lowered in half the time). Forward mode (``jax.jvp``,
``jax.jacfwd``) needs no storage at all.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _callbacks, _tree
from ._xla import where


def search_steps(linesearch, bounds, bounds_method="lbfgsb") -> int:
    """The static trip count of the line search's loop: its ``max_steps``. With bounds, for
    the projected method only (``_projected``: masks and a projection, no sort)."""
    if bounds is not None and bounds_method == "lbfgsb":
        raise NotImplementedError("unrolled derivatives through L-BFGS-B are not supported yet (the Cauchy "
                                  "point's derivative is not defined through its sort); the default implicit "
                                  "derivatives of qnjax.minimize handle bounds, and bounds_method='projected' "
                                  "unrolls")
    steps = linesearch.max_steps
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise TypeError(f"unrolled derivatives need the line search's max_steps as a Python integer >= 1 "
                        f"(the loop's static length), got {steps!r}")
    return steps


# Up to this many iterations (a short run: maxiter <= 8) they are one loop: blocks would
# store about 2 sqrt(n) >= n / 2 states instead of n, for an extra forward pass and a
# larger program (3 iterations on Rosenbrock, reverse mode: 18,100 lines of optimised HLO
# instead of 25,900; traced, lowered and compiled in 15.0-16.2 s instead of 16.9-17.8).
FLAT_LIMIT = 16


def host_calls_saved(primitive, *_, **params) -> bool:
    """The checkpoints' policy: save nothing but the values ``_callbacks`` names HOST (the
    callback's answers, the printed operands) and let ``jax.debug.callback`` be saved. So
    the backward pass, which runs the iterations again, does not call the host again:
    ``callback``'s answers are the run's (one that counts its calls could otherwise stop the
    recomputed run elsewhere), and ``verbose`` prints each line once. (A ``pure_callback`` in
    ``fun`` is recomputed as before: its outputs, saved, would be residuals per trial.)"""
    return primitive.name == "debug_callback" or (primitive.name == "name" and params.get("name") == _callbacks.HOST)


def loop(running, body, carry, n: int, blocks: bool = True):
    """``while running(carry): carry = body(carry)``, at most ``n`` times (static), as
    checkpointed ``fori_loop``-s (scans) whose iterations are skipped by ``lax.cond``
    once ``running`` is false: nested in about sqrt(n) blocks (``blocks``: the
    iterations, more than ``FLAT_LIMIT`` of them), or one loop (a line search's trials, a
    short run's iterations). The ``cond`` is inside the checkpoint: what the iterations
    share (a data matrix ``fun`` closes over) then stays one loop-invariant input of the
    scan, where a ``cond`` outside would hand it to reverse mode as a residual per
    iteration."""
    n = int(n)
    if n <= 0:
        return carry
    step = jax.checkpoint(lambda c: jax.lax.cond(running(c), body, lambda c: c, c), prevent_cse=False,
                          policy=host_calls_saved)
    if not blocks or n <= FLAT_LIMIT:
        return jax.lax.fori_loop(0, n, lambda _, c: step(c), carry)
    size = math.isqrt(n - 1) + 1  # ceil(sqrt(n)) iterations per block
    count = -(-n // size)

    def block(c):
        return jax.lax.fori_loop(0, size, lambda _, c: step(c), c)

    outer = jax.checkpoint(block, prevent_cse=False, policy=host_calls_saved)
    return jax.lax.fori_loop(0, count, lambda _, c: outer(c), carry)


def forward_derivative(fn):
    """``fn`` (of pytrees of scalars) with the same values, whose derivative is its
    forward-mode Jacobian at the primal inputs, formed explicitly (``jax.jacfwd``; entries
    that are not finite set to 0) and applied as a matrix product.

    A search's update picks its next trial among candidates (cubic, quadratic, secant,
    bisection) with ``where``; a candidate not picked may divide by zero. Forward mode
    never sees it (``where`` picks the tangent too), but reverse mode multiplies the zero
    cotangent of the unpicked branch by its infinite partial derivative: NaN. Through this
    wrapper reverse mode transposes the finite Jacobian instead.

    The floating-point inputs and outputs are each raveled into one vector, so the
    Jacobian is one (outputs x inputs) matrix and its product one matrix-vector product
    (a product per pair of leaves would put hundreds of scalar operations into every
    line-search trial of the differentiated program, and compile time grows with them)."""

    def inexact(v):
        return jnp.issubdtype(jnp.result_type(v), jnp.inexact)

    @jax.custom_jvp
    def wrapped(*args):
        return fn(*args)

    @wrapped.defjvp
    def rule(primals, tangents):
        leaves, treedef = jax.tree.flatten(primals)
        which = [i for i, v in enumerate(leaves) if inexact(v)]
        x, unravel = ravel_pytree([leaves[i] for i in which])

        def of_floats(vector):  # (the floats raveled, and the whole output: fn is traced once)
            full = list(leaves)
            for i, v in zip(which, unravel(vector)):
                full[i] = v
            out = fn(*jax.tree.unflatten(treedef, full))
            return ravel_pytree([v for v in jax.tree.leaves(out) if inexact(v)])[0], out

        jac, out = jax.jacfwd(of_floats, has_aux=True)(x)
        y, unravel_out = ravel_pytree([v for v in jax.tree.leaves(out) if inexact(v)])
        dot = ravel_pytree([jax.tree.leaves(tangents)[i].astype(leaves[i].dtype) for i in which])[0]
        dy = jnp.matmul(where(jnp.isfinite(jac), jac, 0), dot.astype(jac.dtype), precision=_tree.HIGHEST)
        floats = iter(unravel_out(dy.astype(y.dtype)))
        outs, out_def = jax.tree.flatten(out)
        result = [next(floats) if inexact(v) else np.zeros(np.shape(v), jax.dtypes.float0) for v in outs]
        return out, jax.tree.unflatten(out_def, result)

    return wrapped
