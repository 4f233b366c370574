"""Differentiating through :func:`qnjax.minimize`'s solution (implicit function theorem).

The solution x*(theta) of min_x f(x, theta), with theta the arrays ``fun`` closes over
and ``args``, satisfies grad_x f(x*, theta) = 0. Differentiating that identity
(N&W 2006, Sec. A.2; Blondel et al. 2022, "Efficient and modular implicit
differentiation", eq. 2):

    A dx = -B dtheta,    A = grad_xx f(x*, theta),    B = grad_x theta f(x*, theta),

so the JVP of the solution is one linear solve with the Hessian, and JAX transposes it
for the VJP (``lax.custom_linear_solve`` with ``symmetric=True``: the same solve serves
both). ``minimize``'s output is a ``jax.custom_jvp`` whose rule runs the solve as
usual, then

* the right-hand side -B dtheta: one JVP of grad_x f in theta at x*;
* dx: conjugate gradients (Hestenes & Stiefel 1952; N&W Algorithm 5.2) on A through
  Hessian-vector products (JVPs of grad_x f in x: the Hessian is never formed, and
  never squared as normal equations would), preconditioned by the run's final L-BFGS
  inverse-Hessian approximation (``_inverse_hessian``), inner products in the scalar
  dtype;
* the tangents of grad f and aux at x*: one JVP of the objective along (dx, dtheta);
  the optimal value's needs no linear solve: d f* = grad_theta f(x*, theta) dtheta
  (the envelope theorem), exact at convergence.

The loud failures: a run that did not succeed (unless ``accept_unconverged``) makes
every derivative NaN; a right-hand side that is not finite, a curvature p^T A p <= 0
met by CG (an indefinite or singular Hessian seen along the Krylov directions) and a
residual still above ``rtol`` after ``maxiter`` steps make dx NaN. A singular Hessian
whose null space the right-hand side does not reach (x* not unique, e.g. a duplicated
feature) is not detected: CG then gives the derivative of the solution the run
selected, in the preconditioner's metric; ``ridge`` makes the system regular. (The NaN
is a factor, not a select, so it survives JAX's transposition to reverse mode.)
``ImplicitDiff(solver="dense")`` forms A instead (n Hessian-vector products) and solves
by its eigendecomposition (``dense_solve``), for small n: a singular A is then NaN even
with the right-hand side in its range.
``x0`` gets no derivative (x* does not depend on where the run started) and the
counters and statuses none.

With bounds the variables on a bound at x* are held there (dx_A = the derivative of
their bound; the bounds are inputs too) and the system is the Hessian's free block
(``_reduced``): the derivative of the solution with that active set, which is the
derivative wherever strict complementarity holds (a variable on its bound with a zero
gradient is treated as active: its one-sided derivative). The primal run is unchanged. A second derivative goes
through the rule again (its JVP differentiates the linear solve), never through the
solver's loop.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _bounds, _conjugate_gradient, _tree
from ._inverse_hessian import InverseHessian
from ._xla import where


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ImplicitDiff:
    """Settings of the linear solve behind derivatives of ``minimize``'s solution.

    ``rtol``: stop when ||r|| <= rtol ||b|| (default eps^(2/3) of the scalar dtype:
    about 4e-11 in float64, 2e-5 in float32); ``maxiter``: CG steps before giving up
    (NaN), default 10 n + 100; ``ridge``: solve (A + ridge I) dx = -B dtheta instead
    (biases the derivative; for a singular A); ``precondition``: with the final L-BFGS
    memory (default True); ``accept_unconverged``: derivatives of a run that did not
    succeed (MAXITER, an early stop) as if it had, instead of NaN; ``solver``: ``"cg"``
    (default, matrix-free) or ``"dense"`` (``dense_solve``: the Hessian formed from n
    Hessian-vector products and solved by its eigendecomposition, for small n; a
    singular or indefinite Hessian then gives NaN, whatever the right-hand side)."""

    rtol: Any = None
    maxiter: Any = None
    ridge: Any = 0.0
    precondition: bool = dataclasses.field(default=True, metadata=dict(static=True))
    accept_unconverged: bool = dataclasses.field(default=False, metadata=dict(static=True))
    solver: str = dataclasses.field(default="cg", metadata=dict(static=True))

    def __post_init__(self):
        if self.solver not in ("cg", "dense"):
            raise ValueError(f"ImplicitDiff(solver=...) is 'cg' or 'dense', got {self.solver!r}")


def _zero_tangent(a):
    a = jnp.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.inexact):
        return jnp.zeros_like(a)
    return np.zeros(a.shape, jax.dtypes.float0)


def conjugate_gradient(matvec, b, precond, config: ImplicitDiff, sdt):
    """Solve A x = b (A symmetric positive definite) by preconditioned CG
    (``_conjugate_gradient``); NaN where that is not what happened (module docstring)."""
    n = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(b))
    rtol = jnp.asarray(jnp.finfo(sdt).eps ** (2 / 3) if config.rtol is None else config.rtol, sdt)
    maxiter = jnp.asarray(10 * n + 100 if config.maxiter is None else config.maxiter, jnp.int32)
    res = _conjugate_gradient.solve(matvec, b, precond, rtol, maxiter, sdt)
    return poison(res.x, jnp.isfinite(res.bb) & ~res.bad & (res.rr <= (rtol * rtol) * res.bb))


def dense_solve(matvec, b, sdt):
    """Solve A x = b with A formed densely: its columns A e_i by n Hessian-vector products
    (vmapped), symmetrised, in the scalar dtype, then A = V diag(w) V^T. NaN unless every
    eigenvalue exceeds n eps max|w| (A positive definite to working precision: a
    singular Hessian is caught even when b lies in its range, which CG cannot see)."""
    if any(jnp.iscomplexobj(leaf) for leaf in jax.tree.leaves(b)):
        raise TypeError("ImplicitDiff(solver='dense') supports real parameters only; use solver='cg'")
    flat_b, unravel = ravel_pytree(b)
    n = flat_b.size
    columns = jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(jnp.eye(n, dtype=flat_b.dtype))
    a = columns.astype(sdt)
    w, v = jnp.linalg.eigh((a + a.T) / 2)
    ok = jnp.all(jnp.isfinite(w)) & (w[0] > n * jnp.finfo(sdt).eps * jnp.max(jnp.abs(w)))
    x = _tree.matmul(v, _tree.matmul(v.T, flat_b.astype(sdt)) / where(ok, w, 1))
    return poison(unravel(x.astype(flat_b.dtype)), ok & jnp.all(jnp.isfinite(flat_b)))


def poison(tangent, ok):
    """``tangent`` if ``ok`` else NaN, as a product with a primal factor (linear in the
    tangent: a select would lose the NaN when JAX transposes it for reverse mode)."""
    factor = where(ok, 1.0, jnp.nan)
    return jax.tree.map(lambda a: a * factor.astype(a.dtype), tangent)


def _reduced(box, d_box, x, hvp, precond, neg):
    """The system on the free variables (strictly inside their bounds at x*): with A the
    active ones, dx_A = d(their bound) and H_FF dx_F = -(B dtheta)_F - H_FA dx_A. Written
    as one SPD system over every variable, identity on A (BLNZ's Z^T H Z, masked):
    M v = F H (F v) + (1 - F) v, right-hand side F (-B dtheta - H dx_A) + (1 - F) dx_A."""
    free = _bounds.inside(x, box)
    d_bound = jax.tree.map(lambda v, lo, dlo, dhi: jnp.broadcast_to(where(v == lo, dlo, dhi), v.shape)
                           .astype(v.dtype), x, box.lower, d_box.lower, d_box.upper)
    dx_a = jax.tree.map(lambda f, d: where(f, 0, d), free, d_bound)
    on_free = functools.partial(_bounds.on_free, free=free)

    def masked(op):
        return lambda v: jax.tree.map(lambda f, a, b: where(f, a, b), free, op(on_free(v)), v)

    coupling = hvp(dx_a)
    rhs = jax.tree.map(lambda f, n, c, d: where(f, n - c.astype(n.dtype), d.astype(n.dtype)),
                       free, neg, coupling, dx_a)
    return masked(hvp), masked(precond), rhs


def differentiable(solve, config: ImplicitDiff):
    """``solve(solver, objective, x0, args, state0, box) -> OptimizeResult`` with derivatives
    of x, fun, grad and aux with respect to the objective's arrays and ``args``. (``minimize``
    calls ``solve`` itself where no trace above the call can differentiate it: none, or
    only ``jax.vmap``'s, ``_compile.nothing_differentiates``.)"""

    @jax.custom_jvp
    def run(solver, objective, x0, args, state0, box):
        return solve(solver, objective, x0, args, state0, box)

    @run.defjvp
    def rule(primals, tangents):
        solver, objective, x0, args, state0, box = primals
        _, d_objective, _, d_args, _, d_box = tangents
        res = run(solver, objective, x0, args, state0, box)
        # (one compiled program for the whole tangent: under an eager ``jax.grad`` its dozens of
        # operations were each compiled and dispatched on their own)
        return res, _tangent(config, objective, args, box, d_objective, d_args, d_box, res)

    return run


@jax.jit
def _tangent(config: ImplicitDiff, objective, args, box, d_objective, d_args, d_box, res):
    """The tangent of ``minimize``'s result (``differentiable``'s rule) from those of the
    objective's arrays, ``args`` and the bounds, at the solution ``res``."""
    x = res.x
    sdt = res.fun.dtype
    if box is None and res.state.bounds is not None:  # resumed: the bounds are data, not inputs
        box, d_box = res.state.bounds, jax.tree.map(jnp.zeros_like, res.state.bounds)

    def grad_at(point, obj, a):
        return obj(point, a)[1]

    _, rhs = jax.jvp(lambda obj, a: grad_at(x, obj, a), (objective, args), (d_objective, d_args))
    ridge = jnp.asarray(config.ridge, sdt)

    def hvp(v):
        hv = jax.jvp(lambda p: grad_at(p, objective, args), (x,), (v,))[1]
        return _tree.add(hv, _tree.scale(ridge, v, hv))

    precond = InverseHessian(res.state).matvec if config.precondition else (lambda r: r)

    neg = jax.tree.map(jnp.negative, rhs)
    if box is not None:
        hvp, precond, neg = _reduced(box, d_box, x, hvp, precond, neg)
    # Every leaf of the right-hand side linear in the tangents (0 times the sum of each leaf's
    # first entry added; a whole sum could overflow): a leaf that does not depend on them (a
    # parameter the data never touch) is a constant, and ``jax.grad`` failed in
    # custom_linear_solve's transpose rule, which asks all to be linear.
    firsts = (jnp.sum(jnp.real(jnp.ravel(a))[:1]).astype(sdt) for a in jax.tree.leaves(neg))
    link = 0 * sum(firsts, jnp.zeros((), sdt))
    neg = jax.tree.map(lambda a: a + link.astype(a.dtype), neg)
    if config.solver == "dense":
        linear_solve = lambda mv, b: dense_solve(mv, b, sdt)  # noqa: E731
    else:
        linear_solve = lambda mv, b: conjugate_gradient(mv, b, precond, config, sdt)  # noqa: E731
    dx = jax.lax.custom_linear_solve(hvp, neg, linear_solve, symmetric=True)
    _, (_, d_grad, d_aux) = jax.jvp(lambda p, obj, a: obj(p, a), (x, objective, args), (dx, d_objective, d_args))
    # The optimal value needs no linear solve (envelope theorem): d f* = grad_theta f dtheta,
    # plus g_A dx_A with bounds (the gradient is not zero on the active variables).
    _, d_value = jax.jvp(lambda obj, a: obj(x, a)[0], (objective, args), (d_objective, d_args))
    if box is not None:
        d_value = d_value + _tree.inner(res.grad, dx, sdt).astype(d_value.dtype)  # (f's gradient: not scale f's)
    if not config.accept_unconverged:
        dx, d_value, d_grad, d_aux = poison((dx, d_value, d_grad, d_aux), res.success)
    zero = jax.tree.map(_zero_tangent, res)
    d_state = zero.state._replace(params=dx, value=d_value, grad=d_grad, aux=d_aux)
    return zero._replace(x=dx, fun=d_value, grad=_tree.conj(d_grad), aux=d_aux, state=d_state)
