"""The two-loop recursion (Nocedal & Wright 2006, Algorithm 7.4) on the same memory.

The BFGS recursion (N&W eq. 7.19) over the stored pairs, oldest first,

    H_{j+1} = (I - rho_j s_j y_j^T) H_j (I - rho_j y_j s_j^T) + rho_j s_j s_j^T,   rho_j = 1 / <s_j, y_j>,

from H_0 = gamma I, applied to q without forming H: both loops run as one loop
of 2m steps (one compiled loop body), steps k < m the first loop, newest pair
first,

    alpha_j = rho_j <s_j, q>,   q <- q - alpha_j y_j,

and steps k >= m the second, oldest first, on r = gamma q (applied at k = m),

    beta = rho_j <y_j, r>,   r <- r + (alpha_j - beta) s_j.

A position without a pair has rho_j = 0 and changes nothing. It makes 2m
sequential passes over the memory (``_compact`` makes two); it needs only the
diagonal of the memory's S^T Y, so with it the memory keeps no other products
(``_memory.init(compact=False)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _memory, _tree
from ._xla import where


def inverse_hessian(memory: _memory.Memory, q, scale=1.0):
    """(scale H q, memory) by the two-loop recursion (the scale is applied in the first
    step, so it costs no pass of its own)."""
    sdt = memory.dtype
    m = _memory.size(memory)
    mask = _memory.valid(memory)
    rho = where(mask, 1 / where(mask, memory.gram.d, 1), 0)  # by slot

    def step(k, carry):
        r, alpha = carry
        second = k >= m
        j = _memory.slot(memory, where(second, k - m, m - 1 - k))  # newest first, then oldest first
        h0 = where(k == m, memory.gamma, where(k == 0, jnp.asarray(scale).astype(sdt), jnp.ones((), sdt)))
        s_j, y_j = _memory.row(memory.s, j), _memory.row(memory.y, j)
        dot_with = _tree.select(second, y_j, s_j)
        move_along = _tree.select(second, s_j, y_j)
        c = rho[j] * (h0 * _tree.inner(dot_with, r, sdt))
        coef = where(second, alpha[j], 0) - c
        r = _combine(coef, move_along, h0, r)
        # In the second loop alpha_j has just been read for the last time: overwriting it is harmless.
        return r, alpha.at[j].set(c)

    hq = jax.lax.fori_loop(0, 2 * m, step, (q, jnp.zeros((m + 1,), sdt)))[0]
    return hq, memory


def _combine(alpha, x, beta, y):
    """alpha x + beta y leaf by leaf at the scalar precision, kept in y's dtypes."""

    def one(u, v):
        wd = _tree.work_dtype(u.dtype, alpha.dtype)
        return (alpha.astype(wd) * u.astype(wd) + beta.astype(wd) * v.astype(wd)).astype(v.dtype)

    return jax.tree.map(one, x, y)
