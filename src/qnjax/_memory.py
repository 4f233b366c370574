"""The L-BFGS memory: a ring buffer of curvature pairs and the two-loop recursion.

Notation (Nocedal & Wright 2006, Sec. 7.2): s_k = x_{k+1} - x_k,
y_k = g_{k+1} - g_k, rho_k = 1 / <s_k, y_k>. The inverse-Hessian approximation
is the BFGS recursion (N&W eq. 7.19) applied to the last m pairs,

    H_{k+1} = (I - rho_k s_k y_k^T) H_k (I - rho_k y_k s_k^T) + rho_k s_k s_k^T,

started from H^0 = gamma I with gamma = <s, y> / <y, y> of the newest pair
(N&W eq. 7.20); gamma = 1 with an empty memory. The product H g is the
two-loop recursion (N&W Algorithm 7.4), which never forms H.

Storage, per leaf: ``s`` and ``y`` are pytrees shaped like the parameters with a
new leading axis of length m + 1, in each leaf's own dtype (slot m is a spare
that a rejected pair is written to, so a write never reads the buffer);
``rho`` is an (m,) array in the scalar dtype. ``head`` (int32) is the slot the
next pair is written to, so the newest pair is at ``(head - 1) mod m``. A slot
with ``rho == 0`` is empty and contributes nothing, so the memory is dropped
by zeroing ``rho``. ``gamma`` is kept from the newest pair's <s, y> and <y, y>,
which ``push`` computes anyway.

Curvature guard: a pair is stored only when

    <s, y> > eps * ||s|| * ||y||      (eps = machine epsilon of the scalar dtype)

and both s and y are finite, i.e. when the angle between s and y is
measurably below 90 degrees. This keeps H positive definite (N&W Sec. 6.1,
the curvature condition) and is invariant to scaling f or x; under a Wolfe
step <s, y> >= (1 - c2) |<g, s>| > 0, so it only rejects pairs spoiled by
rounding. The new pair is written with a dynamic update slice at ``head``
(``.at[head].set`` without its scatter) into the loop-carried buffer so XLA
updates it in place.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import _tree


class Memory(NamedTuple):
    s: object  # pytree, leaves (m, *leaf.shape) in leaf dtype
    y: object
    rho: jax.Array  # (m,) scalar dtype; 0 marks an empty slot
    head: jax.Array  # int32: slot of the next write
    gamma: jax.Array  # scalar dtype: <s, y> / <y, y> of the newest pair, 1 when empty


def init(params, memory_size: int, sdt) -> Memory:
    def stack(p):  # m slots and a spare one (see ``push``)
        return jnp.zeros((memory_size + 1,) + jnp.shape(p), jnp.result_type(p))

    return Memory(
        s=jax.tree.map(stack, params),
        y=jax.tree.map(stack, params),
        rho=jnp.zeros((memory_size,), sdt),
        head=jnp.zeros((), jnp.int32),
        gamma=jnp.ones((), sdt),
    )


def clear(memory: Memory, where=True) -> Memory:
    """Drop every pair if ``where`` (the buffers keep their contents, masked by rho = 0)."""
    return memory._replace(
        rho=jnp.where(where, jnp.zeros_like(memory.rho), memory.rho),
        head=jnp.where(where, jnp.zeros_like(memory.head), memory.head),
        gamma=jnp.where(where, jnp.ones_like(memory.gamma), memory.gamma),
    )


def is_empty(memory: Memory):
    return jnp.all(memory.rho == 0)


def _write(buf, i, value):
    """buf with row i set to value: ``buf.at[i].set(value)`` for an index known to be in
    range, as a dynamic update slice (no scatter for XLA to expand)."""
    return jax.lax.dynamic_update_index_in_dim(buf, value, i, 0)


def _slot(tree, i):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), tree)


def two_loop(memory: Memory, g, scale=1.0):
    """H (scale g) by N&W Algorithm 7.4 over the stored pairs (``scale=-1`` gives the
    search direction; applied in the first step, so it costs no separate pass).

    Both loops of Algorithm 7.4 run as one loop of 2m steps (one compiled loop body
    instead of two): steps k < m are the first loop, newest pair first,

        a_i = rho_i <s_i, q>,   q <- q - a_i y_i,

    and steps k >= m the second, oldest first, on r = H0 q = gamma q (the scaling is
    applied at k = m),

        b = rho_i <y_i, r>,     r <- r + (a_i - b) s_i.

    An empty slot has rho_i = 0 and changes nothing."""
    sdt = memory.rho.dtype
    m = memory.rho.shape[0]

    def step(k, carry):
        q, alpha = carry
        second = k >= m
        # q <- h0 q, folded into the update below: scale at k = 0, gamma at k = m.
        h0 = jnp.where(k == m, memory.gamma, jnp.where(k == 0, jnp.asarray(scale, sdt), jnp.ones((), sdt)))
        i = jnp.where(second, memory.head + (k - m), memory.head + (m - 1 - k)) % m
        s_i, y_i = _slot(memory.s, i), _slot(memory.y, i)
        dot_with = jax.tree.map(lambda s, y: jnp.where(second, y, s), s_i, y_i)
        move_along = jax.tree.map(lambda s, y: jnp.where(second, s, y), s_i, y_i)
        c = memory.rho[i] * (h0 * _tree.inner(dot_with, q, sdt))
        coef = jnp.where(second, alpha[i], 0) - c
        q = _tree.combine(coef, move_along, h0, q)
        # In the second loop alpha_i has just been read for the last time: overwriting it is harmless.
        return q, _write(alpha, i, c)

    # alpha starts as any (m,) array: every slot is written before it is read.
    return jax.lax.fori_loop(0, 2 * m, step, (g, memory.rho))[0]


def push(memory: Memory, s, y, allow=True):
    """Store the pair (s, y) at ``head`` if ``allow`` and it passes the curvature guard.

    Returns the new memory and whether the pair was stored."""
    sdt = memory.rho.dtype
    products = _tree.inners([(s, y), (y, y), (s, s)], sdt)
    sy = products[0]
    # Divisions and roots as one array each (each is one compiled kernel):
    # [rho, gamma] = [1 / sy, sy / yy] and ||y|| ||s||.
    rho_gamma = jnp.stack([jnp.ones((), sdt), sy]) / products[:2]
    size = jnp.prod(jnp.sqrt(products[1:]))
    eps = jnp.finfo(sdt).eps
    store = allow & (sy > eps * size) & jnp.isfinite(sy) & jnp.isfinite(size) & jnp.isfinite(rho_gamma[0])
    h = memory.head
    slot = jnp.where(store, h, memory.rho.shape[0])  # a rejected pair goes to the spare slot

    def write(buf, new):
        return _write(buf, slot, new.astype(buf.dtype))

    stored = Memory(
        s=jax.tree.map(write, memory.s, s),
        y=jax.tree.map(write, memory.y, y),
        rho=_write(memory.rho, h, jnp.where(store, rho_gamma[0], memory.rho[h])),
        head=jnp.where(store, (h + 1) % memory.rho.shape[0], h).astype(jnp.int32),
        gamma=jnp.where(store & jnp.isfinite(rho_gamma[1]), rho_gamma[1], memory.gamma),
    )
    return stored, store
