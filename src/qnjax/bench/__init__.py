"""``qnjax bench``: qnjax against scipy, optax, jaxopt and optimistix on test problems.

    python -m qnjax bench [--quick] [--rule same|defaults] [--set mgh|cutest|all] [--bounded]
                          [--dtype float32,float64] [--solvers ...] [--problems ...]
                          [--linesearch zoom,...] [--starts 1,10,100] [--out DIR] [--per-problem]

Every solver gets the same budgets, the same stopping rule (``--rule same``, the
default) or its own defaults (``--rule defaults``; see :mod:`qnjax.bench._solvers`),
its evaluations counted the same way on the host (:mod:`qnjax.bench._run`), and is
judged the same way by the bench: solved or not, and whether its own verdict was a
false success or a false failure (:mod:`qnjax.bench._judge`).
``--bounded`` runs the bound-constrained catalogue (``qnjax.problems.bounded()``) with
the solvers that take bounds (qnjax, scipy's L-BFGS-B, jaxopt.LBFGSB), judged by the
projected gradient and feasibility (:mod:`qnjax.bench._judge`).
Results go to ``<out>/results.json`` (every record, the summary and the environment)
and ``<out>/profile.png`` (a Dolan-Moré performance profile of evaluations).

Only :func:`main` / :func:`cli` touch the JAX configuration (they turn x64 on when
float64 is requested, before any array is made); :func:`run_bench` never does, and
skips float64 with a notice when x64 is off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ._judge import BOUNDED_RULE_TEXT, RULE_TEXT, TOL_F, TOL_GRAD, summarize
from ._run import (
    FULL_BUDGET,
    QUICK_BUDGET,
    QUICK_PROBLEMS,
    SETS,
    clean_json,
    environment,
    from_starts,
    linesearch_names,
    make_adapters,
    run_all,
    select_problems,
)
from ._solvers import BOUNDED_SOLVER_NAMES, GTOL, RULES, SOLVER_NAMES, Budget

__all__ = ["add_arguments", "cli", "main", "run_bench"]

DTYPES = ("float32", "float64")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _factors(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"start factors are numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--quick", action="store_true",
                   help=f"a few fast problems of the set ({len(QUICK_PROBLEMS['mgh'])} of MGH) "
                        f"and a small budget {tuple(QUICK_BUDGET)}")
    p.add_argument("--rule", choices=RULES, default="same",
                   help="same: every solver told the same gradient test, max|g| <= gtol, no f test (default); "
                        "defaults: each solver's own defaults, only the bench's budgets")
    p.add_argument("--set", dest="problem_set", choices=SETS, default="mgh",
                   help="mgh: the 35 More-Garbow-Hillstrom problems (default); cutest: the CUTEst problems at "
                        "n = 100; all: both")
    p.add_argument("--bounded", action="store_true",
                   help="the bound-constrained catalogue in place of --set (Hock-Schittkowski, boxed MGH, L-BFGS-B's "
                        f"driver1, ...) with the solvers that take bounds ({','.join(BOUNDED_SOLVER_NAMES)}); judged "
                        "by the projected gradient, and x must be feasible")
    p.add_argument("--dtype", type=_csv, default=DTYPES, help="comma-separated, default float32,float64")
    p.add_argument("--solvers", type=_csv, default=None,
                   help=f"comma-separated, default all installed: {','.join(SOLVER_NAMES)} "
                        f"({','.join(BOUNDED_SOLVER_NAMES)} with --bounded)")
    p.add_argument("--problems", type=_csv, default=None,
                   help="comma-separated problem names (any catalogue; with --bounded, bounded ones only, and "
                        "only then); overrides --set and --quick's choice")
    p.add_argument("--linesearch", type=_csv, default=("more-thuente",),
                   help=f"qnjax line searches, one solver entry each: {','.join(linesearch_names())} "
                        "(default more-thuente)")
    p.add_argument("--starts", type=_factors, default=(1.0,),
                   help="comma-separated multiples of each problem's standard start, each run as a problem of "
                        "its own (named <problem>@<factor>x0): Moré, Garbow & Hillstrom test from 1,10,100; "
                        "default 1")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    p.add_argument("--per-problem", action="store_true", help="also print a per-problem table")
    return p


def run_bench(*, solvers=None, dtypes=DTYPES, problems=None, linesearches=("more-thuente",), quick=False,
              out="bench-results", per_problem=False, argv=None, console=None, budget: Budget | None = None,
              rule: str = "same", problem_set: str = "mgh", bounded: bool = False, starts=(1.0,)):
    """Run the bench, print the report, write ``results.json`` and ``profile.png``; return the results.
    ``solvers=None``: every solver (every one that takes bounds when ``bounded``); ``starts``:
    multiples of each problem's standard start (``_run.from_starts``)."""
    import jax
    from rich.console import Console
    from rich.markup import escape

    from . import _report

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    notice = lambda msg: console.print(msg, style="yellow", markup=False, highlight=False)  # noqa: E731
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r}; known: {', '.join(DTYPES)}")
    dtypes = tuple(dict.fromkeys(dtypes))
    if "float64" in dtypes and not jax.config.jax_enable_x64:
        notice("skipping float64: x64 is off (python -m qnjax bench turns it on; set JAX_ENABLE_X64=1 here)")
        dtypes = tuple(d for d in dtypes if d != "float64")
    budget = budget or (QUICK_BUDGET if quick else FULL_BUDGET)
    probs = from_starts(select_problems(problem_set, problems, quick, bounded), starts)
    if solvers is None:
        solvers = BOUNDED_SOLVER_NAMES if bounded else SOLVER_NAMES
    adapters = make_adapters(solvers, linesearches, notice, rule, bounded)

    t0 = time.perf_counter()
    with _report.progress(console) as bar:
        task = bar.add_task("bench", total=len(adapters) * len(probs) * len(dtypes))

        def done(rec):
            mark = ("ok" if rec["solved"] else "FAIL") + (" (false success)" if rec["false_success"] else "")
            bar.update(task, advance=1, description=escape(f"{rec['solver']} {rec['problem']} {rec['dtype']}: {mark}"))

        records = run_all(adapters, probs, dtypes, budget, done)
    wall = time.perf_counter() - t0

    results = dict(
        summary=summarize(records),
        records=records,
        settings=dict(
            budget=budget._asdict(), dtypes=list(dtypes), rule=rule, bounded=bool(bounded),
            problem_set=None if problems is not None or bounded else problem_set, problems=[p.name for p in probs],
            starts=[float(f) for f in starts],
            solvers=[a.name for a in adapters], quick=bool(quick), wall_s=wall,
            stopping=dict(rule=rule, gtol=GTOL if rule == "same" else None,
                          note=(f"same: every solver told max|{'proj ' if bounded else ''}g| <= gtol and no "
                                "f-reduction test"
                                if rule == "same" else "defaults: each solver's own defaults and the bench's budgets")
                               + "; what each solver is told is in each record's 'given'"),
            judgement=dict(tol_f=TOL_F, tol_grad=TOL_GRAD, rule=BOUNDED_RULE_TEXT if bounded else RULE_TEXT),
            timing="compile_s = first call - second call (same jitted solve, same x0); run_s = second call; "
                   "nfev counted on the host during the second call",
        ),
        environment=environment(argv, dtypes, adapters),
    )
    _report.print_report(console, results, per_problem)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(clean_json(results), indent=1, allow_nan=False))
    console.print(f"wrote {json_path}", markup=False, highlight=False)
    try:
        png = _report.performance_profile(records, out / "profile.png")
        console.print(f"wrote {png}", markup=False, highlight=False)
    except ImportError as e:
        notice(f"skipping the performance profile: {e}")
    console.print(f"bench wall time {wall:.1f} s", markup=False, highlight=False)
    return results


def cli(ns: argparse.Namespace, argv=None) -> int:
    """Run from parsed arguments; turns x64 on first when float64 is requested."""
    if "float64" in ns.dtype:
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        run_bench(solvers=ns.solvers, dtypes=ns.dtype, problems=ns.problems, linesearches=ns.linesearch,
                  quick=ns.quick, out=ns.out, per_problem=ns.per_problem, rule=ns.rule, problem_set=ns.problem_set,
                  bounded=ns.bounded, starts=ns.starts, argv=list(sys.argv if argv is None else argv))
    except (KeyError, ValueError) as e:  # bad names on the command line
        print(f"qnjax bench: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """``qnjax-bench``-style entry point: ``main(["--quick"])``."""
    parser = argparse.ArgumentParser(prog="qnjax bench", description=__doc__.splitlines()[0])
    ns = add_arguments(parser).parse_args(argv)
    return cli(ns, argv)
