"""Scale: qnjax's cost beyond the evaluations, batched throughput and compile time, against its peers.

Three parts, side by side in one run (`python benchmarks/scale.py [--out DIR] [--quick] [--parts 1,2,3]`,
part of `make bench`); prints rich tables and writes `<out>/scale.json`.

1. Per-iteration time on a cheap separable objective (the one of
   `benchmarks/inplace.py`) at n = 1e3, 1e4, 1e6 in float32 and float64: qnjax
   (compact and two-loop), optax.lbfgs (jitted `lax.while_loop` with
   `optax.value_and_grad_from_state`), jaxopt.LBFGS and optimistix.LBFGS, each run for
   the same fixed number of iterations K with every stopping test off, each in one `jax.jit`
   (XLA's defaults), and one more qnjax row, `minimize` called as users call it (its own
   program, compiled with qnjax's options; its ms/iter includes each call's trace of `fun`,
   which its later ms/iter leaves out). ms/iter = the
   best of 5 timed runs of the jitted solve (after a warm-up call) / iterations;
   ms/eval = one jitted value-and-grad alone; overhead = ms/iter - (evaluations per
   iteration) x ms/eval, the solver's own cost. "later ms/iter" leaves out the run's fixed
   costs (the first evaluation, the state, the result) and its first K/3 iterations: (time
   of the K-iteration run - time of a K/3-iteration run) / iterations between, the two runs
   timed in turns (best of 5 each); at small n the fixed costs are a large part of a run of
   K = 30 iterations. Evaluations are counted on the host in
   a separate, untimed run (a `jax.debug.callback` per forward pass). optimistix
   counts steps, not iterations: one step is one evaluation, accepted or not.
2. Batched throughput: `jax.vmap` over 1,000 random starts (`--starts`: other batch sizes,
   one table each; the targets are taken at 1,000) of the 10-D Rosenbrock
   function in float64, 50 iterations each, every stopping test off: problems per
   second over 15 rounds that run every row once in turn, after a warm-up (a slow spell
   of the machine touches every row alike), from the median round and from the best
   one; "/ optax (paired)", the median over the rounds of optax's time / the row's time
   in that round (the targets use it: a ratio of best times rewards one lucky round), and
   "/ best peer" likewise against the fastest peer of each round;
   and the evaluations each solver reports (qnjax: sum of `nfev`; optax: 1 + its
   line-search steps; jaxopt: `num_fun_eval`).
   Each batch runs in one `jax.jit`; one more qnjax row is `jax.vmap` of `minimize`
   without it, as a user calls it (the solve its own program, `qnjax._compile`), and one
   has `memory_size=3` instead of 10: each member's memory holds 2 (m + 1)^2 small-matrix
   entries and 2 (m + 1) n pair entries, read and written each iteration, so the
   difference is what the memory size costs.
3. Compile: each solver's first and second call on 2-D Rosenbrock in float64, each in a
   fresh process (best of 2, the solvers taking turns); compile = first - second
   (tracing and compilation). `qnjax.minimize(rosen, x0)` called as users call it (its
   own program, compiled with `qnjax._compile.OPTIONS` on a CPU), for compact and
   two-loop, and once with XLA's defaults (the options off); Rosenbrock's sum over a
   (32, 32) float32 leaf as qnjax compiles it (XLA's defaults: two axes) and with the
   classic emitters forced (their pathological case); qnjax inside a user's
   `jax.jit` (XLA's defaults); the peers' jitted drivers
   of part 1 (50 iterations). Kernels: the compiled program's `fusion(` count. And the
   Optax faces as optax users write them, one `jax.jit` of a step (`value_and_grad_from_state`,
   `update`, `apply_updates`) called three times: compile = first + second - 2 x third,
   "compiles" the step's cache entries after the three calls (a state whose dtypes or weak
   types change in an update compiles the step again: optax.lbfgs 0.2.8's does, at the
   second call), "/ optax" against optax.lbfgs's step.

Targets (from the issues): (1) at n = 1e6 in float32, qnjax compact ms/iter <= 0.75 x
optax.lbfgs's; (2) qnjax problems/s >= optax's (the jitted batch, and `jax.vmap` of
`minimize` as a user calls it), and >= 2 x the fastest peer's (the jitted batch; issue 14);
(3) `minimize`'s compile <= 0.6 x optax's driver's. The script reports the measured ratios, whatever they are; it does
not assert them.
"""

import argparse
import contextlib
import functools
import importlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # before any array: the float64 parts need it

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of, interleaved_best, interleaved_times  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import qnjax  # noqa: E402

PEERS = ("optax", "jaxopt", "optimistix")
console = Console(width=None if sys.stdout.isatty() else 150)


def objective(x):
    """Cheap and separable, weights 1/n..1: not solved to working precision in K iterations."""
    w = jnp.arange(1, x.size + 1, dtype=x.dtype) / x.size
    return jnp.sum(w * (x - 1) ** 2 + 0.1 * (x - 1) ** 4)


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


# ---- the solvers, each `make(fun, k) -> jitted x0 -> (x, iterations, reported evaluations)` ----

def qnjax_solver(direction):
    def make(fun, k, memory_size=10):
        def solve(x0):
            r = qnjax.minimize(fun, x0, gtol=0.0, ftol=0.0, fatol=0.0, maxiter=k, maxfev=10**6, direction=direction,
                               memory_size=memory_size)
            return r.x, r.nit, r.nfev
        return solve
    return make


def optax_step(opt, fun):
    """One update of an Optax face as optax users write it: f and its gradient from the
    state, the update, its application: ``step(x, state) -> (x, state)``."""
    import optax

    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(x, state):
        f, g = value_and_grad(x, state=state)
        updates, state = opt.update(g, state, x, value=f, grad=g, value_fn=fun)
        return optax.apply_updates(x, updates), state
    return step


def optax_make(fun, k):
    import optax

    opt = optax.lbfgs()
    step = optax_step(opt, fun)

    def solve(x0):
        def body(c):
            x, state, i, evals = c
            x, state = step(x, state)
            evals = evals + jnp.asarray(optax.tree.get(state, "num_linesearch_steps"), jnp.int32)
            return x, state, i + 1, evals

        one = jnp.ones((), jnp.int32)
        x, _, i, evals = jax.lax.while_loop(lambda c: c[2] < k, body, (x0, opt.init(x0), 0 * one, one))
        return x, i, evals
    return solve


def jaxopt_make(fun, k):
    import jaxopt

    solver = jaxopt.LBFGS(fun=fun, maxiter=k, tol=0.0)

    def solve(x0):
        x, st = solver.run(x0)
        return x, st.iter_num, st.num_fun_eval
    return solve


def optimistix_make(fun, k):
    import optimistix as optx

    solver = optx.LBFGS(rtol=0.0, atol=0.0)

    def solve(x0):
        sol = optx.minimise(lambda y, _: fun(y), solver, x0, max_steps=k, throw=False)
        return sol.value, sol.stats["num_steps"], sol.stats["num_steps"]
    return solve


SOLVERS = {"qnjax compact": qnjax_solver("compact"), "qnjax two-loop": qnjax_solver("two-loop"),
           "optax": optax_make, "jaxopt": jaxopt_make, "optimistix": optimistix_make}


def available(notice):
    out = {}
    for name, make in SOLVERS.items():
        module = name.split()[0]
        try:
            importlib.import_module(module)
            out[name] = make
        except Exception as e:  # noqa: BLE001 -- not installed: skip it
            notice(f"skipping {name}: {type(e).__name__}: {e}")
    return out


def _call(name, dtype, fn, x0):
    with x64_context(name, dtype):
        return fn(x0)


def x64_context(name, dtype):
    # optimistix.LBFGS fails to trace in float32 while x64 is on (its carry turns float64)
    return jax.enable_x64(False) if name == "optimistix" and dtype == "float32" else contextlib.nullcontext()


# ---- part 1 ----

# The row of ``qnjax.minimize`` called as users call it, outside any jax.jit: each call traces
# ``fun`` to find its compiled solve (about 1.5 ms on 2 cores), which "ms/iter" counts and
# "later ms/iter" does not; the solve compiles with qnjax's own options (qnjax/_compile.py).
AS_CALLED = "qnjax compact, as called"

def evaluation_loop(fun, reps):
    """``reps`` value-and-grads of ``fun`` in one compiled loop, each at a point moved by the
    last gradient (each evaluation depends on the last, so none is hoisted or skipped; no
    dispatch per evaluation)."""
    vg = jax.value_and_grad(fun)

    @jax.jit
    def loop(x):
        def body(_, c):
            f, g = vg(c[0])
            return c[0] - 1e-30 * g, c[1] + f
        return jax.lax.fori_loop(0, reps, body, (x, jnp.zeros((), x.dtype)))

    return loop


def eval_time(x0, reps=50):
    """Seconds per value-and-grad of `objective` at x0's size and dtype (``evaluation_loop``)."""
    return best_of(evaluation_loop(objective, reps), x0, reps=3) / reps


def counted_evaluations(make, fun, k, x0):
    """How many times ``make(fun, k)``'s jitted solve from x0 evaluates ``fun``, counted on the
    host (a ``jax.debug.callback`` per forward pass) in a run of its own, untimed."""
    calls = [0]

    def counted(x):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return fun(x)

    jax.block_until_ready(jax.jit(make(counted, k))(x0))
    jax.effects_barrier()
    return calls[0]


def per_iteration(solvers, sizes, dtypes, iters, as_called=False):
    """Per (dtype, n): every solver's fixed-iteration solve (and one a third as long, for the
    later iterations' cost) compiled and checked, then timed by ``interleaved_best`` over all
    of them, so a slow spell of the machine touches every solver alike and the ratios
    between solvers compare runs made side by side. ``as_called``: one more row, AS_CALLED."""
    rows = []
    for dtype in dtypes:
        for n in sizes:
            k = iters(n, dtype)
            x0 = jnp.zeros(n, dtype)
            per_eval = eval_time(x0)
            timed = []
            rows_here = [(name, make, False) for name, make in solvers.items()]
            if as_called and "qnjax compact" in solvers:  # minimize as users call it: its own program
                rows_here.append((AS_CALLED, solvers["qnjax compact"], True))
            for name, make, own_program in rows_here:
                row = dict(dtype=dtype, n=n, solver=name, k=k, eval_ms=per_eval * 1e3)
                try:
                    with x64_context(name, dtype):
                        own = (lambda f: f) if own_program else jax.jit
                        run, first = own(make(objective, k)), own(make(objective, k // 3))
                        _, nit, nfev_reported = jax.block_until_ready(run(x0))
                        row.update(nit=int(nit), nit_first=int(first(x0)[1]), nfev_reported=int(nfev_reported),
                                   nfev=counted_evaluations(make, objective, k, x0))
                    timed.append((row, [functools.partial(_call, name, dtype, f, x0) for f in (first, run)]))
                except Exception as e:  # noqa: BLE001 -- a peer that fails is a row with its error
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                rows.append(row)
            best = interleaved_best([call for _, calls in timed for call in calls], reps=5)
            for i, (row, _) in enumerate(timed):
                t_first, t = best[2 * i], best[2 * i + 1]
                nit, nit_first = row["nit"], row.pop("nit_first")
                row.update(run_s=t, ms_per_iter=t / nit * 1e3,
                           later_ms_per_iter=(t - t_first) / max(nit - nit_first, 1) * 1e3,
                           overhead_ms=(t - row["nfev"] * per_eval) / nit * 1e3)
            for row in rows[-len(rows_here):]:
                console.print(f"  {dtype} n={n:,} {row['solver']}: " + (row.get("error") or
                              f"{row['ms_per_iter']:.3f} ms/iter, {row['nit']} it, {row['nfev']} ev"),
                              markup=False, highlight=False)
    for r in rows:
        ref = next((o for o in rows if (o["dtype"], o["n"], o["solver"]) == (r["dtype"], r["n"], "optax")), None)
        ok = ref is not None and "ms_per_iter" in ref and "ms_per_iter" in r
        r["vs_optax"] = r["ms_per_iter"] / ref["ms_per_iter"] if ok else None
    return rows


# ---- part 2 ----

# (row, solver, make's keywords, own program): every batch runs in one jax.jit (XLA's
# defaults) but one, jax.vmap(minimize) as a user calls it, its own program
# (qnjax/_compile.py); memory_size=3: each member's memory holds 2 (m + 1)^2 small-matrix
# entries and 2 (m + 1) n pair entries, so the row shows what the memory size costs.
BATCHED_ROWS = (
    ("qnjax compact", "qnjax compact", {}, False),
    ("qnjax compact, vmap of minimize", "qnjax compact", {}, True),
    ("qnjax compact, memory_size=3", "qnjax compact", {"memory_size": 3}, False),
    ("qnjax two-loop", "qnjax two-loop", {}, False),
    ("optax", "optax", {}, False),
    ("jaxopt", "jaxopt", {}, False),
)


def batched(solvers, starts, iters, seed=0, reps=15):
    """Each row's batch compiled and checked, then timed over ``reps`` rounds that run every
    row once in turn (``interleaved_times``), so a slow spell of the machine touches every
    solver alike rather than whichever ran during it: problems/s from the median round and
    from the best one, and each row's speed over optax's as the median over the rounds of
    that round's ratio (the two batches ran side by side)."""
    x0s = jnp.asarray(np.random.default_rng(seed).uniform(-2.0, 2.0, (starts, 10)), jnp.float64)
    rows, runs = [], []
    for name, solver, kw, own_program in BATCHED_ROWS:
        if solver not in solvers:
            continue
        row = dict(solver=name, starts=starts, n=10, dtype="float64", k=iters)
        try:
            solve = solvers[solver](rosen, iters, **kw)
            # (only the solve is timed: f is computed from x afterwards, in a program of its own,
            # not eagerly under the batch, where the own-program row would pay for its dispatches)
            run = jax.vmap(solve) if own_program else jax.jit(jax.vmap(solve))
            x, nit, nfev = jax.block_until_ready(run(x0s))
            f, nit, nfev = np.asarray(jax.jit(jax.vmap(rosen))(x)), np.asarray(nit), np.asarray(nfev)
            row.update(nfev_total=int(nfev.sum()), nit_min=int(nit.min()), nit_max=int(nit.max()),
                       median_f=float(np.median(f)), below_1e8=int((f < 1e-8).sum()))
            runs.append((row, functools.partial(run, x0s)))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        rows.append(row)
    times = interleaved_times([call for _, call in runs], reps=reps)
    for (row, _), t in zip(runs, times):
        row.update(run_s=float(np.median(t)), problems_per_s=starts / float(np.median(t)),
                   best_problems_per_s=starts / min(t))
    ref = next((t for (row, _), t in zip(runs, times) if row["solver"] == "optax"), None)
    if ref is not None:
        for (row, _), t in zip(runs, times):
            row["vs_optax"] = float(np.median(np.asarray(ref) / np.asarray(t)))
    # the fastest peer in each round (issue 14's target: 2x the best peer's problems/s)
    peers = [np.asarray(t) for (row, _), t in zip(runs, times) if row["solver"] in PEERS]
    if peers:
        best = np.min(np.stack(peers), axis=0)
        for (row, _), t in zip(runs, times):
            row["vs_best_peer"] = float(np.median(best / np.asarray(t)))
    return rows


# ---- part 3 ----

_COMPILE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import scale  # this file: x64 on, the solvers
import jax, jax.numpy as jnp, qnjax
from qnjax import _compile
name = sys.argv[1]
x0 = jnp.array([-1.2, 1.0])
jax.block_until_ready(x0 + 1.0)  # the backend is up before timing
if name.endswith("lbfgs step"):  # an Optax face as optax users write it: a jitted step, XLA's defaults
    import optax
    opt = qnjax.lbfgs() if name.startswith("qnjax") else optax.lbfgs()
    step = jax.jit(scale.optax_step(opt, scale.rosen))
    calls, carry = [], (x0, opt.init(x0))
    for _ in range(3):  # a state whose types change after an update compiles the step again
        t = time.perf_counter(); carry = jax.block_until_ready(step(*carry)); calls.append(time.perf_counter() - t)
    hlo = step.lower(x0, opt.init(x0)).compile()
    print(json.dumps(dict(solver=name, first_call_s=calls[0], second_call_s=calls[1],
                          compile_s=calls[0] + calls[1] - 2 * calls[2],
                          compiles=getattr(step, "_cache_size", lambda: None)(),
                          kernels=hlo.as_text().count(" fusion("))))
    sys.exit(0)
if name.startswith("qnjax minimize"):  # the front door as users call it: its own program
    d = name.split("(")[1].split(",")[0].strip(")")
    if "XLA defaults" in name:  # what the first call cost before qnjax set its options
        _compile._accepted = lambda backend: False
    if "32 x 32" in name:  # a leaf of two axes: XLA's defaults (_compile._vectors_only), or forced classic
        x0 = jnp.full((32, 32), 0.5, jnp.float32)  # (float32: in float64 the classic emitters are not slower)
        if "classic" in name:
            _compile._vectors_only = lambda tree: True
    run = lambda x: qnjax.minimize(scale.rosen, x, direction=d).x
    options = _compile.options_for(x0)  # as minimize chooses them
else:  # a jitted driver of 50 iterations; qnjax's inside it compiles with XLA's defaults
    make = scale.SOLVERS["qnjax compact" if name == "qnjax inside jax.jit" else name]
    run, options = jax.jit(lambda x: make(scale.rosen, 50)(x)[0]), None
t = time.perf_counter(); jax.block_until_ready(run(x0)); first = time.perf_counter() - t
t = time.perf_counter(); jax.block_until_ready(run(x0)); second = time.perf_counter() - t
hlo = jax.jit(run).lower(x0).compile(options)  # after the timing: its compile is not cached for it
print(json.dumps(dict(solver=name, first_call_s=first, second_call_s=second, compile_s=first - second,
                      kernels=hlo.as_text().count(" fusion("))))
"""

COMPILED = ("qnjax minimize (compact)", "qnjax minimize (two-loop)", "qnjax minimize (compact, XLA defaults)",
            "qnjax minimize (compact, 32 x 32 leaf)", "qnjax minimize (compact, 32 x 32 leaf, classic emitters)",
            "qnjax inside jax.jit", "optax", "jaxopt", "optimistix", "qnjax.lbfgs step", "optax.lbfgs step")


def compile_costs(solvers, rounds=2, names=COMPILED):
    """Each solver's first call in a fresh process (best of `rounds`, the solvers taking turns)."""
    here = str(Path(__file__).resolve().parent)
    best = {}
    for _ in range(rounds):
        for name in names:
            if name.split()[0].split(".")[0] not in {s.split()[0] for s in solvers}:
                continue
            out = subprocess.run([sys.executable, "-c", _COMPILE, name, here], capture_output=True, text=True)
            if out.returncode:
                best[name] = dict(solver=name, error=out.stderr.strip().splitlines()[-1][:200])
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if "compile_s" not in best.get(name, {}) or row["compile_s"] < best[name]["compile_s"]:
                best[name] = row
    rows = list(best.values())
    for r in rows:  # a step against optax's step, a solve against optax's driver
        ref = best.get("optax.lbfgs step" if r["solver"].endswith("step") else "optax", {}).get("compile_s")
        r["vs_optax"] = r["compile_s"] / ref if ref and "compile_s" in r else None
    return rows


# ---- report ----

def _f(v, spec):
    return "-" if v is None else format(v, spec)


def table(title, rows, cols):
    t = Table(title=title)
    for header, _, _ in cols:
        t.add_column(header, justify="right")
    for r in rows:
        cells = []
        for _, key, spec in cols:
            if key == "error":
                cells.append(r.get("error", "")[:60])
            else:
                cells.append(_f(r.get(key), spec) if spec else str(r.get(key, "")))
        t.add_row(*cells)
    return t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench-results/full"))
    p.add_argument("--quick", action="store_true", help="n = 1e3 only, 100 starts: a smoke test")
    p.add_argument("--starts", default=None, help="part 2's batch sizes, comma-separated (default 1000; the "
                   "targets are taken at 1000)")
    p.add_argument("--iters", type=int, default=30, help="iterations per solve in part 1 (default 30)")
    p.add_argument("--iters-1e6-float64", type=int, default=None, help="fewer at n = 1e6 in float64 if needed")
    p.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    p.add_argument("--compiled", default=None, help="part 3's rows, comma-separated (default: all of "
                   + ", ".join(COMPILED) + ")")
    ns = p.parse_args(argv)
    parts = {int(s) for s in ns.parts.split(",")}
    # (commas inside a row's parentheses are part of its name: "qnjax minimize (compact, XLA defaults)")
    names = tuple(v.strip() for v in re.split(r",(?![^()]*\))", ns.compiled)) if ns.compiled else COMPILED
    if set(names) - set(COMPILED):
        p.error(f"--compiled: unknown rows {sorted(set(names) - set(COMPILED))}; the rows are {', '.join(COMPILED)}")
    notice = lambda m: console.print(m, style="yellow", markup=False, highlight=False)  # noqa: E731
    solvers = available(notice)
    sizes = (1_000,) if ns.quick else (1_000, 10_000, 1_000_000)
    starts = [int(float(v)) for v in ns.starts.split(",")] if ns.starts else [100 if ns.quick else 1_000]

    def iters(n, dtype):
        return ns.iters_1e6_float64 if (n >= 10**6 and dtype == "float64" and ns.iters_1e6_float64) else ns.iters

    console.print(f"{jax.devices()[0].platform}, jax {jax.__version__}, {len(jax.devices())} device(s)", markup=False)
    t0 = time.perf_counter()
    part1 = per_iteration(solvers, sizes, ("float32", "float64"), iters, as_called=True) if 1 in parts else []
    part2 = [row for size in starts for row in batched(solvers, size, 50)] if 2 in parts else []
    part3 = compile_costs(solvers, names=names) if 3 in parts else []
    wall = time.perf_counter() - t0

    console.print(table("1. time per iteration, every stopping test off (ms)", part1, [
        ("dtype", "dtype", None), ("n", "n", ","), ("solver", "solver", None), ("iterations", "nit", "d"),
        ("evaluations", "nfev", "d"), ("ms/iter", "ms_per_iter", ".3f"), ("ms/eval", "eval_ms", ".3f"),
        ("overhead ms/iter", "overhead_ms", ".3f"), ("/ optax", "vs_optax", ".2f"),
        ("later ms/iter", "later_ms_per_iter", ".4f"), ("error", "error", None)]))
    for size in starts if part2 else ():
        console.print(table(f"2. vmap over {size} starts, 10-D Rosenbrock, float64, 50 iterations",
                            [r for r in part2 if r["starts"] == size], [
            ("solver", "solver", None), ("problems/s", "problems_per_s", ",.0f"),
            ("best", "best_problems_per_s", ",.0f"), ("/ optax (paired)", "vs_optax", ".2f"),
            ("/ best peer", "vs_best_peer", ".2f"), ("run (s)", "run_s", ".3f"),
            ("evaluations (total)", "nfev_total", ",d"), ("min nit", "nit_min", "d"), ("max nit", "nit_max", "d"),
            ("median f", "median_f", ".3g"), ("f < 1e-8", "below_1e8", "d"), ("error", "error", None)]))
    console.print(table("3. compile: the first call on 2-D Rosenbrock, float64, each in a fresh process", part3, [
        ("solver", "solver", None), ("first call (s)", "first_call_s", ".2f"),
        ("second call (s)", "second_call_s", ".4f"), ("compile (s)", "compile_s", ".2f"),
        ("/ optax", "vs_optax", ".2f"), ("compiles", "compiles", "d"), ("kernels (fusions)", "kernels", "d"),
        ("error", "error", None)]))

    targets = {}
    big = next((r for r in part1 if (r["dtype"], r["n"], r["solver"]) == ("float32", 10**6, "qnjax compact")), None)
    if big is not None and big.get("vs_optax") is not None:
        targets["n1e6_float32_compact_over_optax"] = dict(measured=big["vs_optax"], target="<= 0.75",
                                                          met=big["vs_optax"] <= 0.75)
    by = {r["solver"]: r for r in part2 if "problems_per_s" in r and r["starts"] == 1_000}
    for row, key in (("qnjax compact", "vmap_qnjax_over_optax_problems_per_s"),
                     ("qnjax compact, vmap of minimize", "vmap_of_minimize_over_optax_problems_per_s")):
        if row in by and by[row].get("vs_optax") is not None:
            ratio = by[row]["vs_optax"]
            targets[key] = dict(measured=ratio, target=">= 1", met=ratio >= 1)
    if by.get("qnjax compact", {}).get("vs_best_peer") is not None:
        ratio = by["qnjax compact"]["vs_best_peer"]
        targets["vmap_qnjax_over_best_peer_problems_per_s"] = dict(measured=ratio, target=">= 2", met=ratio >= 2)
    direct = next((r for r in part3 if r["solver"] == "qnjax minimize (compact)"), {})
    if direct.get("vs_optax") is not None:
        targets["compile_minimize_over_optax"] = dict(measured=direct["vs_optax"], target="<= 0.6",
                                                      met=direct["vs_optax"] <= 0.6)
    for k, v in targets.items():
        console.print(f"target {k}: {v['measured']:.2f} (target {v['target']}): {'met' if v['met'] else 'NOT met'}",
                      markup=False, highlight=False)

    import os
    import platform

    results = dict(per_iteration=part1, batched=part2, compile=part3, targets=targets, wall_s=wall,
                   settings=dict(sizes=list(sizes), iters=ns.iters, iters_1e6_float64=ns.iters_1e6_float64,
                                 starts=starts, batched_iters=50, quick=ns.quick),
                   environment=dict(jax=jax.__version__, backend=jax.default_backend(), cpu_count=os.cpu_count(),
                                    platform=platform.platform(), python=platform.python_version(),
                                    packages={m: getattr(importlib.import_module(m), "__version__", None)
                                              for m in ("qnjax", *PEERS) if any(s.startswith(m) for s in solvers)}))
    ns.out.mkdir(parents=True, exist_ok=True)
    path = ns.out / "scale.json"
    path.write_text(json.dumps(results, indent=1))
    console.print(f"wrote {path}  ({wall:.0f} s)", markup=False, highlight=False)


if __name__ == "__main__":
    main()
