"""Sharded parameters on 8 devices (run by tests/test_sharding.py in a subprocess that
starts JAX with 8 CPU devices; skipped in the main run, which has one).

Checks, for both faces, 1-D and 2-D meshes and a pytree mixing sharded and replicated
leaves (float32 with x64 off, float64 and mixed with x64 on, so ``make test`` covers
both): every state leaf has its parameter's sharding (the memory buffers stacked with
the history axis unsharded) when ``init`` runs outside ``jit`` and after compiled
updates; ``minimize`` returns x, grad and the state with the input shardings; the
results are the problem's known minimiser (unbounded) or satisfy the bounded
first-order conditions recomputed from scratch; and the compiled programs gather no
array across devices and have a fixed number of all-reduces, the same for every
memory size and n.
"""

import re
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import COMPILES, X64, make_step
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import qnjax
from qnjax import _cauchy, _reduced, _segments

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="run by tests/test_sharding.py with 8 CPU devices")

DTYPES = {"f64": {"w": jnp.float64, "v": jnp.float64, "c": jnp.float64},
          "mixed": {"w": jnp.float32, "v": jnp.float64, "c": jnp.float32}} if X64 else \
    {"f32": {"w": jnp.float32, "v": jnp.float32, "c": jnp.float32}}
SHAPES = {"w": (8, 16), "v": (64,), "c": (3,)}


def mesh_and_specs(kind):
    devices = np.array(jax.devices()[:8])
    if kind == "1d":
        return Mesh(devices, ("a",)), {"w": P(None, "a"), "v": P("a"), "c": P()}
    return Mesh(devices.reshape(4, 2), ("a", "b")), {"w": P("a", "b"), "v": P(("a", "b")), "c": P()}


def problem(kind, dtypes, n_v=64):
    """Sharded zeros and a loss whose minimiser is ``target``: weighted squares and quartics
    of x - target plus a coupling term (sum of all x - target)^2, so the Hessian is not
    diagonal and every iteration needs reductions across devices."""
    mesh, specs = mesh_and_specs(kind)
    shapes = dict(SHAPES, v=(n_v,))
    target = {k: jnp.linspace(-1.0, 1.0, int(np.prod(s)), dtype=dtypes[k]).reshape(s) for k, s in shapes.items()}
    params = {k: jax.device_put(jnp.zeros(s, dtypes[k]), NamedSharding(mesh, specs[k])) for k, s in shapes.items()}

    def loss(p):
        total, coupling = 0.0, 0.0
        for k in sorted(p):
            e = (p[k] - target[k]).astype(jnp.float32 if dtypes[k] == jnp.float32 and not X64 else p[k].dtype)
            w = 1.0 + jnp.arange(e.size, dtype=e.dtype).reshape(e.shape) / e.size
            total = total + jnp.sum(w * e * e + 0.05 * e ** 4)
            coupling = coupling + jnp.sum(e)
        return total + 0.1 * coupling ** 2

    return mesh, specs, params, target, loss


def stacked(sharding):
    return NamedSharding(sharding.mesh, P(None, *sharding.spec))


def assert_state_sharded(state, params):
    """Every state leaf has its parameter's sharding, memory stacked, scalars replicated."""
    for name in ("params", "grad"):
        for got, p in zip(jax.tree.leaves(getattr(state, name)), jax.tree.leaves(params)):
            assert got.sharding.is_equivalent_to(p.sharding, got.ndim), (name, got.sharding, p.sharding)
    for got, p in zip(jax.tree.leaves(state.memory.pairs), jax.tree.leaves(params)):
        assert got.sharding.is_equivalent_to(stacked(p.sharding), got.ndim), (got.sharding, p.sharding)
    mesh = jax.tree.leaves(params)[0].sharding.mesh
    for leaf in jax.tree.leaves((state.value, state.memory.gram, state.memory.index, state.count, state.status)):
        assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, P()), leaf.ndim), leaf.sharding


def scoped_collectives(compiled):
    """[(op, elements moved, inside ``_segments.GATHERED``)] of a compiled program's
    cross-device operations. Inside: named in that scope, or in a computation (a branch)
    that holds operations of the scope (XLA names a collective it inserts for an argument
    after the argument)."""
    out, pending, scoped = [], [], False
    for line in compiled.as_text().splitlines() + [""]:
        if not line.startswith(" "):  # a computation's first or last line
            out += [(op, size, named or scoped) for op, size, named in pending]
            pending, scoped = [], False
            continue
        name = re.search(r'op_name="([^"]+)"', line)
        named = bool(name) and f"/{_segments.GATHERED}/" in name.group(1)
        scoped = scoped or named
        found = re.match(r"\s*\S+ = (.+?) (all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)"
                         r"(?:-start)?\(", line)
        if found:
            size = max([int(np.prod([int(d) for d in dims.split(",") if d]))
                        for dims in re.findall(r"\[([\d,]*)\]", found.group(1))] + [0])
            pending.append((found.group(2), size, named))
    return out


def collectives(compiled):
    """{op: count} of the cross-device operations in a compiled program, and the largest
    number of elements any of them moves."""
    ops = scoped_collectives(compiled)
    return Counter(op for op, _, _ in ops), max([size for _, size, _ in ops] + [0])


def close_to(x, target, dtypes, factor=1e3):
    for k in x:
        tol = factor * float(jnp.finfo(dtypes[k]).eps) ** 0.5
        np.testing.assert_allclose(np.asarray(x[k], np.float64), np.asarray(target[k], np.float64), atol=tol)


def until_solved(step, p, state, limit):
    """The Optax face stepped until its status says solved, ``limit`` steps at most."""
    for _ in range(limit):
        p, state = step(p, state)
        if qnjax.Status(int(state.status)).success:
            break
    return p, state


def assert_bounded_first_order(x, loss, lo, hi, dtypes):
    """x in [lo, hi] and its projected gradient, recomputed from scratch, below tolerance."""
    g = jax.grad(loss)(x)
    for k in x:
        xk = np.asarray(x[k], np.float64)
        assert np.all(xk >= lo) and np.all(xk <= hi)
        moved = np.clip(xk - np.asarray(g[k], np.float64), lo, hi) - xk
        tol = 1e3 * float(jnp.finfo(dtypes[k]).eps) ** 0.5
        assert np.max(np.abs(moved)) <= tol, (k, np.max(np.abs(moved)))


# Each mesh once, the dtype cases shared between them (CI time: every case is a compilation).
CASES = [("1d", list(DTYPES)[0]), ("2d", list(DTYPES)[-1])]


@pytest.mark.parametrize("kind, dt", CASES)
def test_minimize_keeps_shardings_and_finds_the_minimiser(kind, dt):
    mesh, specs, params, target, loss = problem(kind, DTYPES[dt])
    compiled = jax.jit(lambda p: qnjax.minimize(loss, p)).lower(params).compile()
    res = compiled(params)
    assert bool(res.success), res.status
    close_to(res.x, target, DTYPES[dt])
    for tree in (res.x, res.grad):
        for got, p in zip(jax.tree.leaves(tree), jax.tree.leaves(params)):
            assert got.sharding.is_equivalent_to(p.sharding, got.ndim)
            assert got.dtype == p.dtype
    assert_state_sharded(res.state, params)
    ops, largest = collectives(compiled)
    assert set(ops) == {"all-reduce"}, ops  # nothing is gathered
    assert largest <= 22, largest  # and what is reduced is small: 2 (m + 1) numbers (S^T q, Y^T q) at most


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_optax_face_state_is_created_and_kept_where_the_parameters_live(kind):
    dtypes = next(iter(DTYPES.values()))
    mesh, specs, params, target, loss = problem(kind, dtypes)
    opt = qnjax.lbfgs()
    state = opt.init(params)  # outside jit
    assert_state_sharded(state, params)
    before = COMPILES.count
    assert_state_sharded(opt.init(params), params)
    assert COMPILES.count == before  # a second init reuses the first one's program
    p, state = until_solved(jax.jit(make_step(opt, loss)), params, state, 200)
    assert qnjax.Status(int(state.status)).success, qnjax.Status(int(state.status))
    close_to(p, target, dtypes)
    assert_state_sharded(state, params)
    for got, ref in zip(jax.tree.leaves(p), jax.tree.leaves(params)):
        assert got.sharding.is_equivalent_to(ref.sharding, got.ndim)


def test_bounded_solves_keep_shardings_and_satisfy_the_first_order_conditions():
    dtypes = next(iter(DTYPES.values()))
    mesh, specs, params, target, loss = problem("1d", dtypes)
    lower = {k: jax.device_put(jnp.full(v.shape, -0.5, v.dtype), v.sharding) for k, v in params.items()}
    bounds = (lower, 0.25)

    res = qnjax.minimize(loss, params, bounds=bounds)
    assert bool(res.success), res.status
    assert_state_sharded(res.state, params)
    for k in params:
        assert res.state.bounds.lower[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)

    opt = qnjax.lbfgs(bounds=bounds)
    state = opt.init(params)
    assert_state_sharded(state, params)
    for k in params:
        assert state.bounds.lower[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim)
    step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
        opt.update(jax.grad(loss)(p), s, p, value=loss(p), value_fn=loss)))
    p, state = until_solved(step, params, state, 200)
    assert_state_sharded(state, params)
    for x in (res.x, p):
        assert_bounded_first_order(x, loss, -0.5, 0.25, dtypes)


@pytest.mark.parametrize("face,caps", [("minimize", None), ("optax", None), ("minimize", (256, 1024))])
def test_large_bounded_iterations_gather_only_where_the_variables_are_put_in_one_order(face, caps, monkeypatch):
    """Beyond ``_cauchy.SORT_LIMIT`` variables L-BFGS-B's iteration is per leaf: the only
    gathers are in the branches that put every variable in one order (the Cauchy point
    beyond its first breakpoint, the free set's rows when it changed), which a settled
    iteration does not take, and even there a vector of the variables, never the memory
    (its rows are gathered by index: each device's, summed across devices); everything
    else reduces a few numbers across devices (at most the 3 (m + 1)^2 of the free
    variables' Gram matrices), in as many all-reduces for every memory size and n. The
    result satisfies the bounded first-order conditions. ``caps``: the free set's two gather
    caps (``_reduced``), small enough that both gathering branches are compiled here."""
    if caps is not None:
        monkeypatch.setattr(_reduced, "CHANGES", caps[0])
        monkeypatch.setattr(_reduced, "MANY_CHANGES", caps[1])
    dtypes = next(iter(DTYPES.values()))
    n_v = 8 * (_cauchy.SORT_LIMIT // 8)  # with w and c: more than SORT_LIMIT variables
    mesh, specs, params, target, loss = problem("1d", dtypes, n_v=n_v)
    assert sum(v.size for v in params.values()) > _cauchy.SORT_LIMIT
    m, lo, hi = 5, -0.5, 0.25
    if face == "minimize":
        compiled = jax.jit(lambda p: qnjax.minimize(loss, p, bounds=(lo, hi), memory_size=m)).lower(params).compile()
        res = compiled(params)
        assert bool(res.success), res.status
        x = res.x
        assert_state_sharded(res.state, params)
    else:
        opt = qnjax.lbfgs(bounds=(lo, hi), memory_size=m)
        state = opt.init(params)
        compiled = jax.jit(make_step(opt, loss)).lower(params, state).compile()
        x, state = until_solved(compiled, params, state, 300)
        assert qnjax.Status(int(state.status)).success, qnjax.Status(int(state.status))
        assert_state_sharded(state, params)
    ops = scoped_collectives(compiled)
    if face == "optax":  # the reductions outside the scope: as many for another memory size and n
        other = qnjax.lbfgs(bounds=(lo, hi), memory_size=m - 2)
        _, _, p2, _, loss2 = problem("1d", dtypes, n_v=2 * n_v)
        again = scoped_collectives(jax.jit(make_step(other, loss2)).lower(p2, other.init(p2)).compile())
        assert Counter(op for op, _, scoped in ops if not scoped) == Counter(
            op for op, _, scoped in again if not scoped), (ops, again)
    gathers = [op for op in ops if op[0] != "all-reduce"]
    assert gathers and all(scoped for _, _, scoped in gathers), gathers  # (the scope is found)
    outside = [size for op, size, scoped in ops if not scoped]
    assert outside and max(outside) <= 3 * (m + 1) ** 2, ops
    n = sum(v.size for v in params.values())
    assert max(size for _, size, _ in gathers) <= n + 8, gathers  # vectors (padded per device), never the memory
    assert_bounded_first_order(x, loss, lo, hi, dtypes)


def test_collectives_per_update_do_not_grow_with_memory_or_size():
    """One compiled update of the Optax face (a full iteration, line search included):
    no gathers, and the same all-reduces for every memory size and n."""
    dtypes = next(iter(DTYPES.values()))
    counts = {}
    for n_v, m in ((64, 3), (64, 10), (1024, 3)):
        mesh, specs, params, target, loss = problem("1d", dtypes, n_v=n_v)
        opt = qnjax.lbfgs(memory_size=m)
        counts[n_v, m] = collectives(jax.jit(make_step(opt, loss)).lower(params, opt.init(params)).compile())
    assert len({frozenset(ops.items()) for ops, _ in counts.values()}) == 1, counts
    ops, largest = counts[64, 3]
    assert set(ops) == {"all-reduce"} and ops["all-reduce"] <= 12, ops
    assert all(largest <= 2 * (m + 1) for (_, m), (_, largest) in counts.items()), counts


@pytest.mark.parametrize("face", ["minimize", "optax"])
def test_projected_bounded_iterations_gather_nothing(face):
    """``bounds_method="projected"`` (``qnjax._projected``) has no Cauchy point: beyond
    ``_cauchy.SORT_LIMIT`` variables too, its compiled iteration moves nothing across
    devices but all-reduces of a few numbers (the products with the memory, 2 (m + 1) a
    vector, and inner products), in both faces, and keeps every state leaf sharded; the
    result satisfies the bounded first-order conditions."""
    dtypes = next(iter(DTYPES.values()))
    n_v = 8 * (_cauchy.SORT_LIMIT // 8)
    mesh, specs, params, target, loss = problem("1d", dtypes, n_v=n_v)
    m, lo, hi = 5, -0.5, 0.25
    if face == "minimize":
        compiled = jax.jit(lambda p: qnjax.minimize(loss, p, bounds=(lo, hi), memory_size=m,
                                                    bounds_method="projected")).lower(params).compile()
        res = compiled(params)
        assert bool(res.success), res.status
        x = res.x
        assert_state_sharded(res.state, params)
    else:
        opt = qnjax.lbfgs(bounds=(lo, hi), memory_size=m, bounds_method="projected")
        state = opt.init(params)
        compiled = jax.jit(make_step(opt, loss)).lower(params, state).compile()
        x, state = until_solved(compiled, params, state, 300)
        assert qnjax.Status(int(state.status)).success, qnjax.Status(int(state.status))
        assert_state_sharded(state, params)
    ops, largest = collectives(compiled)
    assert set(ops) == {"all-reduce"}, ops  # nothing gathered, in any branch
    assert largest <= 2 * (m + 1), largest
    assert_bounded_first_order(x, loss, lo, hi, dtypes)
