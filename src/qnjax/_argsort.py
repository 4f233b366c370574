"""``jnp.argsort`` of floating-point keys through single-operand sorts of 64-bit words.

XLA sorts one array of a primitive type by a plain comparison, but sorts several
arrays together (keys and their indices, as ``jnp.argsort`` does) with a compiled
comparator called per comparison: on a CPU, ordering 10^6 breakpoints takes about
300 ms the second way and about 60 ms the first. So the keys are packed with their
indices into unsigned 64-bit words and those are sorted alone:

* a float is mapped to an unsigned integer of its width that has the same order
  (negative: all bits flipped; otherwise the sign bit set), -0 first made +0, so equal
  keys compare equal;
* float32 (and narrower, widened exactly): word = key bits << 32 | index, one sort;
* float64 (a least-significant-digit radix sort in two digits of 32 bits): sort
  lo << 32 | index (perm1: the order of the low halves), then hi[perm1] << 32 | j
  (j the position in perm1), so equal high halves keep perm1's order; the result
  is perm1[perm2].

Either way equal keys keep index order: the result equals the stable
``jnp.argsort(key)`` element for element (NaN keys excepted, which the Cauchy point
never sorts), as int32. Needs 64-bit integers: with ``jax_enable_x64`` off
``jnp.argsort`` itself (and beyond 2^31 keys, in its index type).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOW = 0xFFFFFFFF


def _ordered(key):
    """The unsigned integers of ``key``'s width in ``key``'s order."""
    key = jnp.where(key == 0, jnp.zeros_like(key), key)  # -0 -> +0
    bits = {jnp.dtype(jnp.float32): jnp.uint32, jnp.dtype(jnp.float64): jnp.uint64}[key.dtype]
    b = jax.lax.bitcast_convert_type(key, bits)
    sign = jnp.asarray(1, bits) << (8 * b.dtype.itemsize - 1)
    return jnp.where((b & sign) != 0, ~b, b | sign)


def _by_high_word(high, low_index):
    """Positions that sort ``high << 32 | low_index`` (both uint64 below 2^32)."""
    return (jnp.sort((high << 32) | low_index, axis=-1) & LOW).astype(jnp.int32)


def argsort(key):
    """The stable ascending order of the last axis of ``key`` (floats, no NaN), int32."""
    n = key.shape[-1]
    if n >= 2**31:
        return jnp.argsort(key, axis=-1)
    if not jax.config.jax_enable_x64 or not jnp.issubdtype(key.dtype, jnp.floating):
        return jnp.argsort(key, axis=-1).astype(jnp.int32)
    if jnp.finfo(key.dtype).bits < 32:
        key = key.astype(jnp.float32)
    idx = jax.lax.broadcasted_iota(jnp.uint64, key.shape, key.ndim - 1)
    if key.dtype == jnp.float32:
        return _by_high_word(_ordered(key).astype(jnp.uint64), idx)
    b = _ordered(key)
    first = _by_high_word(b & LOW, idx)
    second = _by_high_word(jnp.take_along_axis(b >> 32, first, axis=-1), idx)
    return jnp.take_along_axis(first, second, axis=-1)
