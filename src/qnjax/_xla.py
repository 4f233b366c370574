"""How qnjax's traced code is written for XLA: a ``where`` without the ``jax.jit`` JAX
wraps around its own, values many kernels read computed once (``once``), and a loop's
piece size chosen per platform where the program is lowered (``by_platform``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _plain_where():
    """JAX's ``jnp.where`` without the ``jax.jit`` around it (None where this JAX's is not
    built so)."""
    try:
        from jax._src.numpy import util

        inner = getattr(util._where, "__wrapped__", None)
    except (ImportError, AttributeError):
        return None
    return inner if callable(inner) else None


_WHERE = _plain_where() or jnp.where


def where(condition, x, y):
    """``jnp.where(condition, x, y)``: the same promotion, broadcasting and result, without
    the ``jax.jit`` that JAX wraps around it (falling back to ``jnp.where`` where a JAX has
    no such inner function). That jit makes each call a program of its own nested in the
    caller's (the solve of a small problem held 103), lowered as a function of its own and
    inlined again by XLA. The optimised program is the same (its instructions, with
    ``OPTIONS``, on three solves); the 2-D Rosenbrock solve's first call took 0.439-0.446 s
    instead of 0.450-0.461 (lowering 47 ms instead of 53-55; medians of 7 fresh traces,
    three alternating runs)."""
    return _WHERE(condition, x, y)


def once(never, tree):
    """``tree`` as it is, computed once: its arrays divided by a one that XLA cannot see is
    one (``never``: a traced bool that is always False; booleans go through float32, complex
    numbers a part at a time, integers are left as they are). Exact: x / 1 == x, signed
    zeros, infinities and NaN included, but for subnormal numbers, which XLA:CPU flushes to
    zero in arithmetic (as in any other operation on them).

    XLA:CPU copies cheap element-wise code into every kernel that reads its result; XLA
    does not copy a division. Where many kernels read a few values made by much code,
    this keeps one copy of that code, in one kernel, the others reading its result.
    A search's case analysis (Moré-Thuente's: about 250 operations) had been compiled
    into the four kernels that read the next trial and the rule's new state, and under
    vmap it ran once per element of each (``linesearch._base``); the memory's "store this
    pair" and the solver's "the step was taken" were compiled into each of the writes
    they guard. With the three, the solve of ``minimize`` on Rosenbrock (float64) has
    5,543 lines of optimised HLO instead of 6,678 and 84 kernels instead of 87, and
    compiles in 1.5-1.7 s of CPU time instead of 2.1-2.3 (least of 7 compiles, two
    alternating runs)."""

    divisor = where(never, 2.0, 1.0)

    def one(v):
        v = jnp.asarray(v)
        if v.dtype == jnp.bool_:
            return one(v.astype(jnp.float32)) != 0
        if jnp.issubdtype(v.dtype, jnp.complexfloating):  # (a complex division may turn +0 into -0)
            return jax.lax.complex(one(v.real), one(v.imag))
        return v / divisor.astype(v.dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v

    return jax.tree.map(one, tree)


def by_platform(size, cpu_size, other_size, fun):
    """``fun(cpu_size)`` in a program compiled for a CPU, ``fun(other_size)`` on any other
    platform (GPU, TPU), where the work is at most ``size`` elements big (static); one
    call where the two sizes cut that work alike.

    For loops over a large vector in pieces: on a CPU a piece that fits in its caches
    (thousands of elements) is fastest, while on a GPU each trip is a dozen kernel
    launches of a few microseconds whatever the piece holds, so there pieces of hundreds
    of thousands of elements make a few trips instead of hundreds. Both are traced and only the
    platform's is compiled (``jax.lax.platform_dependent``: the choice is made where
    the program is lowered, not from the default device when it is traced)."""
    if min(size, cpu_size) == min(size, other_size):
        return fun(cpu_size)
    return jax.lax.platform_dependent(cpu=lambda: fun(cpu_size), default=lambda: fun(other_size))


def small_dtype(sdt):
    """The dtype of L-BFGS-B's small algebra (``_cauchy``, ``_segments``) for a memory in ``sdt``:
    float64 for float32 (on a TPU, which has no float64 arithmetic of its own, ``sdt``)."""
    wide = jnp.dtype(sdt) == jnp.float32 and jax.default_backend() != "tpu"
    return jnp.dtype(jnp.float64) if wide else jnp.dtype(sdt)


def widened(sdt, *arrays):
    """``arrays`` in ``small_dtype(sdt)`` (call it under ``jax.enable_x64(True)``, as what reads them)."""
    return tuple(jnp.asarray(a).astype(small_dtype(sdt)) for a in arrays)
