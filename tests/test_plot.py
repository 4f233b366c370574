"""qnjax.plot: a PNG from traces, one line per run in each panel, the data plotted are
the trace's, and the gap between the first and last records is a break."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, rosenbrock, x64_off_only

import qnjax
from qnjax import _plot

pytest.importorskip("matplotlib")
pytestmark = x64_off_only  # drawing does not depend on the precision mode
DT = jnp.float64 if X64 else jnp.float32
X0 = jnp.asarray(np.tile([-1.2, 1.0], 3), DT)


def test_png_with_one_line_per_run(tmp_path):
    runs = [qnjax.minimize(rosenbrock, X0, trace=500),
            qnjax.minimize(rosenbrock, X0, trace=500, linesearch=qnjax.linesearch.Zoom())]
    path = tmp_path / "convergence.png"
    fig = qnjax.plot(runs, labels=["more-thuente", "zoom"], fstar=0.0, path=path)
    assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
    axes = fig.axes
    assert len(axes) == 4 and all(len(ax.get_lines()) == 2 for ax in axes)
    rec = runs[0].trace.as_numpy()
    x, y = axes[0].get_lines()[0].get_data()  # f - f* against iterations
    np.testing.assert_array_equal(x, rec["nit"])
    np.testing.assert_allclose(y, np.maximum(np.abs(rec["fun"]), np.finfo(np.float64).tiny))
    x, y = axes[3].get_lines()[1].get_data()  # max |g| against evaluations, second run
    np.testing.assert_array_equal(x, runs[1].trace.as_numpy()["nfev"])
    assert axes[0].get_yscale() == "log" and [t.get_text() for t in axes[0].get_legend().get_texts()] == [
        "more-thuente", "zoom"]


def test_truncated_trace_draws_a_break_and_bad_inputs():
    res = qnjax.minimize(rosenbrock, X0, trace=5)
    fig = qnjax.plot(res)
    x, y = fig.axes[0].get_lines()[0].get_data()
    assert len(x) == 11 and np.isnan(x[5]) and np.isnan(y[5])  # 5 first, a break, 5 last
    with pytest.raises(TypeError, match="trace="):
        qnjax.plot(qnjax.minimize(rosenbrock, X0))
    with pytest.raises(ValueError, match="labels"):
        qnjax.plot([res, res], labels=["one"])


def test_batched_run_draws_a_line_per_member_and_a_zero_near_the_least_positive_value():
    """A vmapped result (multi-start) draws each member's trace, labelled run 0[i]; where
    f - f* is exactly 0 (fstar the run's own end) it is drawn at FLOOR times the panel's
    least positive value, not at float64's tiny (which stretched the axis to 1e-308)."""
    starts = jnp.stack([X0, 0.5 * X0, jnp.zeros_like(X0)])
    res = jax.vmap(lambda x: qnjax.minimize(rosenbrock, x, trace=500))(starts)
    fig = qnjax.plot(res)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["run 0[0]", "run 0[1]", "run 0[2]"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["run 0[0]", "run 0[1]", "run 0[2]"]
    for i, line in enumerate(lines):
        rec = jax.tree.map(lambda a, i=i: a[i], res.trace).as_numpy()
        np.testing.assert_array_equal(line.get_data()[0], rec["nit"])
        y, f = line.get_data()[1], np.abs(rec["fun"])
        np.testing.assert_allclose(y[f > 0], f[f > 0])
        assert np.all(y > 1e-30)  # (a zero: the next assertions)
    one = jax.tree.map(lambda a: a[0], res)
    fig = qnjax.plot(one, fstar=float(one.fun))
    y = fig.axes[0].get_lines()[0].get_data()[1]
    gap = np.abs(one.trace.as_numpy()["fun"] - float(one.fun))
    assert gap[-1] == 0 and np.isclose(y[-1], _plot.FLOOR * float(np.min(gap[gap > 0])), rtol=1e-6)
    assert fig.axes[0].get_ylim()[0] > 1e-30


def test_performance_profile_steps_are_the_fractions_solved_within_tau(tmp_path):
    """Dolan-Moré: rho_s(tau) = share of problems with log2 r_ps <= tau; failures (inf) never count."""
    import math

    panels = {"float32": {"a": [1.0, 2.0, math.inf], "b": [1.5, 1.0, 4.0]}, "float64": {"a": [1.0], "b": [1.0]}}
    path = tmp_path / "profile.png"
    fig = qnjax.plot_profile(panels, path=path)
    assert path.read_bytes()[:4] == b"\x89PNG" and len(fig.axes) == 2
    a, b = fig.axes[0].get_lines()
    right = 2.0 * 1.05  # the largest finite log2 ratio (log2 4 = 2), plus 5%
    np.testing.assert_allclose(a.get_data()[0], [0.0, 1.0, right])
    np.testing.assert_allclose(a.get_data()[1], [1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(b.get_data()[0], [0.0, math.log2(1.5), 2.0, right])
    np.testing.assert_allclose(b.get_data()[1], [1 / 3, 2 / 3, 1.0, 1.0])
    assert fig.axes[0].get_title() == "float32 (3 problems)" and [t.get_text() for t in
                                                                 fig.axes[0].get_legend().get_texts()] == ["a", "b"]


def test_the_bench_draws_its_profile_with_plot_profile(tmp_path, monkeypatch):
    from qnjax import _plot
    from qnjax.bench import _report

    drawn = []
    monkeypatch.setattr(_plot, "plot_profile", lambda panels, path: drawn.append(panels) or
                        __import__("matplotlib.pyplot").pyplot.figure())
    records = [dict(problem=p, solver=s, dtype="float64", solved=ok, nfev=n) for p, s, ok, n in
               [("p", "qnjax", True, 10), ("p", "scipy", True, 20), ("q", "qnjax", False, 5), ("q", "scipy", True, 7)]]
    _report.performance_profile(records, tmp_path / "profile.png")
    assert drawn == [{"performance profile, float64": {"qnjax": [1.0, float("inf")], "scipy": [2.0, 1.0]}}]
