"""Status codes: failure is data.

Every solver outcome is an ``int32`` code in the state or result, never a silent
NaN. :class:`Status` maps each code to a message on the host; only the
convergence criteria count as ``success``. The same codes are used by
:func:`qnjax.minimize` (``OptimizeResult.status``) and by the Optax face
(``LbfgsState.status``), so a user loop can stop on them.
"""

from __future__ import annotations

import enum

import jax.numpy as jnp


class Status(enum.IntEnum):
    """Outcome of a solve (or, in the Optax face, of the last update)."""

    GTOL = 0
    GTOL_REL = 1
    FTOL = 2
    MAXITER = 3
    MAXFEV = 4
    LINESEARCH_FAILED = 5
    NONFINITE = 6
    RUNNING = 7

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        return bool(is_success(self))


_MESSAGES = {
    Status.GTOL: "converged: max |grad| <= gtol",
    Status.GTOL_REL: "converged: max |grad| <= gtol_rel * max |grad(x0)|",
    Status.FTOL: "converged: reduction of f <= ftol relative (or fatol absolute)",
    Status.MAXITER: "stopped: maximum number of iterations (maxiter) reached",
    Status.MAXFEV: "stopped: maximum number of function evaluations (maxfev) reached",
    Status.LINESEARCH_FAILED: (
        "stopped: the line search found no decrease along the quasi-Newton "
        "direction nor along steepest descent; x is the last good point"
    ),
    Status.NONFINITE: "stopped: f or its gradient is not finite at x0; x is x0",
    Status.RUNNING: "running: the last update made progress",
}


def is_success(status):
    """Whether ``status`` (a Status, an int or a traced int32 array) is a convergence code:
    GTOL, GTOL_REL or FTOL, the codes below MAXITER."""
    return status <= Status.FTOL


def code(status: Status):
    """A status as a non-weak int32 array (state leaves are never weak)."""
    return jnp.asarray(int(status), dtype=jnp.int32)
