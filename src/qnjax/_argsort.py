"""``jnp.argsort`` of floating-point keys through single-operand sorts of integer words.

XLA sorts one array of a primitive type by a plain comparison, but sorts several
arrays together (keys and their indices, as ``jnp.argsort`` does) with a compiled
comparator called per comparison: on a CPU, ordering 10^6 breakpoints takes about
300-400 ms the second way and about 60 ms the first. So the keys are packed with
their positions into unsigned 64-bit words and those are sorted alone, as a
least-significant-digit radix sort:

* a float is mapped to an unsigned integer of its width with the same order
  (negative: all bits flipped; otherwise the sign bit set), -0 first made +0, so equal
  keys compare equal; narrower floats are widened to float32 first (exactly);
* with b = the bits of the largest position (n - 1), a word holds one digit of
  64 - b key bits above the position: word = digit << b | position;
* pass 1 sorts the words of the lowest digit with the keys' own indices; each later
  pass sorts the next digit, taken in the previous order, with positions in that
  order, so equal digits keep the order of the lower ones; the result is the
  composition of the passes' permutations.

One pass for float32 keys, two for float64. The words are 64 bits wide with
``jax_enable_x64`` off too (the packing runs under ``jax.enable_x64``, and only int32
positions leave it): with 32-bit words, float32 keys took three passes at 10^6 keys, and
the ordering about 3 times as long (159 against 54 ms). Equal keys keep index order: the
result equals the stable ``jnp.argsort(key)`` element for element (NaN keys excepted,
which the Cauchy point never sorts), as int32. Beyond 2^31 keys it is ``jnp.argsort``
itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._compile import where


def _ordered(key):
    """The unsigned integers of ``key``'s width in ``key``'s order."""
    key = where(key == 0, jnp.zeros_like(key), key)  # -0 -> +0
    bits = {jnp.dtype(jnp.float32): jnp.uint32, jnp.dtype(jnp.float64): jnp.uint64}[key.dtype]
    b = jax.lax.bitcast_convert_type(key, bits)
    sign = jnp.asarray(1, bits) << (8 * b.dtype.itemsize - 1)
    return where((b & sign) != 0, ~b, b | sign)


def argsort(key):
    """The stable ascending order of the last axis of ``key`` (floats, no NaN), int32."""
    n = key.shape[-1]
    if n >= 2**31 or not jnp.issubdtype(key.dtype, jnp.floating):
        return jnp.argsort(key, axis=-1).astype(jnp.int32)
    if jnp.finfo(key.dtype).bits < 32:
        key = key.astype(jnp.float32)
    key_bits = 8 * key.dtype.itemsize
    low = max(1, (n - 1).bit_length())  # position bits
    digit = 64 - low
    with jax.enable_x64(True):  # (64-bit words whatever the precision mode: one pass for float32 keys)
        u = _ordered(key).astype(jnp.uint64)
        positions = jax.lax.broadcasted_iota(jnp.uint64, key.shape, key.ndim - 1)
        mask = jnp.asarray((1 << digit) - 1, jnp.uint64)
        order = None
        for shift in range(0, key_bits, digit):
            d = (u >> shift) & mask
            if order is not None:
                d = jnp.take_along_axis(d, order, axis=-1)
            step = (jnp.sort((d << low) | positions, axis=-1) & jnp.asarray((1 << low) - 1, jnp.uint64))
            step = step.astype(jnp.int32)
            order = step if order is None else jnp.take_along_axis(order, step, axis=-1)
    return order
