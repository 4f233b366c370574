"""The memory's products equal the dense BFGS inverse-Hessian recursion.

The memory is driven exactly as the solver drives it (``push`` the tentative pair,
compute the direction, record the update taken), along L-BFGS iterations on a
quadratic with random step sizes, so the vector-free bookkeeping of the Gram
matrices is exercised; the buffer wraps (k > m). Both products (compact and
two-loop) are compared with N&W eq. 7.19 over the stored pairs, recomputed in
float64 from the stored vectors, and the Gram matrices with S^T Y etc."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, dense_h, spd

import qnjax
from qnjax import _compact, _memory, _memory_update, _probe, _products, _tree, _two_loop

DT = jnp.float64 if X64 else jnp.float32
CT = jnp.complex128 if X64 else jnp.complex64
RTOL = 1e-10 if X64 else 3e-4
METHODS = {"compact": _compact, "two-loop": _two_loop}


def as_tree(v):
    """A flat vector as a pytree: a (2, 2) leaf, a complex leaf (2 numbers) and a 0-d leaf."""
    c = jnp.asarray(v[4:5] + 1j * v[5:6], CT)
    return {"a": jnp.asarray(v[:4].reshape(2, 2), DT), "c": c, "z": jnp.asarray(v[6], DT)}


def as_vec(tree):
    c = np.asarray(tree["c"])
    return np.concatenate([np.ravel(tree["a"]), c.real, c.imag, np.ravel(tree["z"])]).astype(np.float64)


def drive(method, hess, m, k, rng, whole=False, probes=()):
    """k L-BFGS iterations on f = x^T hess x / 2 with random steps, the memory driven as
    the solver drives it; returns the memory, the last q and H q computed from it.
    ``whole``: as ``minimize`` does, each pair is recorded whole after its step, y with
    its products (<s, y> and <s, s> from the slopes along d and <d, d>: ``_memory_update.pair``);
    else as the Optax face does, ``push`` takes the difference of the q it is given.
    ``probes`` (with ``whole``): the iterations whose pair is a probe's (``_probe``): stored,
    the point (and q) staying."""
    n = hess.shape[0]
    mem = _memory.init(as_tree(np.zeros(n)), m, DT, compact=method == "compact")
    push = jax.jit(lambda mem, q: _memory_update.push(mem, None if whole else q)[0])
    product = jax.jit(METHODS[method].inverse_hessian)
    record = jax.jit(_memory_update.record_step)

    @jax.jit
    def record_whole(mem, u, t, q, q_new, d):
        slope0, slope, dd = _tree.inners([(q, d), (q_new, d), (d, d)], DT)
        pair = _memory_update.pair(u, q, q_new, t, slope0, slope, dd, True, DT)
        return _memory_update.record_step(mem, u, -t, **pair)

    later = jax.jit(lambda mem, y: _probe.complete_later(mem, jnp.asarray(True), lambda: y, None)[0])
    q = rng.normal(size=n)
    for it in range(k + 1):
        mem = push(mem, as_tree(q))
        hq, mem = product(mem, as_tree(q))
        if it == k:
            return mem, q, as_vec(hq)
        t = rng.uniform(0.3, 1.5)
        u = as_vec(as_tree(-t * as_vec(hq)))  # the update as stored (rounded to the leaves' dtypes)
        q_new = q + hess @ u
        if whole:
            d = jax.tree.map(lambda a: -a, hq)
            if it in probes:
                mem = later(mem, as_tree(q_new - q))
            mem = record_whole(mem, as_tree(u), jnp.asarray(t, DT), as_tree(q), as_tree(q_new), d)
        else:
            mem = record(mem, as_tree(u), -t)
        if it not in probes:
            q = q_new


@pytest.mark.parametrize("whole", [False, True, "probes"], ids=["differences", "whole", "probes"])
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("k, cond", [(0, 10.0), (1, 10.0), (3, 10.0), (5, 10.0), (9, 10.0), (9, 1e6)])
def test_products_match_dense_bfgs(method, k, cond, whole):
    """Also with probes (``_probe``: pairs from a point that stays, at three of the iterations):
    the compact form's columns for them come from the recorded products lowered by the probe's
    own, and a mistake there shows in R^-1, Y^T Y and H q."""
    m, n = 5, 7
    rng = np.random.default_rng(k)
    hess = spd(rng, n, cond)
    probes = {1, 2, 6} if whole == "probes" else ()
    mem, q, hq = drive(method, hess, m, k, rng, bool(whole), probes)
    # The stored pairs, oldest first, read back from the ring in float64.
    count = int(mem.count)
    assert count == min(k, m)
    slots = [int(_memory.slot(mem, j)) for j in range(m - count, m)]
    s_buf = [as_vec(jax.tree.map(lambda b, i=i: b[i], mem.s)) for i in slots]
    y_buf = [as_vec(jax.tree.map(lambda b, i=i: b[i], mem.y)) for i in slots]
    pairs = list(zip(s_buf, y_buf))
    gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
    want = dense_h(pairs, n, gamma) @ q
    np.testing.assert_allclose(hq, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
    if pairs:
        # The small matrices are those of the stored vectors (slot order): <s_i, y_i>, and
        # for the compact direction Y^T Y and the inverse of R (chronological upper triangle
        # of S^T Y); the two-loop recursion keeps no other.
        S, Y = np.stack(s_buf), np.stack(y_buf)
        g = mem.gram
        np.testing.assert_allclose(np.asarray(g.d)[slots], np.sum(S * Y, axis=1), rtol=RTOL)
        assert (g.yy is None and g.ri is None) == (method == "two-loop") and g.sy is None and g.ss is None
        if method == "compact":
            idx = np.ix_(slots, slots)
            scale = np.abs(Y @ Y.T).max()
            np.testing.assert_allclose(np.asarray(g.yy)[idx], Y @ Y.T, atol=RTOL * 10 * scale)
            r_inv = np.linalg.inv(np.triu(S @ Y.T))
            np.testing.assert_allclose(np.asarray(g.ri)[idx], r_inv, atol=RTOL * 10 * np.abs(r_inv).max())


@pytest.mark.parametrize("whole", [False, True], ids=["differences", "whole"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_secant_equation_on_the_newest_pair(method, whole):
    """H y = s for the newest pair (the defining property of the BFGS update)."""
    m, n = 4, 7
    rng = np.random.default_rng(7)
    hess = spd(rng, n, 100.0)
    mem, _, _ = drive(method, hess, m, 6, rng, whole)
    newest = int(_memory.slot(mem, m - 1))
    s = as_vec(jax.tree.map(lambda b: b[newest], mem.s))
    y = as_vec(jax.tree.map(lambda b: b[newest], mem.y))
    hy = as_vec(METHODS[method].inverse_hessian(mem, as_tree(y))[0])
    np.testing.assert_allclose(hy, s, rtol=RTOL * 10, atol=RTOL * 10 * np.abs(s).max())


def test_curvature_guard_skips_bad_pairs():
    m = 4
    mem = _memory.init(jnp.zeros(3, DT), m, DT)
    s = jnp.asarray([1.0, 0.0, 0.0], DT)
    q_old = jnp.zeros(3, DT)
    for y, ok in [([-1.0, 0, 0], False), ([0.0, 1, 0], False), ([np.nan, 0, 0], False), ([2.0, 0, 0], True)]:
        with_q = mem._replace(pairs=mem.pairs.at[m + 1 + mem.head].set(q_old))  # what push left in the free slot
        tentative = _memory_update.record_step(with_q, s, 1.0)
        new, stored = _memory_update.push(tentative, q_old + jnp.asarray(y, DT))
        assert bool(stored) == ok
        if not ok:
            assert int(new.count) == int(mem.count) and int(new.head) == int(mem.head)
        mem = new
    assert int(mem.count) == 1
    newest = int(_memory.slot(mem, m - 1))
    assert float(mem.gram.d[newest]) == pytest.approx(2.0) and float(mem.gram.ri[newest, newest]) == pytest.approx(0.5)
    assert float(mem.gamma) == pytest.approx(0.5)
    # Without a tentative pair (nothing recorded since the last push) nothing is stored.
    assert not bool(_memory_update.push(mem, q_old)[1])


def test_low_precision_leaves_accumulate_in_scalar_dtype():
    mem = _memory.init({"h": jnp.zeros(4, jnp.bfloat16)}, 3, jnp.float32)
    assert mem.s["h"].dtype == jnp.bfloat16 and {a.dtype for a in jax.tree.leaves(mem.gram)} == {jnp.dtype(jnp.float32)}
    q = {"h": jnp.full(4, 0.1, jnp.bfloat16)}
    mem, stored = _memory_update.push(mem, q)  # nothing to store yet; q goes to the free slot
    assert not bool(stored)
    hq, mem = _compact.inverse_hessian(mem, q)
    mem = _memory_update.record_step(mem, q, 1.0)
    q_new = {"h": jnp.full(4, 0.2, jnp.bfloat16)}  # y = s = 0.1: H y = s, so H q_new = 0.2
    mem, stored = _memory_update.push(mem, q_new)
    assert bool(stored) and {a.dtype for a in jax.tree.leaves(mem.gram)} == {jnp.dtype(jnp.float32)}
    d, _ = _compact.inverse_hessian(mem, q_new)  # the product after a push is with the q pushed
    assert d["h"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(d["h"], np.float32), 0.2, rtol=1e-2)
    assert int(_memory.clear(mem).count) == 0


def test_a_whole_pair_of_narrow_leaves_has_the_products_of_its_stored_vectors():
    """``minimize`` records a pair whole with its products: from the slopes where the leaves
    are as wide as the scalar dtype, and of the vectors as stored (rounded to bfloat16) where
    they are narrower, so the small matrices describe the buffer's pairs."""
    rng = np.random.default_rng(3)
    leaf = lambda v: jnp.asarray(v, jnp.float32).astype(jnp.bfloat16)  # noqa: E731
    grad, new_grad, d = ({"h": leaf(rng.normal(size=64))} for _ in range(3))
    t = jnp.asarray(0.7, jnp.float32)
    u = {"h": (t * d["h"].astype(jnp.float32)).astype(jnp.bfloat16)}
    slope0, slope, dd = _tree.inners([(grad, d), (new_grad, d), (d, d)], jnp.float32)
    pair = _memory_update.pair(u, grad, new_grad, t, slope0, slope, dd, True, jnp.float32)
    mem = _memory_update.record_step(_memory.init(u, 3, jnp.float32), u, -t, **pair)
    s, y = (np.asarray(b["h"][0], np.float64) for b in (mem.s, mem.y))
    assert mem.pairs["h"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, np.asarray(new_grad["h"] - grad["h"], np.float64))  # rounded to bfloat16
    assert not np.allclose(y, np.asarray(new_grad["h"], np.float64) - np.asarray(grad["h"], np.float64), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(mem.scalars[2:]), [s @ y, y @ y, s @ s], rtol=1e-5)
    # Not moved: y is zero (the state's new gradient is the old one), and so are the products.
    stay = _memory_update.pair(u, grad, grad, t, slope0, slope, dd, False, jnp.float32)
    assert not np.any(np.asarray(stay["y"]["h"], np.float32)) and float(stay["prods"][0]) == 0.0


def test_step_retries_along_steepest_descent_after_a_bad_memory():
    """A memory whose direction goes uphill: the step does not move, drops the memory
    (a retry, status RUNNING); the next step searches along -g and moves."""
    from qnjax._objective import Objective

    fun = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    x = jnp.zeros(3, DT)
    solver = qnjax.LBFGS(memory_size=2, linesearch=qnjax.linesearch.Zoom())
    objective = Objective.build(fun, x, (), DT)
    evaluate = lambda p: objective(p, ())  # noqa: E731
    f0, g0, _ = evaluate(x)
    state = solver.init(x, f0, g0)
    # One stored pair with y = -s (bypassing the curvature guard): H = P - s s^T / 3 with P
    # the projector orthogonal to s, and g is parallel to s, so d = -H g goes uphill.
    s = jnp.ones(3, DT)
    m = 2
    g = state.memory.gram
    h = 0
    gram = g._replace(d=g.d.at[h].set(-3.0), yy=g.yy.at[h, h].set(3.0), ri=g.ri.at[h, h].set(-1 / 3))
    mem = state.memory._replace(pairs=state.memory.pairs.at[h].set(s).at[m + 1 + h].set(-s), gram=gram,
                                scalars=state.memory.scalars.at[:2].set(jnp.asarray([1.0, 0.0], DT)),
                                index=jnp.asarray([1, 1, 0], jnp.int32))
    assert int(_memory.slot(mem, m - 1)) == h
    state = state._replace(memory=mem)
    d, _ = solver.direction(mem, g0, 1.0)
    assert float(jnp.dot(g0, d)) > 0  # the planted direction is not a descent direction
    step = jax.jit(lambda st: solver.step(st, evaluate)[1])
    first = step(state)
    assert int(first.status) == qnjax.Status.RUNNING and int(first.count) == 0
    np.testing.assert_array_equal(first.params, x)
    assert int(first.memory.count) == 0 and int(first.nfev) == 0
    second = step(first)
    assert int(second.count) == 1 and float(second.value) < float(f0)


def test_clear_then_restore_gives_back_the_same_memory():
    """``restore`` undoes ``clear`` (also a second clear while empty, as a failed retry
    does), and only where asked: the products are the ones before the clear."""
    rng = np.random.default_rng(3)
    mem, q, hq = drive("compact", spd(rng, 7, 100.0), 4, 6, rng)
    count = int(mem.count)
    assert count == 4
    cleared = _memory.clear(_memory.clear(mem), True)
    assert int(cleared.count) == 0 and int(_memory.restore(cleared, False).count) == 0
    back = _memory.restore(cleared)
    assert int(back.count) == count and int(back.head) == int(mem.head)
    np.testing.assert_allclose(as_vec(_compact.inverse_hessian(back, as_tree(q))[0]), hq, rtol=RTOL,
                               atol=RTOL * np.abs(hq).max())
    assert int(_memory.restore(mem).count) == count  # nothing to restore: unchanged


def test_a_run_stopped_after_a_failed_retry_keeps_its_pairs():
    """Run to working precision (gtol = ftol = 0) on a quadratic: the last search along the
    quasi-Newton direction fails, the retry along -g drops the pairs and fails too, and
    the final state has them back, so ``hess_inv`` is the memory's H, close to A^-1. (From
    x0 = 0 the float64 run can land on the minimum exactly, g = 0, and stop with GTOL, as
    it does compiled without LLVM's optimisations; from this start it reaches working
    precision in both builds and both precisions.)"""
    a = jnp.asarray([1.0, 3.0, 7.0], DT)
    res = qnjax.minimize(lambda x: 0.5 * jnp.sum(a * x * x) - jnp.sum(x), jnp.asarray([2.0, 0.0, -1.0], DT),
                         gtol=0.0, ftol=0.0, method="L-BFGS-B")
    assert qnjax.Status(int(res.status)) in (qnjax.Status.PRECISION, qnjax.Status.LINESEARCH_FAILED), res.message
    assert int(res.state.memory.count) > 0
    np.testing.assert_allclose(res.hess_inv.todense() * np.asarray(a)[None, :], np.eye(3), atol=0.05)


def _product_operands(seed=0):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(4, 11, 3, 2)), DT)  # a batch of 4 (11, 3, 2) stacks
    v = jnp.asarray(rng.normal(size=(4, 3, 2)), DT)
    w = jnp.asarray(rng.normal(size=(4, 11)), DT)
    return a, v, w


@pytest.mark.parametrize("batched", ["both", "matrix", "vector"])
def test_small_products_under_vmap_are_one_batched_dot_equal_to_the_plain_form(batched):
    """``_products``: A v and v^T A of a (k, *shape) stack, batched over either operand or
    both, equal the float64 reference to rounding; batched, A v's program is a dot_general
    (the batching rule), and so is v^T A's but in float64 up to UNROLL rows, its sum written
    out (neither a dot nor a reduction); unbatched a multiply and a reduction (fused with
    its neighbours)."""
    a, v, w = _product_operands()
    ax_a, ax_v = {"both": (0, 0), "matrix": (0, None), "vector": (None, 0)}[batched]
    a_in, v_in, w_in = (a if ax_a == 0 else a[0]), (v if ax_v == 0 else v[0]), (w if ax_v == 0 else w[0])
    a64 = np.broadcast_to(np.asarray(a_in, np.float64), a.shape)
    v64, w64 = (np.broadcast_to(np.asarray(t, np.float64), like.shape) for t, like in ((v_in, v), (w_in, w)))
    tol = dict(rtol=1e-12 if X64 else 1e-5, atol=1e-12 if X64 else 1e-5)
    for name, fn, args, axes, want in (
        ("matvec", _products.matvec, (a_in, v_in), (ax_a, ax_v), np.einsum("bkij,bij->bk", a64, v64)),
        ("vecmat", _products.vecmat, (w_in, a_in), (ax_v, ax_a), np.einsum("bk,bkij->bij", w64, a64)),
    ):
        batch = jax.jit(jax.vmap(fn, in_axes=axes))
        got = batch(*args)
        assert got.dtype == DT and got.shape == want.shape, name
        np.testing.assert_allclose(np.asarray(got, np.float64), want, **tol, err_msg=name)
        text = batch.lower(*args).as_text()
        if name == "vecmat" and X64:
            assert a.shape[1] <= _products.UNROLL and "dot_general" not in text and "reduce" not in text
        else:
            assert "dot_general" in text, name
        one = jax.jit(fn).lower(*(x if ax is None else x[0] for x, ax in zip(args, axes))).as_text()
        assert "dot_general" not in one and "reduce" in one, name
    rows = _products.UNROLL + 1  # (beyond it, v^T A batched is a dot again)
    long_a, long_w = jnp.ones((4, rows, 3), DT), jnp.ones((4, rows), DT)
    batch = jax.jit(jax.vmap(_products.vecmat))
    np.testing.assert_allclose(np.asarray(batch(long_w, long_a)), rows)
    assert "dot_general" in batch.lower(long_w, long_a).as_text()


def test_small_products_differentiate_in_both_modes_and_under_vmap():
    """The batching rule has no derivative of its own (``custom_vmap``); the products' JVP
    (the product rule, in the plain form) gives forward and reverse derivatives, also batched."""
    a, v, w = _product_operands(1)
    ref = {"matvec": lambda a, v: jnp.einsum("kij,ij->k", a, v, precision="highest"),
           "vecmat": lambda w, a: jnp.einsum("k,kij->ij", w, a, precision="highest")}
    tol = dict(rtol=1e-12 if X64 else 1e-5, atol=1e-12 if X64 else 1e-5)
    for name, fn, args in (("matvec", _products.matvec, (a, v)), ("vecmat", _products.vecmat, (w, a))):
        loss = lambda *xs, fn=fn: jnp.sum(jnp.sin(fn(*xs)))  # noqa: E731
        loss_ref = lambda *xs, name=name: jnp.sum(jnp.sin(ref[name](*xs)))  # noqa: E731
        for diff in (jax.grad, jax.jacfwd):
            got = jax.vmap(diff(loss, argnums=(0, 1)))(*args)
            want = jax.vmap(diff(loss_ref, argnums=(0, 1)))(*args)
            for g, r in zip(got, want):
                np.testing.assert_allclose(np.asarray(g), np.asarray(r), **tol, err_msg=name)
