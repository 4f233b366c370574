import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

X64 = bool(jax.config.read("jax_enable_x64"))
needs_x64 = pytest.mark.skipif(not X64, reason="needs jax_enable_x64")
# What the precision mode cannot change (a float32 program's numerics and structure, the
# host side of callbacks and plots, batching equalities) is tested once, in the x64-off run,
# as a reader's JAX starts; with x64 on the same test would measure compile time, not
# qnjax. Typing with x64 on (float32 leaves among float64 settings) stays in both runs.
x64_off_only = pytest.mark.skipif(X64, reason="does not depend on the precision mode: runs with x64 off")
# A kernel checked against its dense float64 reference (an identity of linear algebra, the
# same code in either mode) is checked once, with x64 on, to float64's tolerance; float32
# would check the same code to 2e-3.
float64_reference = pytest.mark.skipif(not X64, reason="a kernel against its float64 reference: runs with x64 on")


def searches_for_mode(names):
    """The line searches a test runs: ``names`` with x64 off; with x64 on, the default search
    only, when what the test checks does not depend on the precision mode."""
    return list(names) if not X64 else ["more-thuente"]


def leaf_types(tree):
    """(path, shape, dtype, weak_type) of every leaf, for exact type comparisons."""
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if isinstance(leaf, jax.ShapeDtypeStruct):  # (jax.eval_shape's)
            aval = leaf
        else:
            aval = jax.typeof(leaf) if hasattr(jax, "typeof") else jax.core.get_aval(leaf)
        out.append((jax.tree_util.keystr(path), tuple(aval.shape), str(aval.dtype), bool(aval.weak_type)))
    return out


def assert_float32_program(fun, n):
    """``fun`` of a float32 (n,) vector and its gradient: a strong float32 scalar, and no
    float64 anywhere inside the traced program."""
    traced = jax.make_jaxpr(jax.value_and_grad(fun))(jax.ShapeDtypeStruct((n,), jnp.float32))
    out = traced.out_avals[0]
    assert out.shape == () and out.dtype == jnp.float32 and not out.weak_type
    assert "f64" not in str(traced)


def assert_same_types(before, after):
    assert jax.tree.structure(before) == jax.tree.structure(after)
    for b, a in zip(leaf_types(before), leaf_types(after)):
        assert b == a, f"state leaf changed type: {b} -> {a}"
    assert not [t for t in leaf_types(after) if t[3]], "weak-typed state leaf"


def make_step(opt, loss, value_and_grad_from_state=None):
    """One optax-style L-BFGS step: value and grad from the state, update, apply."""
    import optax

    import qnjax

    vg = (value_and_grad_from_state or qnjax.value_and_grad_from_state)(loss)

    def step(params, state):
        value, grad = vg(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(params, updates), state

    return step


def until_stopped(opt, loss, x0, limit):
    """(params, state): ``make_step`` in a ``lax.while_loop`` while the status is RUNNING, at
    most ``limit`` updates (traceable: under jit and vmap)."""
    import qnjax

    step = make_step(opt, loss)

    def body(c):
        return *step(c[0], c[1]), c[2] + 1

    running = lambda c: (c[1].status == qnjax.Status.RUNNING) & (c[2] < limit)  # noqa: E731
    return jax.lax.while_loop(running, body, (x0, opt.init(x0), 0))[:2]


def one_program(funs):
    """``f(x, i) = funs[i](x)``: one objective for many of the same shape and dtype, so that
    the tests solving each of them compile one solve between them (``i`` is data, an int32
    argument: each call runs only its own branch). Compile time is the suite's cost (CI
    time: DEVELOPERS.md). The branch is the same function, compiled apart from the solver's
    code (it may round differently in the last bit, as any two separate programs may)."""
    funs = tuple(funs)

    def f(x, i):
        return jax.lax.switch(i, funs, x)

    return f


def solve_one_of(funs, name, x0, **kwargs):
    """``qnjax.minimize(funs[name], x0, **kwargs)`` for a dict ``funs`` of objectives of one
    shape (in the same order wherever it is built), through :func:`one_program`'s shared program."""
    import qnjax

    i = jnp.asarray(list(funs).index(name), jnp.int32)
    return qnjax.minimize(one_program(funs.values()), x0, (i,), **kwargs)


def spd(rng, n, cond):
    """An n x n SPD matrix with condition number ``cond`` (eigenvalues log-spaced from 1)."""
    qmat, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return qmat @ np.diag(np.logspace(0, np.log10(cond), n)) @ qmat.T


def dense_h(pairs, n, gamma):
    """H from N&W eq. 7.19 over (s, y) pairs, oldest first, H0 = gamma I (eq. 7.20): numpy, float64."""
    h = np.eye(n) * gamma
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _line_searches():
    """Every registered line search with its default settings (``qnjax.linesearch.REGISTRY``)."""
    import qnjax

    return {name: cls() for name, cls in qnjax.linesearch.REGISTRY.items()}


LINESEARCHES = _line_searches()


# `make test` shares compiled programs between the pytest-xdist workers through JAX's
# persistent cache (a program both workers need is compiled once): compile time is the
# suite's cost. A program found there counts as a compilation below, so "no recompile"
# assertions keep their meaning.
if os.environ.get("QNJAX_TEST_COMPILATION_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["QNJAX_TEST_COMPILATION_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The tests closest to rounding (float32 at its precision, non-finite values, extreme
# scales) run with both of XLA:CPU's emitters: with x64 on the classic ones (a direct call's),
# with x64 off in ``tests/test_compile.py``'s subprocess with XLA's default emitters for every
# program, minimize's own included (a solve inside a user's jax.jit compiles so), where
# QNJAX_TEST_XLA_DEFAULTS tells qnjax not to ask for its options. Once each, not twice in the
# x64-off run (CI time: DEVELOPERS.md); those marked x64_off_only (the WOODS saddle, the
# 1,000 float32 fits' statuses) run with the default emitters only (the same fits run with
# x64 on, classic, against float64).
DEFAULT_EMITTERS = bool(os.environ.get("QNJAX_TEST_XLA_DEFAULTS"))
if DEFAULT_EMITTERS:
    from qnjax import _compile

    _compile._accepted = lambda backend: False


CLOSEST_TO_ROUNDING = ("test_failure.py", "test_honest.py")  # (test_compile.py runs them)


def with_default_emitters(nodeid):
    """Whether a test is one of those (the default line search's: the others run the same
    solver code) that the x64-off run runs with XLA's default emitters only."""
    closest = nodeid.startswith(tuple(f"tests/{name}::" for name in CLOSEST_TO_ROUNDING))
    others = [name for name in LINESEARCHES if name != "more-thuente"]
    return closest and not any(other in nodeid for other in others)


# Both runs are debug builds: LLVM compiles every program without optimising it (the
# Makefile's --xla_backend_optimization_level=0; the suite is compile-bound and this compiles
# its programs in about 0.6x the time). Their programs compute the same mathematics but
# round differently from the optimised code users run (no fused multiply-adds where the
# optimiser forms them, and not uniformly: a batched program and its unbatched one no
# longer agree bit for bit). So the tests whose claims are about that rounding run in
# ``tests/test_compile.py``'s subprocess, optimised as users' programs are
# (QNJAX_TEST_OPTIMISED), with the classic emitters: a batched program against its unbatched
# one bit for bit, which stop fires at working precision, counts against scipy's on an
# ill-conditioned problem and scipy's own end there (its objective compiled by JAX), and,
# with x64 on, the tests closest to rounding (above; with x64 off they run optimised too,
# in the default emitters' subprocess).
DEBUG_BUILD = "--xla_backend_optimization_level=0" in os.environ.get("XLA_FLAGS", "")
OPTIMISED = bool(os.environ.get("QNJAX_TEST_OPTIMISED"))
ROUNDING_OF_THE_OPTIMISED_BUILD = (
    "tests/test_linesearch.py::test_vmap_matches_one_by_one",
    "tests/test_trace.py::test_trace_under_jit_and_vmap",
    "tests/test_memory.py::test_a_run_stopped_after_a_failed_retry_keeps_its_pairs",
    "tests/test_lbfgsb.py::test_bounded_catalogue_optimum_and_active_set",
    "tests/test_bounded_problems.py::test_lbfgsb_from_x0_reaches_fstar",
    "tests/test_trace.py::test_a_resumed_run_ends_bitwise_where_one_run_does",
)


def in_the_optimised_build(nodeid):
    """Whether a test runs in the optimised subprocess of a debug build's run (see above)."""
    return nodeid.startswith(ROUNDING_OF_THE_OPTIMISED_BUILD) or (X64 and with_default_emitters(nodeid))


# The tests this run leaves to each subprocess (that they run there is checked by name),
# and the test files it collected.
SENT_TO_A_SUBPROCESS = {"default emitters": [], "optimised build": []}
COLLECTED = set()


def users_xla_flags(*extra, optimised=True):
    """XLA_FLAGS without the suite's compile-time choices (the emitters, and the debug build
    where ``optimised``), plus ``extra``: what a subprocess that compiles as users' programs
    compile is given."""
    ours = ("fusion_emitters", "backend_optimization_level") if optimised else ("fusion_emitters",)
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if not any(name in f for name in ours)]
    return " ".join([*kept, *extra])


def run_pytest(*args, env):
    """pytest in a fresh process (what needs other XLA flags or a device count, fixed when
    JAX starts): ``(completed process, the tail of its output for an assertion message)``."""
    import pathlib
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
                         env=env, capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1], timeout=900)
    return run, run.stdout[-6000:] + run.stderr[-3000:]


class _Compiles:
    """Counts XLA compilations (JAX's monitoring events: a backend compile, or a program
    taken from the persistent cache instead), so tests can assert none happened. Each
    program counts once: this JAX reports a program taken from the cache as a backend
    compile too (after the hit), which had counted it twice once the suite's cache held
    it (a second ``make test`` failed where a fresh clone passed); the flag is reset
    where each program is lowered, before either event."""

    count = 0
    names = []  # each program's name (``jit(f)``), compiled or taken from the cache; tests may clear it
    _hit = False

    @classmethod
    def listen(cls, event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            cls._hit = False
        elif event == "/jax/core/compile/backend_compile_duration":
            cls.names.append(kwargs.get("fun_name"))
            if not cls._hit:
                cls.count += 1
            cls._hit = False

    @classmethod
    def hit(cls, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            cls.count += 1
            cls._hit = True


jax.monitoring.register_event_duration_secs_listener(_Compiles.listen)
jax.monitoring.register_event_listener(_Compiles.hit)
COMPILES = _Compiles


# The longest tests (measured with --durations: each 9-45 s, compile-bound) start first, so
# the two xdist workers finish together instead of one waiting out a long test at the end
# (longest-first scheduling); the others keep their order.
LONG_FIRST = (
    "tests/test_docs.py::test_blocks_run_as_a_reader_runs_them",
    "tests/test_sharding.py::test_eight_device_suite",
    "tests/test_compile.py::test_files_with_xla_default_emitters",
    "tests/test_compile.py::test_rounding_of_the_optimised_build",
    "tests/test_unrolled.py::",
    "tests/test_sharding.py::test_two_processes",
    "tests/test_lbfgsb.py::test_vmap_over_starts",
    "tests/test_implicit.py::test_failures_are_nan",
    "tests/test_bench.py::test_floor_script",
    "tests/test_properties.py::test_minimize_properties",
    "tests/test_implicit.py::test_dense_solver",
    "tests/test_implicit.py::test_logistic_regression",
    "tests/test_honest.py::test_thousand_float32_fits",
    "tests/test_bench.py::test_end_to_end",
)


def pytest_collection_modifyitems(config, items):
    if DEFAULT_EMITTERS or OPTIMISED:  # test_compile.py's subprocesses: those tests (and its own check)
        runs = with_default_emitters if DEFAULT_EMITTERS else in_the_optimised_build
        items[:] = [i for i in items if runs(i.nodeid) or i.nodeid.startswith("tests/test_compile.py")]
    else:
        COLLECTED.update(item.nodeid.split("::")[0] for item in items)
        for item in items:
            where = ("default emitters" if not X64 and with_default_emitters(item.nodeid) else
                     "optimised build" if DEBUG_BUILD and in_the_optimised_build(item.nodeid) else None)
            if where:
                item.add_marker(pytest.mark.skip(reason=f"runs in test_compile.py's subprocess ({where})"))
                SENT_TO_A_SUBPROCESS[where].append(item.nodeid)

    def rank(item):
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))

    items[:] = sorted(items, key=rank)  # (stable: ties keep the collection order)
