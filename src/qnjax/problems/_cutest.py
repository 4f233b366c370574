"""CUTEst-style large-scale unconstrained problems, any ``n`` (default 100).

Sources. The definitions are those of the SIF files of CUTEst (the MASTSIF collection
of Bongartz, Conn, Gould & Toint, ACM TOMS 21(1), 1995, and Gould, Orban & Toint,
Comput. Optim. Appl. 60, 2015), read from the SIF text; where a SIF file differs from
N. Andrei, "An unconstrained optimization test functions collection", Adv. Modeling
and Optimization 10(1), 2008, or from the paper that introduced the problem, the SIF
form is kept and the difference is said in the family's module. ``x0`` is the SIF
file's start point, ``number`` is ``None``.

Three modules, split by CUTEst's objective classification letter and the kind of
function:

* :mod:`qnjax.problems._cutest_sumsq` -- sums of squares and quadratics ("S", "Q"):
  BDQRTIC, BRYBND, CHAINWOO, DQDRTIC, EXTROSNB, FREUROTH, GENROSE, LIARWHD, MOREBV,
  NONDIA, PENALTY1, SROSENBR, TQUARTIC, TRIDIA, WOODS.
* :mod:`qnjax.problems._cutest_algebraic` -- other ("O") objectives built from
  polynomials: ARWHEAD, BROYDN7D, CURLY10, DIXMAANA, DIXMAANE, DIXMAANI, DQRTIC,
  EDENSCH, ENGVAL1, FLETCHCR, NONDQUAR, POWELLSG, POWER, QUARTC, SPARSQUR, VARDIM.
* :mod:`qnjax.problems._cutest_transcendental` -- other objectives with exponentials
  and trigonometric terms, mostly nonconvex: COSINE, CRAGGLVY, EXTCLIFF, GENHUMPS,
  NONCVXU2, SCHMVETT, SINQUAD, TOINTGSS.

Names: the lower-case CUTEst name is the family (``get("woods", n=1000)``); instances
are ``family_nN`` (``"woods_n100"``), as for the variable-dimension MGH problems.

``fstar`` is the minimum value expected from ``x0`` (see :class:`qnjax.problems.Problem`).
It is exact for every ``n`` where a closed form exists (zero-residual least squares,
and the problems whose minimum is worked out in their module). Otherwise it is a table
for n = 100 and n = 1000 (other ``n`` raise ``ValueError``), computed here in float64:
scipy's L-BFGS-B (default memory m = 10, ``gtol=1e-12, ftol=0``) from ``x0`` with an
exact jitted gradient, then Newton's method with the exact Hessian until the gradient
norm is below 1e-11, at a point where the Hessian is positive (semi)definite. Each was
also solved with L-BFGS-B at m = 3, 5, 20, 50, with CG and (n = 100) BFGS; where these
end at different local minima (BROYDN7D, CHAINWOO, NONCVXU2) the module lists them,
``fstar`` is the m = 10 one and reaching a lower value counts as better. Where descent
stops on a plateau instead (TOINTGSS), ``fstar`` is that value and ``xstar`` is
``None``. GENHUMPS, whose humps make many local minima, was reached at its global
minimum 0 by every method.

``f0`` is ``fun(x0)`` in closed form (or by exact summation of the terms at ``x0``).

Checks. Every function except BROYDN7D, CHAINWOO, DQDRTIC and SROSENBR (which S2MPJ
does not carry) was compared with S2MPJ's Python translation of the same SIF file
(Gratton & Toint, 2024) at ``x0`` and at two random points: equal to 1e-12, except
SCHMVETT, where S2MPJ prints the SIF's 3.14159265 as 3.141593. ``tests/test_cutest.py``
keeps the published and independently computed values it uses.
"""

from __future__ import annotations

import math

import numpy as np

from qnjax.problems import Problem

__all__ = ["FAMILIES", "cutest"]


def need(cond: bool, family: str, n: int, what: str) -> None:
    """Raise ``ValueError`` for an unsupported dimension."""
    if not cond:
        raise ValueError(f"{family}: n={n} unsupported ({what})")


def tabulated(family: str, n: int, table: dict[int, float]) -> float:
    """A numerically computed minimum value, for the ``n`` it is known at."""
    need(n in table, family, n, f"minimum computed for n in {sorted(table)} only")
    return table[n]


def problem(family: str, n: int, fun, x0, fstar: float, xstar=None, f0=None) -> Problem:
    """A CUTEst instance named ``family_nN`` (``number=None``)."""
    x0 = np.broadcast_to(np.asarray(x0, dtype=np.float64), (n,))
    return Problem(f"{family}_n{n}", None, n, fun, x0, fstar, xstar, f0=f0)


def fsum(terms) -> float:
    """Compensated float sum of exactly-evaluated terms (for ``f0``)."""
    return math.fsum(terms)


# The family modules import the helpers above, so they are imported after them.
from qnjax.problems import (  # noqa: E402
    _cutest_algebraic,
    _cutest_sumsq,
    _cutest_transcendental,
)

# family -> (builder(n) -> Problem, default dimensions), in alphabetical order
FAMILIES = dict(
    sorted(
        {
            **_cutest_sumsq.FAMILIES,
            **_cutest_algebraic.FAMILIES,
            **_cutest_transcendental.FAMILIES,
        }.items()
    )
)


def cutest(n: int = 100) -> tuple[Problem, ...]:
    """Every CUTEst family at dimension ``n``, in alphabetical order."""
    return tuple(build(int(n)) for build, _ in FAMILIES.values())
