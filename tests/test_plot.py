"""qnjax.plot: a PNG from traces, one line per run in each panel, the data plotted are
the trace's, and the gap between the first and last records is a break."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, rosenbrock

import qnjax

pytest.importorskip("matplotlib")
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
