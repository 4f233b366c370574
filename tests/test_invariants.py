"""Invariants every solver configuration keeps, in both faces (one catalogue, ``SOLVERS``:
adding a configuration is one line).

* exact evaluation counts: ``nfev`` equals the evaluations counted on the host;
* the returned x and fun belong to the same point, never worse than x0, nothing NaN;
* types kept: the result's leaves have x0's dtypes; the Optax state keeps init's types;
* no recompilation for new data, a new starting point or new tolerances;
* success only with a stationary point (the gradient at the result is small in f's scale).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import COMPILES, X64, assert_same_types, searches_for_mode, x64_off_only

import qnjax

DT = jnp.float64 if X64 else jnp.float32
# With x64 on, both directions with the default search: each search's own types with x64 on
# are checked by test_linesearch.py::test_types, and the rest does not depend on the mode.
SOLVERS = {f"{direction}/{search}": dict(direction=direction, linesearch=qnjax.linesearch.get(search))
           for direction in ("compact", "two-loop") for search in searches_for_mode(qnjax.linesearch.REGISTRY)}
CALLS = [0]


def _tick():
    CALLS[0] += 1


def counted(fun):
    def wrapped(p, *args):
        jax.debug.callback(_tick)
        return fun(p, *args)

    return wrapped


def problem(p, w):
    """A pytree problem: Rosenbrock in one leaf, a weighted quadratic in another."""
    x, y = p["x"], p["y"]
    rosen = jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return rosen + jnp.sum(w * (y - 2.0) ** 2)


def start(shift=0.0):
    return {"x": jnp.asarray([-1.2, 1.0, -1.2, 1.0], DT) + shift, "y": jnp.zeros(3, DT) + shift}


WEIGHTS = jnp.asarray([1.0, 10.0, 100.0], DT)
F0_NOISE = 16 * float(jnp.finfo(DT).eps) * float(problem(start(), WEIGHTS))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_minimize_invariants(name):
    kw = SOLVERS[name]
    fun = counted(problem)
    jax.effects_barrier()
    CALLS[0] = 0
    res = qnjax.minimize(fun, start(), (WEIGHTS,), **kw)
    jax.effects_barrier()
    assert int(res.nfev) == CALLS[0]  # exact count
    assert jax.tree.map(lambda a: a.dtype, res.x) == jax.tree.map(lambda a: a.dtype, start())
    assert bool(res.success), res.message
    f0 = float(problem(start(), WEIGHTS))
    f = float(problem(res.x, WEIGHTS))
    assert np.isfinite(f) and float(res.fun) <= f0
    eps = float(jnp.finfo(DT).eps)
    assert abs(float(res.fun) - f) <= 16 * eps * max(f0, 1.0)  # x and fun: the same point
    g = jax.grad(problem)(res.x, WEIGHTS)
    gmax = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(g))
    assert gmax <= (1e-6 if X64 else 2e-2), gmax  # success: stationary
    # New data, a new start, new tolerances and line-search settings: no new compilation.
    x1, w1 = start(0.1), 2 * WEIGHTS  # (eager arithmetic compiles too: before counting)
    before = COMPILES.count
    again = qnjax.minimize(fun, x1, (w1,), ftol=1e-3, gtol=1e-6, maxiter=300, **kw)
    assert COMPILES.count == before
    assert bool(again.success)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_optax_face_invariants(name):
    kw = SOLVERS[name]
    opt = qnjax.lbfgs(linesearch=kw["linesearch"], direction=kw["direction"])
    fun = counted(lambda p: problem(p, WEIGHTS))
    vg = qnjax.value_and_grad_from_state(fun)

    @jax.jit
    def step(params, state):
        value, grad = vg(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    params = start()
    state0 = state = opt.init(params)
    last = np.inf
    jax.effects_barrier()
    CALLS[0] = 0
    for _ in range(400):
        params, state = step(params, state)
        assert float(state.value) <= last  # never a step that raises the loss
        last = float(state.value)
        # the state describes the params the user holds (to f's rounding at x0's scale: a
        # recompiled f rounds differently)
        assert float(state.value) == pytest.approx(float(problem(params, WEIGHTS)), rel=1e-5, abs=F0_NOISE)
        if int(state.status) != qnjax.Status.RUNNING:
            break
    jax.effects_barrier()
    assert CALLS[0] == int(state.nfev) + 1  # + the first evaluation, by value_and_grad_from_state
    assert_same_types(state0, state)
    assert qnjax.Status(int(state.status)).success, qnjax.Status(int(state.status))
    assert last < 1e-6 * float(problem(start(), WEIGHTS))



def _weighted(p, w):
    """A separable objective with no matrix product of its own."""
    return jnp.sum(w * (p - 1.0) ** 2 + 0.1 * p**4)


@x64_off_only  # (float32 is where precision matters; the lowered programs do not depend on the mode)
def test_every_product_at_full_precision():
    """Every matrix product the solvers compile asks for full precision. JAX's default for
    float32 products on NVIDIA GPUs from Ampere on allows TF32 (11 significant bits), and on
    TPUs bfloat16 passes: the memory's inner products, the Gram matrices and the Cauchy point
    would lose digits there (``qnjax._tree``). Checked in the lowered programs of both faces,
    L-BFGS-B, and derivatives of the solution (implicit with cg and dense, and unrolled), with
    leaves above ``_memory.SMALL`` (whose products with the memory are dots) and small ones."""
    big, small = jnp.linspace(1.0, 2.0, 5000, dtype=DT), jnp.linspace(1.0, 2.0, 4, dtype=DT)
    tx = qnjax.lbfgs()

    def optax_face(w):
        updates, _ = tx.update(w, tx.init(w), w, value=_weighted(w, w), grad=w, value_fn=_weighted, w=w)
        return updates

    def solution(w, **kw):
        return qnjax.minimize(_weighted, jnp.zeros_like(w), (w,), **kw)

    dense = qnjax.ImplicitDiff(solver="dense")
    programs = {
        "compact": (lambda w: solution(w).x, big),
        "bounded": (lambda w: solution(w, bounds=(0.0, 0.5)).x, big),
        "bounded, small": (lambda w: solution(w, bounds=(0.0, 0.5)).x, small),
        "optax face": (optax_face, big),
        "implicit": (jax.grad(lambda w: solution(w).fun), big),
        "bounded implicit": (jax.grad(lambda w: solution(w, bounds=(0.0, 0.5)).fun), big),
        "dense": (jax.jacobian(lambda w: solution(w, implicit_diff=dense).x), small),
        "unrolled": (jax.jacobian(lambda w: solution(w, adjoint="unrolled", maxiter=2).x), small),
    }
    found = 0
    for name, (program, w) in programs.items():
        dots = [line for line in jax.jit(program).lower(w).as_text().splitlines() if "dot_general" in line]
        loose = [d for d in dots if "HIGHEST" not in d]
        assert not loose, (name, loose[:2])
        found += len(dots)
    assert found > 0  # (the check above saw products: it can fail)
