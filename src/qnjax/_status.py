"""Status codes and the stopping rule: failure is data, and success means solved.

Every outcome is an ``int32`` code in the state or result, never a silent NaN.
:class:`Status` maps each code to a message on the host. The same codes and the
same rule (:func:`decide`, the only place that maps an iteration's facts to a
code) serve :func:`qnjax.minimize` (``OptimizeResult.status``) and the Optax face
(``State.status``), so a loop can stop on them.

The tests, checked at the start and after every iteration, first match wins:

* NONFINITE    f or its gradient is not finite at the point given (``minimize``: x0; the
               Optax face: the params, value or gradients of this update);
* GTOL         max_i |g_i| <= ``gtol`` (scipy's absolute test; default 0, i.e. an
               exactly zero gradient);
* UNBOUNDED    the line search along -g failed (any of the three below) where f is at
               most -max / 2^10 (``max`` the scalar dtype's largest finite value): f fell
               towards -inf until its next trials overflowed, not a failure of the search;
* MAXFEV       ``maxfev`` cut the line search along -g short (it made every trial the
               budget left it, fewer than its own limit): what its next trials would have
               found is not known, so this comes before PRECISION;
* PRECISION    stationary to working precision: the quasi-Newton step moved x by no
               more than rounding or lowered f by no more than its rounding noise, so
               the memory was dropped, and then the line search along -g found no
               decrease (none above the noise) and either bracketed a minimiser of f
               along -g within a few units in the last place of x (one, for leaves
               narrower than the scalar dtype: ``_verdict.rounding_ulps``), or the decrease
               its slopes promise is within f's rounding noise (measured by the
               search: changes of f that its slopes do not explain, near x or where f
               came back exactly unchanged). No step along either direction lowers f
               by more than rounding; in ``minimize`` below float64, also the Newton
               model from Hessian-vector products promises no more, or a search along
               its step found none (``_rescue``). Also where x and f are 0 to working
               precision on the scale of the start, max |x_i| < eps max |x0_i| and
               0 <= f <= eps |f(x0)| (``_origin.at_origin``; never where x0 = 0: a minimum at
               x* = 0 has no scale of its own);
* LINESEARCH_FAILED  no decrease along -g (with an empty memory), and f does not
               rise along -g within rounding of x: a real failure (a gradient that
               does not match f, a non-smooth point, the edge of f's domain);
* FTOL         (f_k - f_{k+1}) <= max(``ftol`` max(|f_k|, |f_{k+1}|), ``fatol``) after a
               step that met the line search's test with measurable decrease: f has
               converged, the gradient has not been checked. Off when both are 0;
* MAXITER, MAXFEV    the budgets;
* CALLBACK     ``minimize``'s callback returned True;
* INFEASIBLE   the bounds are empty for some variable (lower > upper or NaN, known only
               under ``jit``/``vmap``: concrete ones raise), or the Optax face was given
               params outside its bounds; no iteration was made (``minimize``: x is x0
               clipped, where ``fun`` was evaluated once as at every start).

Why this default (``gtol = 0``, ``ftol = fatol = 0``): by default a run ends when x is
stationary to working precision, whatever the dtype. A gradient small *relative to
the start* passes long before a far-away start has been solved, and a gradient
relative to |f| never passes when the minimum is f* = 0 (Dennis & Schnabel 1983,
Sec. 7.2). PRECISION depends on neither: it says that f cannot be lowered at the
precision of x or of f, whatever the scale of f or where the run began, so
multiplying f by a constant changes neither the iterates nor the stop. FTOL (scipy's
relative test without its floor max(..., 1), which is not scale-invariant) is there
for users who ask for it: a slow stretch near a saddle or on a plateau passes it
without being converged, so it is never on by default. A minimum with no intrinsic
scale (f* = 0 at x* = 0: near it f(c x) behaves as c^k f(x)) has no place to stop that
ignores where the run began, whatever its Hessian: its iterates stay resolved to their
last place all the way to underflow. So there x's scale is taken from the start, and only
to say that x is 0: PRECISION once max |x_i| < eps max |x0_i| and 0 <= f <= eps |f(x0)|
(``_origin.at_origin``).
"""

from __future__ import annotations

import enum

import jax.numpy as jnp

from ._xla import where


class Status(enum.IntEnum):
    """Outcome of a solve (or, in the Optax face, of the last update)."""

    GTOL = 0
    PRECISION = 1
    FTOL = 2
    MAXITER = 3
    MAXFEV = 4
    LINESEARCH_FAILED = 5
    NONFINITE = 6
    RUNNING = 7
    CALLBACK = 8
    INFEASIBLE = 9
    UNBOUNDED = 10

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        return bool(is_success(self))

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


_MESSAGES = {
    Status.GTOL: "converged: max |grad| <= gtol",
    Status.PRECISION: (
        "converged to working precision: no step along the quasi-Newton direction or along "
        "steepest descent lowers f by more than its rounding (or x and f are 0 to working precision on the "
        "scale of x0 and f(x0))"
    ),
    Status.FTOL: (
        "converged in f: the last step reduced f by at most ftol relative (or fatol absolute); "
        "the gradient was not checked"
    ),
    Status.MAXITER: "stopped: maximum number of iterations (maxiter) reached",
    Status.MAXFEV: "stopped: maximum number of function evaluations (maxfev) reached",
    Status.LINESEARCH_FAILED: (
        "stopped: the line search found no decrease along the quasi-Newton direction nor along "
        "steepest descent, away from a stationary point (does the gradient match f?); "
        "x is the last good point"
    ),
    Status.NONFINITE: "stopped: f or its gradient is not finite at the point given; nothing was changed",
    Status.RUNNING: "running: the last update made progress",
    Status.CALLBACK: "stopped: the callback asked to stop",
    Status.UNBOUNDED: (
        "stopped: f appears unbounded below: it fell to within 2^10 of its dtype's largest magnitude "
        "(below float64, f times the power of two the run scales it by, res.state.scale) and the line search "
        "found no further decrease it could represent; x is the last good point"
    ),
    Status.INFEASIBLE: (
        "stopped: the box is empty (lower > upper or NaN) for some variable, or params are outside it; "
        "no iteration was made"
    ),
}

SUCCESS = (Status.GTOL, Status.PRECISION, Status.FTOL)


def is_success(status):
    """Whether ``status`` (a Status, an int or a traced int32 array) is a convergence code."""
    return status <= Status.FTOL


def code(status: Status):
    """A status as a non-weak int32 array (state leaves are never weak)."""
    return jnp.asarray(int(status), dtype=jnp.int32)


def decide(rules):
    """The status of the first true condition in ``[(condition, Status), ...]``, else
    RUNNING: one chain of selects, each condition used once (one compiled kernel)."""
    status = code(Status.RUNNING)
    for condition, s in reversed(rules):
        status = where(condition, code(s), status)
    return status
