"""How qnjax compiles its own programs: ``jit``, ``jax.jit`` with XLA:CPU options.

On a CPU the first call of ``minimize`` is mostly XLA compiling the solve, and most of
that is code generation: XLA:CPU compiles each fused kernel of the program (a solve
has about 150) as a module of its own. Its newer MLIR fusion emitters take about twice
as long per kernel as its classic elemental emitters, and on the solve's kernels (small
loops over vectors, a few matrix products) they run no faster. So a program qnjax
compiles itself (``jit`` below: a call at the top level, or under ``jax.vmap`` only)
asks XLA:CPU for the classic emitters, ``OPTIONS``. Measured on 2 CPU cores
(``benchmarks/xla_options.py``: the same lowered solve of 50 iterations compiled both
ways in one process, n = 10 to 1e6, float32 and float64): compile 1.4-2.1 s -> 0.9-1.1
s, and the run no slower (0.80-1.00x the defaults' time). The first calls beside the
peers' are in ``benchmarks/scale.py --parts 3`` (with a row for the defaults).

Where that is not possible the call compiles with XLA's defaults, as any JAX function:

* inside a program the caller stages (``jax.jit``, ``lax.scan``, ``jax.grad``'s
  linearisation...), which compiles as one program with the caller's options (JAX
  accepts compiler options on the outermost ``jax.jit`` only: pass the same ``OPTIONS``
  to your own ``jax.jit`` for the same effect);
* on other backends than CPU, and where this JAX or XLA does not accept the options
  (checked once, on a program of one addition).

The two kinds of program are the same HLO program, optimised alike; they may round
differently in the last bit, as any two programs XLA compiles separately may.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def _accepted(backend: str) -> bool:
    """Whether this backend is a CPU and its XLA accepts ``OPTIONS`` (one tiny compile)."""
    if backend != "cpu":
        return False
    try:
        jax.jit(jnp.negative, compiler_options=OPTIONS).lower(1.0).compile()
    except Exception:  # an older JAX (no compiler_options) or an XLA without the flag
        return False
    return True


def _top_level() -> bool:
    """Whether a jitted call made now compiles a program of its own: no trace above it
    but ``jax.vmap``'s (whose rule calls the jitted function again at the level below)."""
    try:
        from jax._src import core
        from jax._src.interpreters import batching

        trace = core.trace_ctx.trace
        while isinstance(trace, batching.BatchTrace):
            trace = trace.parent_trace
        return isinstance(trace, core.EvalTrace)
    except Exception:  # another JAX's internals: compile with the defaults
        return False


def jit(fun=None, **kwargs):
    """``jax.jit(fun, **kwargs)``, compiled with ``OPTIONS`` where the call is its own
    program on a CPU (see the module's docstring); a decorator with or without arguments.
    The wrapper's ``plain`` is the jitted function with XLA's defaults, ``tuned`` the one
    with ``OPTIONS`` (both made at once; whether the backend takes them is checked at the
    first top-level call, so importing qnjax does not start JAX's backend)."""
    if fun is None:
        return functools.partial(jit, **kwargs)
    plain = jax.jit(fun, **kwargs)
    try:
        tuned = jax.jit(fun, compiler_options=OPTIONS, **kwargs)
    except TypeError:  # a JAX whose jit takes no compiler options (_accepted is then False)
        tuned = plain

    @functools.wraps(fun)
    def call(*args, **kw):
        own = _top_level() and _accepted(jax.default_backend())
        return (call.tuned if own else call.plain)(*args, **kw)

    call.plain, call.tuned = plain, tuned
    return call
