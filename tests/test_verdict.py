"""What one search's result means (``_verdict``) and scipy's first trial with bounds
(``_first_trial``), checked rule by rule on hand-made search results: which step
is taken, how many ties in a row, and the trial sizes L-BFGS-B's search starts from."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import needs_x64

import qnjax
from qnjax import _bounds, _first_trial, _verdict
from qnjax.linesearch import LineSearchStatus
from qnjax.linesearch._base import LineSearchResult, point


def _result(dt, value, status, noise=0.0):
    s = lambda v: jnp.asarray(v, dt)  # noqa: E731
    return LineSearchResult(stepsize=s(0.5), value=s(value), slope=s(-1.0), grad=None, nfev=jnp.int32(2),
                            status=jnp.int32(status), rising=s(jnp.inf), smallest=point(s(0.5), s(value), s(-1.0)),
                            noise=s(noise))


def _state(dt, value, ties=0, tie_level=np.inf, tie_start=np.inf):
    state = qnjax.LBFGS().init(jnp.zeros(3, dt), jnp.asarray(value, dt), jnp.ones(3, dt))
    return state._replace(ties=jnp.int32(ties), tie_level=jnp.asarray(tie_level, dt),
                          tie_start=jnp.asarray(tie_start, dt))


def _judge(dt, state, res, promised):
    """``judge`` with phi'(0) = -1 and a first trial t0 = 2 promised (the model's decrease
    -phi'(0) t0 / 2 = ``promised``)."""
    slope0, t0 = jnp.asarray(-1.0, dt), jnp.asarray(2 * promised, dt)
    return _verdict.judge(state, res, slope0, t0, _verdict.floor(state.value))


def _taken(judged):
    return bool(judged.moved)


@pytest.mark.parametrize("dt", [jnp.float32, pytest.param(jnp.float64, marks=needs_x64)])
def test_a_lower_f_is_taken_and_a_failed_or_lost_search_is_not(dt):
    f = 10.0
    assert _taken(_judge(dt, _state(dt, f), _result(dt, 9.0, LineSearchStatus.SUCCESS), 1.0))
    assert not _taken(_judge(dt, _state(dt, f), _result(dt, f, LineSearchStatus.FAILED), 1.0))
    # out of trials with a decrease f's rounding can hide (within the search's noise): lost
    lost = _judge(dt, _state(dt, f), _result(dt, f - 1e-3, LineSearchStatus.DECREASE, noise=1e-2), 1.0)
    assert not _taken(lost) and float(lost.noise) == pytest.approx(1e-2)
    # the same decrease above the noise is kept
    assert _taken(_judge(dt, _state(dt, f), _result(dt, f - 1e-3, LineSearchStatus.DECREASE, noise=1e-5), 1.0))


@pytest.mark.parametrize("dt", [jnp.float32, pytest.param(jnp.float64, marks=needs_x64)])
def test_after_a_search_that_moved_nothing_a_decrease_within_the_measured_noise_is_a_tie(dt):
    """After an iteration whose search moved nothing (``stepsize`` 0: a failed or lost
    search, whose retry this is), a search that ends in success with a decrease within the
    noise its own trials measured (changes of f that their slopes do not explain) lowered f
    by rounding only: a tie, taken at most as many in a row as ties are. Float32 BRYBND from
    10 x0 had crawled 700 such retries along -g to MAXFEV (f's noise 1e-8, each retry's
    decrease 3e-11), each after a quasi-Newton search lost in the noise. After a step, the same
    decrease is progress: a stiff f's unexplained changes are its curvature, not rounding
    (Meyer's QN steps lowered f by 2e4 each where the trapezoid rule missed by 2e5)."""
    f = 10.0
    retry = _state(dt, f)._replace(stepsize=jnp.zeros((), dt))
    after_step = retry._replace(stepsize=jnp.asarray(0.5, dt))
    within = _result(dt, f - 1e-3, LineSearchStatus.SUCCESS, noise=1e-2)
    judged = _judge(dt, retry, within, 1.0)
    assert _taken(judged) and bool(judged.tie)
    assert int(_verdict.tie_fields(retry, judged)["ties"]) == 1
    assert not _taken(_judge(dt, retry._replace(ties=jnp.int32(_verdict.MAX_TIES)), within, 1.0))
    judged = _judge(dt, after_step._replace(ties=jnp.int32(_verdict.MAX_TIES)), within, 1.0)
    assert _taken(judged) and not bool(judged.tie)
    # beyond the noise, or with none measured, a retry's decrease is progress
    for noise in (1e-5, 0.0):
        res = _result(dt, f - 1e-3, LineSearchStatus.SUCCESS, noise=noise)
        judged = _judge(dt, retry._replace(ties=jnp.int32(_verdict.MAX_TIES)), res, 1.0)
        assert _taken(judged) and not bool(judged.tie)


@needs_x64
def test_float64_takes_at_most_max_ties_in_a_row():
    dt, f = jnp.float64, 10.0
    tie = _result(dt, f, LineSearchStatus.NOISE)
    for before in range(_verdict.MAX_TIES):
        judged = _judge(dt, _state(dt, f, ties=before), tie, 1e-3)
        assert _taken(judged) and bool(judged.tie)
        assert int(_verdict.tie_fields(_state(dt, f, ties=before), judged)["ties"]) == before + 1
    assert not _taken(_judge(dt, _state(dt, f, ties=_verdict.MAX_TIES), tie, 1e-3))


def test_float32_ties_continue_while_the_promise_is_resolved_and_restart_as_it_falls():
    """Below float64 a run of ties may hold TIE_PATIENCE while the promised decrease is
    above eps^RESOLVED times its value at the first tie; the count restarts where the
    promise has fallen to TIE_FALL times its value where the count began."""
    dt, f = jnp.float32, 10.0
    tie = _result(dt, f, LineSearchStatus.NOISE)
    start = 1.0  # the promise at the run's first tie
    level = 1.0  # and where the count began
    held = _state(dt, f, ties=_verdict.MAX_TIES, tie_level=level, tie_start=start)
    # resolved, not fallen: beyond MAX_TIES, up to TIE_PATIENCE
    assert _taken(_judge(dt, held, tie, 0.9))
    patient = _state(dt, f, ties=_verdict.TIE_PATIENCE, tie_level=level, tie_start=start)
    assert not _taken(_judge(dt, patient, tie, 0.9))
    # fallen to TIE_FALL of the level: the count restarts (0 ties before this one)
    judged = _judge(dt, patient, tie, 0.5 * _verdict.TIE_FALL)
    assert _taken(judged) and int(judged.ties) == 0
    fields = _verdict.tie_fields(patient, judged)
    assert int(fields["ties"]) == 1 and float(fields["tie_level"]) == pytest.approx(0.5 * _verdict.TIE_FALL)
    # not resolved (below eps^1.5 of the first promise): MAX_TIES again
    tiny = float(jnp.finfo(dt).eps) ** _verdict.RESOLVED * start / 10
    assert not _taken(_judge(dt, held, tie, tiny))
    # a step that lowers f ends the run of ties
    down = _judge(dt, held, _result(dt, f - 1, LineSearchStatus.SUCCESS), 0.9)
    fields = _verdict.tie_fields(held, down)
    assert _taken(down) and int(fields["ties"]) == 0 and float(fields["tie_start"]) == np.inf


def test_a_failed_search_does_not_restart_the_count_of_ties():
    """A search that moves nothing keeps the ties counted before it, even where its promise has
    fallen below TIE_FALL times the level: only a step restarts the count. Before, a failed
    search's small promise set the count to 0, and 1 of 400 batched float32 box least-squares
    fits (``test_a_run_of_ties_broken_by_failed_searches_ends``) cycled through 4 ties and a failed
    search at its minimum until MAXFEV (12,005 iterations)."""
    dt, f = jnp.float32, 10.0
    held = _state(dt, f, ties=4, tie_level=1.0, tie_start=1.0)
    judged = _judge(dt, held, _result(dt, f, LineSearchStatus.FAILED), 0.5 * _verdict.TIE_FALL)
    assert not _taken(judged)
    assert int(judged.ties) == 0  # the restart this promise would give a step
    fields = _verdict.tie_fields(held, judged)
    assert int(fields["ties"]) == 4
    assert float(fields["tie_level"]) == 1.0 and float(fields["tie_start"]) == 1.0


@pytest.mark.parametrize("kind", ["boxed", "half", "free"])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("resolved", [False, True])
def test_first_trial_follows_scipys_rules(kind, scaled, first, resolved):
    """A first trial of 1 (the model's step) while no pair was stored where every variable
    is boxed; the largest step at most 1 in the first iteration where a bound is finite;
    neither where the step of 1 moves x by rounding only; the trial never beyond the step. A
    first search from the whole step that leaves x is searched again, from the shorter trial."""
    dt = jnp.float32
    x = jnp.asarray([0.5, 0.5], dt)
    lo, hi = {"boxed": ([0.0, 0.0], [1.0, 1.0]), "half": ([0.0, -np.inf], [np.inf, np.inf]),
              "free": ([-np.inf] * 2, [np.inf] * 2)}[kind]
    box = _bounds.box(x, (jnp.asarray(lo, dt), jnp.asarray(hi, dt)))
    unit, t0, t_max = jnp.asarray(1.0, dt), jnp.asarray(0.25, dt), jnp.asarray(4.0, dt)
    t_round = jnp.asarray(1e-3 if resolved else 2.0, dt)
    state = _state(dt, 1.0)._replace(count=jnp.int32(0 if first else 3))
    got_t0, got_max, again = _first_trial.lbfgsb(state, box, x, jnp.asarray(scaled), unit, t_round, t0, t_max)
    whole = kind == "boxed" and not scaled and resolved
    want_t0 = 1.0 if whole else 0.25
    want_max = 1.0 if (kind != "free" and first and resolved) else 4.0
    assert (float(got_t0), float(got_max)) == (min(want_t0, want_max), want_max)
    assert got_t0.dtype == dt and got_max.dtype == dt
    # A first search from the whole step that leaves x is searched again from the shorter trial
    assert bool(again) == (whole and first)
    failed = state._replace(linesearch_status=jnp.int32(LineSearchStatus.FAILED))
    got = _first_trial.lbfgsb(failed, box, x, jnp.asarray(scaled), unit, t_round, t0, t_max)
    want = (0.25, want_max, False) if first else (min(want_t0, want_max), want_max, False)
    assert (float(got[0]), float(got[1]), bool(got[2])) == want


def _rules_status(dt, *, final=False, spent=False, rising=np.inf, grad=1.0, status=LineSearchStatus.SUCCESS,
                  new_value=9.0, ftol=0.0, maxiter=None, count=0, value=10.0):
    """``decide(rules + spent)`` for an iteration from f = 10 with phi'(0) = -1, its search
    ``res`` at ``new_value`` (slope -1 at t = 1: curvature 0 along -g's smallest trial),
    the new gradient ``grad`` everywhere, t_round = 1e-3."""
    from qnjax._status import decide

    s = lambda v: jnp.asarray(v, dt)  # noqa: E731
    solver = qnjax.LBFGS(gtol=s(1e-5), ftol=s(ftol), maxiter=maxiter)
    state = _state(dt, value)
    res = LineSearchResult(stepsize=s(1.0), value=s(new_value), slope=s(-1.0), grad=None, nfev=jnp.int32(1),
                           status=jnp.int32(status), rising=s(rising), smallest=point(s(1.0), s(new_value), s(0.0)),
                           noise=s(0.0))
    judged = _verdict.judge(state, res, s(-1.0), s(1.0), _verdict.floor(state.value))
    new = state._replace(value=s(new_value), grad=jnp.full(3, grad, dt), count=jnp.int32(count))
    rules = _verdict.rules(solver, state, new, res, judged, final=jnp.asarray(final), spent=jnp.asarray(spent),
                           slope0=s(-1.0), t_round=s(1e-3), t_model=s(np.inf), t_max=s(np.inf))
    return qnjax.Status(int(decide(rules + _verdict.spent(solver, new))))


@pytest.mark.parametrize("dt", [jnp.float32, pytest.param(jnp.float64, marks=needs_x64)])
def test_status_rules_of_an_iteration_in_order(dt):
    """GTOL first (a stationary point is converged however the search ended); after the
    last search along -g failed: MAXFEV where ``maxfev`` cut that search short (its next
    trials unknown, even where f rose within rounding of x), else PRECISION where f rises
    within rounding of x, else LINESEARCH_FAILED; FTOL only with ftol > 0 (ftol = 0 switches
    the f test off); MAXITER once the budget is spent. UNBOUNDED before all the failed
    search's statuses where f is within 2^10 of the dtype's largest magnitude below 0."""
    Status = qnjax.Status
    assert _rules_status(dt, grad=0.0, final=True, spent=True) == Status.GTOL
    low = -float(jnp.finfo(dt).max) / 2**10
    for spent, rising in [(True, 5e-4), (False, 5e-4), (False, np.inf)]:
        got = _rules_status(dt, final=True, spent=spent, rising=rising, status=LineSearchStatus.FAILED, value=low,
                            new_value=low)
        assert got == Status.UNBOUNDED, (spent, rising)
    high = -float(jnp.finfo(dt).max) / 2**11  # not within 2^10 of the largest magnitude (and there a
    # decrease of 1/2 that the slope promises is within f's rounding)
    assert _rules_status(dt, final=True, status=LineSearchStatus.FAILED, value=high,
                         new_value=high) == Status.PRECISION
    assert _rules_status(dt, value=low, new_value=2 * low) == Status.RUNNING  # a step taken: f still falls
    assert _rules_status(dt, final=True, spent=True, rising=5e-4, status=LineSearchStatus.FAILED) == Status.MAXFEV
    assert _rules_status(dt, final=True, rising=5e-4, status=LineSearchStatus.FAILED) == Status.PRECISION
    assert _rules_status(dt, final=True, spent=True, status=LineSearchStatus.FAILED) == Status.MAXFEV
    assert _rules_status(dt, final=True, status=LineSearchStatus.FAILED) == Status.LINESEARCH_FAILED
    assert _rules_status(dt, new_value=10.0 - 1e-9 * 10) == Status.RUNNING  # ftol = 0: no f test
    assert _rules_status(dt, new_value=10.0 - 1e-9 * 10, ftol=1e-6) == Status.FTOL
    assert _rules_status(dt, new_value=9.0, ftol=1e-6) == Status.RUNNING  # a decrease of 10%
    assert _rules_status(dt, maxiter=jnp.int32(3), count=3) == Status.MAXITER


@needs_x64
def test_value_dtype_is_fs_dtype_only_where_narrower_than_the_scalar_dtype():
    """The dtype ``fun`` returns f in, where it is narrower than the scalar dtype (float64 x, f in
    float32), else None: a run whose f is of the scalar dtype keeps its floor and rounding steps, and
    a narrower f gets its own floor (and a Newton check before PRECISION, ``_rescue.enabled``)."""
    f64, f32 = jnp.dtype(jnp.float64), jnp.dtype(jnp.float32)
    assert _verdict.value_dtype(jnp.ones((), f32), f64) == f32
    assert _verdict.value_dtype(jnp.ones((), jnp.bfloat16), f32) == jnp.bfloat16
    for value, sdt in ((jnp.ones((), f64), f64), (jnp.ones((), f32), f32), (1.0, f64), (jnp.ones((), f64), f32)):
        assert _verdict.value_dtype(value, sdt) is None, (value, sdt)
    objective = qnjax._objective.Objective.build(lambda x: jnp.sum(x.astype(f32) ** 2), jnp.ones(3, f64), (), f64)
    assert objective.value_dtype == f32
    value = jnp.asarray(1.0, f64)
    assert float(_verdict.floor(value, 1, f32)) == _verdict.ROUNDING_ULPS * float(jnp.finfo(f32).eps)
    assert float(_verdict.floor(value)) == _verdict.ROUNDING_ULPS * float(jnp.finfo(f64).eps)
    assert _verdict.has_narrower(jnp.ones(3, f64), f64, f32) and not _verdict.has_narrower(jnp.ones(3, f64), f64)
    x, d = {"a": jnp.asarray([1.0, -2.0], f64)}, {"a": jnp.asarray([0.5, 0.25], f64)}
    steps = [qnjax._tree.ulp_stepsizes(x, d, f64, fdt) for fdt in (None, f32)]  # (x as f sees it: float32)
    assert float(steps[0][3]) == float(steps[0][0]) == float(jnp.finfo(f64).eps) * 2 / 0.5
    assert float(steps[1][3]) == float(jnp.finfo(f32).eps) * 2 / 0.5 and float(steps[1][0]) == float(steps[0][0])
