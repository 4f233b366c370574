"""Moré-Garbow-Hillstrom problems in boxes: Gay's bound-constrained versions.

Objectives and starting points are those of :mod:`qnjax.problems._mgh_fixed` and
:mod:`qnjax.problems._mgh_variable` (Moré, Garbow & Hillstrom, ACM TOMS 7(1), 1981),
``f = sum_i f_i**2``. The boxes are D. M. Gay's, from "A trust-region approach to
linearly constrained optimization", in D. F. Griffiths (ed.), *Numerical Analysis,
Dundee 1983*, Lecture Notes in Mathematics 1066, Springer, 1984, pp. 72-105, as
tabulated in TOMLAB's ``mgh_prob`` (K. Holmström, Tomlab Optimization); we could not
read Gay's report itself, so the bounds are taken from that tabulation and were not
checked against it. Each box cuts off the unconstrained minimiser, so the minimum
has active bounds. With ``x[0] = x_1``:

=========================  ==========================================================
problem (MGH number)       box
=========================  ==========================================================
rosenbrock (1)             ``[-50, 0.5] x [0, 100]``
freudenstein_roth (2)      ``[0, 20] x [-30, -0.9]``
helical_valley (7)         ``[-100, 0.8] x [-1, 1] x [-1, 1]``
bard (8)                   ``[0.1, 50] x [0, 100] x [0, 50]``
box_3d (12)                ``[0, 2] x [5, 9.5] x [0, 20]`` (``x0_2 = 10`` infeasible)
powell_singular (13)       ``[0.1, 100] x [-20, 20] x [-1, 1] x [-1, 50]``
kowalik_osborne (15)       ``[0, 10] x [-1, 12] x [0.13, 13] x [0.12, 12]``
brown_dennis (16)          ``[-10, 100] x [0, 15] x [-100, 0] x [-20, 0.2]``
osborne1 (17)              ``[0, 50] x [0, 1.9] x [-50, -0.1] x [0, 10] x [0, 10]``
brown_almost_linear (27)   n = 10: ``[0, 100]``, except ``x_2 >= 1`` (``x0_2 = 0.5``
                           infeasible) and ``x_3 <= 0.9``
linear_full_rank (32)      n = 10, m = 20: ``[-2, 100]``, except ``x_1 >= -0.5``
chebyquad (35)             n = 8: ``[0, 1]``, except ``x_1 <= 0.04``, ``x_2 <= 0.2``,
                           ``x_3 in [0.1, 0.3]`` (``x0_1, x0_2, x0_3`` infeasible)
=========================  ==========================================================

Names append ``_box`` to the unconstrained name (``bard_box``, ``chebyquad_n8_box``);
``number`` is the MGH number.

Minima: computed here, not taken from a paper. float64, scipy's L-BFGS-B
(``gtol=1e-12, ftol=0``) from the projected ``x0`` and from 20 random points of the box,
then Newton's method with the exact Hessian on the variables strictly inside their
bounds until the projected gradient stops decreasing (below 4e-14; brown_dennis
1.1e-10, with f = 8.9e4); ``fstar = fun(xstar)`` at the refined point, whose free Hessian is positive
definite and whose active bounds have multipliers of the right sign. No start found a
lower minimum. The values agree with TOMLAB's (listed for ``1/2 sum f_i**2``, to
about 7 digits) after doubling. Exact ones: rosenbrock ``f* = 1/4`` at
``(1/2, 1/4)``; freudenstein_roth at ``x_2 = -0.9``, where both residuals are linear in
``x_1``: ``x_1 = 11.37``, ``f* = 48.985202``; linear_full_rank ``f* = 1/4 + m - n`` at
``(-1/2, -1, ..., -1)``.

From ``x0``, scipy's L-BFGS-B (any memory 3..50) stops on bard_box at
``f = 1.5145...`` with a projected gradient of 3.3, reporting convergence (its line
search makes no progress); the minimum is still the one above (TNC, trust-constr and
Newton reach it).

Left out: Gay's osborne2 box (``x_11`` fixed at 0) has several local minima that
L-BFGS-B reaches from ``x0`` depending on its memory (``f = 0.3538`` at m = 20,
``0.5961`` at m = 10, TOMLAB lists ``0.5104``), so it has no well-defined ``fstar``.
"""

from __future__ import annotations

import functools

import numpy as np

from qnjax.problems import Problem
from qnjax.problems import _mgh_fixed as _fixed
from qnjax.problems import _mgh_variable as _variable


def _brown_almost_linear_bounds(n: int):
    lower, upper = np.zeros(n), np.full(n, 100.0)
    lower[1], upper[2] = 1.0, 0.9
    return lower, upper


def _chebyquad_bounds(n: int):
    lower, upper = np.zeros(n), np.ones(n)
    upper[[0, 1, 2]] = 0.04, 0.2, 0.3
    lower[2] = 0.1
    return lower, upper


# MGH instance name: (lower, upper, fstar, xstar); the minima computed as the module docstring says
# fmt: off
BOXES = {
    "rosenbrock": ([-50.0, 0.0], [0.5, 100.0], 0.25, [0.5, 0.25]),
    "freudenstein_roth": ([0.0, -30.0], [20.0, -0.9], 48.985202, [11.37, -0.9]),
    "helical_valley": ([-100.0, -1.0, -1.0], [0.8, 1.0, 1.0], 0.9904221209613998,
                       [0.8, 0.5619366456706895, 0.9649340753151798]),
    "bard": ([0.1, 0.0, 0.0], [50.0, 100.0, 50.0], 0.009582284721153255,
             [0.1, 1.5194506258691969, 1.9818735165632706]),
    "box_3d": ([0.0, 5.0, 0.0], [2.0, 9.5, 20.0], 0.00011434818026414593,
               [1.037944132770036, 9.5, 0.9722275854201357]),
    "powell_singular": ([0.1, -20.0, -1.0, -1.0], [100.0, 20.0, 1.0, 50.0], 0.0001878196300583034,
                        [0.1, -0.009982234157320425, 0.04307310782090479, 0.04378374152808778]),
    "kowalik_osborne": ([0.0, -1.0, 0.13, 0.12], [10.0, 12.0, 13.0, 12.0], 0.00030783072346419836,
                        [0.1930325746800892, 0.1978403234484198, 0.13, 0.13834564242970654]),
    "brown_dennis": ([-10.0, 0.0, -100.0, -20.0], [100.0, 15.0, 0.0, 0.2], 88860.47976750047,
                     [-10.0, 12.677818288630911, -0.48552799258162815, 0.2]),
    "osborne1": ([0.0, 0.0, -50.0, 0.0, 0.0], [50.0, 1.9, -0.1, 10.0, 10.0], 5.4702833433736954e-05,
                 [0.37509204167754134, 1.9, -1.428599895852523, 0.012793394702515792, 0.02227185091198558]),
    "brown_almost_linear_n10": (*_brown_almost_linear_bounds(10), 0.0060931785765967325,
                                [0.9696740113118405, 1.0, 0.9] + [0.9696740113118405] * 6 + [1.3487161645866896]),
    "linear_full_rank_n10": ([-0.5] + [-2.0] * 9, [100.0] * 10, 10.25, [-0.5] + [-1.0] * 9),
    "chebyquad_n8": (*_chebyquad_bounds(8), 0.0035922423859741565,
                     [0.04, 0.18877058764479485, 0.2650039365855983, 0.4974240392902836, 0.4974240392902836,
                      0.7319510352701248, 0.804465674247611, 0.9558605781646116]),
}
# fmt: on


def _unconstrained(name: str) -> Problem:
    if name in _fixed.FAMILIES:
        build, dims = _fixed.FAMILIES[name]
        return build(dims[0])
    family, n = name.rsplit("_n", 1)
    return _variable.FAMILIES[family][0](int(n))


@functools.cache
def problems() -> tuple[Problem, ...]:
    """The boxed MGH problems, in MGH order."""
    out = []
    for name, (lower, upper, fstar, xstar) in BOXES.items():
        base = _unconstrained(name)
        out.append(Problem(f"{name}_box", base.number, base.n, base.fun, base.x0, fstar, xstar,
                           lower=lower, upper=upper))
    return tuple(out)
