"""Large-``n`` problems for speed and memory benchmarks.

:func:`scalable` returns, at one dimension ``n`` (default 10 000):

* extended Rosenbrock (MGH 21), ``n`` even;
* extended Powell singular (MGH 22), ``n`` a multiple of 4 -- singular Hessian at the
  solution, so convergence is only linear;
* Broyden tridiagonal (MGH 30);
* discrete boundary value (MGH 28) -- its Hessian's condition number grows like
  ``n**4``, so at large ``n`` it is a hard, badly conditioned problem (in float32 the
  residuals are mostly rounding noise);
* an ill-conditioned separable quadratic ``f(x) = 1/2 sum_i d_i x_i**2`` with
  ``d_i = 10**(4 (i-1)/(n-1))`` log-spaced over ``[1, 1e4]`` (condition number 1e4),
  ``x0 = ones``, minimum 0 at the origin (``number=None``: not an MGH problem).

The MGH ones are the same objects as ``get(family, n=n)`` (see
:mod:`qnjax.problems._mgh_variable`); all are vectorised (no Python loop over ``n``).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from qnjax.problems import Problem
from qnjax.problems._mgh_variable import (
    build_broyden_tridiagonal,
    build_discrete_boundary_value,
    build_extended_powell_singular,
    build_extended_rosenbrock,
)

_LOG10_COND = 4.0


def ill_conditioned_quadratic(x):
    n = x.shape[0]
    step = _LOG10_COND / (n - 1) if n > 1 else 0.0
    d = 10 ** (jnp.arange(n, dtype=x.dtype) * step)
    return jnp.sum(d * x * x) / 2


@functools.cache
def build_ill_conditioned_quadratic(n: int) -> Problem:
    if n < 1:
        raise ValueError(f"ill_conditioned_quadratic: n={n} unsupported (n >= 1)")
    # f(x0) = sum_i d_i / 2, a geometric series with ratio r = 10**(4/(n-1))
    if n == 1:
        f0 = 0.5
    else:
        r = 10 ** (_LOG10_COND / (n - 1))
        f0 = (r**n - 1) / (r - 1) / 2
    return Problem(f"ill_conditioned_quadratic_n{n}", None, n, ill_conditioned_quadratic,
                   np.ones(n), 0.0, np.zeros(n), f0=f0)  # fmt: skip


def scalable(n: int = 10_000) -> tuple[Problem, ...]:
    """The large-``n`` set at dimension ``n`` (a multiple of 4, for extended Powell)."""
    n = int(n)
    if n < 4 or n % 4:
        raise ValueError(f"scalable(n): n must be a positive multiple of 4, got {n}")
    return (
        build_extended_rosenbrock(n),
        build_extended_powell_singular(n),
        build_broyden_tridiagonal(n),
        build_discrete_boundary_value(n),
        build_ill_conditioned_quadratic(n),
    )


FAMILIES = {"ill_conditioned_quadratic": (build_ill_conditioned_quadratic, (10_000,))}
