"""The solver's own cost per iteration against the memory-bandwidth floor, at large n, on any device.

`python benchmarks/floor.py [--sizes 1e6,1e7,1e8] [--dtypes float32,float64] [--peers all] [--out DIR]`
times, side by side in one run, qnjax's compact memory (the default), its two-loop
recursion and `optax.lbfgs` (with `--peers all` also jaxopt.LBFGS and optimistix.LBFGS),
each for the same fixed number of iterations with every stopping test off, on the
default device (a GPU when there is one). Per solver and size: ms per iteration, the
overhead beyond the evaluations (ms/iter minus evaluations per iteration x the time of
one value-and-grad, as `benchmarks/scale.py` part 1, whose code it uses), and that
overhead over the floor

    floor = (4 m + 8) n itemsize / bandwidth

(m = 10: the memory read twice, 2 m vectors each time, and the few vectors of the step
and the line search), with the main-memory bandwidth measured in the same run (the best
of a stream and a matrix-vector product over 512 MiB, beyond the caches: at n = 1e6 the
solvers' vectors partly stay in cache, so their overhead can fall below this floor).
On a CPU the default sizes are small (1e3, 1e4: a smoke test; `make bench` passes 1e6
and 1e7); on a GPU they are 1e6, 1e7 and 1e8.
Prints a table and writes `<out>/floor.json`. It reports the ratios; it asserts nothing.
"""

import argparse
import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # before any array: the float64 rows need it

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best_of  # noqa: E402
from scale import SOLVERS, available, console, per_iteration, table  # noqa: E402

MEMORY = 10  # every solver's default memory size


def bandwidth(dtype, working_set=2**29):
    """Bytes per second read and written from main memory, the best of two kernels over
    arrays far larger than the caches (``working_set`` bytes): a stream z = a x + y and a
    matrix-vector product (11, N) @ (N,), the shape of the products with the memory (XLA
    runs the second on all cores)."""
    item = np.dtype(dtype).itemsize
    n = working_set // (3 * item)
    x, y = jnp.linspace(0.0, 1.0, n, dtype=dtype), jnp.ones(n, dtype)
    stream = 3 * n * item / best_of(jax.jit(lambda x, y: 1.0001 * x + y), x, y, reps=5)
    del x, y
    cols = working_set // ((MEMORY + 1) * item)
    mat, vec = jnp.ones((MEMORY + 1, cols), dtype), jnp.ones(cols, dtype)
    matvec = mat.size * item / best_of(jax.jit(jnp.dot), mat, vec, reps=5)
    return max(stream, matvec)


def floor_ms(n, dtype, bytes_per_s):
    return (4 * MEMORY + 8) * n * np.dtype(dtype).itemsize / bytes_per_s * 1e3


def main(argv=None):
    gpu = jax.default_backend() != "cpu"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e6,1e7,1e8" if gpu else "1e3,1e4")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--iters", type=int, default=20, help="iterations per timed solve (default 20)")
    p.add_argument("--peers", choices=("optax", "all"), default="optax")
    p.add_argument("--out", type=Path, default=Path("bench-results/full"))
    ns = p.parse_args(argv)
    sizes = [int(float(s)) for s in ns.sizes.split(",")]
    dtypes = ns.dtypes.split(",")
    names = list(SOLVERS) if ns.peers == "all" else ["qnjax compact", "qnjax two-loop", "optax"]
    notice = lambda m: console.print(m, style="yellow", markup=False, highlight=False)  # noqa: E731
    solvers = {k: v for k, v in available(notice).items() if k in names}
    device = jax.devices()[0]
    console.print(f"{device.platform} ({getattr(device, 'device_kind', '')}), jax {jax.__version__}",
                  markup=False, highlight=False)

    rows = per_iteration(solvers, sizes, dtypes, lambda n, dtype: ns.iters)
    bw = {d: bandwidth(d) for d in dtypes}
    for r in rows:
        b = bw[r["dtype"]]
        r.update(bandwidth_gb_s=b / 1e9, floor_ms=floor_ms(r["n"], r["dtype"], b))
        if "overhead_ms" in r:
            r["overhead_over_floor"] = r["overhead_ms"] / r["floor_ms"]
    console.print(table(f"cost per iteration beyond the evaluations, against the bandwidth floor (m = {MEMORY}), "
                        f"{device.platform}", rows, [
                            ("dtype", "dtype", None), ("n", "n", ","), ("solver", "solver", None),
                            ("ms/iter", "ms_per_iter", ".3f"), ("overhead ms/iter", "overhead_ms", ".3f"),
                            ("GB/s", "bandwidth_gb_s", ".1f"), ("floor ms", "floor_ms", ".3f"),
                            ("overhead / floor", "overhead_over_floor", ".2f"), ("/ optax", "vs_optax", ".2f"),
                            ("error", "error", None)]))
    ns.out.mkdir(parents=True, exist_ok=True)
    path = ns.out / "floor.json"
    path.write_text(json.dumps(dict(rows=rows, device=str(device), backend=jax.default_backend(),
                                    memory_size=MEMORY, iters=ns.iters, argv=sys.argv[1:] if argv is None else argv),
                               indent=1))
    console.print(f"wrote {path}", markup=False, highlight=False)
    return rows


if __name__ == "__main__":
    main()
