"""L-BFGS-B's parts against dense linear algebra, after the ring buffer has wrapped.

The memory is driven as the bounded solver drives it (``push(direct=True)``, the
products, ``complete``, the step recorded), with steps that are not multiples of H q,
on a quadratic with a random SPD Hessian; n = 7 over two leaves, m = 3, 5 pairs. The
references are recomputed in float64 from the stored vectors, oldest pair first:

* the compact B = theta I - W M W^T (BLNZ eqs. 3.2-3.4) against the BFGS recursion
  B <- B - B s s^T B / s^T B s + y y^T / y^T s from B0 = theta I (N&W eq. 6.19);
* the secant equation B s = y on the newest pair, and B H = I with H from the
  compact inverse form (``_compact``, already checked against N&W eq. 7.19);
* the generalized Cauchy point against a brute-force walk along the projected path,
  one segment at a time, each segment's quadratic minimised in closed form;
* the direction against a dense reduced Newton step -(Z^T B Z)^-1 Z^T (g + B (x^c - x)),
  the Morales-Nocedal projection, and the 1995 truncation from x^c when the
  projection is not downhill (both branches are exercised).

The checks against dense references run with x64 on, to float64's tolerance
(``conftest.float64_reference``); the large-n paths' agreement runs with x64 off.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, assert_same_types, dense_h, float64_reference, x64_off_only
from conftest import spd as spd_of_size

from qnjax import (
    _bounds,
    _cauchy,
    _compact,
    _free_gram,
    _inverse_hessian,
    _memory,
    _memory_update,
    _reduced,
    _segments,
    _slope_bound,
    _subspace,
)
from qnjax._solver import LBFGS

DT = jnp.float64 if X64 else jnp.float32
RTOL = 1e-9 if X64 else 2e-3
N, M = 7, 3


def as_tree(v):
    return {"a": jnp.asarray(np.asarray(v)[:4].reshape(2, 2), DT), "z": jnp.asarray(np.asarray(v)[4:], DT)}


def as_vec(tree):
    return np.concatenate([np.ravel(tree["a"]), np.ravel(tree["z"])]).astype(np.float64)


def spd(rng, cond=10.0):
    return spd_of_size(rng, N, cond)


@jax.jit
def _push(mem, q):
    mem = _memory_update.push(mem, q, direct=True)[0]
    a, b = _memory.products(mem, q)
    mem = _memory_update.complete(mem, a, b)
    return _memory_update.record(mem, jnp.stack([a, b, jnp.zeros_like(a), jnp.zeros_like(a)]))


def drive(rng, pairs=5, hess=None, steps=(), clear_before=None):
    """The memory after ``pairs`` steps u (random, not H q multiples, then ``steps``) with
    y = A u; ``clear_before``: the memory is cleared before that step."""
    hess = spd(rng) if hess is None else hess
    mem = _memory.init(as_tree(np.zeros(N)), M, DT, bounded=True, compact=True)  # every small matrix
    q = rng.normal(size=N)
    for i, u in enumerate([rng.normal(size=N) * rng.uniform(0.2, 2.0) for _ in range(pairs)] + list(steps)):
        mem = _push(mem, as_tree(q))
        if i == clear_before:
            mem = _memory.clear(mem)
        u = as_vec(as_tree(u))
        mem = jax.jit(_memory_update.record_step)(mem, as_tree(u), 1.0)
        q = q + hess @ u
    return _push(mem, as_tree(q))


def chronological_pairs(mem):
    pos = np.asarray(_memory.position(mem))
    valid = np.asarray(_memory.valid(mem))
    slots = [i for i in np.argsort(pos) if valid[i]]
    row = lambda buf, i: as_vec(jax.tree.map(lambda b: b[i], buf))  # noqa: E731
    return [(row(mem.s, i), row(mem.y, i)) for i in slots]


def dense_b(mem):
    pairs = chronological_pairs(mem)
    s, y = pairs[-1]
    theta = (y @ y) / (s @ y)
    b = theta * np.eye(N)
    for s, y in pairs:
        bs = b @ s
        b = b - np.outer(bs, bs) / (s @ bs) + np.outer(y, y) / (y @ s)
    return b, theta, pairs


def compact_b(mem):
    mid, _, theta, ok = _cauchy.middle(mem)
    w = np.asarray(_cauchy.w_rows(mem, theta, DT), np.float64)
    assert bool(ok)
    return float(theta) * np.eye(N) - w @ np.asarray(mid, np.float64) @ w.T, float(theta)


@jax.jit
def _h_columns(mem):
    tree = lambda e: {"a": e[:4].reshape(2, 2), "z": e[4:]}  # noqa: E731 (as_tree, traced)
    cols = jax.vmap(lambda e: _compact.inverse_hessian(mem, tree(e))[0])(jnp.eye(N, dtype=DT))
    return jnp.concatenate([cols["a"].reshape(N, 4), cols["z"]], axis=1)


def _dense_h(mem):
    """H from the compact inverse form, column by column (one compiled program)."""
    return np.asarray(_h_columns(mem), np.float64).T


@float64_reference
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compact_b_is_the_bfgs_recursion_in_chronological_order(seed):
    mem = drive(np.random.default_rng(seed))
    assert int(mem.count) == M and int(mem.head) != M  # full and wrapped
    b, theta, pairs = dense_b(mem)
    got, theta_got = compact_b(mem)
    np.testing.assert_allclose(theta_got, theta, rtol=RTOL)
    np.testing.assert_allclose(got, b, rtol=RTOL, atol=RTOL * np.abs(b).max())
    s, y = pairs[-1]
    np.testing.assert_allclose(got @ s, y, rtol=RTOL, atol=RTOL * np.abs(y).max())  # secant equation
    h = _dense_h(mem)
    np.testing.assert_allclose(got @ h, np.eye(N), atol=50 * RTOL)
    # The bounded solver keeps no Y^T Y and R^-1 (and leaves S^T Y's upper part stale):
    # ``rebuild`` (hess_inv's) recomputes every matrix from the pairs
    stale = mem._replace(gram=_memory.Gram(d=jnp.zeros_like(mem.gram.d), sy=jnp.tril(mem.gram.sy), ss=mem.gram.ss))
    h2 = _dense_h(jax.jit(_inverse_hessian.rebuild)(stale))
    np.testing.assert_allclose(h2, h, rtol=RTOL, atol=RTOL * np.abs(h).max())


def brute_cauchy(x, g, lo, hi, b):
    """The first local minimiser of g^T z + z^T B z / 2 along z(t) = P(x - t g) - x."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(g < 0, (x - hi) / g, np.where(g > 0, (x - lo) / g, np.inf))
    ends = sorted(set(t[(t > 0) & np.isfinite(t)])) + [np.inf]
    bound = np.where(g < 0, hi, lo)

    def path(s):  # x(s), a variable that reached its bound exactly on it
        return np.where((t > 0) & (t <= s), bound, np.clip(x - s * g, lo, hi))

    ta = 0.0
    for tb in ends:
        za = path(ta) - x
        da = np.where(t > ta, -g, 0.0)
        f1, f2 = g @ da + da @ b @ za, da @ b @ da
        if f1 >= 0:
            return x + za
        if f2 > 0 and -f1 / f2 < tb - ta:
            return path(ta - f1 / f2)
        ta = tb
    raise AssertionError("unbounded model")


def problem(rng):
    """A point in a box (some variables on a bound, some bounds infinite) and a gradient."""
    lo = np.where(rng.uniform(size=N) < 0.2, -np.inf, -1.0)
    hi = np.where(rng.uniform(size=N) < 0.2, np.inf, 1.0)
    x = rng.uniform(-1, 1, size=N)
    x = np.where(rng.uniform(size=N) < 0.3, np.where(rng.uniform(size=N) < 0.5, -1.0, 1.0), x)
    x = as_vec(as_tree(np.clip(x, lo, hi)))
    return x, 3 * rng.normal(size=N), lo, hi


def box(lo, hi):
    return _bounds.box(as_tree(np.zeros(N)), (as_tree(lo), as_tree(hi)))


@jax.jit
def _cauchy_point(mem, x, g, bx):
    mid, _, theta, _ = _cauchy.middle(mem)
    xc, c, free, _, wg, gm = _cauchy.cauchy_point(mem, mid.astype(DT), theta, x, g, bx, DT)
    return xc(), c, free, _cauchy.w_rows(mem, theta, DT), wg, gm


@float64_reference
@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_cauchy_point_is_the_first_minimiser_along_the_projected_path(seed, first, monkeypatch):
    """All breakpoints sorted (n <= FIRST_FROM), or (``first``) the segment before the
    smallest breakpoint first, the sort only if the Cauchy point lies beyond."""
    rng = np.random.default_rng(seed)
    mem = drive(rng)
    b, _, _ = dense_b(mem)
    x, g, lo, hi = problem(rng)
    g = as_vec(as_tree(g))
    want = brute_cauchy(x, g, lo, hi, b)
    run = _cauchy_point
    if first:
        monkeypatch.setattr(_cauchy, "FIRST_FROM", 0)
        run = jax.jit(_cauchy_point.__wrapped__)
    xc, c, free, w, wg, gm = run(mem, as_tree(x), as_tree(g), box(lo, hi))
    got = as_vec(xc)
    w = np.asarray(w, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # gm: g where the breakpoint is positive
        t = np.where(g < 0, (x - hi) / g, np.where(g > 0, (x - lo) / g, np.inf))
    np.testing.assert_array_equal(as_vec(gm), np.where(t > 0, g, 0))
    assert wg is None  # (computed at large n only)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL)
    at_bound = (want == lo) | (want == hi)
    assert np.all(got[at_bound] == want[at_bound])  # exactly on the bound
    np.testing.assert_allclose(np.asarray(c), w.T @ (got - x), rtol=RTOL, atol=RTOL)
    np.testing.assert_array_equal(as_vec(free).astype(bool), (got > lo) & (got < hi))


@float64_reference
@pytest.mark.parametrize("reach", ["estimated", "near", "far"])
@pytest.mark.parametrize("pairs", [1, 2, "after a clear", 5])
@pytest.mark.parametrize("cap", [1, 2, 4, 1000])
def test_cauchy_point_among_the_smallest_breakpoints_then_all(cap, pairs, reach, monkeypatch):
    """Beyond ``SORT_LIMIT`` variables only the ``CAPS`` smallest breakpoints are sorted (the
    first level is the smallest alone), all of them (walked ``BLOCK`` at a time; cap = 1000:
    no level, and a block longer than the breakpoints, as off a CPU) only if the
    Cauchy point lies beyond, and with no pair stored it has a closed form: forced here at
    n = 7. W^T (moving g) is returned for the subspace step. One, two or all of the 4 slots
    hold pairs, and one pair stored after a clear, the ring's head elsewhere. A level is
    skipped where the walk before it reaches beyond its cap (REACH): as estimated, or with
    every reach made 0 (every level tried) or inf (none: all sorted at once)."""
    monkeypatch.setattr(_cauchy, "SORT_LIMIT", 0)
    monkeypatch.setattr(_segments, "CAPS", (1, cap + 1, cap + 2))
    monkeypatch.setattr(_segments, "BLOCK", cap)
    if reach != "estimated":
        walk = _segments.walk
        monkeypatch.setattr(_segments, "walk", lambda *a, **k: walk(*a, **k)[:3] + (
            jnp.asarray(0.0 if reach == "near" else np.inf, DT),))
    run = jax.jit(lambda mem, x, g, bx: _cauchy_point.__wrapped__(mem, x, g, bx))
    for seed in range(6):
        rng = np.random.default_rng(seed)
        mem = drive(rng, pairs=6, clear_before=5) if pairs == "after a clear" else drive(rng, pairs=pairs)
        assert int(mem.count) == {1: 1, 2: 2, "after a clear": 1, 5: M}[pairs]
        assert pairs != "after a clear" or int(mem.head) != 1
        x, g, lo, hi = problem(rng)
        g = as_vec(as_tree(g))
        xc, _, _, w, wg, _ = run(mem, as_tree(x), as_tree(g), box(lo, hi))
        np.testing.assert_allclose(as_vec(xc), brute_cauchy(x, g, lo, hi, dense_b(mem)[0]), rtol=RTOL, atol=RTOL)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(g < 0, (x - hi) / g, np.where(g > 0, (x - lo) / g, np.inf))
        np.testing.assert_allclose(np.asarray(wg), np.asarray(w, np.float64).T @ np.where(t > 0, g, 0),
                                   rtol=RTOL, atol=RTOL)
        # no pair yet (B = I): the closed form
        empty = _push(_memory.init(as_tree(np.zeros(N)), M, DT, bounded=True), as_tree(np.zeros(N)))
        xc = run(empty, as_tree(x), as_tree(g), box(lo, hi))[0]
        np.testing.assert_allclose(as_vec(xc), brute_cauchy(x, g, lo, hi, np.eye(N)), rtol=RTOL, atol=RTOL)


@float64_reference
def test_prefix_sums_by_blocks_are_the_running_sums():
    """``_segments.prefix_sums`` (the walk's, by blocks of PREFIX_BLOCK rows and recursively
    over the blocks' totals) against np.cumsum, for lengths around the block's and its
    square's, with columns of mixed sign and size."""
    rng = np.random.default_rng(0)
    b = _segments.PREFIX_BLOCK
    run = jax.jit(_segments.prefix_sums)
    for k in (1, 2, 17, b - 1, b, b + 1, 2 * b, b * b - 1, b * b, b * b + 1, 3 * b * b + 5):
        s = rng.normal(size=(k, 4)) * np.array([1.0, 1e-3, 1e3, 1.0])
        s[:, 3] = np.abs(s[:, 3])
        want = np.cumsum(s, axis=0)
        got = np.asarray(run(jnp.asarray(s, DT)))
        assert got.shape == want.shape
        scale = np.cumsum(np.abs(s), axis=0)
        np.testing.assert_array_less(np.abs(got - want), 8 * np.log2(k + 1) * np.finfo(np.float64).eps * scale + 1e-300)


@float64_reference
@pytest.mark.parametrize("scale", [0.02, 1.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_slope_bound_is_above_the_models_slope_along_each_stretch_of_the_path(seed, scale):
    """``_slope_bound.slope_bound``, which lets the walk skip a block's prefix
    sums: over every stretch of sorted breakpoints (1, 3, 8 and 25 long), U is at least the
    model's slope g^T d(t) + z(t)^T B d(t), recomputed densely with B = theta I - W M W^T at
    both ends of every segment of the stretch (the slope is linear between); and
    ``rises_within`` says the slope stays negative for stretches well before the Cauchy
    point, so blocks are skipped. n = 200, a random symmetric M (the bound holds for any)
    of three sizes."""
    rng = np.random.default_rng(seed)
    n, k = 200, 6
    w = rng.normal(size=(n, k))
    a = rng.normal(size=(k, k)) * scale / np.sqrt(n)
    mid, theta = a + a.T, rng.uniform(0.2, 1.0)
    b = theta * np.eye(n) - w @ mid @ w.T
    x, g = rng.uniform(-1, 1, n), 3 * rng.normal(size=n)
    lo, hi = np.full(n, -1.0), np.where(rng.uniform(size=n) < 0.2, np.inf, 1.0)
    t = np.where(g < 0, (x - hi) / g, (x - lo) / g)
    order = np.argsort(t)
    ts, gs, ws, b = t[order], g[order], w[order], b[np.ix_(order, order)]
    fin = int(np.isfinite(ts).sum())

    def slope(tt, j):  # the slope at tt on the segment where sorted variables j, j + 1, ... move
        d = np.where(np.arange(n) >= j, -gs, 0)
        z = -gs * np.minimum(tt, ts)
        return gs @ d + z @ b @ d

    bound = jax.jit(lambda *a: (_slope_bound.slope_bound(*a), _slope_bound.rises_within(*a, DT)))
    verdicts, gaps = [], []
    for size in (1, 3, 8, 25):
        for start in range(0, fin - size, size):
            t0 = ts[start - 1] if start else 0.0
            p0 = -(ws[start:].T @ gs[start:])
            q0 = ws[:start].T @ (ts[:start] * gs[:start])
            blk = slice(start, start + size)
            (u, _), rises = bound(jnp.asarray(ts[blk], DT), jnp.asarray(gs[blk], DT),
                                  jnp.asarray(np.linalg.norm(ws[blk], axis=1), DT),
                                  theta, jnp.asarray(mid, DT), float(np.linalg.norm(mid)), t0, jnp.asarray(q0, DT),
                                  jnp.asarray(p0, DT), float(gs[start:] @ gs[start:]))
            ends = np.concatenate([[t0], ts[blk]])
            top = max(max(slope(ends[i], start + i), slope(ends[i + 1], start + i)) for i in range(size))
            assert float(u) >= top - 1e-9 * max(abs(top), 1), (size, start, float(u), top)
            assert bool(rises) or top < 0, (size, start, top)
            verdicts.append(bool(rises))
            gaps.append((float(u) - top) / max(abs(top), 1))
    assert not all(verdicts) and any(verdicts), verdicts  # both answers are given
    assert min(gaps) < 1e-2, min(gaps)  # and the bound is tight somewhere (on a single breakpoint)


def dense_direction(x, g, lo, hi, b, xc):
    free = (xc > lo) & (xc < hi)
    z = np.eye(N)[:, free]
    r = z.T @ (g + b @ (xc - x))
    du = z @ -np.linalg.solve(z.T @ b @ z, r)
    xbar = np.clip(xc + du, lo, hi)
    if g @ (xbar - x) < 0:
        return xbar - x, "projected"
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(du > 0, (hi - xc) / du, np.where(du < 0, (lo - xc) / du, np.inf))
    alpha = min(1.0, room.min())
    return np.clip(xc + alpha * du, lo, hi) - x, "truncated"


_direction = jax.jit(lambda mem, x, g, bx: _subspace.direction(mem, x, g, bx, DT))


def check_direction(mem, x, g, lo, hi):
    b, _, _ = dense_b(mem)
    g = as_vec(as_tree(g))
    want, branch = dense_direction(x, g, lo, hi, b, brute_cauchy(x, g, lo, hi, b))
    d, ok, _, slope = _direction(mem, as_tree(x), as_tree(g), box(lo, hi))
    assert bool(ok) == (g @ want < 0)  # uphill: the solver drops the memory
    np.testing.assert_allclose(as_vec(d), want, rtol=20 * RTOL, atol=20 * RTOL * np.abs(want).max())
    # the slope the solver takes from it (every leaf in the scalar dtype) is g^T d
    np.testing.assert_allclose(float(slope), g @ as_vec(d), rtol=RTOL, atol=RTOL * np.abs(g).max() * np.abs(want).max())
    return branch


_direction_large = jax.jit(lambda mem, x, g, bx: _subspace.direction(mem, x, g, bx, DT, stored=False))


def check_kept_products(mem, x, g, lo, hi, monkeypatch):
    """With the many-variable paths forced, the direction keeps W^T d for ``push`` from kept
    data, with no pass over the memory: it equals the products recomputed from d."""
    monkeypatch.setattr(_cauchy, "SORT_LIMIT", 0)
    monkeypatch.setattr(_free_gram, "SMALL_N", 0)
    run = _direction_large  # (traced on its first call, here: with the constants patched)
    want, _, out, _ = run(mem, as_tree(x), as_tree(g), box(lo, hi))
    # (``drive`` stored the pairs without keeping the free set's Gram matrices: kept now, for
    # this free set, so the second call updates them from gathered rows)
    mem = mem._replace(free=out.free, fgram=jax.jit(_free_gram.full)(mem, out.free))
    d, _, out, slope = run(mem, as_tree(x), as_tree(g), box(lo, hi))
    np.testing.assert_allclose(as_vec(d), as_vec(want), rtol=RTOL, atol=RTOL)
    g, dv = as_vec(as_tree(g)), as_vec(d)
    np.testing.assert_allclose(float(slope), g @ dv, rtol=RTOL, atol=RTOL * np.abs(g).max() * np.abs(dv).max())
    fresh = np.asarray(jax.jit(_memory.products)(mem, d), np.float64)
    np.testing.assert_allclose(np.asarray(out.last[2:], np.float64), fresh, rtol=0,
                               atol=20 * RTOL * max(1.0, np.abs(fresh).max()))


@float64_reference
@pytest.mark.parametrize("seed", range(8))
def test_direction_is_the_projected_reduced_newton_step(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    mem = drive(rng)
    data = problem(rng)
    assert check_direction(mem, *data) == "projected"  # random data: the projection is downhill
    if seed < 2:
        check_kept_products(mem, *data, monkeypatch)


@x64_off_only
@pytest.mark.parametrize("seed", range(4))
def test_a_direction_below_x_rounding_is_kept_whole(seed):
    """The gradient scaled by 1e-6: in float32 the direction moves x (of size 1) by about 10
    units in its last place. It is taken as a displacement from x, x^c - x = -t_c g (clipped)
    plus d^u, so it keeps float32's relative precision; as a difference of rounded points,
    x_bar - x, each variable's was rounded to whole units of x's last place (3 of these 4
    cases out of tolerance, by up to half a unit: a few per cent of d)."""
    rng = np.random.default_rng(seed)
    mem = drive(rng)
    x, g, lo, hi = problem(rng)
    assert check_direction(mem, x, 1e-6 * g, lo, hi) == "projected"


def test_direction_falls_back_to_the_truncation_measured_from_the_cauchy_point(monkeypatch):
    """A plane where B equals a strongly coupled 2 x 2 Hessian (two A-conjugate steps
    in it: BFGS's hereditary property), the other variables held at a bound: the
    reduced Newton point is far outside the box in one variable and its projection is
    uphill, so x_bar = x^c + alpha* d^u (Morales & Nocedal 2011)."""
    rng = np.random.default_rng(0)
    a2 = np.array([[2.0, -0.1], [-0.1, 0.0075]])
    hess = spd(rng)
    hess[:2, :] = hess[:, :2] = 0
    hess[:2, :2] = a2
    s1 = np.eye(N)[0]
    s2 = np.eye(N)[1] - (np.eye(N)[1] @ hess @ s1) / (s1 @ hess @ s1) * s1
    mem = drive(rng, 3, hess, [s1, s2])
    np.testing.assert_allclose(dense_b(mem)[0][:2, :2], a2, rtol=RTOL, atol=RTOL)
    x, g = np.zeros(N), np.ones(N)  # variables 2.. on their lower bound, pushed outward
    g[:2] = [1.0, -0.1]
    lo, hi = np.zeros(N), np.full(N, 10.0)
    lo[:2], hi[1] = -10.0, 1.0
    assert check_direction(mem, x, g, lo, hi) == "truncated"
    check_kept_products(mem, x, g, lo, hi, monkeypatch)


@pytest.mark.parametrize("chunk", [None, 3])
def test_free_gram_from_scratch_is_dense_and_reads_no_rejected_row(chunk, monkeypatch):
    """``_free_gram.full``: [S^T F S, Y^T F S, Y^T F Y] in slot order equals the dense
    products over the free variables of the stored pairs (zero where a slot holds none),
    in one pass or in chunks of a leaf, after the ring has wrapped, and a slot that holds
    no pair may hold anything (a rejected pair's row: inf and NaN) without changing
    them."""
    if chunk is not None:
        monkeypatch.setattr(_free_gram, "CHUNK", chunk)
    rng = np.random.default_rng(3)
    mem = drive(rng, pairs=6)  # (M + 1 slots: wrapped twice)
    free = as_tree(rng.uniform(size=N) < 0.6)
    free = jax.tree.map(lambda a: a.astype(bool), free)
    head = int(mem.head)
    assert not bool(_memory.valid(mem)[head])
    bad = jax.tree.map(lambda b: b.at[head].set(jnp.inf).at[M + 1 + head].set(jnp.nan), mem.pairs)
    got = np.asarray(jax.jit(_free_gram.full)(mem._replace(pairs=bad), free), np.float64)
    valid = np.asarray(_memory.valid(mem))
    f = as_vec(free).astype(bool)
    rows = lambda buf: np.stack([as_vec(jax.tree.map(lambda b, i=i: b[i], buf)) for i in range(M + 1)])  # noqa: E731
    s, y = rows(mem.s)[:, f], rows(mem.y)[:, f]
    want = np.stack([s @ s.T, y @ s.T, y @ y.T]) * np.outer(valid, valid)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("chunk", [None, 3])
@pytest.mark.parametrize("history", ["one pair", "two pairs", "one pair after a clear", "full"])
def test_free_gram_from_the_newest_slots_is_dense(history, chunk, single, monkeypatch):
    """At many variables (``_free_gram.incremental``) ``_free_gram.full`` reads only the newest
    slots that can hold the pairs stored (``_memory.by_window``; ``single``: from
    ONE_SLOT_FROM variables, also the newest slot alone): with one, two, a full memory, and
    one pair stored after a clear (the ring's head elsewhere than slot 0), the recompute's
    [S^T F S, Y^T F S, Y^T F Y] and [S^T F g, Y^T F g] (one pass for both) equal the dense
    products over the free variables in slot order, every slot that holds no pair poisoned
    (inf, NaN)."""
    monkeypatch.setattr(_cauchy, "SORT_LIMIT", 0)
    monkeypatch.setattr(_free_gram, "SMALL_N", 0)
    monkeypatch.setattr(_free_gram, "ONE_SLOT_FROM", 0 if single else N + 1)
    if chunk is not None:
        monkeypatch.setattr(_free_gram, "CHUNK", chunk)
    rng = np.random.default_rng(5)
    mem = drive(rng, pairs={"one pair": 1, "two pairs": 2, "one pair after a clear": 5, "full": 7}[history])
    if history == "one pair after a clear":
        mem = _push(jax.jit(_memory_update.record_step)(_memory.clear(mem), as_tree(rng.normal(size=N)), 1.0),
                    as_tree(rng.normal(size=N)))
        assert int(mem.count) == 1 and int(mem.head) != 1
    want_count = {"one pair": 1, "two pairs": 2, "one pair after a clear": 1, "full": M}[history]
    assert int(mem.count) == want_count
    sizes = []  # the windows' sizes, as their branches are traced
    _memory.by_window(mem, True, lambda slots: sizes.append(M + 1 if slots is None else slots.shape[0]) or 0, single)
    assert sizes == [1, 1, 2, M + 1] if single else [1, 2, M + 1]  # (a quarter of M + 1 = 4 slots is one)
    many, by_window = [], _memory.by_window
    monkeypatch.setattr(_memory, "by_window",
                        lambda mem, m, branch, one: many.append(m) or by_window(mem, m, branch, one))
    jax.jit(lambda mem, f: _free_gram.full(mem, f))(mem, as_tree(np.zeros(N, bool)))  # (a fresh trace)
    # under jax.vmap (a user's of the Optax face) every branch would run: all slots, one branch
    jax.vmap(lambda f: _free_gram.full(mem, f))({"a": jnp.zeros((2, 2, 2), bool), "z": jnp.zeros((2, N - 4), bool)})
    assert many == [True, False]
    valid = np.asarray(_memory.valid(mem))
    bad = mem.pairs
    for i in np.flatnonzero(~valid):
        bad = jax.tree.map(lambda b, i=i: b.at[i].set(jnp.inf).at[M + 1 + i].set(jnp.nan), bad)
    free = jax.tree.map(lambda a: a.astype(bool), as_tree(rng.uniform(size=N) < 0.6))
    g = as_tree(rng.normal(size=N))
    got, prods = (np.asarray(a, np.float64) for a in jax.jit(_free_gram.full)(mem._replace(pairs=bad), free, g))
    f = as_vec(free).astype(bool)
    rows = lambda buf: np.stack([as_vec(jax.tree.map(lambda b, i=i: b[i], buf)) for i in range(M + 1)])  # noqa: E731
    s, y = rows(mem.s) * valid[:, None], rows(mem.y) * valid[:, None]
    want = np.stack([s[:, f] @ s[:, f].T, y[:, f] @ s[:, f].T, y[:, f] @ y[:, f].T])
    want_g = np.stack([s[:, f] @ as_vec(g)[f], y[:, f] @ as_vec(g)[f]])
    assert np.isfinite(got).all() and np.isfinite(prods).all()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * np.abs(want).max())
    np.testing.assert_allclose(prods, want_g, rtol=RTOL, atol=RTOL * np.abs(want_g).max())


@x64_off_only  # (what is lowered does not depend on the mode)
def test_walk_and_recompute_take_the_platforms_piece_sizes(monkeypatch):
    """``_segments``' walk of all the breakpoints and ``_free_gram``'s recompute of the free
    Gram matrices cut the variables in pieces of BLOCK and CHUNK (8-byte elements: twice as
    many float32 ones) in a program lowered for a CPU, and of BLOCK_ELSEWHERE and
    CHUNK_ELSEWHERE for a GPU or a TPU (``jax.export``
    lowers for a platform this machine does not have)."""
    import re

    from qnjax import minimize

    monkeypatch.setattr(_cauchy, "SORT_LIMIT", 0)
    monkeypatch.setattr(_free_gram, "SMALL_N", 0)
    sizes = dict(BLOCK=96, BLOCK_ELSEWHERE=160, CHUNK=48, CHUNK_ELSEWHERE=80)
    for module, names in ((_segments, ("BLOCK", "BLOCK_ELSEWHERE")), (_free_gram, ("CHUNK", "CHUNK_ELSEWHERE"))):
        for name in names:
            monkeypatch.setattr(module, name, sizes[name])
    n = 400
    solve = jax.jit(lambda x: minimize(lambda v: jnp.sum((v - 2) ** 2), x, bounds=(0.0, 1.0)).x)
    # (a CPU's CHUNK counts 8-byte elements: float32 pieces hold twice as many)
    for platform, block, chunk in (("cpu", 96, 96), ("cuda", 160, 80), ("tpu", 160, 80)):
        text = jax.export.export(solve, platforms=[platform])(jnp.zeros(n, jnp.float32)).mlir_module()
        # the walk slices `block` positions of the sorted order; the recompute cuts `chunk`
        # of the leaf's (2 (m + 1), n) pairs buffer
        found = {int(v) for v in re.findall(r"tensor<(\d+)xi32>", text)}
        assert block in found and not ({96, 160} - {block}) & found, (platform, sorted(found))
        cuts = {int(v) for v in re.findall(r"tensor<22x(\d+)xf32>", text)}
        assert chunk in cuts and not ({48, 96, 80} - {chunk}) & cuts, (platform, sorted(cuts))


def test_empty_memory_gives_the_projected_steepest_descent_minimiser():
    """With no pairs, B = theta I (theta = 1): the model is separable and its box
    minimiser P(x - g) is the Cauchy point itself, so d = P(x - g) - x."""
    rng = np.random.default_rng(7)
    mem = _push(_memory.init(as_tree(np.zeros(N)), M, DT, bounded=True), as_tree(np.zeros(N)))
    x, g, lo, hi = problem(rng)
    d, ok, _, _ = _direction(mem, as_tree(x), as_tree(g), box(lo, hi))
    assert bool(ok)
    want = np.clip(x - as_vec(as_tree(g)), lo, hi) - x
    np.testing.assert_allclose(as_vec(d), want, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("lo, hi", [(-2.0, 0.8), (0.0, np.inf), (-np.inf, np.inf), (-np.inf, 1.0), (0.5, 0.5)])
def test_stationarity_with_scalar_bounds_is_the_clip_of_the_gradient(lo, hi):
    """||P(x - g) - x||_inf: with scalar bounds ``_bounds.stationarity`` forms the clip as a
    select (no bound written out at full size for the reduction), with bounds shaped
    like x as min(max(-g, l - x), u - x); per variable both equal that clip bit for bit,
    at zeros of either sign, tiny (normal: XLA:CPU flushes subnormals), huge and infinite
    values and NaN in x or g."""
    vals = np.array([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 2.0, -2.0, 0.5, 3e38, np.inf, -np.inf, np.nan])
    x, g = (a.ravel().astype(DT) for a in np.meshgrid(vals, vals))
    x = np.where(np.isnan(x), x, np.clip(x, lo, hi))  # the solver's x is in the box
    with np.errstate(invalid="ignore"):  # (inf - inf: NaN, as in the solver)
        below, above = np.asarray(lo, DT) - x, np.asarray(hi, DT) - x  # (NumPy: recomputed apart from JAX)
        want = np.abs(np.minimum(np.maximum(-g, below), above))  # (NumPy's min/max propagate NaN)

    def each(box):
        return jax.vmap(lambda a, b: _bounds.stationarity(a, b, box, DT))(jnp.asarray(x)[:, None],
                                                                          jnp.asarray(g)[:, None])

    scalar = each(_bounds.Box(jnp.asarray(lo, DT), jnp.asarray(hi, DT)))
    shaped = each(_bounds.Box(jnp.full((1,), lo, DT), jnp.full((1,), hi, DT)))
    np.testing.assert_array_equal(np.asarray(scalar), want)
    np.testing.assert_array_equal(np.asarray(shaped), want)
    assert np.isnan(want).any() and (want == 0).any() and np.isinf(want).any() == (np.isinf(lo) or np.isinf(hi))


def _bounded_run(n_steps, x0, lo, hi, a, b, step=None):
    """The bounded solver's iterates on 0.5 x^T A x - b^T x, and after each step whether the
    kept Gram matrices of the free set equal those recomputed from scratch; and the compiled
    step (new unless given: traced afresh, so the module constants patched by the caller
    are the ones used)."""
    solver = LBFGS(memory_size=M)

    def evaluate(x, a, b):
        return 0.5 * x @ a @ x - b @ x, a @ x - b, None

    f, g, _ = evaluate(x0, a, b)
    state = solver.init(x0, f, g, bounds=(lo, hi))
    start = state
    step = step or jax.jit(lambda st, a, b: solver.step(st, lambda x: evaluate(x, a, b))[1])
    xs, kept = [], []
    for _ in range(n_steps):
        grad = jnp.asarray(a @ state.params - b)  # the gradient the direction was computed at
        state = step(state, a, b)
        assert_same_types(start, state)  # the kept free set and products included
        xs.append(np.asarray(state.params, np.float64))
        mem = state.memory
        both = np.outer(np.asarray(_memory.valid(mem)), np.asarray(_memory.valid(mem)))
        fresh = np.asarray(jax.jit(_free_gram.full)(mem, mem.free), np.float64)
        scale = max(1.0, np.abs(fresh).max())
        kept.append(np.abs((np.asarray(mem.fgram, np.float64) - fresh) * both).max() / scale)
        fg = np.asarray(jax.jit(_memory.products)(mem, jnp.where(mem.free, grad, 0)), np.float64)
        # (the stored pairs' entries only: a dropped memory's are stale and never read)
        valid = np.asarray(_memory.valid(mem))
        kept.append(np.abs((np.asarray(mem.last[:2], np.float64) - fg) * valid).max() / max(1.0, np.abs(fg).max()))
        # the newest pair's rows S^T s and Y^T s (``push``: at large n from the direction's kept W^T d)
        newest = (int(mem.head) + M) % (M + 1)
        if int(mem.count):
            st_s, yt_s = np.asarray(jax.jit(_memory.products)(mem, _memory.row(mem.s, newest)), np.float64)
            rows = np.stack([np.asarray(mem.gram.ss, np.float64)[newest], np.asarray(mem.gram.sy, np.float64)[newest]])
            fresh = np.stack([st_s, yt_s])
            kept.append(np.abs((rows - fresh) * valid).max() / max(1.0, np.abs(fresh).max()))
    return np.stack(xs), np.asarray(kept), step


@x64_off_only  # the paths' agreement does not depend on the mode (CI time)
def test_large_n_paths_take_the_same_steps(monkeypatch):
    """The paths for many variables, forced at n = 40 (each part above is checked at small
    n only): the Cauchy point among the smallest breakpoints (two levels), then all sorted and
    walked a block at a time; its closed form with no pair; the free set's Gram matrices
    updated from the changed rows, or recomputed when too many change, and their products
    with the gradient; the passes over the memory skipped while it holds no pair. The
    iterates equal the small-n paths' up to rounding, and what is kept equals what is
    recomputed."""
    rng = np.random.default_rng(3)
    n = 40
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = jnp.asarray(q @ np.diag(np.logspace(0, 2, n)) @ q.T, DT)
    b = jnp.asarray(30 * rng.normal(size=n), DT)
    x0, lo, hi = jnp.full(n, 0.5, DT), jnp.zeros(n, DT), jnp.ones(n, DT)
    want = _bounded_run(12, x0, lo, hi, a, b)[0]
    monkeypatch.setattr(_cauchy, "SORT_LIMIT", 0)
    monkeypatch.setattr(_segments, "CAPS", (1, 2, 5))
    monkeypatch.setattr(_segments, "BLOCK", 3)
    monkeypatch.setattr(_free_gram, "SMALL_N", 0)
    monkeypatch.setattr(_reduced, "CHANGES", 4)
    monkeypatch.setattr(_reduced, "MANY_CHANGES", 10)
    monkeypatch.setattr(_memory, "SKIP_EMPTY_FROM", 0)
    assert _subspace.keeps_products(x0, DT)  # push's products from the direction's algebra, checked below
    assert not _subspace.keeps_products({"a": x0, "b": x0.astype(jnp.bfloat16)}, DT)  # (a rounded step: a pass)
    got, kept, step = _bounded_run(12, x0, lo, hi, a, b)
    np.testing.assert_allclose(got, want, rtol=0, atol=50 * RTOL)
    assert kept.max() <= 20 * float(jnp.finfo(DT).eps) * n, kept
    assert np.all(want[-1][(want[-1] > 0) & (want[-1] < 1)] != 0.5)  # it went somewhere
    # A start inside the box where the projection clips x^c + d^u in 1, 4 and 6 variables
    # (the rows of W^T d's correction gathered, and with more than CHANGES, one pass).
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = jnp.asarray(q @ np.diag(np.logspace(0, 2, n)) @ q.T, DT)
    b, x0 = jnp.asarray(3 * rng.normal(size=n), DT), jnp.asarray(rng.uniform(0.2, 0.8, n), DT)
    kept = _bounded_run(8, x0, lo, hi, a, b, step)[1]
    assert kept.max() <= 20 * float(jnp.finfo(DT).eps) * n, kept


def _lbfgs_pairs(rng, m=10):
    """Pairs (s, y = A s) of L-BFGS (N&W Algorithm 7.4, near-exact line searches) on a random
    quadratic of 3-6 variables with Hessian eigenvalues over 4-8 decades, float64: as it
    converges its last m pairs grow nearly dependent (more pairs than variables)."""
    dim = int(rng.integers(3, 7))
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a = q @ np.diag(np.logspace(0, rng.uniform(4, 8), dim)) @ q.T
    g = a @ (10 * rng.normal(size=dim))
    g0, pairs = g.copy(), []
    for _ in range(40):
        gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1 / np.trace(a)
        r = dense_h(pairs[-m:], dim, gamma) @ g
        s = -(g @ r) / (r @ a @ r) * rng.uniform(0.7, 1.3) * r  # t d with d = -r
        pairs.append((s, a @ s))
        g = g + a @ s
    return g0, pairs


@x64_off_only  # a float32 memory's small algebra (the same program in either mode)
def test_nearly_dependent_float32_pairs_keep_the_compact_middle_matrix():
    """A float32 memory of 10 pairs of 6 variables, from L-BFGS on an ill-conditioned
    quadratic, at the first pair where T = theta S^T S + L D^-1 L^T (``_cauchy``) fails its
    float32 Cholesky factorisation (checked here): formed from the same float32 entries in
    float64 (``_xla.small_dtype``) T is positive definite, and M is K^-1 (before, ``middle``
    reported failure, and the solver dropped the memory)."""
    g0, pairs = _lbfgs_pairs(np.random.default_rng(0))
    dim = pairs[0][0].size
    push = jax.jit(lambda mem, q: _memory_update.push(mem, q, direct=True)[0])
    record = jax.jit(_memory_update.record_step)
    mem, q = _memory.init(jnp.zeros(dim, jnp.float32), 10, jnp.float32, bounded=True), g0
    for i, (s, y) in enumerate(pairs):
        mem = record(push(mem, jnp.asarray(q, jnp.float32)), jnp.asarray(s, jnp.float32), 1.0)
        q = np.asarray(q + y, np.float32)
        full = push(mem, jnp.asarray(q))
        valid = np.asarray(_memory.valid(full))
        both = np.outer(valid, valid)
        pos = np.asarray(_memory.position(full))
        d = jnp.where(valid, full.gram.d, 1)
        low = jnp.where(both & (pos[:, None] > pos[None, :]), full.gram.sy, 0)
        t32 = jnp.where(both, full.gram.ss / full.gamma + (low / d[None, :]) @ low.T, jnp.eye(valid.size))
        if i >= 10 and not bool(jnp.all(jnp.isfinite(jnp.linalg.cholesky(t32)))):
            break
    else:
        pytest.fail("no pair where T's float32 factorisation fails")
    assert int(full.count) == 10 and dim == 6
    mid, k, _, ok = _cauchy.middle(full)
    assert bool(ok) and mid.dtype == jnp.float64
    mid, k = np.asarray(mid), np.asarray(k)
    both = np.outer(np.tile(valid, 2), np.tile(valid, 2))
    identity = np.diag(np.tile(valid, 2)).astype(np.float64)
    assert np.abs(mid @ (k * both) - identity).max() <= 1e-4


@pytest.mark.parametrize("lone", [False, True])
def test_an_unusable_direction_keeps_the_newest_pair_below_float64(lone, monkeypatch):
    """An L-BFGS-B direction that is not usable (a failed factorisation, or uphill: forced here
    once the memory holds 3 pairs, or, ``lone``, whatever it holds) fails its iteration: x
    stays, and the memory keeps only its newest pair below float64
    (``_subspace.keeps_newest``), none in float64 (scipy's rule); a lone pair goes too."""
    real = _subspace.direction

    def unusable(memory, *args, **kwargs):
        d, ok, memory_out, slope = real(memory, *args, **kwargs)
        return d, ok & ~((memory.count == 3) | lone), memory_out, slope

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(N, N)))
    a = jnp.asarray(q @ np.diag(np.logspace(0, 2, N)) @ q.T, DT)
    b = jnp.asarray(30 * rng.normal(size=N), DT)
    x0, lo, hi = jnp.full(N, 0.5, DT), jnp.zeros(N, DT), jnp.ones(N, DT)
    solver = LBFGS(memory_size=M)

    def evaluate(x):
        return 0.5 * x @ a @ x - b @ x, a @ x - b, None

    state = solver.init(x0, *evaluate(x0)[:2], bounds=(lo, hi))
    step = jax.jit(lambda st: solver.step(st, evaluate)[1])
    # (a step's pair is pushed at the next step's start: after one step none is stored, and the
    # next direction sees 1; once 3 = M are stored it sees 3)
    state = step(state)
    while not lone and int(state.memory.count) < 3:
        state = step(state)
    before = state
    monkeypatch.setattr(_subspace, "direction", unusable)
    state = jax.jit(lambda st: solver.step(st, evaluate)[1])(before)  # (traced afresh: the patched direction)
    np.testing.assert_array_equal(np.asarray(state.params), np.asarray(before.params))
    assert int(state.memory.count) == (1 if DT == jnp.float32 and not lone else 0)
    if int(state.memory.count):  # the pair this step pushed (the slot that was free before it)
        assert bool(_memory.valid(state.memory)[int(before.memory.head)])


@pytest.mark.parametrize("k", [1, 4, 11])
def test_upper_inverse_is_the_inverse_and_calls_no_lapack_kernel_under_vmap(k):
    """``_compact.upper_inverse`` (R^-1 by back substitution) against numpy's inverse, in the
    dtype it is given (float64 inside ``jax.enable_x64``, as the solver's small algebra runs); its
    vmapped program has no custom call (a batched LAPACK kernel beside another one, the two
    branches of a ``lax.cond`` under vmap, hung XLA:CPU for good: ``upper_inverse``'s docstring)."""
    rng = np.random.default_rng(k)
    r = np.triu(rng.normal(size=(k, k))) + np.diag(2.0 + rng.random(k))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(_compact.upper_inverse)(jnp.asarray(r, jnp.float64)))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.linalg.inv(r), rtol=1e-12, atol=1e-13)
        text = jax.jit(jax.vmap(_compact.upper_inverse)).lower(jnp.asarray(np.stack([r, r]), jnp.float64)).as_text()
    assert "custom_call" not in text
    got32 = np.asarray(_compact.upper_inverse(jnp.asarray(r, jnp.float32)))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, np.linalg.inv(r), rtol=1e-4, atol=1e-5)
