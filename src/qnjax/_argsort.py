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

One pass for float32 keys, two for float64. Beyond REPAIR_FROM float64 keys (one row) the
first pass sorts the top digit instead (the keys' order but among keys that share it,
left in index order), and REPAIR_ROUNDS rounds of odd-even transposition on the full keys
(each pair swapped only when strictly out of order, so ties keep index order) sort the
groups of up to that many keys that share a top digit and differ below. That is the
stable order wherever the keys come out non-decreasing, which is checked; else (a larger
group) the two passes run (``lax.cond``). Keys that share their top 44 bits (of 64) are
rare: 11 adjacent pairs among 750,000 random ones; at 10^6 keys the order took 60-70 instead
of about 120 ms. The words are 64 bits wide with
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

from ._xla import where

REPAIR_FROM = 1 << 16
REPAIR_ROUNDS = 4


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
    if key_bits > digit and key.ndim == 1 and n >= REPAIR_FROM:
        return _top_then_repaired(key, low, digit)
    return _passes(key, low, digit)


def _passes(key, low, digit):
    """The least-significant-digit radix sort of the module docstring."""
    key_bits = 8 * key.dtype.itemsize
    with jax.enable_x64(True):  # (64-bit words whatever the precision mode: one pass for float32 keys)
        u = _ordered(key).astype(jnp.uint64)
        positions = jax.lax.broadcasted_iota(jnp.uint64, key.shape, key.ndim - 1)
        mask = jnp.asarray((1 << digit) - 1, jnp.uint64)
        order = None
        for shift in range(0, key_bits, digit):
            d = (u >> shift) & mask
            if order is not None:
                d = jnp.take_along_axis(d, order, axis=-1)
            step = _by_digit(d, positions, low)
            order = step if order is None else jnp.take_along_axis(order, step, axis=-1)
    return order


def _by_digit(d, positions, low):
    """The stable order of the digits ``d`` (unsigned 64-bit, below 2^(64 - low)): one sort of
    the words ``d << low | position``, whose low bits are then the positions (int32)."""
    words = jnp.sort((d << low) | positions, axis=-1)
    return (words & jnp.asarray((1 << low) - 1, jnp.uint64)).astype(jnp.int32)


def _exchange(u, order, parity):
    """One round of odd-even transposition: each pair (i, i + 1) with i = parity mod 2
    swapped where u_i > u_(i+1) (strictly: equal keys keep their order)."""
    pairs = (u.shape[0] - parity) // 2
    cut = slice(parity, parity + 2 * pairs)
    a, o = u[cut].reshape(pairs, 2), order[cut].reshape(pairs, 2)
    swap = (a[:, 0] > a[:, 1])[:, None]
    a, o = where(swap, a[:, ::-1], a), where(swap, o[:, ::-1], o)
    return u.at[cut].set(a.reshape(-1)), order.at[cut].set(o.reshape(-1))


def repaired(key, low, digit):
    """(order, done): the order from one pass over float64 ``key``'s top ``digit`` bits
    (``low`` position bits) and REPAIR_ROUNDS transposition rounds, and whether the keys
    come out non-decreasing in it (then it is the stable order)."""
    with jax.enable_x64(True):
        u = _ordered(key)
        positions = jax.lax.broadcasted_iota(jnp.uint64, key.shape, 0)
        top = u >> (64 - digit)
        order = _by_digit(top, positions, low)
        ordered = u[order]
        for r in range(REPAIR_ROUNDS):
            ordered, order = _exchange(ordered, order, r % 2)
        return order, jnp.all(ordered[1:] >= ordered[:-1])


def _top_then_repaired(key, low, digit):
    """``repaired``'s order where it is done, else both passes (``lax.cond``)."""
    order, done = repaired(key, low, digit)
    return jax.lax.cond(done, lambda: order, lambda: _passes(key, low, digit))
