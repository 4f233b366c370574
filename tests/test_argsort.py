"""``_argsort.argsort`` is the stable ``jnp.argsort``, element for element.

Keys as the Cauchy point sorts them and worse: ties (many variables with one
breakpoint), +inf (variables that never stop), +0 and -0 (which must tie), negative
keys, and in float64 keys that differ only in their low 32 bits (the second digit of
the radix sort); float32, float64 (with x64 on), bfloat16 and float16, one row and a batch.
Words of 64 bits in both precision modes (one radix pass for float32 keys, two for float64,
or beyond REPAIR_FROM float64 keys one and a few transposition rounds).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64

from qnjax import _argsort

DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16] + ([jnp.float64] if X64 else [])


def keys(rng, shape, dtype):
    k = rng.exponential(size=shape)
    k[..., ::7] = np.inf
    k[..., ::11] = 0.0
    k[..., ::13] = -0.0
    k[..., ::5] = k[..., 1:2]  # ties
    k[..., ::17] *= -1
    if dtype == jnp.float64:  # equal high words, different low words
        k[..., ::3] = 1.0 + rng.integers(0, 1 << 20, size=k[..., ::3].shape) * 2.0**-52
    return jnp.asarray(k, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("shape", [(2,), (10,), (3, 2000), (70000,)])
def test_argsort_is_the_stable_argsort(dtype, shape):
    k = keys(np.random.default_rng(sum(shape)), shape, dtype)
    got = np.asarray(jax.jit(_argsort.argsort)(k))
    want = np.asarray(jnp.argsort(k, axis=-1, stable=True))
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32
    # and it sorts: the keys in that order are the sorted keys
    k = np.asarray(k, np.float64)
    np.testing.assert_array_equal(np.take_along_axis(k, got, axis=-1), np.sort(k, axis=-1))


def test_argsort_sorts_single_arrays_of_64_bit_words_in_both_precision_modes():
    def eqns(jaxpr):  # every equation, inside nested jaxprs too
        for e in jaxpr.eqns:
            yield e
            for v in e.params.values():
                inner = getattr(v, "jaxpr", v)
                if hasattr(inner, "eqns"):
                    yield from eqns(inner)

    for dtype, passes in [(jnp.float32, 1)] + ([(jnp.float64, 2)] if X64 else []):
        jaxpr = jax.make_jaxpr(_argsort.argsort)(jnp.zeros(100, dtype))
        sorts = [e for e in eqns(jaxpr.jaxpr) if e.primitive.name == "sort"]
        assert len(sorts) == passes and all(len(e.invars) == 1 for e in sorts)
        assert {str(e.invars[0].aval.dtype) for e in sorts} == {"uint64"}
        assert [str(v.aval.dtype) for v in jaxpr.jaxpr.outvars] == ["int32"]  # (nothing 64-bit leaves it)


@pytest.mark.skipif(not X64, reason="float64 keys need x64")
def test_float64_keys_sharing_their_top_bits_are_repaired_or_sorted_twice(monkeypatch):
    """Beyond REPAIR_FROM float64 keys, one pass sorts the top digit and REPAIR_ROUNDS of
    odd-even transposition order the keys that share it: groups of 2 to REPAIR_ROUNDS such
    keys (differing in their lowest bits only, placed in reverse index order), among ties,
    infinities and signed zeros, come out in the stable order from that path alone; a
    larger group is not done there and the two passes give it."""
    monkeypatch.setattr(_argsort, "REPAIR_FROM", 64)
    rng = np.random.default_rng(5)
    n = 3000
    low = max(1, (n - 1).bit_length())
    base = np.asarray(keys(rng, (n,), jnp.float32), np.float64)  # (no near-ties of their own)
    starts = iter(8 * rng.permutation(n // 8 - 1))  # groups apart
    for size in range(2, _argsort.REPAIR_ROUNDS + 1):
        for i in [next(starts) for _ in range(40)]:  # reversed: each group needs size rounds
            base[i:i + size] = 1.5 + rng.uniform() + np.arange(size)[::-1] * 2.0**-52 * 7
    got, done = jax.jit(lambda k: _argsort.repaired(k, low, 64 - low))(jnp.asarray(base))
    assert bool(done)
    np.testing.assert_array_equal(np.asarray(got), np.argsort(base, kind="stable"))
    big = base.copy()
    big[100:100 + 2 * _argsort.REPAIR_ROUNDS] = 2.5 + np.arange(2 * _argsort.REPAIR_ROUNDS)[::-1] * 2.0**-52 * 9
    assert not bool(jax.jit(lambda k: _argsort.repaired(k, low, 64 - low)[1])(jnp.asarray(big)))
    np.testing.assert_array_equal(np.asarray(jax.jit(_argsort.argsort)(jnp.asarray(big))),
                                  np.argsort(big, kind="stable"))
