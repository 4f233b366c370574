"""Catalogue of test problems (unconstrained and bound-constrained) for benchmarking qnjax.

* :func:`mgh` -- the 35 problems of Moré, Garbow & Hillstrom (1981), at the paper's
  standard starting points and standard dimensions (see :mod:`qnjax.problems._mgh_fixed`
  for the references and the local-minimum caveats).
* :func:`scalable` -- a few of them at large ``n`` plus an ill-conditioned separable
  quadratic, for speed and memory benchmarks.
* :func:`cutest` -- 38 large-scale problems of the CUTEst collection plus the extended
  cliff function, at any ``n`` (default 100), defined as in their SIF files (see
  :mod:`qnjax.problems._cutest` for the sources and how each ``fstar`` was obtained).
* :func:`bounded` -- bound-constrained problems (``Problem.lower`` / ``upper``): the
  Hock-Schittkowski box problems, Gay's boxed MGH problems, L-BFGS-B's ``driver1``
  and a few built to exercise bounds (a box QP with an enumerated minimum, a linear
  objective, fixed variables); see :mod:`qnjax.problems._bounded`.
* :func:`scalable_bounded` -- two bound-constrained problems with exact minima at any
  ``n`` (a multiple of 4), matrix-free, for n up to 1e6.
* :func:`box_least_squares` -- families of random box least-squares fits that are hard
  in float32, with their float64 minima and a judge (``box_least_squares_minima``,
  ``box_least_squares_judged``); see :mod:`qnjax.problems._box_fits`.
* :func:`get` / :func:`names` -- lookup by name.

Every :attr:`Problem.fun` is pure, jittable and dtype-generic: a float32 ``x`` gives a
float32 (strongly typed) scalar and a float64 ``x`` a float64 one; all data constants
are cast to ``x.dtype`` inside the function.

Names: fixed-dimension problems use a plain snake_case name (``"rosenbrock"``,
``"helical_valley"``); variable-dimension ones append the dimension
(``"extended_rosenbrock_n10"``, ``"watson_n6"``, ``"woods_n100"``; CUTEst families are
the lower-case CUTEst names). :func:`get` also accepts the family name without the
suffix (``get("extended_rosenbrock", n=1000)``, ``get("woods", n=1000)``) to build an
instance at another dimension.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BoxFits", "Problem", "bounded", "box_least_squares", "box_least_squares_judged", "box_least_squares_minima",
           "box_least_squares_value", "cutest", "get", "mgh", "names", "scalable", "scalable_bounded"]


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """One unconstrained minimisation problem ``min_x fun(x)``, ``x`` of shape ``(n,)``.

    Fields: ``name`` (unique snake_case id), ``number`` (MGH number 1..35, ``None``
    otherwise), ``n``, ``fun`` (pure, jittable, dtype-generic), ``x0`` (the standard
    start, read-only float64), ``fstar`` (the minimum value expected from ``x0``; where
    the paper lists several minima this is the one descent methods reach from ``x0``,
    see :mod:`qnjax.problems._mgh_fixed`), ``xstar`` (a minimiser with
    ``fun(xstar) == fstar``, or ``None``) and ``f0`` (published or exactly derived
    ``fun(x0)``, or ``None``).

    Bound-constrained problems (:func:`bounded`, :func:`scalable_bounded`) also carry
    ``lower`` and ``upper``: read-only float64 arrays of shape ``(n,)``, ``-inf`` /
    ``+inf`` where a variable has no bound on that side, ``lower <= upper`` (equal for a
    fixed variable). The problem is then ``min fun(x)`` subject to
    ``lower <= x <= upper``; ``xstar`` is feasible, ``fstar`` the constrained minimum,
    and ``x0`` may be infeasible (solvers start from its projection,
    :meth:`project`). Both ``None`` (the default) means unbounded; giving one of them
    alone leaves the other side unbounded.

    ``eq=False``: problems compare and hash by identity (their arrays make value
    equality ambiguous), so they can be used as dict keys or static jit arguments.
    """

    name: str
    number: int | None
    n: int
    fun: Callable[[jax.Array], jax.Array]
    x0: np.ndarray
    fstar: float
    xstar: np.ndarray | None = None
    f0: float | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def __post_init__(self) -> None:
        x0 = _frozen_vector(self.x0, self.n, "x0")
        object.__setattr__(self, "x0", x0)
        if self.xstar is not None:
            object.__setattr__(self, "xstar", _frozen_vector(self.xstar, self.n, "xstar"))
        object.__setattr__(self, "fstar", float(self.fstar))
        if self.f0 is not None:
            object.__setattr__(self, "f0", float(self.f0))
        if self.lower is not None or self.upper is not None:
            lower = _frozen_vector(-np.inf if self.lower is None else self.lower, self.n, "lower")
            upper = _frozen_vector(np.inf if self.upper is None else self.upper, self.n, "upper")
            if np.any(np.isnan(lower)) or np.any(np.isnan(upper)) or np.any(lower > upper):
                raise ValueError(f"{self.name}: bounds must be non-NaN with lower <= upper")
            if np.any(lower == np.inf) or np.any(upper == -np.inf):
                raise ValueError(f"{self.name}: lower = +inf or upper = -inf leaves no feasible point")
            object.__setattr__(self, "lower", lower)
            object.__setattr__(self, "upper", upper)

    @property
    def bounded(self) -> bool:
        """Whether the problem has bounds (``lower`` / ``upper`` not ``None``)."""
        return self.lower is not None

    def project(self, x) -> np.ndarray:
        """``x`` clipped onto the box, as float64 numpy (``x`` itself if unbounded)."""
        x = np.asarray(x, dtype=np.float64)
        return x if self.lower is None else np.clip(x, self.lower, self.upper)

    def x0_as(self, dtype) -> jax.Array:
        """The standard starting point as a jax array of ``dtype``."""
        return jnp.asarray(self.x0, dtype=dtype)

    def __repr__(self) -> str:
        num = "" if self.number is None else f", number={self.number}"
        box = ", bounded" if self.bounded else ""
        return f"Problem({self.name!r}{num}, n={self.n}, fstar={self.fstar:.6g}{box})"


def _frozen_vector(value, n: int, what: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64)
    if arr.ndim == 0 and what in ("lower", "upper"):  # a scalar bound applies to every variable
        arr = np.full(n, arr)
    if arr.shape != (n,):
        raise ValueError(f"{what} has shape {arr.shape}, expected ({n},)")
    arr.setflags(write=False)
    return arr


# The submodules import Problem from this package, so they must be imported after it
# is defined.
from qnjax.problems import (  # noqa: E402
    _bounded,
    _bounded_scalable,
    _cutest,
    _mgh_fixed,
    _mgh_variable,
    _scalable,
)
from qnjax.problems._box_fits import (  # noqa: E402
    BoxFits,
    box_least_squares,
    box_least_squares_judged,
    box_least_squares_minima,
    box_least_squares_value,
)

# family name -> (builder(n) -> Problem, default dimensions in catalogue order)
_FAMILIES = {
    **_mgh_fixed.FAMILIES,
    **_mgh_variable.FAMILIES,
    **_scalable.FAMILIES,
    **_cutest.FAMILIES,
    **_bounded_scalable.FAMILIES,
}


def mgh() -> tuple[Problem, ...]:
    """The Moré-Garbow-Hillstrom catalogue in the paper's order (1..35)."""
    out = []
    for families in (_mgh_fixed.FAMILIES, _mgh_variable.FAMILIES):
        for build, dims in families.values():
            out.extend(build(n) for n in dims)
    return tuple(out)


def scalable(n: int = 10_000) -> tuple[Problem, ...]:
    """Large-``n`` problems: extended Rosenbrock (21), extended Powell singular (22,
    ``n`` must be a multiple of 4), Broyden tridiagonal (30), discrete boundary value
    (28) and an ill-conditioned separable quadratic (``number=None``)."""
    return _scalable.scalable(n)


def cutest(n: int = 100) -> tuple[Problem, ...]:
    """The CUTEst families at dimension ``n`` (default 100), in alphabetical order.

    Every family is available at n = 100 and n = 1000; other ``n`` raise ``ValueError``
    where a family needs a divisibility (WOODS, POWELLSG: multiple of 4; even for
    BROYDN7D, CHAINWOO, CRAGGLVY, EXTCLIFF, SROSENBR) or where its minimum value was
    computed numerically for 100 and 1000 only.
    """
    return _cutest.cutest(n)


def bounded() -> tuple[Problem, ...]:
    """The bound-constrained catalogue, in a fixed order: Hock-Schittkowski 1, 2, 3, 4,
    5, 25, 38, 45, 110; Gay's boxed MGH problems in MGH order; ``lbfgsb_driver1``,
    ``chained_rosenbrock_box_n5``, ``random_box_qp_n8``, ``linear_box``,
    ``fixed_variables_n6``. Each has ``lower`` and ``upper`` (see :class:`Problem`)."""
    return _bounded.catalogue()


def scalable_bounded(n: int = 10_000) -> tuple[Problem, ...]:
    """Large-``n`` bound-constrained problems with exact minima (``n`` a multiple of 4):
    a separable quartic on ``[0, 1]**n`` with half its bounds active, and nonnegative
    least squares with a matrix-free bidiagonal operator; see
    :mod:`qnjax.problems._bounded_scalable`."""
    return _bounded_scalable.scalable_bounded(n)


def _everything() -> tuple[Problem, ...]:
    return mgh() + scalable() + cutest() + bounded() + scalable_bounded()


def names() -> tuple[str, ...]:
    """Names of the problems in :func:`mgh`, ``scalable()``, ``cutest()``,
    :func:`bounded` and ``scalable_bounded()`` (default ``n``), in that order."""
    return tuple(p.name for p in _everything())


def get(name: str, n: int | None = None) -> Problem:
    """Look a problem up by name.

    ``name`` is either an instance name from :func:`names` (``"watson_n6"``) or a family
    name (``"watson"``, ``"extended_rosenbrock"``), in which case ``n`` picks the
    dimension (default: the first standard one). Raises ``KeyError`` (listing the known
    names) for an unknown name, and ``ValueError`` for an unsupported ``n``.
    """
    if name in _FAMILIES:
        build, dims = _FAMILIES[name]
        return build(dims[0] if n is None else int(n))
    for p in _everything():
        if p.name == name:
            if n is not None and int(n) != p.n:
                raise ValueError(f"{name!r} has n={p.n}; use its family name to pick n={n}")
            return p
    known = ", ".join(names()) + "; families: " + ", ".join(_FAMILIES)
    raise KeyError(f"unknown problem {name!r}; known problems: {known}")
