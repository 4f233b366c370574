"""`_compile.jit`: a solve that is its own program gets XLA:CPU's classic emitters, a
solve inside a caller's program gets the caller's options, and both give the answer.

`make test` compiles every program with the classic emitters (the Makefile's XLA_FLAGS:
the path of a direct call, and 0.5-0.6x the compile time of the Optax face's programs);
a solve inside a user's jax.jit compiles with XLA's default emitters, which may round
differently in the last bit. The tests closest to rounding (float32 at its precision,
non-finite values, extreme scales) run with both: with x64 off in a subprocess with the
default emitters for every program, minimize's own included
(``conftest.with_default_emitters``), with x64 on with the classic ones, in the subprocess
that runs the tests of the optimised build's rounding (both runs are debug builds:
``conftest.in_the_optimised_build``)."""

import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    CLOSEST_TO_ROUNDING,
    COLLECTED,
    DEBUG_BUILD,
    DEFAULT_EMITTERS,
    OPTIMISED,
    ROUNDING_OF_THE_OPTIMISED_BUILD,
    SENT_TO_A_SUBPROCESS,
    X64,
    rosenbrock,
    run_pytest,
    users_xla_flags,
    x64_off_only,
)

import qnjax
from qnjax import _compile, _minimize, _xla


def test_this_cpu_takes_the_options():
    """This XLA compiles with every kind of options (else: every first call about twice as
    slow, a small problem's about 10% slower, a batch of small problems run about 7%
    slower); qnjax asks for them on a CPU only."""
    assert jax.default_backend() == "cpu"
    for options in _compile._KINDS.values():
        jax.jit(jnp.negative, compiler_options=options).lower(1.0).compile()
    assert _compile._accepted("cpu") and _compile._small_accepted("cpu") and _compile._batched_accepted("cpu")
    assert not any(_compile._compiles_with("gpu", kind) for kind in _compile._KINDS)


def test_options_an_xla_refuses_are_not_asked_for_again(monkeypatch):
    """An XLA that does not know an option refuses the compile (the check is that compile,
    not one of its own: a tiny test compile cost every process's first call about 10 ms).
    That call and every later one of that kind compile with the next kind down (here the
    small kind's, then ``OPTIONS``), and the answer is the same."""
    monkeypatch.setattr(_compile, "_REFUSED", set())
    monkeypatch.setitem(_compile._KINDS, "small", {**_compile.SMALL_OPTIONS, "xla_no_such_option_qnjax": True})
    compiled = []
    solve = _compile.jit(lambda x: jnp.sum(x * x))

    def counted(kind, run):
        return lambda *a: compiled.append(kind) or run(*a)

    for kind in ("small", "tuned"):
        monkeypatch.setattr(solve, kind, counted(kind, getattr(solve, kind)))
    x = jnp.arange(3.0)
    assert float(solve(x)) == 5.0 and float(solve(2 * x)) == 20.0
    assert compiled == ["small", "tuned", "tuned"] and _compile._REFUSED == {"small"}
    assert _compile.kind_for(x) == "tuned" and _compile.options_for(x) is _compile.OPTIONS


def _where(transform):
    seen = []

    def f(x):
        seen.append((_compile.top_level(), _compile.nothing_differentiates()))
        return jnp.sin(x)

    transform(f)(jnp.ones((2, 3)))
    return seen[0]


@x64_off_only  # where the call stands, not what it computes
@pytest.mark.parametrize("name, transform, own, underived", [
    ("call", lambda f: f, True, True),
    ("vmap", jax.vmap, False, True),  # XLA's defaults run batched kernels faster; nothing differentiates
    ("vmap of vmap", lambda f: jax.vmap(jax.vmap(f)), False, True),
    ("jit", jax.jit, False, False),  # (its program may be differentiated later)
    ("vmap in jit", lambda f: jax.jit(jax.vmap(f)), False, False),
    ("grad", lambda f: jax.grad(lambda x: f(x).sum()), False, False),
    ("vmap of grad", lambda f: jax.vmap(jax.grad(lambda x: f(x).sum())), False, False),
    ("grad of vmap", lambda f: jax.grad(lambda x: jax.vmap(f)(x).sum()), False, False),
    ("vjp", lambda f: lambda x: jax.vjp(f, x)[1](x), False, False),
    ("jvp", lambda f: lambda x: jax.jvp(f, (x,), (x,)), False, False),
    ("checkpoint", jax.checkpoint, False, False),
    ("scan", lambda f: lambda x: jax.lax.scan(lambda c, _: (f(c), None), x, None, length=1), False, False),
])
def test_where_a_call_stands_decides_its_options_and_its_derivative_rule(name, transform, own, underived):
    """``top_level``: the call is a program of its own (the options); ``nothing_differentiates``:
    no trace above can differentiate the call's result (minimize's derivative rule)."""
    assert _where(transform) == (own, underived)


def _programs_taken(monkeypatch, *functions):
    """The list to which each call of minimize's solve (or of each of ``functions``, made by
    ``_compile.jit``) appends the kind of options it compiled with ("small", "tuned",
    "batched"), or "plain"."""
    calls = []
    functions = functions or (_minimize._solve,)

    def counted(name, jitted):
        def run(*args, **kw):
            calls.append(name)
            return jitted(*args, **kw)
        return run

    for function in functions:
        for kind in ("tuned", "plain", "small", "batched"):
            monkeypatch.setattr(function, kind, counted(kind, getattr(function, kind)))
    return calls


@x64_off_only  # which program a call takes, not what it computes
def test_hess_inv_products_compile_with_the_options_where_called_eagerly(monkeypatch):
    """``res.hess_inv``'s programs (the final memory, H v, the dense H) are the user's first
    calls after a solve: called eagerly they compile with the options, as the solve does
    (XLA's defaults: the first ``H @ v`` on a 2-D problem took 425 ms instead of about 280);
    a column-by-column ``H @ V`` (``jax.vmap``) takes the batched kind."""
    from qnjax import _inverse_hessian

    res = qnjax.minimize(rosenbrock, jnp.array([-1.2, 1.0, 0.9, 0.4], jnp.float32))
    calls = _programs_taken(monkeypatch, _inverse_hessian._final_memory, _inverse_hessian._apply_array,
                            _inverse_hessian._dense)
    h = res.hess_inv
    hv = h @ jnp.arange(4.0, dtype=jnp.float32)
    dense = h.todense()
    columns = h @ np.eye(4, dtype=np.float32)
    assert calls[:3] == ["small", "small", "small"] and set(calls[3:]) <= {"batched", "plain"}, calls
    np.testing.assert_allclose(dense @ np.arange(4.0), hv, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(columns, dense, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="4 entries"):
        h @ jnp.ones(3)


@x64_off_only  # where the call stands, not what it computes
def test_the_derivative_rule_is_made_only_where_a_trace_could_use_it(monkeypatch):
    """An eager call, batched or not, skips the implicit-differentiation rule (making and
    calling a ``jax.custom_jvp`` was 12-18% of a small solve's call); under ``jax.grad`` or
    ``jax.jit`` the rule is there, and the derivative is the solution's."""
    made = []
    real = _minimize._implicit.differentiable
    monkeypatch.setattr(_minimize._implicit, "differentiable", lambda *a: made.append(1) or real(*a))

    def solve(t):
        return qnjax.minimize(lambda x: jnp.sum((x - t) ** 2), jnp.zeros(2), gtol=1e-6).x

    t = jnp.array([0.3, -0.2])
    eager = solve(t)
    assert made == [] and np.allclose(eager, t, atol=1e-5)
    d = jax.jacobian(solve)(t)  # x*(t) = t: the identity
    assert made == [1] and np.allclose(d, np.eye(2), atol=1e-4)
    batched = jax.vmap(solve)(jnp.stack([t, 2 * t]))
    assert made == [1] and np.allclose(batched[1], 2 * t, atol=1e-5)
    np.testing.assert_allclose(jax.jit(solve)(t), eager, atol=1e-6)  # the same program (XLA's defaults)
    assert made == [1, 1]
    d = jax.vmap(jax.jacobian(solve))(jnp.stack([t, 2 * t]))  # differentiated under the batch
    assert made == [1, 1, 1] and np.allclose(d, np.eye(2), atol=1e-4)


@x64_off_only  # which program a call takes, not what it computes
def test_only_a_batch_of_small_unbounded_problems_leaves_out_ynn_fusions(monkeypatch):
    """``jax.vmap`` of an eager call compiles its own program: without XLA's YNN fusions
    (``BATCHED_SMALL_OPTIONS``) for very small unbounded members, with XLA's defaults for
    bounded ones or a member over ``BATCHED_PROGRAM`` elements; and the options do leave them
    out."""
    calls = _programs_taken(monkeypatch)
    x0s = jnp.stack([jnp.array([-1.2, 1.0, 0.4, 0.2]), jnp.array([0.5, 0.3, -0.8, 0.1])])
    small = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x))(x0s)
    boxed = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x, bounds=(-2.0, 0.8)))(x0s)
    wide = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x))(jnp.tile(x0s, (1, 9)))  # 36 each
    assert calls == ["batched", "plain", "plain"]
    assert bool(jnp.all(small.success)) and bool(jnp.all(boxed.success)) and bool(jnp.all(wide.success))
    batched_sums = jax.jit(jax.vmap(lambda v: jnp.sum(v * v)), compiler_options=_compile.BATCHED_SMALL_OPTIONS)
    assert "kind=kCustom" not in batched_sums.lower(jnp.ones((1000, 10))).compile().as_text()  # (YNN fusions)


@x64_off_only  # which program a call takes, not what it computes (CI time: about 12 s a run)
def test_direct_solve_compiles_with_the_options_and_jit_with_the_defaults(monkeypatch):
    dtype = jnp.float32  # (x64-off run only)
    x0 = jnp.array([-1.2, 1.0, 0.7], dtype)  # a shape of its own: the caches start empty
    calls = _programs_taken(monkeypatch)
    direct = qnjax.minimize(rosenbrock, x0)
    batched = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x))(jnp.stack([x0, 0.5 * x0]))
    inside = jax.jit(lambda x: qnjax.minimize(rosenbrock, x))(x0)  # the caller's program
    assert calls == ["small", "batched", "plain"]
    for res in (direct, inside, jax.tree.map(lambda v: v[0], batched)):
        assert res.success  # fun is f(x) as the solve's program computes it; eagerly, to rounding:
        np.testing.assert_allclose(res.fun, rosenbrock(res.x), rtol=1e-2, atol=float(jnp.finfo(dtype).eps) ** 2)
        np.testing.assert_allclose(np.asarray(res.x), 1.0, atol=1e-3)
    # The same HLO program either way: the iterations agree to rounding.
    assert abs(int(direct.nit) - int(inside.nit)) <= 2


@x64_off_only  # which program a call takes, not what it computes
def test_a_resumed_solve_compiles_as_the_run_it_continues(monkeypatch):
    """A resumed run's state carries 2-D history buffers (qnjax's own, in every solve's
    program): the call takes the options as the run it continues did, so resuming is one
    run bit for bit with XLA's default flags too (this suite compiles every program with
    the classic emitters, where a wrong choice would not show)."""
    calls = _programs_taken(monkeypatch)
    x0 = jnp.array([-1.2, 1.0, 0.8, 1.1, -0.5], jnp.float32)
    first = qnjax.minimize(rosenbrock, x0, maxiter=5)
    more = qnjax.minimize(rosenbrock, first.x, maxiter=5, state=first.state)
    assert calls == ["small", "small"]
    assert int(more.nit) == 10
    # fun's aux is computed in both programs: a large 2-D one in the resumed state changes nothing
    with_aux = lambda x: (rosenbrock(x), jnp.outer(jnp.tile(x, 12), jnp.tile(x, 12)))  # noqa: E731  (60 x 60)
    first = qnjax.minimize(with_aux, x0, maxiter=5, has_aux=True)
    more = qnjax.minimize(with_aux, first.x, maxiter=5, state=first.state, has_aux=True)
    assert calls == ["small"] * 4
    assert int(more.nit) == 10 and more.aux.shape == (60, 60)


@x64_off_only  # which program a call takes, not what it computes
def test_only_a_small_problem_skips_loop_invariant_code_motion(monkeypatch):
    """``SMALL_OPTIONS`` (no loop-invariant code motion) where no array of the user's has
    more than ``SMALL_PROGRAM`` elements; the parameters or an array ``fun`` closes over
    beyond it: ``OPTIONS``, which keep the pass (the objective's invariant work on its data
    would be redone at every evaluation). Each is solved."""
    assert _compile.SMALL_OPTIONS == {
        **_compile.OPTIONS, "xla_disable_hlo_passes": "tree_reduction_rewriter,while-loop-invariant-code-motion"}
    calls = _programs_taken(monkeypatch)
    big = _compile.SMALL_PROGRAM + 4
    data = jnp.linspace(0.5, 1.5, big, dtype=jnp.float32)
    runs = [qnjax.minimize(lambda x: jnp.sum((x - 0.5) ** 2), jnp.zeros(big - 8, jnp.float32)),
            qnjax.minimize(lambda x: jnp.sum((x - 0.5) ** 2), jnp.zeros(big, jnp.float32)),
            qnjax.minimize(lambda x: jnp.sum((x[0] * data - data ** 2) ** 2), jnp.zeros(1, jnp.float32))]
    assert calls == ["small", "tuned", "tuned"]
    assert all(bool(r.success) for r in runs)
    np.testing.assert_allclose(np.asarray(runs[2].x), float(jnp.sum(data ** 3) / jnp.sum(data ** 2)), rtol=1e-4)


@x64_off_only  # what XLA compiles, not what it computes
@pytest.mark.parametrize("n", [100, 1000])
@pytest.mark.parametrize("bounded", [False, True])
def test_a_direct_solve_leaves_out_the_tree_reduction_rewriter(n, bounded):
    """``OPTIONS`` and ``SMALL_OPTIONS`` leave out XLA's tree reduction rewriter: a direct
    solve of 100 or 1,000 variables, with and without a box, compiles no windowed reduction
    (a reduction of more than 32 elements split in two kernels), where the same lowered
    solve compiled with XLA's defaults, as inside a caller's ``jax.jit``, has several (the
    objective's sum, the inner products, the bounds' minima). Both solve alike."""
    x0 = jnp.asarray(np.random.default_rng(0).uniform(-1.5, 0.7, n), jnp.float32)
    box = (-2.0, 0.8) if bounded else None
    lowered = jax.jit(lambda x: qnjax.minimize(rosenbrock, x, bounds=box, maxiter=20)).lower(x0)
    options = _compile.options_for(x0)
    assert options is _compile._KINDS["small" if n <= _compile.SMALL_PROGRAM else "tuned"]
    ours, defaults = lowered.compile(options), lowered.compile()
    assert "reduce-window(" not in ours.as_text()
    assert ours.as_text().count("reduce-window(") < defaults.as_text().count("reduce-window(")
    a, b = ours(x0), defaults(x0)
    assert int(a.nit) == int(b.nit) == 20
    np.testing.assert_allclose(float(a.fun), float(b.fun), rtol=1e-2)


@x64_off_only  # which program a call takes, not what it computes
def test_a_solve_over_arrays_of_two_axes_compiles_with_the_defaults(monkeypatch):
    """The classic emitters unroll reductions over some 2-D shapes completely (a (32, 32)
    leaf: 5-9 s to compile a solve, 2-3 s with the defaults): such a call takes the
    defaults, whether the array is the parameters, an argument or closed over."""
    assert _compile._vectors_only((jnp.zeros(3), (1.0, 2), {"a": jnp.zeros(())}))
    assert not _compile._vectors_only((jnp.zeros(3), (jnp.eye(2),)))
    calls = _programs_taken(monkeypatch)
    data = jnp.asarray([[2.0, 1.0], [1.0, 3.0]], jnp.float32)
    res = qnjax.minimize(lambda x: jnp.sum((data @ x - 1.0) ** 2), jnp.zeros(2, jnp.float32))
    assert calls == ["plain"] and res.success
    np.testing.assert_allclose(np.asarray(data @ res.x), 1.0, rtol=1e-4)


@x64_off_only  # that these compile at all; the derivatives are tested in both modes elsewhere (about 24 s)
def test_a_solve_under_grad_scan_and_checkpoint_still_compiles():
    """Inside transformations that stage it, the solve must not carry compiler options
    (JAX refuses them on a nested jit)."""
    dtype = jnp.float32  # (x64-off run only)
    target = jnp.array([0.3, -0.2], dtype)

    def solution(t):
        return qnjax.minimize(lambda x: jnp.sum((x - t) ** 2) + 0.1 * jnp.sum(x**4), jnp.zeros(2, dtype)).x

    g = jax.grad(lambda t: solution(t).sum())(target)
    g_ckpt = jax.grad(jax.checkpoint(lambda t: solution(t).sum()))(target)
    _, xs = jax.lax.scan(lambda c, t: (c, solution(t)), 0.0, jnp.stack([target, -target]))
    x = np.asarray(solution(target), np.float64)
    # 2 (x - t) + 0.4 x^3 = 0, so dx/dt = 2 / (2 + 1.2 x^2), one coordinate at a time.
    np.testing.assert_allclose(np.asarray(g), 2.0 / (2.0 + 1.2 * x**2), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(g_ckpt), np.asarray(g), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(xs[0]), x, rtol=1e-5, atol=1e-6)


HERE = pathlib.Path(__file__).parent


@pytest.mark.skipif(not DEFAULT_EMITTERS, reason="runs in the subprocess below")
def test_this_run_compiles_as_it_says():
    """In the subprocess below: XLA's default emitters, and minimize does not ask for others."""
    assert "--xla_cpu_use_fusion_emitters=true" in os.environ.get("XLA_FLAGS", "")
    assert not _compile._accepted("cpu")


@pytest.mark.skipif(not OPTIMISED, reason="runs in the subprocess below")
def test_this_run_is_optimised_with_the_classic_emitters():
    """In a debug build's optimised subprocess: LLVM optimises and a direct solve asks for
    the classic emitters, as a user's does."""
    assert "backend_optimization_level" not in os.environ.get("XLA_FLAGS", "")
    assert not DEBUG_BUILD and _compile._accepted("cpu")


def _files_in_a_subprocess(files, check, env, where):
    """Runs ``files`` in a subprocess with ``env``: the tests this run skipped for it
    (``conftest.SENT_TO_A_SUBPROCESS[where]``) run there, by name (passed, or skipped there
    as they would have been here), and so does its own ``check``."""
    if not {f"tests/{name}" for name in files} & COLLECTED:
        pytest.skip("none of those files is collected in this session")
    run, tail = run_pytest("-vv", *(str(HERE / name) for name in files), f"{HERE / 'test_compile.py'}::{check}",
                           env=env)
    assert run.returncode == 0, tail
    outcomes = dict(re.findall(r"^(tests/\S+) (PASSED|SKIPPED|FAILED|ERROR)", run.stdout, re.M))
    sent = [n for n in SENT_TO_A_SUBPROCESS[where] if n.split("::")[0].removeprefix("tests/") in files]
    assert sent and not set(sent) - set(outcomes), (set(sent) - set(outcomes), tail)
    assert "PASSED" in {outcomes[n] for n in sent}, tail
    assert outcomes[f"tests/test_compile.py::{check}"] == "PASSED", tail  # the subprocess's own options


@x64_off_only  # (float32: where one rounding decides the most; with x64 on they run optimised, classic)
@pytest.mark.parametrize("name", CLOSEST_TO_ROUNDING)  # (conftest.with_default_emitters)
def test_files_with_xla_default_emitters(name):
    env = dict(os.environ, XLA_FLAGS=users_xla_flags("--xla_cpu_use_fusion_emitters=true"), QNJAX_TEST_XLA_DEFAULTS="1")
    _files_in_a_subprocess([name], "test_this_run_compiles_as_it_says", env, "default emitters")


@pytest.mark.skipif(not DEBUG_BUILD, reason="this run is optimised: those tests ran in it")
def test_rounding_of_the_optimised_build():
    """A debug build's tests whose claims are about the optimised programs' rounding
    (``conftest.in_the_optimised_build``), compiled as users' programs are."""
    files = {node.split("::")[0].removeprefix("tests/") for node in ROUNDING_OF_THE_OPTIMISED_BUILD}
    names = {*CLOSEST_TO_ROUNDING, *files} if X64 else files
    env = dict(os.environ, XLA_FLAGS=users_xla_flags("--xla_cpu_use_fusion_emitters=false"), QNJAX_TEST_OPTIMISED="1")
    check = "test_this_run_is_optimised_with_the_classic_emitters"
    _files_in_a_subprocess(sorted(names), check, env, "optimised build")


def _shared_then_read_four_times(use_once):
    """A loop whose body decides one value with much cheap code (a chain of 40 selects)
    and writes four carried values from it; its optimised HLO, classic emitters."""

    def body(c):
        a, b, d, e, k = c
        z = a
        for i in range(40):
            z = jnp.where(z > b * (i + 1), z - d, jnp.where(z < -b, z + d * 0.5, z * 0.99 + a))
        if use_once:
            z = _xla.once(k < 0, z)
        return z + 1, z * b, jnp.where(z > 0, d, e), e + z, k + 1

    def loop(c):
        return jax.lax.while_loop(lambda c: c[4] < 10, body, c)

    c = (jnp.float32(1), jnp.float32(2), jnp.float32(3), jnp.float32(4), jnp.int32(0))
    return jax.jit(loop).lower(c).compile(_compile.OPTIONS).as_text(), jax.jit(loop)(c)


@x64_off_only  # XLA's fusion decisions, not numerics
def test_once_keeps_one_copy_of_code_that_many_kernels_read():
    """XLA:CPU copies cheap element-wise code into each kernel that reads it (here four
    copies of the 40 selects' chain); after ``once`` it is computed once. If XLA begins to
    copy divisions too, ``once`` no longer helps and this fails."""
    plain, plain_out = _shared_then_read_four_times(False)
    kept, kept_out = _shared_then_read_four_times(True)
    assert plain.count(" select(") >= 3 * 80  # the chain is copied into (at least) three kernels
    assert kept.count(" select(") <= 80 + 10  # one copy
    for a, b in zip(plain_out, kept_out):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_once_changes_no_value():
    """Bit for bit (a subnormal number would become zero: XLA:CPU flushes them in arithmetic)."""
    values = (jnp.asarray([-0.0, 0.0, 1.5, -jnp.inf, jnp.inf, jnp.nan, 1.2e-38, -3.4e38], jnp.float32),
              jnp.asarray([True, False]), jnp.asarray([1 + 2j, -0.0 - 0.0j], jnp.complex64), jnp.arange(3))
    out = jax.jit(lambda k, v: _xla.once(k < 0, v))(jnp.int32(0), values)
    for a, b in zip(values, out):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def test_where_is_jnp_where_without_a_program_of_its_own(monkeypatch):
    """``_xla.where`` gives what ``jnp.where`` gives (value, dtype, weak type, shape:
    Python scalars, weak and strong arrays, integers, booleans, broadcasting), eagerly and
    under ``jax.jit``; in a solve's program no ``jnp.where`` is left as a nested program
    (a plain ``jnp.where`` in qnjax's code would put one back, and this fails)."""
    cond = jnp.asarray([True, False, True])
    cases = [(cond, 1.0, 2), (cond, jnp.arange(3.0, dtype=jnp.float32), 0.5), (True, jnp.float32(1.5), 2.0),
             (cond[:, None], jnp.zeros((1, 4), jnp.int32), jnp.int8(3)), (cond, jnp.asarray(1.0), jnp.asarray(2)),
             (jnp.asarray(0.0), cond, False), (cond, 1 + 2j, jnp.zeros(3, jnp.float32))]
    for c, x, y in cases:
        for run in (lambda f: f, jax.jit):
            got, want = run(_xla.where)(c, x, y), run(jnp.where)(c, x, y)
            assert (got.dtype, got.shape, got.weak_type) == (want.dtype, want.shape, want.weak_type), (c, x, y)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert _xla._WHERE is not jnp.where  # (this JAX has the inner function)

    def nested_wheres(inner):  # (JAX's own functions, jnp.frexp among them, keep theirs)
        calls = []
        monkeypatch.setattr(_xla, "_WHERE", lambda *a: calls.append(1) or inner(*a))
        jax.clear_caches()  # (the solve is traced afresh)
        solve = jax.make_jaxpr(lambda x: qnjax.minimize(rosenbrock, x, bounds=(-2.0, 0.8)).x)
        names = [eqn.params.get("name") for eqn in _minimize._objective._equations(solve(jnp.zeros(3)).jaxpr)]
        return names.count("_where"), len(calls)

    ours, calls = nested_wheres(_xla._WHERE)
    theirs, _ = nested_wheres(jnp.where)
    assert calls > 100 and theirs - ours == calls
