"""Conjugate gradients on A x = b through products with A (the matrix is never formed).

Preconditioned CG (Hestenes & Stiefel 1952; Nocedal & Wright 2006, Algorithm 5.3), with
M^-1 = ``precond``: from x_0 = 0, r_0 = b, z_0 = M^-1 r_0, p_0 = z_0,

    alpha_k = r_k^T z_k / p_k^T A p_k,     x_{k+1} = x_k + alpha_k p_k,
    r_{k+1} = r_k - alpha_k A p_k,         z_{k+1} = M^-1 r_{k+1},
    p_{k+1} = z_{k+1} + (r_{k+1}^T z_{k+1} / r_k^T z_k) p_k,

until ||r|| <= rtol ||b||, ``maxiter`` steps, or a curvature p_k^T A p_k that is not positive
(or not finite): then the iterate stays x_k, the last one that lowered the quadratic model
q(x) = x^T A x / 2 - b^T x, as truncated CG does (Steihaug 1983; N&W Algorithm 7.2 without
its trust region). x_k minimises q over the Krylov space of its k steps, so in exact
arithmetic q(x_k) = -b^T x_k / 2; r_k = b - A x_k is kept, so A x_k = b - r_k costs no
product. Inner products accumulate in the scalar dtype ``sdt``; the vectors keep their
leaves' dtypes.

With a ``floor`` c, a curvature kappa = p_k^T A p_k / p_k^T p_k that is not positive (but
finite) after the first step is taken at its absolute value |kappa| instead, or, where it is
exactly zero, at mu = c p_0^T A p_0 / p_0^T p_0 (c times the curvature along b), and that step
is the last: A p_k is replaced by A p_k + (|kappa| - kappa) p_k (or + mu p_k), so r stays
b - (the products used) x, and p^T (those products) p > 0. Along p_k the model still falls at
the rate r_k^T p_k, which A alone would leave unseen by ending at x_k (a Hessian with one
stiff direction and one of negative curvature: ``_rescue``).

Used by the implicit derivatives (``_implicit``: A the Hessian at the solution) and by the
Newton model before a float32 PRECISION (``_rescue``: ``floor`` = eps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _tree
from ._xla import where


class Solved(NamedTuple):
    x: Any  # the last iterate (a pytree like b)
    r: Any  # b - A x
    rr: Any  # r^T r, scalar dtype
    bb: Any  # b^T b
    steps: Any  # int32: products with A made
    bad: Any  # bool: a curvature p^T A p that was not positive (or not finite) ended it


def solve(matvec, b, precond, rtol, maxiter, sdt, floor=None) -> Solved:
    """CG on ``matvec(x) = b`` (module docstring); ``rtol`` and ``maxiter`` may be traced;
    ``floor``: None, or c for the last step at a curvature that is not positive (module docstring)."""
    bb = _tree.inner(b, b, sdt)
    target = (rtol * rtol) * bb
    z = precond(b)
    zero = jnp.zeros((), sdt)
    init = (_tree.zeros_like(b), b, z, _tree.inner(b, z, sdt), bb, jnp.zeros((), jnp.int32), jnp.asarray(False), zero)

    def going(c):
        *_, rr, k, bad, _ = c
        return (rr > target) & (k < maxiter) & ~bad

    def body(c):
        x, r, p, rz, _, k, _, mu = c
        ap = matvec(p)
        pap = _tree.inner(p, ap, sdt)
        bad = ~((pap > 0) & jnp.isfinite(pap))  # indefinite, singular, or not finite
        take = ~bad
        if floor is not None:
            pp = _tree.inner(p, p, sdt)
            mu = where(k == 0, floor * pap / where(pp > 0, pp, 1), mu).astype(sdt)
            weak = bad & jnp.isfinite(pap) & (k > 0) & (mu > 0) & jnp.isfinite(mu) & (pp > 0)
            kappa = pap / where(weak, pp, 1)
            taken = where(kappa < 0, -kappa, mu)  # |kappa|, or mu for a zero curvature
            ap = _tree.add(ap, _tree.scale(where(weak, taken - kappa, 0), p, ap))
            pap = where(weak, taken * pp, pap)
            take = take | weak
        alpha = where(take, rz / where(take, pap, 1), 0)
        x = _tree.add(x, _tree.scale(alpha, p, x))
        r_new = _tree.sub(r, _tree.scale(alpha, ap, r))
        r = _tree.select(take, r_new, r)  # (a bad step changes neither x nor r)
        z = precond(r)
        rz_new = _tree.inner(r, z, sdt)
        p = _tree.add(z, _tree.scale(rz_new / where(rz != 0, rz, 1), p, z))
        return x, r, p, rz_new, _tree.inner(r, r, sdt), k + 1, bad, mu

    x, r, _, _, rr, k, bad, _ = jax.lax.while_loop(going, body, init)
    return Solved(x, r, rr, bb, k, bad)
