"""Dtype rules and pytree arithmetic shared by every qnjax algorithm.

Parameters stay pytrees; each leaf keeps its own dtype. All scalars (values, slopes, step sizes, inner
products) live in one *scalar dtype*, decided at ``init``: the widest real float among the leaves (the real
part's dtype for complex leaves), at least ``float32``, canonicalised for the current x64 mode; or the
dtype the user gives explicitly.

Complex parameters are treated as real vectors in R^{2n}. For a real loss f(z), ``jax.grad`` returns the
*conjugate* of the steepest-ascent direction; :func:`conj` turns it into the real-space gradient (optax's
convention for the gradients it is given), so every formula is the real-space one, with inner product
<a, b> = Re sum(conj(a) * b) (= sum(a.real * b.real + a.imag * b.imag)). Inner products accumulate in the
scalar dtype, so bf16/f16 leaves are summed in at least float32.

Every mixed-dtype operation is an explicit cast, so qnjax runs under
``jax.numpy_dtype_promotion('strict')``.

Every matrix product of the solver's own arrays asks for full precision (:data:`HIGHEST`): JAX's default
precision for float32 products allows TF32 on NVIDIA GPUs from Ampere on (inputs rounded to 11 significant
bits) and bfloat16 passes on TPUs. On an H200 the default made the memory's products five times less
accurate than float32 summation (and the iteration slower). The user's ``fun`` keeps whatever precision it
asks for.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._xla import where

HIGHEST = jax.lax.Precision.HIGHEST


def matmul(a, b):
    """``a @ b`` (1-D or 2-D, one dtype) at full precision, naming no result dtype: under ``jax.vmap``
    a loop's body is traced again outside ``jax.enable_x64`` (``_cauchy``), where ``jnp.matmul``'s
    float64 result dtype became float32."""
    return jax.lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), precision=HIGHEST)


def dtype_of(x) -> np.dtype:
    return jnp.result_type(x)


def count(tree) -> int:
    """The number of elements over all leaves of ``tree`` (static)."""
    return sum(jnp.size(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def check_params(params, what: str = "params") -> None:
    """Raise ``TypeError`` naming the first leaf whose dtype is not float/complex."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = dtype_of(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{what}{jax.tree_util.keystr(path)} has dtype {dtype}; qnjax optimises "
                "floating-point or complex leaves only (cast it with .astype, "
                "or close over it as a constant)"
            )


def real_dtype(dtype) -> np.dtype:
    """The real dtype of ``dtype`` (its real part's for complex)."""
    return jnp.finfo(dtype).dtype


def _widest(a, b) -> np.dtype:
    """The wider of two real float dtypes, without JAX's promotion (two 16-bit
    formats give float32)."""
    a, b = jnp.dtype(a), jnp.dtype(b)
    if a == b:
        return a
    if a.itemsize != b.itemsize:
        return a if a.itemsize > b.itemsize else b
    return jnp.dtype(jnp.float32)


def scalar_dtype(params, dtype=None) -> np.dtype:
    """The state's scalar dtype for ``params`` (see module docstring)."""
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"scalar_dtype must be a real float dtype, got {dtype}")
        return jax.dtypes.canonicalize_dtype(dtype)
    widest = jnp.dtype(jnp.float32)
    for leaf in jax.tree_util.tree_leaves(params):
        widest = _widest(widest, real_dtype(dtype_of(leaf)))
    return jax.dtypes.canonicalize_dtype(widest)


def work_dtype(leaf_dtype, sdt) -> np.dtype:
    """The leaf's dtype widened to the scalar precision (complex stays complex)."""
    leaf_dtype = jnp.dtype(leaf_dtype)
    real = _widest(real_dtype(leaf_dtype), sdt)
    if jnp.issubdtype(leaf_dtype, jnp.complexfloating):
        return jnp.dtype(jnp.complex128 if real.itemsize == 8 else jnp.complex64)
    return real


def conj(tree):
    """Conjugate complex leaves: JAX's grad of a real loss <-> the real-space gradient."""
    return jax.tree.map(lambda g: jnp.conj(g) if jnp.iscomplexobj(g) else g, tree)


def inner(a, b, sdt):
    """Real inner product <a, b> of two pytrees, accumulated in ``sdt``."""
    return inners([(a, b)], sdt)[0]


# Up to this many elements a leaf's reductions are stacked into one (one compiled kernel:
# compile time is kernel count at small n); beyond, each is its own streaming pass (XLA
# would write the stack to memory first: bandwidth is the cost at large n).
STACK_LIMIT = 1 << 16


def _stack_reduce(terms, reduce):
    """``reduce`` (jnp.sum or jnp.max over the last axis) of each term: (len(terms),)."""
    if terms[0].size <= STACK_LIMIT:
        return reduce(jnp.stack(terms), axis=tuple(range(1, terms[0].ndim + 1)))  # no flattening: see _memory
    return jnp.stack([reduce(x) for x in terms])


def inners(pairs, sdt):
    """The inner products <a, b> of several pairs of pytrees, as a (len(pairs),) array,
    accumulated in ``sdt``."""
    total = jnp.zeros((len(pairs),), sdt)
    leaves = [(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)) for a, b in pairs]
    for j in range(len(leaves[0][0])):
        wd = work_dtype(dtype_of(leaves[0][0][j]), sdt)
        terms = []
        for xs, ys in leaves:
            x, y = xs[j].astype(wd), ys[j].astype(wd)
            terms.append(x.real * y.real + x.imag * y.imag if jnp.iscomplexobj(x) else x * y)
        total = total + _stack_reduce(terms, jnp.sum).astype(sdt)
    return total


def norm_inf(a, sdt):
    """max |a_i| over all leaves (modulus for complex), in ``sdt``; 0 for no leaves."""
    m = jnp.zeros((), sdt)
    for x in jax.tree_util.tree_leaves(a):
        if x.size:
            m = jnp.maximum(m, jnp.max(jnp.abs(x)).astype(sdt))
    return m


def guards_range(sdt) -> bool:
    """Whether a program in the scalar dtype ``sdt`` carries the guards against products that
    overflow or underflow (static): float32 and narrower, where squares overflow beyond 1.8e19
    and underflow below 1e-19; float64's only beyond 1.3e154 and below 1e-154, and a guard is a
    branch (both sides run under ``jax.vmap``)."""
    return jnp.finfo(sdt).bits <= 32


def scaled_to_unit(d, sdt):
    """(factor d, factor): factor a power of two (in ``sdt``) that brings d's largest component
    near 1, exactly (each leaf is multiplied by powers of two), with factor and 1 / factor
    finite normal numbers (so a d far beyond the square root of the largest number, or below
    that of the smallest, gets products <d, d> that neither overflow nor underflow)."""
    fi = jnp.finfo(sdt)
    _, e = jnp.frexp(norm_inf(d, sdt))  # max |d_i| = f 2^e, 1/2 <= f < 1
    e = jnp.clip(e, fi.minexp + 2, fi.maxexp - 2)
    half = e // 2  # (2^-e in two factors, each a normal number: 2^-e alone may be subnormal)
    factors = [jnp.ldexp(jnp.ones((), sdt), -k) for k in (half, e - half)]
    scaled = jax.tree.map(lambda a: (a * factors[0].astype(a.dtype)) * factors[1].astype(a.dtype), d)
    return scaled, factors[0] * factors[1]


def unoverflowed(d, grad, slope0, dd, sdt):
    """(d', slope0', dd', factor): where <g, d> or <d, d> overflow (a direction beyond the
    square root of the largest number: 1.8e19 in float32, as a far start's gradient can be)
    or underflow (below the smallest normal number: f scaled by 1e-20 in float32 has
    <g, g> ~ 1e-40, which left no search), d' = factor d with factor a power of two that
    brings d's largest component near 1, and its products, which are then finite and, where
    g is not itself below the smallest normal number's square root, normal; else everything
    as given and factor 1. Only d's
    length changes: the caller scales the step sizes it derives by 1 / factor. (A branch:
    its passes are made only where the products overflowed, but under ``jax.vmap`` both
    sides run, a few kernels an iteration; so it is made only where :func:`guards_range`.)"""
    def rescaled():
        scaled, factor = scaled_to_unit(d, sdt)
        slope, norm2 = inners([(grad, scaled), (scaled, scaled)], sdt)
        return scaled, slope, norm2, factor

    tiny = jnp.finfo(sdt).tiny  # (and where they underflow: f scaled by 1e-20 has <g, g> ~ 1e-40)
    over = ~(jnp.isfinite(slope0) & jnp.isfinite(dd)) | (dd < tiny) | (jnp.abs(slope0) < tiny)
    return jax.lax.cond(over, rescaled, lambda: (d, slope0, dd, jnp.ones((), sdt)))


def all_finite(a):
    ok = jnp.asarray(True)
    for x in jax.tree_util.tree_leaves(a):
        ok = ok & jnp.all(jnp.isfinite(x))
    return ok


def scale(t, d, like, exact_zero=False):
    """``t * d`` leaf by leaf, computed at the scalar precision (the dtype of ``t``),
    kept in the dtypes of ``like``; with ``exact_zero``, zero where t = 0 whatever d holds
    (0 * inf is NaN: the step of an iteration whose x stays along a direction that is not
    finite; a select in the same kernel).

    The trial point of a line search is always ``add(x, scale(t, d, x))``, which is
    bit-for-bit what ``optax.apply_updates`` computes from the returned updates."""

    def one(u, x):
        wd = work_dtype(dtype_of(u), dtype_of(t))
        step = t.astype(wd) * u.astype(wd)
        if exact_zero:
            step = where(t == 0, jnp.zeros_like(step), step)
        return step.astype(dtype_of(x))

    return jax.tree.map(one, d, like)


def add(x, u):
    return jax.tree.map(lambda a, b: (a + b.astype(dtype_of(a))).astype(dtype_of(a)), x, u)


def sub(x, u):
    return jax.tree.map(lambda a, b: (a - b.astype(dtype_of(a))).astype(dtype_of(a)), x, u)


def select(pred, on_true, on_false):
    """``on_true`` where the scalar ``pred`` holds, else ``on_false``, leaf by leaf."""
    return jax.tree.map(lambda a, b: where(pred, a, b), on_true, on_false)


def zeros_like(x):
    return jax.tree.map(lambda a: jnp.zeros(jnp.shape(a), dtype_of(a)), x)


def cast_like(x, like):
    """Cast each leaf of ``x`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda a, b: jnp.asarray(a).astype(dtype_of(b)), x, like)


def _norms_and_ratio(ax, ad, floor):
    """(max ax, max ad, min max(ax, floor) / ad) in one pass over a large leaf: one variadic
    reduction. ``floor`` > 0, so where ad = 0 the ratio is +inf without a select. As five
    library reductions (max and min of each vector, the ratio's minimum) XLA:CPU wrote the
    ratio out first and read the vectors three times: 0.62-0.79 ms against 0.32-0.34 ms at
    10^6 float32 elements, 1.21-1.25 ms against 0.60 ms in float64, with either emitter and
    the same values (a ``/tmp`` microbenchmark, best of 40). In a solve at 10^6 (Rosenbrock's, float32)
    their kernels went from 1.21 to 0.46 ms an iteration, the wall time about 0.4 ms of 11-12 (on 2
    cores the five partly ran beside other kernels). (A select in the ratio made it 2.6 ms.)"""
    zero = jnp.zeros((), ax.dtype)
    return jax.lax.reduce((ax, ad, jnp.maximum(ax, floor) / ad), (zero, zero, jnp.asarray(jnp.inf, ax.dtype)),
                          lambda a, b: (jnp.maximum(a[0], b[0]), jnp.maximum(a[1], b[1]), jnp.minimum(a[2], b[2])),
                          tuple(range(ax.ndim)))


def ulp_stepsizes(x, d, sdt, fdt=None):
    """The steps t at which ``x + t d`` moves x by one unit in its last place: (4,) array of

    * the vector's: eps ||x||_inf / ||d||_inf over the leaves of each dtype taken as one
      vector, the least over the dtypes (so a tree of leaves of one dtype has the step of
      their concatenation: a leaf converging to 0 beside others of size 1 made the tree's
      rounding step that leaf's, where the concatenated vector's is the others', and a
      run that had reached the minimum ended with LINESEARCH_FAILED);
    * the components': min over moving components of ulp_i / |d_i|, with
      ulp_i = eps(leaf) max(|x_i|, tiny(leaf) / eps(leaf)): a component at (or near) zero
      moves by its dtype's smallest normal number, not by a fraction of the others;

    (+inf where d is zero), max |x_i| over the leaves, and the coarsest dtype's vector step (the greatest over
    the dtypes d moves, and f's, ``fdt``: ``_verdict.value_dtype``), PRECISION's (``_verdict.rules``: at the
    finest dtype's step coarser leaves do not move, their gradient, at their own rounding, kept the slope
    negative, and mixed-precision runs at their minimum ended LINESEARCH_FAILED). A smaller step changes no
    component (the vector) at more than its rounding level. All come from one reduction per leaf. (At x =
    (0, 100), d along x_0, the minimiser along d lies far below the vector's step: the search goes there.)"""
    each = jnp.full((), jnp.inf, sdt)
    norms = {}  # dtype -> (max ||x_leaf||, max ||d_leaf||) over its leaves
    for xl, dl in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(d)):
        if xl.size:
            info = jnp.finfo(dtype_of(xl))
            eps = jnp.asarray(info.eps, sdt)
            ax, ad = jnp.abs(xl).astype(sdt), jnp.abs(dl).astype(sdt)
            floor = np.asarray(float(info.tiny) / float(info.eps), np.dtype(sdt))  # (static: checked below)
            real = not (jnp.iscomplexobj(xl) or jnp.iscomplexobj(dl))
            if xl.size > STACK_LIMIT and real and floor > 0:
                xn, dn, rmin = _norms_and_ratio(ax, ad, jnp.asarray(floor))
            else:  # (a floor that underflows in sdt, a float64 leaf in float32, needs the select: 0 / 0)
                ratio = where(ad > 0, jnp.maximum(ax, jnp.asarray(floor)) / where(ad > 0, ad, 1), jnp.inf)
                xn, dn, rmin = _stack_reduce([ax, ad, -ratio], jnp.max) * jnp.asarray([1, 1, -1], sdt)
            key = jnp.dtype(dtype_of(xl))
            if key in norms:
                xn, dn = jnp.maximum(norms[key][0], xn), jnp.maximum(norms[key][1], dn)
            norms[key] = (xn, dn)
            each = jnp.minimum(each, eps * rmin)
    vector, largest, coarse = jnp.full((), jnp.inf, sdt), jnp.zeros((), sdt), jnp.zeros((), sdt)
    if fdt is not None and norms:  # (x as f sees it: every leaf in f's dtype)
        norms[None] = tuple(jnp.max(jnp.stack(v)) for v in zip(*norms.values()))
    for key, (xn, dn) in norms.items():
        eps = jnp.asarray(jnp.finfo(fdt if key is None else key).eps, sdt)
        step = eps * where(dn > 0, xn / where(dn > 0, dn, 1), jnp.inf)
        vector, largest = (vector if key is None else jnp.minimum(vector, step)), jnp.maximum(largest, xn)
        coarse = jnp.maximum(coarse, where(dn > 0, step, 0))
    return jnp.stack([vector, each, largest, where(coarse > 0, coarse, vector)])
