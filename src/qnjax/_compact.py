"""Products with the L-BFGS matrices in compact form (Byrd, Nocedal & Schnabel 1994).

With the memory's chronological S, Y (``_memory``), R the upper triangle of
S^T Y (R_ij = <s_i, y_j> for i <= j), D its diagonal and H0 = gamma I, the
inverse BFGS matrix is (BNS Theorem 2.2, eq. 2.6; N&W eq. 7.24's inverse form)

    H = gamma I + [S  gamma Y] [ R^-T (D + gamma Y^T Y) R^-1   -R^-T ] [ S^T       ]
                               [ -R^-1                           0    ] [ gamma Y^T ].

So, with a = S^T q and b = Y^T q (one pass over the memory),

    u   = R^-1 a,
    c_s = R^-T (D u + gamma Y^T Y u - gamma b),      c_y = -gamma u,
    H q = gamma q + S c_s + Y c_y                     (a second pass),

the small algebra costing O(m^2) in the scalar dtype, in the memory's slot order
(R^-1 is kept by the memory). Positions without a pair have a = b = 0 and get zero coefficients. This
equals the two-loop recursion (N&W Algorithm 7.4) in exact arithmetic; the
memory's vector-free update needs the coefficients, which are recorded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _memory, _memory_update
from ._products import matvec, vecmat
from ._xla import where


def coefficients(memory: _memory.Memory, a, b, ri=None, yy=None):
    """(c_s, c_y) with H q = gamma q + S c_s + Y c_y, from chronological a = S^T q, b = Y^T q;
    R^-1 and Y^T Y the memory's unless given (L-BFGS-B's memory keeps neither: ``_subspace``),
    all in a's dtype (``_subspace``: float64 for a float32 memory; no implicit promotion, which
    ``jax.numpy_dtype_promotion("strict")`` refuses)."""
    mask = _memory.valid(memory)
    g = memory.gram
    ri = g.ri if ri is None else ri
    yy = g.yy if yy is None else yy
    gamma, d = memory.gamma.astype(a.dtype), g.d.astype(a.dtype)
    # The vectors are masked (a, b are zero where no pair), so no matrix needs to be.
    u = where(mask, matvec(ri, a), 0)
    w = where(mask, d * u + gamma * matvec(yy, u) - gamma * b, 0)
    c_s = where(mask, vecmat(w, ri), 0)  # R^-T w
    return c_s, -gamma * u


def r_inverse(memory: _memory.Memory, sy):
    """R^-1 (zero where no pair) for R, the upper triangle of S^T Y in chronological order
    (R_ij = s_i^T y_j for pair i not newer than pair j), from slot-order ``sy`` = S^T Y, in its
    dtype: the rows of empty slots are the identity's while it is inverted (``upper_inverse``)."""
    ok, pos = _memory.valid(memory), _memory.position(memory)
    both = ok[:, None] & ok[None, :]
    eye = jnp.eye(ok.shape[0], dtype=sy.dtype)
    r = where(both & (pos[:, None] <= pos[None, :]), sy, 0) + where(ok[:, None], 0, eye)
    order = _memory.slot(memory, jnp.arange(ok.shape[0], dtype=jnp.int32))  # (chronological position -> slot)
    inverse = upper_inverse(r[order][:, order])
    return where(both, inverse[pos][:, pos], 0)


def upper_inverse(r):
    """R^-1 for an upper triangular (k, k) R by back substitution, a row at a time from the last,
    x_i = (e_i - R_i x) / R_ii (rows of x below i already solved, the others 0): array operations
    only, no LAPACK call. Under ``jax.vmap`` XLA:CPU runs a LAPACK kernel's batch on its thread pool,
    and two such kernels running at once (``lax.cond``'s two branches, both taken under vmap) each
    waited for pool threads the other held: 400 vmapped box fits in a loop over ``qnjax.lbfgs``
    with L-BFGS-B hung for good (two ``lapack_dtrsm_ffi`` in ``ParallelBatchMap``; before, a batched
    LU in its place hung as well)."""
    k = r.shape[0]
    with jax.enable_x64(r.dtype == jnp.float64):  # (r's dtype where it is float64, as it is traced)
        eye = jnp.eye(k, dtype=r.dtype)
        rows = [None] * k
        for i in reversed(range(k)):  # (k = memory_size + 1: unrolled)
            below = jnp.stack(rows[i + 1:]) if i + 1 < k else jnp.zeros((0, k), r.dtype)
            rows[i] = (eye[i] - jnp.sum(r[i, i + 1:, None] * below, axis=0)) / r[i, i]
        return jnp.stack(rows)


def inverse_hessian(memory: _memory.Memory, q, scale=1.0, v=None, newest=None):
    """(scale H q, memory) for a pytree q (real-space): completes the memory's pending
    column from this pass's products and records what the next ``push`` needs (the
    coefficients of H q itself; the scale costs nothing, it multiplies them). With ``v``
    (``_projected``: the gradient's free part) the product is scale H v, from a second
    pass for S^T v, Y^T v; the pending column is still completed from q's products.
    Where ``newest`` (a traced bool) holds, the result is -scale s of the newest pair
    instead (``_rescued_step.pending``: the weighted sum with h0 = 0 and one coefficient, so
    no pass of its own)."""
    a, b = _memory.products(memory, q)
    memory = _memory_update.complete(memory, a, b)
    av, bv = (a, b) if v is None else _memory.products(memory, v)
    c_s, c_y = coefficients(memory, av, bv)
    scale = jnp.asarray(scale).astype(a.dtype)
    h0, w_s, w_y = scale * memory.gamma, scale * c_s, scale * c_y
    if newest is not None:
        at = jnp.arange(_memory.size(memory) + 1, dtype=jnp.int32) == _memory.newest(memory)
        h0, w_s, w_y = where(newest, 0, h0), where(newest, where(at, -scale, 0), w_s), where(newest, 0, w_y)
    hq = _memory.weighted_sum(memory, h0, q if v is None else v, w_s, w_y)
    return hq, _memory_update.record(memory, jnp.stack([a, b, c_s, c_y]))
