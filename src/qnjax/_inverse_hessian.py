"""``OptimizeResult.hess_inv``: the final L-BFGS inverse-Hessian approximation as an operator.

scipy's L-BFGS-B returns ``hess_inv`` as an ``LbfgsInvHessProduct``: a linear
operator that applies H (the limited-memory inverse-Hessian approximation at the
solution) to a vector, and can be densified for small n. Here H is the compact
form of the memory in the final state (``_compact``, Byrd, Nocedal & Schnabel 1994,
eq. 2.6) after the last pair (the step that led to x and its gradient change) is
stored and its products completed, exactly as the next iteration would
(``_memory_update.push`` with the curvature guard, then ``_memory_update.complete``). So
``hess_inv @ g`` is the quasi-Newton step the solver would take next, up to sign
(unconstrained). A bounded run's memory (L-BFGS-B keeps only the Gram matrices its
direction needs) has them recomputed from the stored pairs instead, and H is the
unconstrained inverse of its B. With no pair stored, H = gamma I (gamma the last
curvature scale, 1 at the start).
Each operation is one compiled program (``_compile.jit``, with its options where it is
called eagerly: eager op-by-op dispatch of the compact products took seconds for
``todense`` at n = 2; with XLA's defaults the first ``hess_inv @ v`` on a 2-D problem took
425 ms, now about 280).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _compact, _compile, _free_gram, _memory, _memory_update, _tree
from ._scale import times


def rebuild(memory: _memory.Memory) -> _memory.Memory:
    """Every small matrix (``_memory.Gram``) recomputed from the stored pairs: O(n m^2), for
    a memory without the compact direction's (L-BFGS-B's, the two-loop recursion's)."""
    every = jax.tree.map(lambda buf: jnp.ones(buf.shape[1:], bool), memory.s)
    ss, ys, yy = _free_gram.full(memory, every)  # zero where no pair
    ri = _compact.r_inverse(memory, ys.T)
    return memory._replace(gram=_memory.Gram(d=jnp.diagonal(ys), yy=yy, ri=ri, sy=ys.T, ss=ss),
                           flags=memory.flags & jnp.array([True, False, True]))


@_compile.jit(users=lambda arguments: arguments["grad"])
def _final_memory(memory, grad):
    # (``minimize``'s steps record the last pair whole: ``push`` takes no q)
    if memory.gram.ri is None:  # L-BFGS-B and the two-loop recursion keep no R^-1: rebuilt here
        return rebuild(_memory_update.push(memory, None, direct=memory.gram.sy is not None)[0])
    memory, _ = _memory_update.push(memory, None)
    # The new pair's Gram column is completed from S^T g, Y^T g at this point's gradient
    # (the vector-free update); after that, products with any vector are plain.
    return _compact.inverse_hessian(memory, grad)[1]


@_compile.jit(users=lambda arguments: arguments["v"])
def _apply(memory, v, scale):
    # (H of scale f times scale: f's, ``_scale``)
    return times(_compact.inverse_hessian(memory, v)[0], scale)


@_compile.jit(users=lambda arguments: arguments["v"])
def _apply_array(memory, v, like, scale):
    """H v for x one array and v any array of its size (a flat vector, or shaped like x)."""
    hv = times(_compact.inverse_hessian(memory, v.reshape(like.shape).astype(like.dtype))[0], scale)
    return hv.reshape(v.shape)


@_compile.jit(users=lambda arguments: arguments["x"])
def _dense(memory, x, scale):
    eye = jnp.eye(x.size, dtype=x.dtype)
    return jax.vmap(lambda e: jnp.ravel(_apply(memory, e.reshape(x.shape), scale)))(eye).T


class InverseHessian:
    """H of the final state as an operator, shaped like scipy's ``LbfgsInvHessProduct``:
    ``H @ v``, ``H.matvec(v)``, ``H.dot(v)`` with v a pytree like x, or, when x is one
    array, a flat vector of its n entries or an (n, k) matrix (each column multiplied,
    ``H.matmat``); ``v @ H`` (H is symmetric, so ``H.T`` is H); ``H.todense()`` (x one
    array); ``H.shape`` = (n, n) and ``H.dtype``."""

    __array_ufunc__ = None  # ``numpy_array @ H`` defers to ``H.__rmatmul__``

    def __init__(self, state):
        if jnp.ndim(state.value) != 0:
            raise ValueError("hess_inv of a batched result: index one member first (jax.tree.map(lambda a: a[i], res))")
        self.params = state.params
        self.memory = _final_memory(state.memory, state.grad)
        self.scale = state.scale  # (the memory's H is scale f's, f's divided by scale: ``_scale``)

    @property
    def shape(self):
        n = int(_tree.count(self.params))
        return (n, n)

    @property
    def dtype(self):
        return jnp.result_type(*jax.tree.leaves(self.params))

    @property
    def T(self):  # noqa: N802 (scipy's name)
        return self

    def matvec(self, v):
        if isinstance(self.params, jax.Array):
            v = jnp.asarray(v)
            if v.size != self.params.size:
                raise ValueError(f"H multiplies a vector of x's {self.params.size} entries, got shape {v.shape}")
            return _apply_array(self.memory, v, self.params, self.scale)
        if jax.tree.structure(v) != jax.tree.structure(self.params):
            raise TypeError(f"x is a pytree ({jax.tree.structure(self.params)}): H multiplies a pytree of that "
                            f"structure, got {jax.tree.structure(v)}")
        return _apply(self.memory, _tree.cast_like(v, self.params), self.scale)

    def matmat(self, v):
        """H V for an (n, k) matrix V (x one array of n entries): each column."""
        n = self.shape[0]
        if not isinstance(self.params, jax.Array):
            raise TypeError("matmat needs x to be one array (apply matvec to each pytree instead)")
        v = jnp.asarray(v)
        if v.ndim != 2 or v.shape[0] != n:
            raise ValueError(f"matmat takes an ({n}, k) matrix, got shape {v.shape}")
        return jax.vmap(self.matvec, in_axes=1, out_axes=1)(v)

    def __matmul__(self, v):
        if isinstance(self.params, jax.Array):
            v = jnp.asarray(v)
            if v.shape != self.params.shape and v.ndim == 2 and v.shape[0] == self.shape[0]:
                return self.matmat(v)
        return self.matvec(v)

    def __rmatmul__(self, v):  # v^T H = (H v)^T: H is symmetric
        v = jnp.asarray(v)
        return (self @ v.T).T if v.ndim == 2 else self @ v

    dot = __matmul__
    rmatvec = matvec

    def __call__(self, v):
        return self.matvec(v)

    def todense(self):
        if not isinstance(self.params, jax.Array):
            raise TypeError("todense needs x to be one array (apply matvec to the pytree instead)")
        return _dense(self.memory, self.params, self.scale)
