"""What the bench shows: a progress bar, rich tables, and a Dolan-Moré profile PNG.

Performance profile (Dolan & Moré, Math. Program. 91, 2002): for each dtype, the
cost of solver s on problem p is the number of evaluations it needed if it solved
p (by the bench's judgement), else infinite; ``r_ps = cost_ps / min_s cost_ps``;
each solver's line is ``rho_s(tau) = #{p : r_ps <= tau} / #problems`` against
``log2 tau``. Problems nobody solved stay in the denominator.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def progress(console: Console) -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _fmt(v, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def summary_table(summary: list[dict], title: str = "qnjax bench") -> Table:
    """One row per (solver, dtype). ``false success``: the solver reported success and
    the bench did not judge the problem solved; ``false failure``: the reverse; ``median
    nfev (solved by all)``: over the problems every solver of the run solved in that
    dtype (how many: "of k"), the paired comparison of their costs."""
    t = Table(title=title, box=box.SIMPLE_HEAVY)
    t.add_column("solver", no_wrap=True)
    for col in ("dtype", "solved", "false success", "false failure", "median nit", "median nfev",
                "median nfev (solved by all)", "median compile (s)", "median run (ms)", "errors"):
        t.add_column(col, justify="left" if col == "dtype" else "right")
    for row in summary:
        shared = row.get("median_nfev_shared")
        t.add_row(escape(row["solver"]), row["dtype"], f"{row['solved']}/{row['total']}",
                  str(row.get("false_success", "-")), str(row.get("false_failure", "-")),
                  _fmt(row["median_nit"], ".0f"), _fmt(row["median_nfev"], ".0f"),
                  "-" if shared is None else f"{shared:.0f} of {row['solved_by_all']}",
                  _fmt(row["median_compile_s"], ".2f"), _fmt(row["median_run_s"], ".1f", 1e3), str(row["errors"]))
    return t


def _cell(rec: dict) -> str:
    if rec["error"] is not None:
        return "error: " + rec["error"].split(":")[0]
    if rec["solved"]:
        return (f"ok {rec['nfev']}" + (f" ({rec['judged_by']})" if rec["judged_by"] in ("grad", "pgrad") else "")
                + (" (reported failure)" if rec.get("false_failure") else ""))
    f = rec["f"]
    cell = f"FAIL f={f:.3g}" if f is not None and math.isfinite(f) else "FAIL f=nan"
    cell += " (infeasible)" if rec.get("feasible") is False and rec.get("x_finite") else ""
    return cell + (" (reported success)" if rec.get("false_success") else "")


def per_problem_tables(records: list[dict]) -> list[Table]:
    """One table per dtype: problems x solvers, 'ok <nfev>' or 'FAIL f=<f>', marked
    where the solver's own verdict disagrees (a false failure or a false success)."""
    tables = []
    for dtype in dict.fromkeys(r["dtype"] for r in records):
        rs = [r for r in records if r["dtype"] == dtype]
        solvers = list(dict.fromkeys(r["solver"] for r in rs))
        t = Table(title=f"per problem ({dtype}): evaluations when solved", box=box.SIMPLE)
        t.add_column("problem", no_wrap=True)
        t.add_column("n", justify="right")
        t.add_column("fstar", justify="right")
        for s in solvers:
            t.add_column(escape(s), justify="right")
        for name in dict.fromkeys(r["problem"] for r in rs):
            row = {r["solver"]: r for r in rs if r["problem"] == name}
            first = next(iter(row.values()))
            t.add_row(escape(name), str(first["n"]), f"{first['fstar']:.4g}",
                      *[escape(_cell(row[s])) if s in row else "" for s in solvers])
        tables.append(t)
    return tables


def qnjax_behind_scipy(records: list[dict]) -> list[dict]:
    """Records of qnjax entries that failed where scipy solved the same problem and dtype."""
    scipy_ok = {(r["problem"], r["dtype"]) for r in records if r["solver"] == "scipy" and r["solved"]}
    return [r for r in records if r["solver"].startswith("qnjax") and not r["solved"]
            and (r["problem"], r["dtype"]) in scipy_ok]


def false_successes(records: list[dict], prefix: str = "qnjax") -> list[dict]:
    """Records of solvers named ``prefix...`` that reported success on a problem the bench judged unsolved."""
    return [r for r in records if r["solver"].startswith(prefix) and r.get("false_success")]


def print_report(console: Console, results: dict, per_problem: bool = False) -> None:
    settings = results.get("settings", {})
    title = ("qnjax bench" + (" --bounded" if settings.get("bounded") else "")
             + (f" (--rule {settings['rule']})" if "rule" in settings else ""))
    console.print(summary_table(results["summary"], title))
    if per_problem:
        for t in per_problem_tables(results["records"]):
            console.print(t)
    behind = qnjax_behind_scipy(results["records"])
    if behind:
        console.print("qnjax failed where scipy succeeded:", style="bold")
        for r in behind:
            why = r["error"] or r["message"]
            console.print(f"  {r['solver']} {r['problem']} ({r['dtype']}): f={_fmt(r['f'], '.6g')} "
                          f"fstar={r['fstar']:.6g} nit={r['nit']} nfev={r['nfev']}: {why}",
                          markup=False, highlight=False)
    false = false_successes(results["records"])
    if false:
        console.print("qnjax reported success but the bench judged the problem unsolved:", style="bold")
        for r in false:
            g = (f"max|proj g|={_fmt(r['pgrad_inf'], '.3g')}" if r.get("bounded")
                 else f"max|g|={_fmt(r['grad_inf'], '.3g')}")
            console.print(f"  {r['solver']} {r['problem']} ({r['dtype']}): f={_fmt(r['f'], '.6g')} "
                          f"fstar={r['fstar']:.6g} {g} nit={r['nit']}: {r['message']}{_where(r)}",
                          markup=False, highlight=False)


def _where(r: dict) -> str:
    """What a false success's x is (``_judge.local_minimum``), where the bench diagnosed it."""
    if "local_minimum" not in r:
        return ""
    if r["local_minimum"] is None:
        return (f" [the Hessian is singular to working precision (eigenvalues from {_fmt(r['hessian_min_eig'], '.3g')} "
                f"to {_fmt(r.get('hessian_max_eig'), '.3g')}): whether x is near a minimum is not told]")
    if r["local_minimum"]:
        return (f" [near a local minimum other than fstar's (within the bench's f tolerance): Hessian positive "
                f"definite, a Newton step would lower f by {_fmt(r['newton_decrease'], '.2g')}]")
    if r["newton_decrease"] is None:
        return f" [not at a local minimum: the Hessian's smallest eigenvalue is {_fmt(r['hessian_min_eig'], '.3g')}]"
    return f" [not at a local minimum: a Newton step would lower f by {_fmt(r['newton_decrease'], '.3g')}]"


def profile_ratios(records: list[dict], dtype: str) -> dict[str, list[float]]:
    """Per solver, the performance ratios r_ps (inf when unsolved) over the problems of ``dtype``."""
    rs = [r for r in records if r["dtype"] == dtype]
    problems = list(dict.fromkeys(r["problem"] for r in rs))
    solvers = list(dict.fromkeys(r["solver"] for r in rs))
    cost = {(r["problem"], r["solver"]): (max(r["nfev"], 1) if r["solved"] and r["nfev"] is not None
                                          else math.inf) for r in rs}
    out = {s: [] for s in solvers}
    for p in problems:
        best = min(cost.get((p, s), math.inf) for s in solvers)
        for s in solvers:
            c = cost.get((p, s), math.inf)
            out[s].append(c / best if math.isfinite(c) else math.inf)
    return out


def performance_profile(records: list[dict], path: Path) -> Path:
    """Write the Dolan-Moré profile of evaluations (one panel per dtype, ``qnjax.plot_profile``) to ``path``."""
    import matplotlib.pyplot as plt

    from .._plot import plot_profile

    dtypes = list(dict.fromkeys(r["dtype"] for r in records))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_profile({f"performance profile, {d}": profile_ratios(records, d) for d in dtypes}, path=path)
    plt.close(fig)
    return path
