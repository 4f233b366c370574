"""What `qnjax._compile.OPTIONS` (XLA:CPU's classic emitters) does to compile and run time.

    .venv/bin/python benchmarks/xla_options.py [--sizes 10 1e4 1e6] [--repeats 5] [--levels K] [--split-rounds K]
        [--reductions K]

For each size and dtype: the solve of 50 iterations (every stopping test off; 2-D..1e4:
Rosenbrock, above: a separable quartic), and `jax.vmap` of it over `--batch` random
starts of 10-D Rosenbrock in float64 (where qnjax keeps XLA's defaults), traced and lowered once, then compiled twice in
the same process, once with XLA's defaults and once with the options; compile time of
each, then run time (best of `repeats`, the two programs taking turns). Prints a table;
asserts nothing.

`--levels K` (K > 0) instead compares `OPTIONS` with `UNOPTIMISED` (the same, LLVM told not
to optimise the machine code: the test suite's debug build) on the solve of 200 iterations of
Rosenbrock at each of `--sizes` (default 2 10 100 1000), float64 and float32: each of K
rounds traces and lowers it afresh (`jax.clear_caches()`) and compiles it both ways, in
alternating order; then the two programs run in turns (`--repeats` times). Prints the
median compile time of each, the best run time of each and the median of the paired
run-time ratios.

`--reductions K` (K > 0) instead compares, for Rosenbrock's function at each of `--sizes`
(default 100 1000 4000 10000) in float64, without and in the box [-2, 0.8]^n, the options a
direct call of `minimize` compiles with (`_compile.options_for`: XLA's tree reduction rewriter
left out) with the same options with the rewriter back in: K paired compiles of the solve of
40 iterations (every stopping test off), the windowed reductions each program holds, and the
later iterations' time (runs of 40 and of 10 iterations, all four taking turns `--repeats`
times: the median difference over the iterations between).

`--split-rounds K` (K > 0) instead compiles the unbatched 2-D Rosenbrock solve 2K times
in one process, alternating `OPTIONS` with and without its code-generation split count
(`xla_cpu_parallel_codegen_split_count`, set to the number of cores below 32), each time
from a fresh trace (`jax.clear_caches()`), and prints the median compile time of each and
the median over the rounds of the paired ratio.
"""

import argparse
import functools
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import interleaved_times  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import qnjax  # noqa: E402
from qnjax import _compile  # noqa: E402


def rosen(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def quartic(x):
    i = jnp.arange(1, x.size + 1, dtype=x.dtype)
    return jnp.sum(i * (x - 1) ** 4) / x.size + 0.5 * jnp.sum((x - 1) ** 2)


def compare(n, dtype, repeats, batch=None):
    fun = rosen if n <= 10**4 else quartic
    solve = lambda x: qnjax.minimize(fun, x, maxiter=50, gtol=0.0, ftol=0.0).x  # noqa: E731
    if batch:  # random starts in [-2, 2]: members that stop at different iterations
        x0 = jnp.asarray(np.random.default_rng(0).uniform(-2.0, 2.0, (batch, n)), dtype)
        solve = jax.vmap(solve)
    else:
        x0 = jnp.zeros(n, dtype)
    lowered = jax.jit(solve).trace(x0).lower()
    programs, row = {}, dict(n=n, dtype=jnp.dtype(dtype).name, batch=batch or "")
    for name, options in (("defaults", None), ("options", _compile.OPTIONS)):
        t = time.perf_counter()
        programs[name] = lowered.compile(options)
        row[f"compile_{name}"] = time.perf_counter() - t
        jax.block_until_ready(programs[name](x0))
    best = dict.fromkeys(programs, float("inf"))
    for _ in range(repeats):
        for name, program in programs.items():
            t = time.perf_counter()
            jax.block_until_ready(program(x0))
            best[name] = min(best[name], time.perf_counter() - t)
    row.update(run_defaults=best["defaults"], run_options=best["options"],
               run_ratio=best["options"] / best["defaults"])
    return row


def paired_compiles(solve, x0, configs, rounds):
    """({name: compile times}, {name: the last program}): ``solve`` traced and lowered afresh
    (``jax.clear_caches()``) and compiled with each of ``configs`` in every round, the
    order alternating between rounds."""
    times, programs = {name: [] for name in configs}, {}
    for r in range(rounds):
        for name in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
            jax.clear_caches()
            lowered = jax.jit(solve).trace(x0).lower()
            t = time.perf_counter()
            programs[name] = lowered.compile(configs[name])
            times[name].append(time.perf_counter() - t)
    return times, programs


def split_rounds(rounds):
    """Paired compiles of the 2-D Rosenbrock solve with ``OPTIONS`` and without its split count."""
    x0 = jnp.asarray([-1.2, 1.0])
    jax.block_until_ready(x0 + 1.0)
    without = {k: v for k, v in _compile.OPTIONS.items() if k != "xla_cpu_parallel_codegen_split_count"}
    configs = {"options": _compile.OPTIONS, "without the split count": without}
    times, _ = paired_compiles(lambda x: qnjax.minimize(rosen, x).x, x0, configs, rounds)
    ratio = np.median(np.asarray(times["options"]) / np.asarray(times["without the split count"]))
    for name, t in times.items():
        print(f"{name} {configs[name]}: median compile {np.median(t):.3f} s over {rounds}")
    print(f"paired ratio (options / without the split count), median: {ratio:.3f}")
    return ratio


# What the test suite compiles with (the Makefile's DEBUG_BUILD). Not users' programs: see
# docs/performance.md ("LLVM's optimisations") for what it saves and why a solve keeps them.
UNOPTIMISED = {**_compile.OPTIONS, "xla_backend_optimization_level": 0}


def levels(sizes, rounds, repeats):
    """Paired compiles and runs of the Rosenbrock solve with ``OPTIONS`` and ``UNOPTIMISED``."""
    configs = {"optimised": _compile.OPTIONS, "unoptimised": UNOPTIMISED}
    table = Table(title=f"LLVM's optimisations on and off ({UNOPTIMISED}): Rosenbrock, 200 iterations")
    for col in ("n", "dtype", "compile optimised (s)", "compile unoptimised (s)", "run optimised (ms)",
                "run unoptimised (ms)", "run unoptimised / optimised"):
        table.add_column(col, justify="right")
    rows = []
    for n in sizes:
        for dtype in (jnp.float64, jnp.float32):
            x0 = jnp.asarray(np.random.default_rng(0).uniform(-2.0, 2.0, n), dtype)
            solve = lambda x: qnjax.minimize(rosen, x, maxiter=200).x  # noqa: E731
            compiles, programs = paired_compiles(solve, x0, configs, rounds)
            runs = {name: [] for name in configs}
            for program in programs.values():
                jax.block_until_ready(program(x0))
            for _ in range(repeats):
                for name, program in programs.items():
                    t = time.perf_counter()
                    jax.block_until_ready(program(x0))
                    runs[name].append(time.perf_counter() - t)
            row = dict(n=int(n), dtype=jnp.dtype(dtype).name,
                       **{f"compile_{k}": float(np.median(v)) for k, v in compiles.items()},
                       **{f"run_{k}": min(v) for k, v in runs.items()},
                       run_ratio=float(np.median(np.asarray(runs["unoptimised"]) / np.asarray(runs["optimised"]))))
            rows.append(row)
            table.add_row(f"{row['n']:,}", row["dtype"], f"{row['compile_optimised']:.2f}",
                          f"{row['compile_unoptimised']:.2f}", f"{row['run_optimised'] * 1e3:.2f}",
                          f"{row['run_unoptimised'] * 1e3:.2f}", f"{row['run_ratio']:.2f}")
    Console(width=150).print(table)
    return rows


def _with_rewriter(options):
    """``options`` with XLA's tree reduction rewriter back in (the passes it disables, but that one)."""
    passes = [p for p in options.get("xla_disable_hlo_passes", "").split(",") if p and p != "tree_reduction_rewriter"]
    out = {k: v for k, v in options.items() if k != "xla_disable_hlo_passes"}
    return {**out, "xla_disable_hlo_passes": ",".join(passes)} if passes else out


def reductions(sizes, rounds, repeats, first=10, last=40):
    """Paired compiles and later iterations of a direct call's options with and without XLA's tree
    reduction rewriter (the module's docstring)."""
    table = Table(title="XLA's tree reduction rewriter left out (as a direct call compiles) and back in: "
                        f"Rosenbrock, float64, {last} iterations")
    for col in ("n", "box", "windowed reductions (in / out)", "compile in (s)", "compile out (s)",
                "later us/iter in", "later us/iter out"):
        table.add_column(col, justify="right")
    rows = []
    for n in sizes:
        x0 = jnp.asarray(np.random.default_rng(0).uniform(-1.5, 0.7, n), jnp.float64)
        for box in (None, (-2.0, 0.8)):
            ours = _compile.options_for(x0)
            configs = {"out": ours, "in": _with_rewriter(ours)}

            def solve(k, box=box):
                return lambda x: qnjax.minimize(rosen, x, bounds=box, maxiter=k, gtol=0.0, ftol=0.0)

            compiles, programs = paired_compiles(solve(last), x0, configs, rounds)
            # (the paired compiles' last programs are the long runs; only the short ones compile here)
            runs = {(name, k): programs[name] if k == last else jax.jit(solve(k)).trace(x0).lower().compile(options)
                    for name, options in configs.items() for k in (first, last)}
            times = interleaved_times([functools.partial(program, x0) for program in runs.values()], reps=repeats)
            t = dict(zip(runs, np.asarray(times)))
            row = dict(n=int(n), bounded=box is not None)
            for name in configs:
                its = int(runs[(name, last)](x0).nit) - int(runs[(name, first)](x0).nit)
                row[f"windows_{name}"] = programs[name].as_text().count("reduce-window(")
                row[f"compile_{name}"] = float(np.median(compiles[name]))
                row[f"later_us_{name}"] = float(np.median(t[(name, last)] - t[(name, first)])) / max(its, 1) * 1e6
            rows.append(row)
            table.add_row(f"{row['n']:,}", "yes" if box else "", f"{row['windows_in']} / {row['windows_out']}",
                          f"{row['compile_in']:.2f}", f"{row['compile_out']:.2f}", f"{row['later_us_in']:.1f}",
                          f"{row['later_us_out']:.1f}")
    Console(width=150).print(table)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=None,
                        help="default 10 1e4 1e6 (--levels: 2 10 100 1000; --reductions: 100 1000 4000 10000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000, help="the batched row: jax.vmap over this many starts")
    parser.add_argument("--split-rounds", type=int, default=0, help="paired compiles with and without the split count")
    parser.add_argument("--levels", type=int, default=0, help="paired compiles with LLVM's optimisations on and off")
    parser.add_argument("--reductions", type=int, default=0,
                        help="paired compiles with XLA's tree reduction rewriter out (as now) and in")
    args = parser.parse_args(argv)
    if args.reductions:
        return reductions([int(n) for n in args.sizes or (100, 1000, 4000, 10000)], args.reductions, args.repeats)
    if args.split_rounds:
        return split_rounds(args.split_rounds)
    if args.levels:
        return levels([int(n) for n in args.sizes or (2, 10, 100, 1000)], args.levels, args.repeats)
    rows = [compare(int(n), dtype, args.repeats) for n in args.sizes or (10, 1e4, 1e6)
            for dtype in (jnp.float32, jnp.float64)]
    rows += [compare(10, jnp.float64, args.repeats, batch=args.batch)]
    table = Table(title=f"XLA:CPU options {_compile.OPTIONS}: 50 iterations, {jax.default_backend()}")
    for col in ("n", "batch", "dtype", "compile defaults (s)", "compile options (s)", "run defaults (ms)",
                "run options (ms)", "run options / defaults"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['n']:,}", str(r["batch"]), r["dtype"], f"{r['compile_defaults']:.2f}",
                      f"{r['compile_options']:.2f}", f"{r['run_defaults'] * 1e3:.2f}",
                      f"{r['run_options'] * 1e3:.2f}", f"{r['run_ratio']:.2f}")
    Console(width=150).print(table)
    return rows


if __name__ == "__main__":
    main()
