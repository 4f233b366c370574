"""scipy's spellings at qnjax.minimize's door: accepted with the same result as qnjax's
own spelling, or rejected with a message that names the equivalent; scipy's result
conveniences (res["fun"], njev, hess_inv)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COMPILES, X64, rosenbrock, x64_off_only

import qnjax

DT = jnp.float64 if X64 else jnp.float32
START = [-1.2, 1.0, 0.5]
X0 = jnp.asarray(START, DT)


@pytest.fixture(scope="module")
def reference():
    return qnjax.minimize(rosenbrock, X0)


def same(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    assert (int(a.nit), int(a.nfev), int(a.status)) == (int(b.nit), int(b.nfev), int(b.status))


@pytest.mark.parametrize("spelling", [
    dict(method="L-BFGS-B"), dict(method="l-bfgs-b"), dict(method="LBFGS"),
    dict(jac=False), dict(jac=None), dict(bounds=None),
])
def test_same_meaning_same_result(reference, spelling):
    same(qnjax.minimize(rosenbrock, X0, **spelling), reference)


def test_list_x0_is_an_array(reference):
    res = qnjax.minimize(rosenbrock, START)
    assert isinstance(res.x, jax.Array) and res.x.dtype == DT
    same(res, reference)
    assert float(qnjax.minimize(lambda x: (x - 2.0) ** 2, 3).x) == pytest.approx(2.0, abs=1e-3)


def test_args_may_hold_strings_as_scipy_s_do():
    """A string in ``args`` (JAX cannot trace one) is bound into fun as a constant; the
    arrays beside it stay data: another array, the same program; the derivative flows to
    the array (it had raised "Error interpreting argument ... as an abstract array")."""
    def fun(x, a, mode):
        return jnp.sum((x - a) ** 2) if mode == "square" else jnp.sum((x - a) ** 2 + (x - a) ** 4)

    x0, a = jnp.zeros(3, DT), jnp.asarray([1.0, -2.0, 0.5], DT)
    square, a2 = qnjax.minimize(fun, x0, (a, "square")), 2 * a
    before = COMPILES.count
    again = qnjax.minimize(fun, x0, (a2, "square"))
    assert COMPILES.count == before
    quartic = qnjax.minimize(fun, x0, (a, "quartic"))
    for res, want in ((square, a), (again, a2), (quartic, a)):
        assert bool(res.success)
        np.testing.assert_allclose(res.x, want, atol=1e-3 if X64 else 5e-3)
    assert int(quartic.nit) != int(square.nit)  # (the string chose the objective)
    np.testing.assert_allclose(jax.jacfwd(lambda a: qnjax.minimize(fun, x0, (a, "square")).x)(a), np.eye(3),
                               atol=1e-4)


@x64_off_only  # which gradient is used, and how often fun is called
def test_jac_true_and_callable_use_the_given_gradient(reference):
    same(qnjax.minimize(jax.value_and_grad(rosenbrock), START, jac=True), reference)
    same(qnjax.minimize(rosenbrock, START, jac=jax.grad(rosenbrock)), reference)
    # The given gradient is the one used (here twice the true one), compared where it is
    # far from zero (three iterations in; at the minimum twice a rounding-level gradient
    # would be no test).
    doubled = qnjax.minimize(rosenbrock, START, jac=lambda x: 2 * jax.grad(rosenbrock)(x), maxiter=3)
    want = 2 * jax.grad(rosenbrock)(doubled.x)
    assert float(jnp.max(jnp.abs(want))) > 1e-2
    np.testing.assert_allclose(doubled.grad, want, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(want))))
    calls = []

    def counted(x):
        jax.debug.callback(lambda: calls.append(1))
        return jax.value_and_grad(rosenbrock)(x)

    res = qnjax.minimize(counted, START, jac=True)
    jax.effects_barrier()
    assert len(calls) == int(res.nfev)  # one call of fun per evaluation


def test_tol_and_options_map_to_keywords():
    a = qnjax.minimize(rosenbrock, X0, tol=1e-3)
    b = qnjax.minimize(rosenbrock, X0, gtol=1e-3, ftol=1e-3)
    same(a, b)
    c = qnjax.minimize(rosenbrock, X0, options={"maxiter": 7, "maxcor": 3, "gtol": 0.0})
    d = qnjax.minimize(rosenbrock, X0, maxiter=7, memory_size=3, gtol=0.0)
    same(c, d)
    assert int(c.nit) == 7 and c.state.memory.s.shape[0] == 4
    same(qnjax.minimize(rosenbrock, X0, options={"maxfun": 9}), qnjax.minimize(rosenbrock, X0, maxfev=9))
    # An explicit keyword wins over tol.
    same(qnjax.minimize(rosenbrock, X0, tol=1e-3, gtol=1e-6), qnjax.minimize(rosenbrock, X0, gtol=1e-6, ftol=1e-3))


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(bounds=[(0, 2)] * 4), ValueError, "lower, upper"),
    (dict(method="BFGS"), ValueError, "L-BFGS-B"),
    (dict(options={"eps": 1e-8}), ValueError, "exactly"),
    (dict(options={"maxls": 30}), ValueError, "max_steps"),
    (dict(options={"iprint": 1}), ValueError, "verbose"),
    (dict(options={"color": 1}), ValueError, "maxcor"),
    (dict(options={"maxiter": 5}, maxiter=7), ValueError, "twice"),
    (dict(jac="2-point"), TypeError, "callable"),
    (dict(jac=True, has_aux=True), ValueError, "has_aux"),
])
def test_rejected_with_the_equivalent(kwargs, error, words):
    with pytest.raises(error, match=words):
        qnjax.minimize(rosenbrock, X0, **kwargs)


def test_a_pair_without_jac_or_has_aux_says_which():
    with pytest.raises(ValueError, match="jac=True.*has_aux=True"):
        qnjax.minimize(jax.value_and_grad(rosenbrock), X0)
    with pytest.raises(ValueError, match="pair"):
        qnjax.minimize(rosenbrock, X0, jac=True)


def test_result_by_key_and_njev(reference):
    assert reference["fun"] is reference.fun and reference["nit"] is reference.nit
    assert reference[0] is reference.x  # integer indices still index the tuple
    assert reference.njev is reference.nfev and "success" in reference.keys()
    with pytest.raises(KeyError):
        reference["hessian"]


def _printed(res):
    """The printed result as {name: text} (a field's continuation lines joined to it)."""
    fields, name = {}, None
    for line in repr(res).splitlines():
        head, sep, text = line.partition(": ")
        if sep and head.strip() in res.keys() + ("message",) and head == head.rjust(len(head)) and head.strip():
            name = head.strip()
            fields[name] = text
        else:
            fields[name] += "\n" + line.strip()
    return fields


def test_printed_like_scipy_s_result(reference):
    """One line per field, the message first and the state summarised: printed whole, the
    memory's buffers and small matrices made a 2-variable result over 7,000 characters."""
    text = repr(reference)
    fields = _printed(reference)
    assert list(fields)[:3] == ["message", "success", "status"]
    assert fields["message"] == reference.message
    assert fields["status"] == f"{int(reference.status)} ({qnjax.Status(int(reference.status)).name})"
    assert fields["nit"] == str(int(reference.nit)) and fields["nfev"] == str(int(reference.nfev))
    np.testing.assert_allclose(np.asarray(fields["x"].strip("[]").split(), np.float64), np.asarray(reference.x),
                               rtol=1e-5)
    assert fields["state"].startswith("<qnjax.State: ") and f" of {10} pairs stored" in fields["state"]
    assert "trace" not in fields and "aux" not in fields and "Memory(" not in text and len(text) < 1000


def test_printed_pytree_batch_and_traced():
    """A pytree a line per leaf, a long leaf summarised, a batch's statuses counted; under
    jax.jit, where the fields are tracers, the plain tuple."""
    x0 = {"a": jnp.zeros(1000, DT), "b": jnp.ones((2, 2), DT)}
    res = qnjax.minimize(lambda p: jnp.sum((p["a"] - 1) ** 2) + jnp.sum((p["b"] - 2) ** 2), x0, trace=2)
    fields = _printed(res)
    assert fields["x"].splitlines() == ["['a']: [1. 1. 1. ... 1. 1. 1.]", "['b']: [[2. 2.]", "[2. 2.]]"]
    # (a leaf's second row under its first, after the field's and the leaf's names)
    assert "\n" + " " * len("      x: ['b']: [") + "[2. 2.]]" in repr(res) and len(repr(res)) < 2000
    kept = int(np.asarray(res.trace.kept).sum())
    assert fields["trace"].startswith(f"<qnjax.Trace: {int(res.trace.records)} records made, {kept} kept")
    batch = jax.vmap(lambda m: qnjax.minimize(rosenbrock, X0, maxiter=m))(jnp.asarray([2, 2, 500]))
    counts = dict(item.split(" x ") for item in _printed(batch)["message"].split(", "))
    assert counts == {"MAXITER": "2", qnjax.Status(int(batch.status[2])).name: "1"}
    seen = []
    jax.jit(lambda x: seen.append(repr(qnjax.minimize(rosenbrock, x))) or 0)(X0)
    assert seen[0].startswith("OptimizeResult(x=") and "Tracer" in seen[0]


@pytest.mark.parametrize("direction", ["compact", "two-loop"])
def test_hess_inv_is_the_memory_s_inverse_hessian(direction):
    """H is symmetric positive definite and satisfies the secant equation of the newest
    pair, H (g_k - g_{k-1}) = x_k - x_{k-1} (every BFGS update does, N&W eq. 6.17), with
    either direction (the two-loop recursion keeps no R^-1: H's is rebuilt from the pairs)."""
    k = 12
    prev = qnjax.minimize(rosenbrock, X0, maxiter=k - 1, direction=direction)
    res = qnjax.minimize(rosenbrock, X0, maxiter=k, direction=direction)
    H = res.hess_inv
    dense = np.asarray(H.todense(), np.float64)
    assert dense.shape == H.shape == (3, 3)
    tol = 1e-9 if X64 else 2e-3
    np.testing.assert_allclose(dense, dense.T, rtol=tol, atol=tol * np.abs(dense).max())
    assert np.linalg.eigvalsh((dense + dense.T) / 2).min() > 0
    s = np.asarray(res.x, np.float64) - np.asarray(prev.x, np.float64)
    y = np.asarray(res.grad, np.float64) - np.asarray(prev.grad, np.float64)
    np.testing.assert_allclose(np.asarray(H @ jnp.asarray(y, DT), np.float64), s, rtol=10 * tol,
                               atol=10 * tol * np.abs(s).max())
    # scipy's operator interface: a matrix's columns, v @ H (H symmetric: H.T is H), dtype
    m = np.random.default_rng(0).standard_normal((3, 4))
    for got, want in ((H @ m, dense @ m), (H.matmat(m), dense @ m), (H.dot(m), dense @ m), (m.T @ H, m.T @ dense),
                      (jnp.asarray(m.T, DT) @ H, m.T @ dense), (m[:, 0] @ H.T, dense @ m[:, 0])):
        assert got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=10 * tol, atol=10 * tol * np.abs(want).max())
    assert H.dtype == DT and H.T is H
    with pytest.raises(ValueError, match="matmat"):
        H.matmat(m[:2])
    if X64 and direction == "two-loop":  # the same iterates to rounding, so the same memory and H
        compact = qnjax.minimize(rosenbrock, X0, maxiter=k).hess_inv.todense()
        np.testing.assert_allclose(dense, np.asarray(compact, np.float64), rtol=1e-6, atol=1e-6 * np.abs(dense).max())
    # A pytree x: matvec keeps the structure; H is symmetric positive definite there too.
    tree = qnjax.minimize(lambda p: rosenbrock(jnp.concatenate([p["a"], p["b"]])),
                          {"a": X0[:2], "b": X0[2:]}, maxiter=k, direction=direction)
    columns = []
    for i in range(3):
        e = np.eye(3)[i]
        hv = tree.hess_inv @ {"a": jnp.asarray(e[:2], DT), "b": jnp.asarray(e[2:], DT)}
        assert hv["a"].shape == (2,) and hv["b"].shape == (1,) and hv["a"].dtype == DT
        columns.append(np.concatenate([hv["a"], hv["b"]]))
    tree_dense = np.stack(columns, axis=1).astype(np.float64)
    with pytest.raises(TypeError, match="pytree"):  # a matrix is not a pytree like x
        tree.hess_inv @ np.eye(3)
    np.testing.assert_allclose(tree_dense, tree_dense.T, rtol=tol, atol=tol * np.abs(tree_dense).max())
    assert np.linalg.eigvalsh((tree_dense + tree_dense.T) / 2).min() > 0
