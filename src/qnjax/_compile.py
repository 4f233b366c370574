"""How qnjax compiles its own programs: ``jit``, ``jax.jit`` with XLA:CPU options.

On a CPU the first call of ``minimize`` is mostly XLA compiling the solve, and most of
that is code generation: XLA:CPU compiles each fused kernel of the program (a solve
has about 150) as a module of its own. Its newer MLIR fusion emitters take longer per
kernel than its classic elemental emitters, and on an unbatched solve's kernels (small
loops over vectors, a few matrix products) they run no faster. So a program qnjax
compiles itself (``jit`` below: an unbatched call at the top level) asks XLA:CPU for
the classic emitters, ``OPTIONS`` (without XLA's tree reduction rewriter, and with fewer
cores than 32, as many code generation modules as cores: below). Measured on 2 CPU cores (``benchmarks/xla_options.py``:
the same lowered solve of 50 iterations compiled both ways in one process, n = 10 to
1e6, float32 and float64; two runs): compile 1.4-2.8 s -> 0.9-1.9 s (0.5-0.9x), and
the run no slower (0.78-1.07x the defaults' time, within the machine's noise). The
first calls beside the peers' are in ``benchmarks/scale.py --parts 3`` (with a row for
the defaults). Under ``jax.vmap`` the classic emitters' kernels run slower (1,000 batched 10-D problems: 1.3-1.6x the
defaults' time, the script's batched row), so a batched solve keeps XLA's emitters (a
batch of very small unbounded problems leaves out XLA's YNN fusions: ``BATCHED_SMALL_OPTIONS``).
A small problem's solve also skips XLA's loop-invariant code motion (``SMALL_OPTIONS``).

Where that is not possible, or not wise, the call compiles with XLA's defaults, as any
JAX function:

* when an array among its arguments (the parameters, ``fun``'s arguments, the arrays
  ``fun`` closes over) has two or more axes (``_vectors_only``: the classic emitters'
  pathological case);

* under ``jax.vmap`` (see above; but for ``BATCHED_SMALL_OPTIONS``);
* inside a program the caller stages (``jax.jit``, ``lax.scan``, ``jax.grad``'s
  linearisation...), which compiles as one program with the caller's options (JAX
  accepts compiler options on the outermost ``jax.jit`` only: pass the same ``OPTIONS``
  to your own ``jax.jit`` for the same effect);
* on other backends than CPU, and where this JAX or XLA does not accept the options
  (learnt from the first compile that asks for them: XLA refuses an option it does not
  know, and that call and later ones compile without it).

The two kinds of program are the same HLO program, optimised alike; they may round
differently in the last bit, as any two programs XLA compiles separately may.
"""

from __future__ import annotations

import functools
import inspect
import os

import jax
import jax.numpy as jnp


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not on every platform)
        return os.cpu_count() or 1


# XLA:CPU cuts a program into up to 32 modules (xla_cpu_parallel_codegen_split_count) to
# compile them in parallel; with fewer cores than that, the cutting and cloning cost more
# than they save: on 2 cores, 2 modules compiled the 2-D Rosenbrock solve in 0.90x and
# 0.95x the time in two runs (median of 14 paired compiles in one process:
# ``benchmarks/xla_options.py --split-rounds 14``; the program and its speed are the same).
#
# XLA's tree reduction rewriter is left out (``xla_disable_hlo_passes``). It splits a reduction
# of more than 32 elements that XLA:CPU's library (YNN) does not take, as a solve of 32 to a few
# thousand variables has (the objective's own sums, the inner products, the Cauchy point's
# smallest breakpoint, the largest feasible step, the rounding steps: 9 in an unbounded solve at
# n = 1,000, 16 with bounds), into a windowed reduction of 32 and a reduction of the partial
# results: two kernels and a nested loop for LLVM to compile where one loop does. Without it
# (``benchmarks/xla_options.py --reductions 3 --repeats 15``: Rosenbrock, float64, 2 cores; the
# table in docs/performance.md), paired compiles at n = 100 took 0.59 -> 0.52 s (in [-2, 0.8]^n
# 1.40 -> 1.02), n = 4,000 0.71 -> 0.62 (1.57 -> 1.21), and later iterations at n = 1,000
# 19.4 -> 14.2 us, n = 4,000 69 -> 53 (328 -> 281); ``qnjax bench --solvers qnjax --rule
# defaults --set all --starts 1,10``: median compile 0.81 -> 0.70 s (float32) and 0.81 ->
# 0.63 s (float64), f or the counts moved in the last bits in 121 of 316 runs, one outcome
# changed (Osborne 1 from 10 x0, float32: a false success became a stationary point). From
# about 8,000 variables (YNN takes the reductions) and at 10^6 (the scalable bounded problems)
# the runs are as fast. Rosenbrock's program at 2, 10 and 25 variables is the same (nothing to
# split but an objective's sum of more than 32 terms: Hock-Schittkowski 25's, over 99 data
# points, compiled in 0.90 instead of 1.03 s, float32, 6 paired compiles). Plain sums round
# alike or better without it (a 1,000-element float32 inner product: 3.7e-8 relative error
# against 1.5e-7).
OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_disable_hlo_passes": "tree_reduction_rewriter"}
_CORES = _cores()
if _CORES < 32:
    OPTIONS["xla_cpu_parallel_codegen_split_count"] = _CORES

# A small problem's solve (no array of the user's over SMALL_PROGRAM elements: the
# parameters, fun's arguments, the arrays it closes over) also skips XLA's loop-invariant
# code motion, its costliest pass on a solve's loops: on the 2-D Rosenbrock solve 36 ms of
# the HLO passes' 127, and the compile 0.35 -> 0.29 s. What it hoists out of a solve's
# loops is qnjax's own few scalars (runs of 200 iterations at n = 100 to 4,096, with and
# without a box, took 0.90-1.06x the time), and work on the objective's data, which is
# small here; at larger sizes the objective's own invariant work (a transform of its
# data, recomputed at every evaluation) could cost more than the compile saves.
# ``qnjax bench --solvers qnjax`` on the MGH problems from 1, 2, 5, 10, 20 and 50 times
# their start, float32 and float64, both ways: the median compile went from 0.60-0.65 s
# to 0.54-0.56 s, the iterations or f changed (in the last bits) in 39 of 480 runs, and
# no run's outcome changed (solved, false success, false failure).
SMALL_OPTIONS = {**OPTIONS,
                 "xla_disable_hlo_passes": OPTIONS["xla_disable_hlo_passes"] + ",while-loop-invariant-code-motion"}
SMALL_PROGRAM = 256

# A batch of very small problems (``jax.vmap`` of an eager call, every member's arrays at
# most BATCHED_PROGRAM elements) keeps XLA's emitters but not its YNN (XNNPACK) fusions:
# under vmap each member's short reductions (the inner products, the objective's sum)
# become YNN kernels that XLA:CPU runs more slowly than its own loops. 1,000 batched 10-D
# Rosenbrock problems, float64, 50 iterations (one lowered program compiled both ways, best
# of 10, three alternating rounds): 61.8-63.9 ms -> 58.1-58.5 ms. ``jax.vmap(minimize)`` of
# 1,000 n-D Rosenbrock problems, 50 iterations, best of 3 x 5 alternating runs, float64 and
# float32: n = 10 0.95 and 0.95 the time, n = 20 0.89 and 0.96, but n = 40 1.02 and 1.08, n = 100
# 1.12 and 1.19: longer reductions are YNN's strength (n = 1e6, float32, unbatched: 10.1 ms
# an iteration with them, 14.5 without). Nor does a batch of bounded problems gain (the
# 10-D batch in [-2, 0.8]^10: 626-648 ms -> 680-687 ms without them; ``_minimize._solve``'s
# ``batches``): those keep XLA's defaults.
BATCHED_SMALL_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
BATCHED_PROGRAM = 32
_KINDS = {"small": SMALL_OPTIONS, "tuned": OPTIONS, "batched": BATCHED_SMALL_OPTIONS}


# The kinds of options this process's XLA refused: a program's first compile with them
# failed on an unknown option (an older XLA), so calls compile with the next kind down
# (``jit``). Learnt from the first real compile, not from a test compile of its own: that
# cost every process's first call about 10 ms.
_REFUSED: set = set()


def _compiles_with(backend: str, kind: str) -> bool:
    """Whether this backend is a CPU and its XLA has not refused the options of ``kind``
    ("small": ``SMALL_OPTIONS``, "tuned": ``OPTIONS``, "batched": ``BATCHED_SMALL_OPTIONS``)."""
    return backend == "cpu" and kind not in _REFUSED


def _accepted(backend: str) -> bool:
    """Whether this backend is a CPU and its XLA takes ``OPTIONS``."""
    return _compiles_with(backend, "tuned")


def _small_accepted(backend: str) -> bool:
    """Whether it also takes ``SMALL_OPTIONS`` (else a small problem's solve compiles with
    ``OPTIONS``)."""
    return _compiles_with(backend, "small")


def _batched_accepted(backend: str) -> bool:
    """Whether it takes ``BATCHED_SMALL_OPTIONS`` (else a batch compiles with XLA's defaults)."""
    return _compiles_with(backend, "batched")


def _refused(error: Exception) -> bool:
    """Whether ``error`` is XLA refusing a compiler option it does not know."""
    return "compile option" in str(error)


def kind_for(tree):
    """The kind of options of a program of its own over the user's arrays ``tree`` (the
    parameters, ``fun``'s arguments and the arrays it closes over): "small", "tuned", or
    None (XLA's defaults; module docstring)."""
    backend = jax.default_backend()
    if not (_accepted(backend) and _vectors_only(tree)):
        return None
    return "small" if _small(tree) and _small_accepted(backend) else "tuned"


def options_for(tree):
    """The compiler options of that kind (:func:`kind_for`): ``SMALL_OPTIONS``, ``OPTIONS``,
    or None."""
    kind = kind_for(tree)
    return None if kind is None else _KINDS[kind]


def _eager(through_vmap: bool) -> bool:
    """Whether the trace a call made now runs under is JAX's eager one, after stepping over
    ``jax.vmap``'s traces if ``through_vmap``. False where JAX's internals are not these."""
    try:
        from jax._src import core
        from jax._src.interpreters import batching

        trace = core.trace_ctx.trace
        while through_vmap and isinstance(trace, batching.BatchTrace):
            trace = trace.parent_trace
        return isinstance(trace, core.EvalTrace)
    except Exception:  # another JAX's internals: compile with the defaults, keep the rule
        return False


def top_level() -> bool:
    """Whether a jitted call made now is an unbatched program of its own: no trace above
    it (not even ``jax.vmap``'s, under which the classic emitters run slower)."""
    return _eager(through_vmap=False)


def nothing_differentiates() -> bool:
    """Whether no trace above a call made now can differentiate what it returns: none at
    all, or only ``jax.vmap``'s over none (``minimize`` then needs no custom derivative
    rule). Under ``jax.grad``, ``jax.jvp``, ``jax.jit`` (whose program may be
    differentiated later), ``lax.scan`` and the like: False."""
    return _eager(through_vmap=True)


def _vectors_only(tree) -> bool:
    """Whether every array in ``tree`` (the parameters, ``fun``'s arguments and the arrays it
    closes over) has at most one axis. Reductions over arrays of two or more axes are where
    the classic emitters fail: for some shapes (a (32, 32) or (32, 64) leaf, common in small
    networks) XLA and LLVM unroll their loops completely, and a solve compiles in 5-9 s
    instead of 2-3 s with XLA's defaults; what the objective computes on its own data is
    not ours to reformulate, so such programs keep the defaults."""
    return all(jnp.ndim(leaf) <= 1 for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))


def jit(fun=None, *, users=None, batches=None, **kwargs):
    """``jax.jit(fun, **kwargs)``, compiled with ``OPTIONS`` where the call is its own
    program on a CPU (see the module's docstring); a decorator with or without arguments.
    The wrapper's ``plain`` is the jitted function with XLA's defaults, ``tuned`` the one
    with ``OPTIONS``, ``small`` with ``SMALL_OPTIONS`` and ``batched`` with
    ``BATCHED_SMALL_OPTIONS`` (all made at once; a kind of options this XLA refuses at the
    first compile that asks for it is not asked for again, and that call compiles with
    the next kind down: ``SMALL_OPTIONS`` hold ``OPTIONS``, then XLA's defaults).

    ``users(arguments)``, given the call's arguments by name, returns the arrays that are
    the user's (the ones :func:`_vectors_only` and :func:`_small` look at); by default all
    of them. A resumed solve's memory is qnjax's own: its 2-D history is in every solve's
    program, and a resumed run must compile as the run it continues (the same rounding).
    ``batches(arguments)``: whether a batch of small problems of this call compiles with
    ``BATCHED_SMALL_OPTIONS`` (by default, always)."""
    if fun is None:
        return functools.partial(jit, users=users, batches=batches, **kwargs)
    signature = inspect.signature(fun)
    plain = jax.jit(fun, **kwargs)
    try:
        jitted = {kind: jax.jit(fun, compiler_options=options, **kwargs) for kind, options in _KINDS.items()}
    except TypeError:  # a JAX whose jit takes no compiler options: the defaults for all
        jitted = dict.fromkeys(_KINDS, plain)

    def arrays(args, kw, arguments=None):
        if users is None:
            return args, kw
        return users(signature.bind(*args, **kw).arguments if arguments is None else arguments)

    def small_batch(args, kw):
        """A batch of very small problems: its own program under ``jax.vmap``'s traces alone."""
        if not (_eager(through_vmap=True) and _batched_accepted(jax.default_backend())):
            return False
        arguments = signature.bind(*args, **kw).arguments  # (bound once for both tests)
        return ((batches is None or batches(arguments))
                and _small(arrays(args, kw, arguments), BATCHED_PROGRAM))

    def kind_of(args, kw):
        """The kind of options this call compiles with, None for XLA's defaults."""
        if not top_level():
            return "batched" if small_batch(args, kw) else None
        return kind_for(arrays(args, kw))

    @functools.wraps(fun)
    def call(*args, **kw):
        kind = kind_of(args, kw)
        if kind is None:
            return call.plain(*args, **kw)
        try:
            return getattr(call, kind)(*args, **kw)
        except Exception as error:  # noqa: BLE001
            if not _refused(error):
                raise
        _REFUSED.add(kind)  # (outside the handler: an error of the plain call is not chained to XLA's)
        return call(*args, **kw)

    call.plain = plain
    for kind, jitted_kind in jitted.items():
        setattr(call, kind, jitted_kind)
    return call


def _small(tree, most=None) -> bool:
    """Whether every array in ``tree`` has at most ``most`` (default SMALL_PROGRAM: ``SMALL_OPTIONS``)
    elements."""
    most = SMALL_PROGRAM if most is None else most
    return all(jnp.size(leaf) <= most for leaf in jax.tree.leaves(tree) if hasattr(leaf, "shape"))
