"""Host calls from inside the compiled loop: ``minimize(callback=...)`` and ``verbose=``.

``callback(intermediate_result)`` is called once per iteration (a pass of the loop
that moved x; retries along -g, which move nothing, are not iterations), so the
number of calls equals ``nit``. It receives an :class:`IntermediateResult` (scipy's
names: ``x``, ``fun``, ``grad``, ``nit``, ``nfev``, plus ``stepsize`` and ``status``)
with numpy arrays, and may return True to stop the run (status CALLBACK). scipy's older
signature ``callback(xk)``, its one parameter named ``xk``, is given x alone (``takes_xk``;
scipy gives x to every name but ``intermediate_result``, which would make qnjax's own
``lambda r: r.fun`` fail): an ``np.asarray(xk)`` had raised an internal error from the host.

Because the callback returns a value, it runs through ``jax.pure_callback`` (JAX
rejects ``io_callback`` inside a vmapped while loop, jax#20628). Its result feeds the
status, so it is never dropped, and each call has different operands, so none is
merged with another. Under ``jax.vmap`` the host function runs once per batch member
and pass (``vmap_method="sequential"``); a member that did not move in that pass
(finished, or retrying) is filtered out on the host, so each member's calls still
equal its ``nit`` (``intermediate_result.x`` is that member's point).

``verbose=N`` prints a line every N iterations and the last one (iteration, f,
max |g|, step size, nfev, elapsed time), through ``jax.debug.callback`` under a
``lax.cond`` (the host is called only for a line); ``verbose=True`` (AUTO) at iterations 1,
2, 4, ..., 64 and every 64th after, at most ten lines a second apart from the first and
the last (a fast solve's every 64th iteration could be a thousand lines a second). N's
lines all print, as asked, but under ``jax.vmap`` (each member prints its own) at most
ten a second too. With rich installed and a terminal, in bold/rich.
A user ``callback`` is a host round trip per iteration (about 0.4 ms on a CPU): on a
fast solve it dominates, by design of what it is. Neither changes an iterate: both
only read values the loop computes anyway. The function objects are part of the
compiled program (define a callback once, not a new lambda per call, or each call
compiles anew).

Differentiated with ``adjoint="unrolled"`` (``_unrolled``), both are called once per
iteration of the run, as without derivatives: no derivative flows through the host, and
the backward pass of reverse mode, which runs the iterations again (checkpoints), takes
the callback's answers saved from the run instead of asking again (named HOST, which
the policy ``_unrolled.host_calls_saved`` saves), and does not print again:
``jax.debug.callback`` is left out of a checkpoint's recomputation only where its operands
are values the policy saves, so they are named too, in the branch that prints. Before, a callback made
the derivative fail (JAX has no derivative rule for ``pure_callback``) and each line
printed a second time, in reverse order, during the backward pass.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from . import _loop, _scale, _tree
from ._status import Status


class IntermediateResult(NamedTuple):
    """What ``callback`` receives after each iteration (numpy arrays, scipy's names)."""

    x: Any
    fun: Any
    grad: Any
    nit: int
    nfev: int
    stepsize: Any
    status: int


def takes_xk(callback) -> bool:
    """Whether ``callback`` has scipy's older signature ``callback(xk)`` (module docstring)."""
    try:
        parameters = list(inspect.signature(callback).parameters)
    except (TypeError, ValueError):  # (a builtin such as list.append: no signature to read)
        return False
    return parameters == ["xk"]


def call(callback, state, moved):
    """Run ``callback`` on the host if ``moved``; returns whether it asked to stop (bool). It
    sees f and the gradient in the user's units (``_scale.unscaled``; the gradient conjugated
    back to ``jax.grad``'s convention for complex leaves)."""
    # (no derivative flows into or out of the host: differentiated with ``adjoint="unrolled"``,
    # JAX has no derivative rule for ``pure_callback``)
    state = jax.lax.stop_gradient(_scale.unscaled(state))
    grad = _tree.conj(state.grad)
    xk = takes_xk(callback)

    def host(active, x, fun, g, nit, nfev, stepsize, status):
        if not bool(active):
            return np.asarray(False)
        x, fun, g, stepsize = jax.tree.map(np.asarray, (x, fun, g, stepsize))
        info = IntermediateResult(x=x, fun=fun, grad=g, nit=int(nit), nfev=int(nfev), stepsize=stepsize,
                                  status=int(status))
        try:
            return np.asarray(bool(callback(x if xk else info)))
        except StopIteration:  # scipy's other way to stop
            return np.asarray(True)

    # (the answer named HOST: ``_unrolled``'s checkpoints save it, module docstring)
    return checkpoint_name(jax.pure_callback(host, jax.ShapeDtypeStruct((), jnp.bool_), moved, state.params,
                                             state.value, grad, state.count, state.nfev, state.stepsize,
                                             state.status, vmap_method="sequential"), HOST)


class _Printer:
    """The host side of ``verbose``: rate-limited lines, rich when available on a terminal."""

    MIN_INTERVAL = 0.1  # seconds between lines (the last line always prints)

    def __init__(self):
        self.start = time.perf_counter()
        self.last = -np.inf
        self.starting = False

    def begin(self, is_start):
        """The header at a solve's first start call: under ``jax.vmap`` every member's start
        line comes from the same pass, one call after the other (the start is traced before
        the loop, where the batch cannot be told: ``_loop.batched``). So solves in a row whose
        only line is the start, at x0 already solved, share one header."""
        if is_start and not self.starting:
            self.header()
        self.starting = is_start

    def header(self):
        self.start = time.perf_counter()
        self.last = -np.inf
        self._print(f"{'nit':>7} {'f':>14} {'max|g|':>11} {'step':>10} {'nfev':>7} {'time':>8}  status")

    def line(self, nit, fun, gnorm, stepsize, nfev, status, final, limited=True):
        now = time.perf_counter()
        if limited and not final and now - self.last < self.MIN_INTERVAL:
            return
        self.last = now
        name = Status(int(status)).name
        self._print(f"{int(nit):7d} {float(fun):14.7e} {float(gnorm):11.4e} {float(stepsize):10.3e} "
                    f"{int(nfev):7d} {now - self.start:7.2f}s  {name}")

    @staticmethod
    def _print(text):
        if sys.stdout.isatty():
            try:
                from rich.console import Console

                Console(highlight=False).print(text, style="bold" if "nit" in text[:8] else None)
                return
            except ImportError:
                pass
        print(text, flush=True)


PRINTER = _Printer()
# The name of the values ``verbose``'s lines are printed from (``jax.ad_checkpoint.checkpoint_name``),
# which ``_unrolled``'s checkpoints save (module docstring).
HOST = "qnjax_host_call"
# ``verbose=True``: the schedule of ``due``, rate-limited (module docstring).
AUTO = -1


def due(every: int, nit):
    """Whether iteration ``nit`` gets a line: every ``every``-th, or with ``every == AUTO``
    (``verbose=True``) iterations 1, 2, 4, ..., 64 and every 64th after (so host calls
    never dominate a fast solve)."""
    if every != AUTO:
        return nit % every == 0
    return ((nit & (nit - 1)) == 0) & (nit <= 64) | (nit % 64 == 0)


def progress(every: int, state, gnorm, active, moved, start=False, last=False):
    """Print ``state``'s line at the start and at the iterations ``due`` selects while the
    run goes on (``active``: it was running before this pass; a finished member of a
    vmapped batch prints nothing more), or with ``last`` where ``active`` holds (:func:`last_line`).
    The host is called only then (``lax.cond``; under ``vmap``, where the cond becomes a
    select, for every member of every pass, and it filters on ``call``: before, every
    member's line was printed at every pass, at most ten a second at iterations not due,
    and a finished member's last line at every pass of the others)."""
    final = state.status != Status.RUNNING
    start = jnp.asarray(start)
    limited = every == AUTO or _loop.batched(state.params)
    call = jnp.asarray(active) if last else start | (active & moved & ~final & due(every, state.count))

    def host(wanted, is_start, nit, fun, g, stepsize, nfev, status):
        PRINTER.begin(bool(is_start))
        if bool(wanted):  # (under vmap the host is called for every member of every pass)
            PRINTER.line(nit, fun, g, stepsize, nfev, status, bool(is_start) or int(status) != Status.RUNNING,
                         limited)

    def show():  # (its operands named HOST here, inside the branch: module docstring)
        operands = (call, start, state.count, state.value, gnorm, state.stepsize, state.nfev, state.status)
        jax.debug.callback(host, *checkpoint_name(jax.lax.stop_gradient(operands), HOST))

    jax.lax.cond(call, show, lambda: None)


def last_line(every: int, solver, state, before):
    """The run's last line, printed after its loop and after any rescue (``_rescue``), whose
    Hessian-vector products count in nfev: from the loop's last pass, a PRECISION line
    showed the nfev before them (Beale from 100 x0 in float32: 148 of 155), and a rescue that
    went on had printed PRECISION mid-run. Not where nothing happened since the start line
    (``before``), which then says it all."""
    if every:
        state = _scale.unscaled(state)
        changed = (state.nfev != before.nfev) | (state.status != before.status)
        progress(every, state, solver.stationarity(state.params, state.grad, state.bounds), changed, changed,
                 last=True)
