"""``qnjax bench``: end to end, skipping, counting and judging.

Runs in both the x32 and the x64 session without touching the x64 flag: float64 is
only requested when x64 is already on (the bench's ``main`` turns it on otherwise).
"""

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qnjax
from qnjax import problems
from qnjax.__main__ import main
from qnjax.bench import _report, _run, _solvers

X64 = bool(jax.config.jax_enable_x64)
DTYPE = "float64" if X64 else "float32"
DTYPES = ("float32", "float64") if X64 else ("float32",)


def test_end_to_end(tmp_path, capsys):
    out = tmp_path / "res"
    rc = main(["bench", "--solvers", "qnjax,scipy", "--problems", "rosenbrock,beale",
               "--dtype", ",".join(DTYPES), "--out", str(out)])
    assert rc == 0
    assert bool(jax.config.jax_enable_x64) == X64  # the x64 mode was not flipped
    printed = capsys.readouterr().out
    assert "results.json" in printed and "profile.png" in printed and "qnjax[more-thuente]" in printed

    results = json.loads((out / "results.json").read_text())
    records = results["records"]
    got = sorted((r["solver"], r["problem"], r["dtype"]) for r in records)
    want = sorted((s, p, d) for s in ("qnjax[more-thuente]", "scipy") for p in ("rosenbrock", "beale") for d in DTYPES)
    assert got == want
    for r in records:
        assert r["error"] is None, r["error"]
        assert r["nfev"] >= 1 and r["run_s"] > 0 and r["compile_s"] >= 0
        # the host counter agrees with the solvers' own counts
        assert r["nfev"] == r["nfev_reported"], r
        assert r["given"]["gtol"] == _solvers.GTOL[r["dtype"]]
        if r["solver"].startswith("qnjax"):
            assert r["solved"], r
            assert r["judged_by"] == "f" and r["x_finite"]
    assert {(s["solver"], s["dtype"]) for s in results["summary"]} == {(s, d) for s, _, d in want}
    env = results["environment"]
    assert env["x64"] == X64 and env["backend"] == jax.default_backend() and env["jax"] == jax.__version__
    assert "--problems" in env["command"]
    png = (out / "profile.png").read_bytes()
    assert len(png) > 1000 and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_solver_is_skipped_with_a_notice(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "jaxopt", None)  # `import jaxopt` now raises ImportError
    out = tmp_path / "res"
    assert main(["bench", "--solvers", "jaxopt,scipy", "--problems", "beale", "--dtype", DTYPE,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipping jaxopt" in printed
    records = json.loads((out / "results.json").read_text())["records"]
    assert [r["solver"] for r in records] == ["scipy"]


def test_unavailable_linesearch_is_skipped(monkeypatch):
    monkeypatch.delattr(qnjax.linesearch, "HagerZhang", raising=False)
    notices = []
    adapters = _solvers.make_adapters(("qnjax",), ("zoom", "hager-zhang"), notices.append)
    assert [a.name for a in adapters] == ["qnjax[zoom]"]
    assert len(notices) == 1 and "qnjax[hager-zhang]" in notices[0]
    with pytest.raises(ValueError, match="line search"):
        _solvers.make_adapters(("qnjax",), ("nope",), notices.append)


class _FixedLoop(_solvers.Adapter):
    """Seven value-and-grad steps in a compiled loop, then one lone gradient: 8 evaluations."""

    name = module = "fixed"

    def given(self, dtype, budget):
        return {}

    def build(self, fun, dtype, budget):
        @jax.jit
        def solve(x0):
            def body(_, x):
                f, g = jax.value_and_grad(fun)(x)
                return x - 1e-3 * g / (1.0 + f)

            x = jax.lax.fori_loop(0, 7, body, x0)
            return x, jnp.max(jnp.abs(jax.grad(fun)(x)))

        def run(x0):
            x, g = jax.block_until_ready(solve(x0))
            return _solvers.Outcome(np.asarray(x), float(g), 7, None, "fixed", False)

        return run


def test_counter_counts_exactly():
    rec = _run.run_one(_FixedLoop(), problems.get("rosenbrock"), DTYPE, _run.QUICK_BUDGET)
    assert rec["error"] is None, rec["error"]
    assert rec["nfev"] == 8  # value-and-grad is one evaluation; the second call alone is counted
    assert rec["solved"] is False  # 7 tiny steps from x0 do not solve Rosenbrock


def test_a_failing_solve_is_a_recorded_failure():
    class Broken(_FixedLoop):
        def build(self, fun, dtype, budget):
            raise RuntimeError("boom")

    rec = _run.run_one(Broken(), problems.get("beale"), DTYPE, _run.QUICK_BUDGET)
    assert rec["solved"] is False and "boom" in rec["error"]


def test_judge_uses_fstar_then_the_gradient():
    rosen = problems.get("rosenbrock")
    far = _run.judge(rosen, rosen.x0, DTYPE)  # f = 24.2 >> fstar = 0, gradient large
    assert far["solved"] is False and far["judged_by"] is None and far["f"] > 20 and far["grad_inf"] > 1
    assert _run.judge(rosen, np.ones(2), DTYPE) == dict(solved=True, judged_by="f", f=0.0, grad_inf=0.0,
                                                        x_finite=True)
    bad = _run.judge(rosen, np.array([np.nan, 1.0]), DTYPE)
    assert bad["solved"] is False and bad["x_finite"] is False
    # fstar unknown (or not the minimum reached): a stationary point is judged by its gradient
    shifted = problems.Problem("shifted", None, 2, lambda x: jnp.sum((x - 1.0) ** 2) + 3.0, x0=[0.0, 0.0],
                               fstar=math.nan)
    assert _run.judge(shifted, np.ones(2), DTYPE)["judged_by"] == "grad"
    assert _run.judge(shifted, np.zeros(2), DTYPE)["solved"] is False


def test_profile_ratios():
    def rec(solver, problem, nfev, solved):
        return dict(solver=solver, problem=problem, dtype="float32", nfev=nfev, solved=solved)

    records = [rec("a", "p", 10, True), rec("b", "p", 20, True), rec("a", "q", 30, True), rec("b", "q", 5, False)]
    assert _report.profile_ratios(records, "float32") == {"a": [1.0, 1.0], "b": [2.0, math.inf]}
