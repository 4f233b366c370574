"""Tests for qnjax.problems.cutest(): the CUTEst-style large-scale catalogue.

Runs under JAX_ENABLE_X64=1 and =0; float64 checks are skipped in x32 mode, the
float32 and dtype-promotion checks run in both. One jitted value-and-grad per problem
and dtype (cached), shared by every check.

Reference values:

* ``SIF_FSTAR`` -- minima printed in the CUTEst SIF files ("*LO SOLTN" lines), checked
  to one unit in the last digit printed.
* ``JULIA_F0`` -- f(x0) recorded by an independent implementation,
  JuliaSmoothOptimizers/OptimizationProblems.jl (``src/Meta/<name>.jl``,
  ``best_known_upper_bound`` at its default n = 100, n = 99 for DIXMAAN), for the
  problems where its definition and start point are the SIF's (it differs for BROYDN7D,
  BRYBND, EDENSCH, FLETCHCR, GENROSE, MOREBV, PENALTY1, SCHMVETT, TOINTGSS: see the
  module docstrings).
* ``S2MPJ_F0`` -- f(x0) from S2MPJ's Python translations of the SIF files (Gratton &
  Toint, GrattonToint/S2MPJ ``python_problems/``), evaluated for this table, for the
  problems ``JULIA_F0`` cannot check (CLIFF for one EXTCLIFF pair).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qnjax import problems

X64 = bool(jax.config.read("jax_enable_x64"))
needs_x64 = pytest.mark.skipif(not X64, reason="float64 check needs JAX_ENABLE_X64=1")

CUTEST = problems.cutest()
IDS = [p.name for p in CUTEST]
FAMILIES = [name.rsplit("_n", 1)[0] for name in IDS]

# (family, n) -> (value printed in the SIF file, significant digits)
SIF_FSTAR = {
    ("bdqrtic", 100): (378.769, 6), ("bdqrtic", 1000): (3983.82, 6),
    ("cragglvy", 100): (32.270, 5), ("cragglvy", 1000): (336.42, 5),
    ("freuroth", 100): (1.1965e4, 5), ("freuroth", 1000): (1.2147e5, 5),
    ("curly10", 1000): (-1.003163e5, 7),
    ("schmvett", 100): (-294.0, 3), ("schmvett", 1000): (-2994.0, 4),
}  # fmt: skip
CLIFF_FSTAR = 0.199786613  # CLIFF.SIF, per pair of EXTCLIFF

# (family, n) -> f(x0) in OptimizationProblems.jl
JULIA_F0 = {
    ("arwhead", 100): 297.0, ("bdqrtic", 100): 21696.0, ("chainwoo", 100): 371954.1,
    ("cosine", 100): 86.88067362714695, ("cragglvy", 100): 52823.07152952862,
    ("curly10", 100): -0.006237221463658019, ("dixmaane", 99): 731.8333333333334,
    ("dixmaani", 99): 663.6459034792368, ("dqdrtic", 100): 177282.0,
    ("dqrtic", 100): 1.85427373e9, ("engval1", 100): 5841.0, ("extrosnb", 100): 39604.0,
    ("freuroth", 100): 99556.5, ("genhumps", 100): 2.5368401187477503e6,
    ("liarwhd", 100): 58500.0, ("noncvxu2", 100): 2.639748043568829e6,
    ("nondia", 100): 39604.0, ("nondquar", 100): 106.0, ("powellsg", 100): 5375.0,
    ("power", 100): 2.55025e7, ("quartc", 100): 1.85427373e9, ("sinquad", 100): 0.6561,
    ("sparsqur", 100): 1420.3125, ("srosenbr", 100): 1210.0, ("tquartic", 100): 0.81,
    ("tridia", 100): 5049.0, ("vardim", 100): 1.3105836968932622e14,
}  # fmt: skip

# (family, n) -> f(x0) in S2MPJ
S2MPJ_F0 = {
    ("dixmaana", 99): 941.5, ("brybnd", 100): 2404.0, ("edensch", 100): 364435.0,
    ("fletchcr", 100): 99.0, ("genrose", 100): 404.1262213759875,
    ("morebv", 100): 1.2329251213726325e-06, ("penalty1", 100): 114480553328.346,
    ("tointgss", 100): 891.9999999999985, ("extcliff", 2): 485165194.41069025,
    ("bdqrtic", 1000): 225096.0, ("woods", 1000): 4798000.0,
}  # fmt: skip

# Tabulated minima re-derived by scipy's L-BFGS-B here (the settings used to compute
# them). CHAINWOO and NONCVXU2 are left out on purpose: which local minimum L-BFGS-B
# reaches there depends on the memory size and on scipy's line search details.
LBFGSB_CHECKED = ["bdqrtic", "broydn7d", "cragglvy", "edensch", "engval1", "freuroth",
                  "sinquad", "tointgss"]  # fmt: skip


@functools.cache
def value_and_grad(p):  # one jitted function per problem (compiled once per dtype)
    return jax.jit(jax.value_and_grad(p.fun))


def close(value, reference, rtol=1e-12, atol=1e-300):
    return abs(value - reference) <= max(rtol * abs(reference), atol)


def unit(printed: float, digits: int) -> float:
    """One unit in the last printed digit (the SIF files both round and truncate)."""
    return 10.0 ** (math.floor(math.log10(abs(printed))) - (digits - 1))


# ---------------------------------------------------------------- catalogue shape


def test_catalogue():
    assert len(CUTEST) == 39 and len(set(IDS)) == len(IDS)
    assert FAMILIES == sorted(FAMILIES)
    assert all(p.n == 100 and p.number is None for p in CUTEST)
    assert [p.name for p in problems.cutest(1000)] == [f"{f}_n1000" for f in FAMILIES]
    names = problems.names()
    assert set(IDS) <= set(names) and len(set(names)) == len(names)
    for p, family in zip(CUTEST, FAMILIES):
        assert problems.get(p.name) is p and problems.get(family) is p
    woods = problems.get("woods", n=1000)
    assert woods.name == "woods_n1000" and woods.n == 1000
    with pytest.raises(ValueError):
        problems.get("woods", n=102)  # multiple of 4
    with pytest.raises(ValueError):
        problems.get("bdqrtic", n=50)  # minimum computed for 100 and 1000 only
    with pytest.raises(ValueError):
        problems.cutest(50)
    with pytest.raises(ValueError):
        problems.get("woods_n100", n=1000)


def test_problem_fields():
    for p in CUTEST:
        assert p.x0.dtype == np.float64 and p.x0.shape == (100,)
        assert not p.x0.flags.writeable
        assert p.f0 is not None and math.isfinite(p.f0)
        assert isinstance(p.fstar, float) and math.isfinite(p.fstar)
        assert p.fstar <= p.f0, p.name
        if p.xstar is not None:
            assert p.xstar.shape == (100,) and not p.xstar.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        CUTEST[0].fstar = 0.0  # type: ignore[misc]


# ------------------------------------------------------------- published values


def test_fstar_matches_sif_files():
    for (family, n), (printed, digits) in SIF_FSTAR.items():
        fstar = problems.get(family, n).fstar
        assert abs(fstar - printed) <= unit(printed, digits), (family, n, fstar)
    for n in (100, 1000):
        p = problems.get("extcliff", n)
        assert abs(p.fstar - n / 2 * CLIFF_FSTAR) <= n / 2 * unit(CLIFF_FSTAR, 9)


def test_closed_form_minima():
    for n in (100, 1000):
        assert problems.get("cosine", n).fstar == -(n - 1)
        assert problems.get("schmvett", n).fstar == -3 * (n - 2)
        assert problems.get("tointgss", n).fstar == 10 + 10 / (n - 2)
        for family in ("dixmaana", "dixmaane", "dixmaani", "genrose"):
            assert problems.get(family, n).fstar == 1.0
    # CURLY10: n min_q (q^4 - 20 q^2 - q/10), the SIF's -1.003163e5 at n = 1000
    q = np.linspace(2.0, 4.0, 200_001)
    g = q**4 - 20 * q**2 - q / 10
    assert close(problems.get("curly10", 1000).fstar, 1000 * g.min(), rtol=1e-9)


def test_noncvxu2_minima_lie_just_above_the_sif_bound():
    # SIF's "solution" 2.3168084 n is n * min_v (v^2 + 4 cos v), a lower bound
    v = np.linspace(1.8, 2.0, 200_001)
    bound = (v * v + 4 * np.cos(v)).min()
    assert abs(bound - 2.3168084) < 1e-7
    for n in (100, 1000):
        fstar = problems.get("noncvxu2", n).fstar
        assert n * bound <= fstar <= n * bound * (1 + 1e-3)


def test_f0_matches_independent_implementations():
    for (family, n), value in {**JULIA_F0, **S2MPJ_F0}.items():
        assert close(problems.get(family, n).f0, value, rtol=1e-13), (family, n)


# --------------------------------------------------------------- float64 checks


@needs_x64
@pytest.mark.parametrize("p", CUTEST, ids=IDS)
def test_float64_at_x0_and_xstar(p):
    vg = value_and_grad(p)
    f, g = vg(p.x0_as(jnp.float64))
    assert f.dtype == jnp.float64 and g.dtype == jnp.float64
    assert close(float(f), p.f0, rtol=1e-12), (p.name, float(f), p.f0)
    assert np.all(np.isfinite(np.asarray(g)))
    if p.xstar is not None:
        f, g = vg(jnp.asarray(p.xstar))
        assert close(float(f), p.fstar, rtol=1e-12, atol=1e-20), (p.name, float(f))
        slope = np.max(np.abs(np.asarray(g)) * np.maximum(1.0, np.abs(p.xstar)))
        assert slope <= 1e-8 * max(1.0, abs(p.fstar)), (p.name, slope)


@needs_x64
def test_closed_forms_at_n_1000():
    families = ["arwhead", "brybnd", "cosine", "curly10", "dixmaani", "extcliff",
                "nondquar", "penalty1", "schmvett", "sparsqur", "tridia", "woods"]
    for family in families:
        p = problems.get(family, 1000)
        fun = jax.jit(p.fun)
        assert close(float(fun(p.x0_as(jnp.float64))), p.f0, rtol=1e-12), p.name
        assert close(float(fun(jnp.asarray(p.xstar))), p.fstar, rtol=1e-12, atol=1e-20)


@needs_x64
@pytest.mark.parametrize("family", LBFGSB_CHECKED)
def test_lbfgsb_reaches_tabulated_fstar(family):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    p = problems.get(family)
    vg = value_and_grad(p)

    def fun_and_grad(x):
        f, g = vg(jnp.asarray(x))
        return float(f), np.asarray(g, dtype=np.float64)

    res = scipy_optimize.minimize(
        fun_and_grad, p.x0, method="L-BFGS-B", jac=True,
        options=dict(gtol=1e-12, ftol=0.0, maxiter=100_000, maxfun=100_000),
    )  # fmt: skip
    assert close(res.fun, p.fstar, rtol=1e-6), (p.name, res.fun, p.fstar)


# --------------------------------------------------------------- float32 checks


@pytest.mark.parametrize("p", CUTEST, ids=IDS)
def test_float32_in_float32_out(p):
    f, g = value_and_grad(p)(p.x0_as(jnp.float32))
    assert f.dtype == jnp.float32 and not f.weak_type and f.shape == ()
    assert g.dtype == jnp.float32 and g.shape == (p.n,)
    assert np.isfinite(float(f)) and np.all(np.isfinite(np.asarray(g)))
    assert close(float(f), p.f0, rtol=1e-4), (p.name, float(f), p.f0)  # seen: < 1e-5


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_strict_dtype_promotion(dtype):
    if dtype == jnp.float64 and not X64:
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    spec = jax.ShapeDtypeStruct((100,), dtype)
    with jax.numpy_dtype_promotion("strict"):
        for p in CUTEST:
            jaxpr = jax.make_jaxpr(jax.value_and_grad(p.fun))(spec)
            out = jaxpr.out_avals[0]
            assert out.dtype == dtype and not out.weak_type, p.name
            if dtype == jnp.float32:
                assert "f64" not in str(jaxpr), p.name
