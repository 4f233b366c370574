"""minimize(callback=..., verbose=...): one call per iteration with the trace's values,
early stop, vmap, and no change to any iterate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, rosenbrock, x64_off_only

import qnjax
from qnjax import Status, problems

DT = jnp.float64 if X64 else jnp.float32
X0 = jnp.asarray(np.tile([-1.2, 1.0], 3), DT)


def test_one_call_per_iteration_with_the_trace_values():
    seen = []
    res = qnjax.minimize(rosenbrock, X0, callback=seen.append, trace=500)
    plain = qnjax.minimize(rosenbrock, X0)
    np.testing.assert_array_equal(res.x, plain.x)  # the callback changes nothing
    assert (int(res.nit), int(res.nfev), int(res.status)) == (int(plain.nit), int(plain.nfev), int(plain.status))
    assert len(seen) == int(res.nit) > 10 and [r.nit for r in seen] == list(range(1, int(res.nit) + 1))
    trace = res.trace.as_numpy()
    # Iterations are the records where nit went up (a retry along -g keeps nit).
    moved = np.r_[False, np.diff(trace["nit"]) > 0]
    np.testing.assert_array_equal([r.fun for r in seen], trace["fun"][moved])
    np.testing.assert_array_equal([r.nfev for r in seen], trace["nfev"][moved])
    last = seen[-1]
    np.testing.assert_array_equal(last.x, res.x)
    np.testing.assert_array_equal(last.grad, res.grad)
    assert last.fun == float(res.fun) and last.status in (int(Status.RUNNING), int(res.status))
    assert isinstance(last, qnjax.IntermediateResult) and isinstance(last.x, np.ndarray)


@x64_off_only  # (the host side of a callback)
def test_scipy_s_older_callback_xk_is_given_x():
    """A callback whose one parameter is named xk (scipy's older signature) gets x, a numpy
    array (``np.asarray(xk)`` had raised an internal error from the host), and a pytree of
    them for a pytree x; its None does not stop the run."""
    points, results = [], []

    def legacy(xk):
        points.append(np.asarray(xk).copy())

    res = qnjax.minimize(rosenbrock, X0, callback=legacy)
    qnjax.minimize(rosenbrock, X0, callback=results.append)
    assert len(points) == int(res.nit) == len(results) and bool(res.success)
    np.testing.assert_array_equal(np.stack(points), np.stack([r.x for r in results]))
    trees = []
    qnjax.minimize(lambda p: rosenbrock(p["a"]), {"a": X0}, callback=lambda xk: trees.append(xk), maxiter=2)
    assert [set(t) for t in trees] == [{"a"}] * 2 and isinstance(trees[0]["a"], np.ndarray)


@x64_off_only  # (the host side of a callback: the call per iteration above runs in both modes)
@pytest.mark.parametrize("how", ["return True", "StopIteration"])
def test_callback_stops_the_run(how):
    def stop_at_5(r):
        if r.nit >= 5:
            if how == "StopIteration":
                raise StopIteration
            return True
        return False

    res = qnjax.minimize(rosenbrock, X0, callback=stop_at_5)
    assert int(res.status) == Status.CALLBACK and int(res.nit) == 5 and not bool(res.success)
    assert "callback" in res.message
    np.testing.assert_allclose(float(res.fun), float(rosenbrock(res.x)), rtol=1e-6)


@x64_off_only
@pytest.mark.parametrize("adjoint", ["implicit", "unrolled"])
def test_under_vmap_each_member_is_called_nit_times(adjoint):
    """(unrolled: the loop's passes have a static count, and under vmap a member that has
    finished is stepped too, its result dropped: it had been called for those steps)"""
    x0s = jnp.stack([X0, X0 + 0.3, X0 - 0.2])
    calls = []

    def note(r):
        calls.append((tuple(np.asarray(r.x).round(12)), r.nit))

    options = dict(adjoint="unrolled", maxiter=12) if adjoint == "unrolled" else {}
    res = jax.jit(jax.vmap(lambda x: qnjax.minimize(rosenbrock, x, callback=note, **options)))(x0s)
    assert len(calls) == int(jnp.sum(res.nit))
    # Each member's final point appears once, at its own nit.
    for i in range(3):
        final = tuple(np.asarray(res.x[i]).round(12))
        assert (final, int(res.nit[i])) in calls


@x64_off_only
def test_verbose_prints_and_changes_nothing(capsys):
    plain = qnjax.minimize(rosenbrock, X0)
    loud = qnjax.minimize(rosenbrock, X0, verbose=True)
    jax.effects_barrier()
    out = capsys.readouterr().out
    np.testing.assert_array_equal(loud.x, plain.x)
    assert (int(loud.nit), int(loud.nfev), float(loud.fun)) == (int(plain.nit), int(plain.nfev), float(plain.fun))
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["nit", "f", "max|g|"]
    assert lines[1].split()[0] == "0" and lines[-1].split()[0] == str(int(plain.nit))
    assert lines[-1].split()[-1] == Status(int(plain.status)).name


@x64_off_only
def test_verbose_n_prints_every_nth_iteration_and_true_its_schedule(capsys):
    """verbose=N: a line at the start, at every N-th iteration (1: every one) and at the end,
    however fast the solve (its lines had been rate-limited to ten a second: a 38-iteration
    solve printed its first and last lines only); verbose=True: lines from its schedule."""
    nits = {}
    for every in (1, 5, True):
        res = qnjax.minimize(rosenbrock, X0, verbose=every)
        jax.effects_barrier()
        nit = int(res.nit)
        nits[every] = [int(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()[1:]]
        if every is True:
            schedule = {0, nit} | {k for k in range(1, nit + 1) if (k & (k - 1)) == 0 or k % 64 == 0}
            assert set(nits[True]) <= schedule and nits[True][0] == 0 and nits[True][-1] == nit
        else:
            # (the end's line repeats nit where the pass that ended the run moved nothing: a retry)
            lines = nits[every] if nits[every][-2] < nit else nits[every][:-1]
            assert lines == sorted({*range(0, nit + 1, every), nit}), (every, nits[every])


@x64_off_only
def test_verbose_under_vmap_prints_each_member_s_start_and_end_once(capsys):
    """Under ``jax.vmap`` the host is called for every member of every pass (the cond is a
    select) and filters: one header, each member's start line and its last line once (a
    finished member's last line had printed again at every pass of the others)."""
    starts = jnp.stack([X0, jnp.full_like(X0, 0.5), jnp.full_like(X0, 2.0)])
    res = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x, verbose=True))(starts)
    jax.effects_barrier()
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines].count("nit") == 1 and lines[0].split()[0] == "nit"
    rows = [line.split() for line in lines[1:]]
    np.testing.assert_allclose(sorted(float(r[1]) for r in rows if r[0] == "0"),
                               sorted(float(rosenbrock(x)) for x in starts), rtol=1e-7)  # (printed to 8 digits)
    ends = sorted((int(r[0]), r[-1]) for r in rows if r[-1] != "RUNNING")
    assert ends == sorted((int(n), Status(int(s)).name) for n, s in zip(res.nit, res.status)), ends
    assert len(set(int(n) for n in res.nit)) == 3  # (three different runs)
    # unbatched, each solve its header
    for _ in range(2):
        qnjax.minimize(rosenbrock, X0, verbose=True)
    jax.effects_barrier()
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()].count("nit") == 2


def test_verbose_s_last_line_comes_after_a_rescue_s_products(capsys):
    """Below float64 a PRECISION stop first checks the Newton model with Hessian-vector
    products (``_rescue``), counted in nfev: the last line is printed after them, once, and
    no line before it shows a stop (Beale from 100 x0 in float32 had printed PRECISION at
    nit 36, where a rescue went on, and its last line showed nfev 148 of the run's 155)."""
    beale = problems.get("beale")
    x0 = jnp.asarray(beale.x0 * 100, jnp.float32)
    res = qnjax.minimize(beale.fun, x0, verbose=1)
    jax.effects_barrier()
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    # (the trace's last two records: the loop's PRECISION stop, then the rescue's check after it)
    trace = qnjax.minimize(beale.fun, x0, trace=1000).trace.as_numpy()
    assert list(trace["status"][-2:]) == [Status.PRECISION] * 2 and trace["nfev"][-2] < trace["nfev"][-1] == res.nfev
    assert [r[-1] for r in rows[:-1]] == ["RUNNING"] * (len(rows) - 1)
    assert (int(rows[-1][0]), int(rows[-1][4]), rows[-1][-1]) == (int(res.nit), int(res.nfev), "PRECISION")


def test_bad_arguments():
    with pytest.raises(ValueError, match="verbose"):
        qnjax.minimize(rosenbrock, X0, verbose=-2)
    with pytest.raises(TypeError, match="callable"):
        qnjax.minimize(rosenbrock, X0, callback=3)
