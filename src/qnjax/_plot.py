"""``qnjax.plot`` and ``qnjax.plot_profile``: convergence plots from traces and
performance profiles (matplotlib, an optional extra).

``plot``: one figure, four panels: f (or f - f* when ``fstar`` is given) and max |g| on a
log scale, each against iterations (``nit``) and against evaluations (``nfev``),
one line per run (per member of a batched run: multi-start), so runs of different
solvers or settings compare on one figure.
A run is a ``qnjax.OptimizeResult`` made with ``trace=K``, or its ``Trace``; a
trace keeps the first and the last K records, so a long run shows a gap between
them (drawn as a break in the line, not as a straight segment across it).

``plot_profile``: Dolan & Moré's (2002) performance profile, one panel per set of
problems (e.g. per dtype). For solver s on problem p with cost c_ps (evaluations, time),
the ratio r_ps = c_ps / min_s c_ps (inf when s did not solve p); the curve is
rho_s(tau) = |{p : log2 r_ps <= tau}| / |P|, a step function of tau >= 0: its value at 0
is the fraction of problems on which s was the cheapest, its right end the fraction it
solved. ``qnjax bench`` draws its ``profile.png`` with it.
"""

from __future__ import annotations

import math

import numpy as np


def _trace(run):
    trace = getattr(run, "trace", run)
    if trace is None or not hasattr(trace, "as_numpy"):
        raise TypeError("plot needs results made with minimize(..., trace=K) or their .trace")
    return trace


def _members(trace, label):
    """(trace, label) of each member of a batched trace (``jax.vmap``, any number of batch
    axes: member ``label[i]``, or ``label[i, j]``), or the trace itself."""
    shape = np.shape(trace.records)
    if not shape:
        return [(trace, label)]
    fields = [np.asarray(f) for f in trace]
    return [(type(trace)(*(f[index] for f in fields)), f"{label}[{', '.join(map(str, index))}]")
            for index in np.ndindex(*shape)]


def _records(trace):
    k = np.shape(trace.nit)[0] // 2
    gap = k if int(trace.records) > 2 * k else None  # records were dropped between row k-1 and row k
    return trace.as_numpy(), gap


def _with_break(x, y, gap):
    """A NaN at the gap between the first and the last K records (a break in the line)."""
    x, y = x.astype(float), y.astype(float)
    return (x, y) if gap is None else (np.insert(x, gap, np.nan), np.insert(y, gap, np.nan))


def _pyplot(path):
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# The most lines (runs, or a batch's members) drawn with a legend.
LEGEND_LINES = 20
# Where a zero is drawn on a log axis, relative to its panels' least positive value.
FLOOR = 0.1


def plot(runs, labels=None, fstar=None, path=None, title=None):
    """Draw convergence of one run or a list of runs; returns the matplotlib Figure
    (and writes it to ``path`` if given). ``fstar``: the known minimum (a number, or
    one per run), to plot f - f* instead of f. A batched run (``jax.vmap`` of
    ``minimize``) draws a line per member, labelled ``label[i]`` (a legend up to
    LEGEND_LINES lines)."""
    plt = _pyplot(path)

    one = hasattr(runs, "_fields") or not isinstance(runs, (list, tuple))  # a result or trace is a NamedTuple
    runs = [runs] if one else list(runs)
    labels = list(labels) if labels is not None else [f"run {i}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
    fstars = list(fstar) if isinstance(fstar, (list, tuple)) else [fstar] * len(runs)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row", constrained_layout=True)
    lines = [(member, name, fs) for run, label, fs in zip(runs, labels, fstars)
             for member, name in _members(_trace(run), label)]
    drawn = []
    for trace, label, fs in lines:
        rec, gap = _records(trace)
        f = rec["fun"] - fs if fs is not None else rec["fun"]
        drawn.append((rec, gap, label, (np.abs(f).astype(float), rec["gnorm"].astype(float))))
    # zeros (f = f* or a gradient exactly 0) drawn at FLOOR times the least positive value of their
    # panels, not at float64's tiny: a run that reached f = 0 stretched the axis to 1e-308 for every line
    def floor(row):
        positive = [ys[row][ys[row] > 0] for *_, ys in drawn]
        return FLOOR * min((np.min(p) for p in positive if p.size), default=1.0)

    floors = [floor(0), floor(1)]
    for rec, gap, label, ys in drawn:
        for row, y in enumerate(ys):
            for col, x in enumerate((rec["nit"], rec["nfev"])):
                xs, yb = _with_break(x, np.maximum(y, floors[row]), gap)
                axes[row, col].plot(xs, yb, label=label)
    for row, name in enumerate(("f - f*" if fstar is not None else "f", "max |g|")):
        for col, xname in enumerate(("iterations", "evaluations")):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlabel(xname)
            if col == 0:
                ax.set_ylabel(name)
    if len(lines) <= LEGEND_LINES:
        axes[0, 0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_profile(panels, path=None, xlabel="evaluations"):
    """Draw performance profiles (module docstring); returns the matplotlib Figure (and
    writes it to ``path`` if given). ``panels``: ``{title: {solver: [r_ps per problem]}}``,
    ratios >= 1, ``inf`` where the solver failed; ``xlabel`` names the cost."""
    plt = _pyplot(path)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.5 * max(len(panels), 1), 4.5), squeeze=False,
                             constrained_layout=True)
    for ax, (title, ratios) in zip(axes[0], panels.items()):
        logs = {s: [math.log2(r) for r in rs if math.isfinite(r)] for s, rs in ratios.items()}
        right = max(max((v for vs in logs.values() for v in vs), default=0.0) * 1.05, 1.0)
        for solver, rs in ratios.items():
            xs = [0.0] + sorted({v for v in logs[solver] if v > 0.0}) + [right]
            ax.step(xs, [sum(v <= x for v in logs[solver]) / max(len(rs), 1) for x in xs], where="post", label=solver)
        n = len(next(iter(ratios.values()), []))
        ax.set(xlim=(0.0, right), ylim=(0.0, 1.02), title=f"{title} ({n} problems)",
               xlabel=rf"$\log_2 \tau$  ({xlabel} / best solver's {xlabel})",
               ylabel=r"fraction of problems solved within $\tau$")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
