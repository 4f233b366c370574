"""minimize(trace=K) and minimize(state=res.state): the recorded history equals a
step-by-step run of the solver, recording changes no iterate, and a resumed run ends
bitwise where one uninterrupted run does (each line search, both precisions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, LINESEARCHES, X64, assert_same_types, rosenbrock, searches_for_mode, x64_off_only

import qnjax
from qnjax import Status, problems

DT = jnp.float64 if X64 else jnp.float32
X0 = jnp.asarray(np.tile([-1.2, 1.0], 6), DT)  # 12-D Rosenbrock: about 50 iterations


def convex(x):
    """Well conditioned: two compiled programs' rounding differences do not grow along the
    run (on Rosenbrock they do, through its valley)."""
    w = jnp.arange(1, x.size + 1, dtype=x.dtype)
    return jnp.sum(w * (x - 1) ** 2 + 0.5 * (x - 1) ** 4) + 0.5 * jnp.sum(jnp.diff(x) ** 2)


def test_trace_equals_a_step_by_step_run():
    res = qnjax.minimize(convex, X0, trace=200)
    got = res.trace.as_numpy()

    solver = qnjax.LBFGS(gtol=0.0, ftol=0.0, fatol=0.0, maxiter=15000, maxfev=15000)
    # (below float64 minimize solves scale f, a power of two: ``_scale``; the trace shows f's values)
    scale = float(res.state.scale)
    assert (scale != 1) == (not X64)

    def evaluate(x):
        f, g = jax.value_and_grad(convex)(x)
        return f * scale, g * scale, None

    f0, g0, _ = evaluate(X0)
    state = solver.init(X0, f0, g0)._replace(nfev=jnp.ones((), jnp.int32))
    state = state._replace(status=solver.start_status(state))
    step = jax.jit(lambda s: solver.step(s, evaluate)[1])
    rows = []
    while True:
        rows.append((int(state.count), int(state.nfev), float(state.value) / scale,
                     float(jnp.max(jnp.abs(state.grad))) / scale, float(state.stepsize), int(state.linesearch_status),
                     int(state.status)))
        if int(state.status) != Status.RUNNING:
            break
        state = step(state)
    want = {name: np.asarray([r[i] for r in rows]) for i, name in
            enumerate(["nit", "nfev", "fun", "gnorm", "stepsize", "linesearch_status", "status"])}
    assert int(res.trace.records) == len(got["nit"])
    # Two compiled programs round differently once f is near its rounding level (the
    # end-game may take a pass more or less): compare every record until then.
    level = (1e-16 if X64 else 1e-8) * want["fun"][0]
    same = int(np.argmax(want["fun"] < level))
    assert same > 5 and len(got["nit"]) > same
    for name in ("nit", "nfev", "linesearch_status", "status"):
        np.testing.assert_array_equal(got[name][:same], want[name][:same], err_msg=name)
    rtol = 1e-10 if X64 else 1e-3
    for name in ("fun", "gnorm", "stepsize"):
        np.testing.assert_allclose(got[name][:same], want[name][:same], rtol=rtol, atol=0, err_msg=name)
    assert got["status"][-1] == want["status"][-1] and got["fun"][-1] <= level
    # The start, then one record per pass; the last record is the result.
    assert got["nit"][0] == 0 and got["nfev"][0] == 1 and got["stepsize"][0] == 0
    assert got["nit"][-1] == int(res.nit) and got["fun"][-1] == float(res.fun) and got["status"][-1] == int(res.status)


@x64_off_only  # (what is recorded: a trace of the same values in both modes, tested above)
def test_first_and_last_records_and_no_change_to_the_iterates():
    plain = qnjax.minimize(rosenbrock, X0)
    full = qnjax.minimize(rosenbrock, X0, trace=500)
    short = qnjax.minimize(rosenbrock, X0, trace=4)
    for r in (full, short):  # recording changes nothing the solver computes
        np.testing.assert_array_equal(r.x, plain.x)
        assert (int(r.nit), int(r.nfev), int(r.status)) == (int(plain.nit), int(plain.nfev), int(plain.status))
    n = int(full.trace.records)
    assert n > 8 and int(short.trace.records) == n
    every = full.trace.as_numpy()
    kept = short.trace.as_numpy()
    for name, column in kept.items():
        want = np.concatenate([every[name][:4], every[name][-4:]])
        np.testing.assert_array_equal(column, want, err_msg=name)
    assert not bool(full.trace.kept[n:].any()) and np.isnan(np.asarray(full.trace.fun[n:])).all()


@x64_off_only
def test_trace_under_jit_and_vmap():
    x0s = jnp.stack([X0, X0 + 0.25, X0 - 0.5])
    run = jax.jit(jax.vmap(lambda x: qnjax.minimize(rosenbrock, x, trace=3)))
    res = run(x0s)
    assert res.trace.fun.shape == (3, 6) and res.trace.records.shape == (3,)
    for i in range(3):
        one = qnjax.minimize(rosenbrock, x0s[i], trace=3)
        # Batched and single programs round differently at the minimum (f ~ 1e-29 here).
        np.testing.assert_array_equal(res.trace.nit[i, :3], one.trace.nit[:3])
        np.testing.assert_allclose(res.trace.fun[i], one.trace.fun, rtol=1e-4 if not X64 else 1e-10,
                                   atol=1e-6 * float(one.trace.fun[0]))
        assert float(res.trace.fun[i, -1]) == float(res.fun[i])  # the last record is the result
        member = jax.tree.map(lambda a, i=i: a[i], res.trace).as_numpy()
        np.testing.assert_array_equal(member["nit"], np.asarray(res.trace.nit[i])[np.asarray(res.trace.kept[i])])
    with pytest.raises(ValueError, match="index one member"):  # (flattened, the members' rows had run together)
        res.trace.as_numpy()


def test_bad_trace_and_state_arguments():
    with pytest.raises(ValueError, match="trace"):
        qnjax.minimize(rosenbrock, X0, trace=-1)
    with pytest.raises(TypeError, match="res.state"):
        qnjax.minimize(rosenbrock, X0, state={"params": X0})


@pytest.mark.parametrize("name", searches_for_mode(sorted(LINESEARCHES)))
def test_two_runs_of_k_iterations_equal_one_of_2k(name):
    ls = LINESEARCHES[name]
    whole = qnjax.minimize(rosenbrock, X0, maxiter=24, linesearch=ls)
    first = qnjax.minimize(rosenbrock, X0, maxiter=12, linesearch=ls)
    second = qnjax.minimize(rosenbrock, first.x, maxiter=12, linesearch=ls, state=first.state)
    assert int(first.status) == Status.MAXITER and int(first.nit) == 12
    np.testing.assert_array_equal(second.x, whole.x)
    assert float(second.fun) == float(whole.fun)
    assert (int(second.nit), int(second.nfev), int(second.status)) == (int(whole.nit), int(whole.nfev),
                                                                        int(whole.status))
    for a, b in zip(jax.tree.leaves(second.state.memory), jax.tree.leaves(whole.state.memory)):
        np.testing.assert_array_equal(a, b)


def _numpy_round_trip(state, path):
    """The plain serialisation the README documents: numpy arrays in an ``.npz`` file,
    loaded back with the live state's tree structure."""
    leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, state))
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "state.npz", *leaves)
    with np.load(path / "state.npz") as saved:
        return jax.tree.unflatten(treedef, [jnp.asarray(saved[f"arr_{i}"]) for i in range(len(leaves))])


def _orbax_round_trip(state, path):
    """orbax's StandardCheckpointer, restored against the live state's shapes, dtypes and shardings."""
    ocp = pytest.importorskip("orbax.checkpoint")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path / "state", state)
        checkpointer.wait_until_finished()
        return checkpointer.restore(path / "state", jax.tree.map(ocp.utils.to_shape_dtype_struct, state))


ROUND_TRIPS = {"numpy": _numpy_round_trip, "orbax": _orbax_round_trip}


def assert_same_leaves(before, after):
    """Same tree structure, and per leaf the same shape, dtype, weak_type, sharding and value."""
    assert_same_types(before, after)
    for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        assert a.sharding == b.sharding
        np.testing.assert_array_equal(a, b)


class Counted:
    """rosenbrock, counting how often JAX traces it (a retrace traces it again)."""

    traces = 0

    def __call__(self, x):
        Counted.traces += 1
        return rosenbrock(x)


COUNTED = Counted()


@pytest.mark.parametrize("save", sorted(ROUND_TRIPS))
def test_resume_after_a_round_trip_without_recompiling(save, tmp_path):
    """A state saved (numpy ``.npz`` or orbax) and loaded back keeps every leaf's type and
    sharding, so the resumed solve reuses the compiled program and ends where the live one
    does. orbax restores arrays committed to their device, for which JAX compiles once more
    (jit's cache key holds committedness; the second restore compiles nothing)."""
    first = qnjax.minimize(rosenbrock, X0, maxiter=5)
    again = qnjax.minimize(rosenbrock, first.x, maxiter=5, state=first.state)
    loaded = ROUND_TRIPS[save](first.state, tmp_path)
    assert_same_leaves(first.state, loaded)
    compiles = COMPILES.count
    resumed = qnjax.minimize(rosenbrock, first.x, maxiter=5, state=loaded)
    assert COMPILES.count == compiles + (save == "orbax")
    np.testing.assert_array_equal(resumed.x, again.x)
    assert int(resumed.nit) == 10
    compiles = COMPILES.count
    twice = qnjax.minimize(rosenbrock, first.x, maxiter=5, state=ROUND_TRIPS[save](first.state, tmp_path / "2"))
    assert COMPILES.count == compiles
    np.testing.assert_array_equal(twice.x, again.x)


@pytest.mark.parametrize("name, method", [("rosenbrock", None), ("hs38", "lbfgsb"), ("hs38", "projected")])
def test_a_resumed_run_ends_bitwise_where_one_run_does(name, method):
    """5 iterations, then 15 more from the state, end where 20 do, bit for bit, in the optimised
    build (``conftest.in_the_optimised_build``). In float64 f's scale is 1, a constant in a fresh
    run's program; the resumed one had it as an input, fused its multiply-adds otherwise and parted
    from the one run in the last bits (14 of the first 40 problems of ``qnjax.problems`` unbounded,
    7 and 10 of 28 bounded ones, these among them)."""
    problem = problems.get(name)
    kw = {} if method is None else dict(bounds=(problem.lower, problem.upper), bounds_method=method)
    x0 = jnp.asarray(problem.x0, DT)
    first = qnjax.minimize(problem.fun, x0, maxiter=5, **kw)
    more = qnjax.minimize(problem.fun, first.x, maxiter=15, state=first.state, **kw)
    once = qnjax.minimize(problem.fun, x0, maxiter=20, **kw)
    assert int(more.nit) == int(once.nit) > 5
    np.testing.assert_array_equal(np.asarray(more.x), np.asarray(once.x))


def test_resume_continues_a_finished_run_only_when_there_is_work():
    done = qnjax.minimize(rosenbrock, X0)
    assert bool(done.success)
    again = qnjax.minimize(rosenbrock, done.x, state=done.state, gtol=1.0)
    assert int(again.status) == Status.GTOL and int(again.nfev) == int(done.nfev)  # no evaluation


@pytest.mark.parametrize("save", sorted(ROUND_TRIPS))
def test_optax_face_state_survives_a_round_trip(save, tmp_path):
    """The Optax face's state is a qnjax.State too: saved and loaded back (numpy or orbax),
    it keeps every leaf's type and sharding, the jitted step is not traced again (nor
    compiled again after numpy's round trip) and the run continues bitwise."""
    from conftest import make_step

    opt = qnjax.lbfgs()
    step = jax.jit(make_step(opt, COUNTED))
    params, state = X0, opt.init(X0)
    for _ in range(3):
        params, state = step(params, state)
    loaded = ROUND_TRIPS[save](state, tmp_path)
    assert_same_leaves(state, loaded)
    traces, compiles = Counted.traces, COMPILES.count
    a, b = (params, state), (jnp.asarray(np.asarray(params)), loaded)
    for _ in range(3):
        a, b = step(*a), step(*b)
    assert Counted.traces == traces
    if save == "numpy":
        assert COMPILES.count == compiles
    np.testing.assert_array_equal(a[0], b[0])
    assert float(a[1].value) == float(b[1].value)
