"""``qnjax.minimize``: the scipy-shaped front door, one compiled loop.

It builds an :class:`~qnjax._solver.LBFGS` from scipy's names, turns ``fun`` into
data (``_objective.Objective``: the arrays it closes over are traced inputs, its
computation keys the compilation), and runs ``LBFGS.step`` inside one
``lax.while_loop``. The jitted solve takes only pytrees (the solver config, the
objective, ``x0`` and ``args``): tolerances, line-search settings and closed-over
data are traced, so changing them does not recompile; it works under ``jax.jit``
and ``jax.vmap`` (batched ``x0`` and/or ``args``), and a finished member of a
vmapped batch makes the line search evaluate nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from . import _bounds, _callbacks, _compile, _free_gram, _implicit, _loop, _objective, _scipy, _trace, _tree, _unrolled
from ._rescue import run as run_with_rescues
from ._result import OptimizeResult
from ._scale import resumed, scale_for, scaled_problem, times, unit_h0, unscaled
from ._solver import LBFGS
from ._state import State, check_resumed, hold, typed_like
from ._status import Status, code, is_success
from ._xla import where


def minimize(
    fun,
    x0,
    args=(),
    *,
    method: str = "lbfgs",
    gtol=None, ftol=None, fatol=None,
    maxiter=15000, maxfev=15000,
    memory_size: int = 10,
    linesearch=None,
    direction: str = "compact",
    has_aux: bool = False,
    scalar_dtype=None,
    trace: int = 0,
    state: State | None = None,
    callback=None,
    verbose: int | bool = False,
    jac=None,
    bounds=None, bounds_method: str = "lbfgsb",
    tol=None, options: dict | None = None,
    implicit_diff=None, adjoint: str = "implicit",
) -> OptimizeResult:
    """Minimise ``fun(x, *args)`` from ``x0`` with L-BFGS.

    Args:
      fun: ``fun(x, *args) -> loss`` (a real scalar), or ``-> (loss, aux)`` with
        ``has_aux=True``. Any callable: a lambda, a ``functools.partial``, a
        ``jax.tree_util.Partial``, an equinox Module; the arrays it closes over are
        data (a new closure over new arrays reuses the compiled solve).
      x0: the starting point, any pytree of float or complex arrays; the result
        keeps its structure and dtypes.
      args: a tuple of extra arguments to ``fun`` (arrays, numbers or pytrees: traced;
        other values, such as a string, are bound into ``fun`` as constants).
      method: ``"L-BFGS-B"`` (scipy's name), ``"lbfgs"``: the same solver.
      gtol: stop with GTOL when max_i |grad_i| <= gtol (scipy's absolute test).
        Default 0: only an exactly zero gradient.
      ftol: stop with FTOL when a step reduces f by at most ftol relative to
        max(|f_k|, |f_k+1|) (scipy's test without its floor of 1, so it is
        invariant to scaling f); convergence in f, the gradient not checked.
        Default 0 (off): a slow stretch near a saddle passes it unconverged.
      fatol: the same test with an absolute level: reduction <= fatol
        (``fatol=ftol`` with ``gtol=1e-5`` is scipy's rule exactly). Default 0.
      maxiter: the most iterations (default 15000, scipy's); stop with MAXITER.
      maxfev: the most evaluations (f and its gradient, or a Hessian-vector product; default 15000); MAXFEV.
      memory_size: the number m of curvature pairs kept (default 10, scipy's maxcor).
      linesearch: a ``qnjax.linesearch`` config; default ``MoreThuente()``, scipy's
        L-BFGS-B search with its settings, so the steps are scipy's.
      direction: ``"compact"`` (default; Byrd, Nocedal & Schnabel's compact form, two
        passes over the memory) or ``"two-loop"`` (N&W Algorithm 7.4).
      has_aux: ``fun`` returns ``(loss, aux)``; ``aux`` at the solution is returned.
      scalar_dtype: the dtype of values, step sizes and inner products; default the
        widest real float among the leaves of x0, at least float32.
      trace: K > 0 records the run (f, max |g|, step size, nfev, statuses) inside the
        compiled loop: the first K and the last K records, in ``res.trace`` (a
        :class:`qnjax.Trace`; see its docstring). It changes no iterate.
      state: a previous result's ``res.state`` (same ``fun``, options and dtypes; its box:
        other bounds raise): the run continues from it, memory included, without evaluating ``fun``
        again; ``x0`` is not used (pass ``res.x``). ``maxiter`` and ``maxfev`` count
        this call's iterations and evaluations; ``nit`` and ``nfev`` in the result
        are totals, so two runs of 50 iterations end where one of 100 does.
      callback: ``callback(intermediate_result)`` after every iteration (``nit``
        calls; a :class:`qnjax.IntermediateResult` with ``x``, ``fun``, ``grad``,
        ``nit``, ``nfev``, ``stepsize``, ``status`` as numpy arrays), from inside the
        compiled loop; returning True (or raising StopIteration) stops the run with
        status CALLBACK. Under ``jax.vmap``, called for each member that moved. scipy's ``callback(xk)``: x.
      verbose: N prints a line at the start, every N-th iteration (1: every one) and at
        the end (iteration, f, max |g|, step size, nfev, elapsed time, status); True at
        iterations 1, 2, 4, ..., 64 and every 64th after, at most ten lines a second
        (so under ``jax.vmap`` N's lines too). Neither option changes an iterate.
      implicit_diff: a :class:`qnjax.ImplicitDiff` (the linear solve behind derivatives
        of the solution; default ``ImplicitDiff()``). ``jax.grad``, ``jax.jvp`` and
        friends of ``x``, ``fun``, ``grad`` and ``aux`` with respect to ``args`` and the
        arrays ``fun`` closes over go through the implicit function theorem
        (``qnjax._implicit``), never through the loop; x0 gets no derivative.
      adjoint: how derivatives of the result are taken. ``"implicit"`` (default): as
        above. ``"unrolled"``: through the iterations themselves (``qnjax._unrolled``):
        the derivative of what this run computed, converged or not (reverse mode
        stores about 2 sqrt(2 maxiter) states: keep ``maxiter`` to what the run
        needs); the loops get static trip counts (``maxiter`` and the line search's
        ``max_steps`` must be Python integers), the iterates are the same. With bounds,
        for ``bounds_method="projected"`` only.
      bounds: ``(lower, upper)``, each side None, a scalar or a pytree like ``x0``
        (+-inf: no bound; lower == upper fixes a variable), or scipy's forms (a
        ``scipy.optimize.Bounds``, a list of ``(min, max)`` pairs for a 1-D ``x0``):
        L-BFGS-B (``qnjax._subspace``). Bounds are traced (no recompile when they
        change; vmappable) and rounded inward to each leaf's dtype (``qnjax._bounds``);
        ``x0`` is projected onto the box and every point ``fun`` sees lies in it, on the
        boundary included (``log(x)`` with lower 0 meets -inf and the run fails). GTOL
        then tests the projected gradient ||P(x - g) - x||_inf. Concrete lower > upper raises
        (traced: INFEASIBLE); concrete +-inf everywhere is no box. Derivatives of the solution hold
        the variables on a bound there (d x_i = d bound_i) and solve on the free ones
        (``qnjax._implicit``).
      bounds_method: with ``bounds``, ``"lbfgsb"`` (default: L-BFGS-B, scipy's iterates) or
        ``"projected"``: projected L-BFGS (``qnjax._projected``), the L-BFGS direction on
        the variables not held on a bound and a search along the projected path. It has no
        Cauchy point, so nothing is sorted and, with sharded parameters, nothing is
        gathered across devices; its program is smaller (it compiles faster) and its
        iterates are not scipy's.
      jac, tol, options: scipy's spellings (``qnjax._scipy``): ``jac=True``
        for a ``fun`` returning ``(loss, grad)``, or a callable ``jac(x, *args)``;
        ``tol`` sets ``gtol`` and ``ftol`` unless given; ``options`` takes
        ``maxiter``, ``maxfun``, ``gtol``, ``ftol``, ``maxcor``, ``disp``.

    Returns:
      An :class:`OptimizeResult`. Without tolerances that fire earlier, a run ends
      when x is stationary to working precision (PRECISION; see ``qnjax.Status``),
      whatever the scale of f; ``success`` is true for GTOL, PRECISION and FTOL only.
      Below float64, before PRECISION, a few Hessian-vector products (counted in
      ``nfev``) check that the Newton model promises no decrease above rounding; where
      it does, the run goes on from the Newton step. The returned ``x`` and ``fun``
      always belong to the same point, never worse than x0.
    """
    _scipy.check_method(method)
    given = dict(maxiter=maxiter, maxfev=maxfev, gtol=gtol, ftol=ftol, memory_size=memory_size, verbose=verbose)
    given = _scipy.settings(given, _DEFAULTS, tol, options)
    maxiter, maxfev, gtol, ftol, memory_size, verbose = (given[k] for k in (
        "maxiter", "maxfev", "gtol", "ftol", "memory_size", "verbose"))
    x0 = _scipy.as_params(x0)
    fun, args = _objective.bind_static_args(_scipy.with_jac(fun, jac, has_aux), args)  # (a string: a constant)
    _tree.check_params(x0, "x0")
    sdt = _tree.scalar_dtype(x0, scalar_dtype)
    box = None if bounds is None else _bounds.binding(x0, _scipy.bounds_pair(bounds, x0), state)
    # Every tolerance a leaf of one type (defaults resolved here), so changing one, or
    # passing it as a numpy scalar instead of a Python number, never recompiles. A
    # number becomes a NumPy scalar array (jnp.asarray would run a JAX computation per
    # setting, 0.2 ms each on the host), a traced value stays traced.
    def leaf(v, dtype):
        return jnp.asarray(v, dtype) if isinstance(v, jax.Array) else np.asarray(v, dtype)

    def tol(v):
        return leaf(0.0 if v is None else v, sdt)

    def limit(v):
        return None if v is None else leaf(v, jnp.int32)

    objective = _objective.Objective.build(fun, x0, args, sdt, has_aux)
    solver = LBFGS(
        memory_size=memory_size, linesearch=_default_linesearch(linesearch), gtol=tol(gtol), ftol=tol(ftol),
        fatol=tol(fatol), maxiter=limit(maxiter), maxfev=limit(maxfev), direction_method=direction,
        scalar_dtype=scalar_dtype, bounds_method=bounds_method, value_dtype=objective.value_dtype)
    if not isinstance(trace, int) or isinstance(trace, bool) or trace < 0:
        raise ValueError(f"trace must be an integer >= 0 (records kept: the first and the last trace), got {trace!r}")
    if state is not None and not isinstance(state, State):
        raise TypeError(f"state must be a qnjax.State (a previous result's res.state), got {type(state).__name__}")
    check_resumed(box, state)
    if verbose is True:
        verbose = _callbacks.AUTO
    elif not isinstance(verbose, int) or verbose < 0:
        raise ValueError(f"verbose must be True, False or an integer N >= 0 (a line every N iterations), "
                         f"got {verbose!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (callback(intermediate_result) -> bool | None), got {callback!r}")
    if adjoint == "unrolled":
        if implicit_diff is not None:
            raise ValueError("implicit_diff configures adjoint='implicit'; adjoint='unrolled' takes none")
        if not isinstance(maxiter, int) or isinstance(maxiter, bool) or maxiter < 1:
            raise TypeError(f"adjoint='unrolled' needs maxiter as a Python integer >= 1 (the loop's static "
                            f"length), got {maxiter!r}")
        steps = _unrolled.search_steps(solver.linesearch, box, bounds_method)
        solver = dataclasses.replace(solver, fixed_search_steps=steps)
        return _solve(solver, objective, x0, args, state, box, trace_length=trace, callback=callback,
                      verbose=int(verbose), unrolled=2 * maxiter)
    if adjoint != "implicit":
        raise ValueError(f"adjoint is 'implicit' or 'unrolled', got {adjoint!r}")
    solve = functools.partial(_solve, trace_length=trace, callback=callback, verbose=int(verbose))
    if _compile.nothing_differentiates():  # eager, or jax.vmap of an eager call: the solve needs
        # no custom derivative rule (making and calling one took 12-18% of a small solve's call)
        return solve(solver, objective, x0, args, state, box)
    config = _implicit.ImplicitDiff() if implicit_diff is None else implicit_diff
    return _implicit.differentiable(solve, config)(solver, objective, x0, args, state, box)


_DEFAULTS = {name: p.default for name, p in inspect.signature(minimize).parameters.items()}


def _default_linesearch(linesearch):
    from .linesearch import MoreThuente

    return MoreThuente() if linesearch is None else linesearch


def _users_arrays(arguments):
    """All of ``_solve``'s arguments but a resumed state's memory and ``fun``'s aux
    (``_compile.jit``): what the run it continues was called with decides its program."""
    state = arguments.get("state0")
    return {**arguments, "state0": None if state is None else state._replace(memory=None, aux=None)}


def _unbounded(arguments):
    """Whether a batch of this solve may compile with ``_compile.BATCHED_SMALL_OPTIONS``: not
    with bounds (bounded batches ran slower with them)."""
    return arguments["box"] is None


@_compile.jit(static_argnames=("trace_length", "callback", "verbose", "unrolled"), users=_users_arrays,
              batches=_unbounded)
def _solve(solver: LBFGS, objective, x0, args, state0, box, *, trace_length, callback, verbose,
           unrolled=0) -> OptimizeResult:
    if state0 is None:
        if box is not None:
            x0 = _bounds.project(x0, box)
        value0, grad0, aux0 = objective(x0, args)
        scale = scale_for(value0, grad0)  # (f's power of two below float64: ``_scale``)
        state = solver.init(x0, value0 * scale, times(grad0, scale), aux0, bounds=box)
        state = state._replace(nfev=state.nfev + 1, scale=scale)
        state = state if box is None else unit_h0(state)  # (with bounds, H0 = I is f's: ``_scale``)
    else:  # continue: the budgets count from here
        state = resumed(state0)
        solver = dataclasses.replace(solver, **{
            name: limit + counter for name, limit, counter in
            (("maxiter", solver.maxiter, state.count), ("maxfev", solver.maxfev, state.nfev)) if limit is not None})
    objective, solver = scaled_problem(objective, solver, state.scale)
    state = state._replace(status=solver.start_status(state))

    running = lambda s: s.status == code(Status.RUNNING)  # noqa: E731

    def observe(solver, s, records, active, moved, start=False):
        """The trace and the progress display (the last line: ``_callbacks.last_line``): read-only."""
        s = unscaled(s)
        if trace_length or verbose:
            gnorm = solver.stationarity(s.params, s.grad, s.bounds)
        if verbose:
            _callbacks.progress(verbose, s, gnorm, active, moved, start)
        return _trace.record(records, s, gnorm) if trace_length else None

    no = jnp.asarray(False)
    records = observe(solver, state, _trace.init(trace_length, state.value.dtype) if trace_length else None,
                      no, no, True)

    def body(operands, carry, active):
        """One iteration; ``active`` None: running (unbatched), else a batch member's flag
        (``_loop``: a finished member's carry is kept as it is)."""
        solver, objective, args = operands
        before, records = carry
        on = running(before) if active is None else active
        s = solver.step(before, lambda x: objective(x, args), active=True if active is None else on)[1]
        moved = s.count > before.count
        if callback is not None:
            stop = _callbacks.call(callback, s, moved & on)  # (vmapped unrolled: a finished member steps too)
            s = s._replace(status=where(stop & running(s), code(Status.CALLBACK), s.status))
        new_records = observe(solver, s, records, on, moved)
        if active is not None:
            s = hold(active, s, before)
            new_records = _tree.select(active, new_records, records)
        return s, new_records

    operands = (solver, objective, args)
    if unrolled:
        s, records = _unrolled.loop(lambda c: running(c[0]), lambda c: body(operands, c, None), (state, records),
                                    unrolled)
        s = s._replace(status=where(running(s), code(Status.MAXITER), s.status))
    else:
        # (a batch of L-BFGS-B problems large enough for the Cauchy point's and the products'
        # branches: ``_free_gram.incremental``; the projected method has none)
        sequential = (state.bounds is not None and solver.bounds_method == "lbfgsb"
                      and _free_gram.incremental(state.params))
        loop = functools.partial(_loop.while_running, lambda c: running(c[0]), body, sequential=sequential)
        record = lambda solver, s, rec: observe(solver, s, rec, no, no)  # noqa: E731  (the trace's part only)
        # below float64, the Newton model before PRECISION (``_rescue``)
        s, records = run_with_rescues(loop, running, operands, (state, records), record if trace_length else None)
    _callbacks.last_line(verbose, solver, s, state)
    user = unscaled(s)  # (f and its gradient in the user's units)
    return OptimizeResult(  # (x and grad weakly typed where x0's leaves are: the loop carries strong types)
        x=typed_like(s.params, x0), fun=user.value, grad=typed_like(_tree.conj(user.grad), x0), nit=s.count,
        nfev=s.nfev, status=s.status, success=is_success(s.status), aux=s.aux, state=s,
        trace=_trace.finish(records) if trace_length else None)
