"""The Optax face: ``qnjax.lbfgs``, a drop-in for ``optax.lbfgs``.

``lbfgs(learning_rate, memory_size, scale_init_precond, linesearch)`` takes
``optax.lbfgs``'s arguments with their meanings (positionally too) and returns an
``optax.GradientTransformationExtraArgs`` whose update is one ``LBFGS.step``:

    value, grad = qnjax.value_and_grad_from_state(fn)(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fn)
    params = optax.apply_updates(params, updates)

Conventions, as optax's: the gradients it is *given* (``updates``, ``grad``) are
already conjugated for complex parameters (``optax.tree.conj(jax.grad(f)(p))``;
the real-space gradient), and the state's ``grad`` is kept in that convention;
the gradients it computes itself through ``value_fn`` are conjugated internally.
The direction multiplies ``updates`` (so a transformation chained before lbfgs,
such as clipping, acts on it), and the curvature pairs are s = the update this
transformation returned and y = the difference of successive ``updates``: chain
transformations that change the step before lbfgs, not after it.

``linesearch``: a ``qnjax.linesearch`` config (default ``MoreThuente()``); then
``value`` and ``value_fn`` are required, the accepted point's value and gradient
are kept in the state (fields ``value`` and ``grad``, the only ones so named, so
``optax.value_and_grad_from_state`` works) and the next update costs no extra
evaluation. ``linesearch=None``: no line search, the update is
-learning_rate H updates (the first one scaled by min(1, 1 / ||updates||) when
``scale_init_precond``) and ``value_fn`` is never called; the state's ``value``
then stays +inf. An optax line search is refused at construction, with the qnjax
equivalent named.

``state.status`` is a :class:`qnjax.Status` code for this update, decided by the
same rule as ``minimize`` (``_status``): RUNNING after an update that moved, or
after one that dropped the memory (its updates are zero; the next update
searches along steepest descent), or, below float64, after one whose Newton check
before PRECISION stored a pair (``_rescue``: updates zero, x stays; its products
are counted in ``nfev``; where the updates given are the gradient and ``value_fn``'s
gradient can be differentiated); GTOL, PRECISION or FTOL (success: a loop can
stop on ``qnjax.Status(state.status).success``); LINESEARCH_FAILED; UNBOUNDED; NONFINITE
when the given value or gradient is not finite (updates zero, state kept).
``extra_args`` are passed on to ``value_fn``. Below float64, with a line search, f is
multiplied by a power of two chosen at the first update (``_scale``: the products of
gradients stay in float32's range; ``state.scale``), and the state's ``value`` and ``grad``
stay the user's.

Called outside ``jax.jit`` (as a notebook's loop may), ``update`` and
``value_and_grad_from_state`` each run as one compiled program, with ``value_fn`` as
data (``_objective.Objective``: a new closure over new arrays reuses the program), not
as hundreds of operations dispatched one at a time (2-D Rosenbrock: the first update
took 4.9 s, 0.57 s now; each later one 0.49 s, 2 ms now; ``optax.lbfgs``'s 1.6 s and
0.5 s). Inside a transformation (``jax.jit``, ``jax.vmap``, ``lax.scan``) they are traced
into the caller's program as before.

``bounds=(lower, upper)``: L-BFGS-B inside the transformation (``qnjax.minimize``'s
rules for bounds, ``_bounds``), so the line search sees the box: every point
``value_fn`` is evaluated at, and ``optax.apply_updates(params, updates)``, lies in
the box bit for bit (rounding included; a variable the step projects onto a bound
lands on it unless rounding params + update cannot reach it, then within rounding
inside). The bounds are cast at ``init`` and kept in the state (traced leaves, not
constants of a compiled update; concrete ones that bound nothing, +-inf everywhere, are no
box: the unconstrained updates exactly). Params outside the box make ``init`` raise
``ValueError`` (naming the leaf and index) where they and the bounds are concrete, else
give status INFEASIBLE and zero updates (start from ``jnp.clip(params, lower, upper)``). With bounds the
direction uses the gradient (``grad``, else ``updates``), and ``learning_rate`` and
``linesearch=None`` are refused.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from . import _bounds, _compile, _objective, _rescue, _scale, _tree, _unrolled, _verdict
from ._solver import LBFGS
from ._state import State
from ._status import Status, code
from .linesearch import LineSearch, MoreThuente

_DEFAULT_LINESEARCH = MoreThuente()  # immutable, so one instance serves every default
_OPTAX_EQUIVALENTS = (
    "optax line searches cannot run inside qnjax.lbfgs; pass a qnjax one: "
    "qnjax.linesearch.Zoom(c1=..., c2=...) for optax.scale_by_zoom_linesearch, "
    "qnjax.linesearch.Backtracking(c1=...) for optax.scale_by_backtracking_linesearch, "
    "qnjax.linesearch.MoreThuente() (the default, scipy's L-BFGS-B search), or None for no line search"
)


def lbfgs(
    learning_rate=None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: LineSearch | None = _DEFAULT_LINESEARCH,
    *,
    gtol=None,
    ftol=None,
    fatol=None,
    direction: str = "compact",
    scalar_dtype=None,
    bounds=None,
    bounds_method: str = "lbfgsb",
    unrolled: bool = False,
    newton_check: bool = True,
) -> optax.GradientTransformationExtraArgs:
    """L-BFGS as an Optax transformation (module docstring).

    Args:
      learning_rate: a scalar or an optax schedule multiplying the direction (default 1).
      memory_size: number m of curvature pairs kept.
      scale_init_precond: H0 = gamma I with gamma = <s, y> / <y, y> of the newest pair
        (else the identity).
      linesearch: a ``qnjax.linesearch`` config, or None for no line search.
      gtol, ftol, fatol: the convergence tests of ``qnjax.minimize`` (``state.status``).
      direction: ``"compact"`` or ``"two-loop"``.
      scalar_dtype: dtype of values, step sizes and inner products; default the
        widest real float among the params, at least float32.
      bounds: ``(lower, upper)`` box bounds (L-BFGS-B; module docstring).
      bounds_method: ``"lbfgsb"`` (default: L-BFGS-B) or ``"projected"`` (projected
        L-BFGS, ``qnjax._projected``: no Cauchy point, so no sort and, with sharded
        parameters, no gather), as in :func:`qnjax.minimize`.
      unrolled: the line search runs a loop of static length (its ``max_steps``, a
        Python integer; trials not needed are skipped), so reverse-mode derivatives go
        through updates (``jax.grad`` of a loss after a ``lax.scan`` of updates;
        ``qnjax._unrolled``). The updates are the same. With bounds, for
        ``bounds_method="projected"`` only.
      newton_check: below float64 (or where a leaf, or f, is narrower than the scalar dtype), before an update
        reports PRECISION, the Newton model from Hessian-vector products (``qnjax._rescue``; module docstring). Under
        ``jax.vmap`` each member's check runs in every member's lanes (a batch of loops
        over updates pays the products of any member's check at that update): False
        leaves it out.
    """
    if isinstance(linesearch, (optax.GradientTransformation, optax.GradientTransformationExtraArgs)):
        raise TypeError(_OPTAX_EQUIVALENTS)
    if linesearch is not None and not hasattr(linesearch, "search"):
        raise TypeError(f"linesearch must be a qnjax.linesearch config or None, got {type(linesearch).__name__}")
    if bounds is not None and (learning_rate is not None or linesearch is None):
        raise ValueError("qnjax.lbfgs with bounds needs a line search and no learning_rate (the search keeps "
                         "every point in the box)")
    if isinstance(memory_size, jax.Array):  # (what optax.inject_hyperparams passes for every number)
        raise TypeError(f"memory_size must be a Python integer (it sizes the state), got {memory_size!r}: with "
                        "optax.inject_hyperparams, name it static: static_args=('memory_size',)")
    solver = LBFGS(memory_size=memory_size, linesearch=linesearch, gtol=gtol, ftol=ftol, fatol=fatol,
                   direction_method=direction, scale_init_precond=scale_init_precond, scalar_dtype=scalar_dtype,
                   bounds_method=bounds_method,
                   fixed_search_steps=_unrolled.search_steps(linesearch, bounds, bounds_method)
                   if unrolled and linesearch else 0)

    def init_fn(params) -> State:
        box = None if bounds is None else _bounds.binding(params, bounds)  # (None: bounds that bound nothing)
        if box is not None:
            _outside(params, box)
        return solver.init(params, bounds=box)

    def step(updates, state: State, params, value, grad, evaluate):
        sdt = state.value.dtype
        q = _tree.cast_like(updates, params)
        g = q if grad is None else _tree.cast_like(grad, params)
        # (f's own dtype, where narrower than the scalar dtype: ``_verdict.value_dtype``)
        fdt = None if linesearch is None else _verdict.value_dtype(value, sdt)
        if linesearch is not None:
            value = jnp.asarray(value).astype(sdt)
        else:
            value = jnp.full((), jnp.inf, sdt)
        lr = 1.0 if learning_rate is None else (
            learning_rate(state.count) if callable(learning_rate) else learning_rate)
        # (below float64, with a line search: f times sigma, chosen at the first update, ``_scale``;
        # the state's value and grad stay the user's, the rest is of sigma f)
        sigma = jnp.ones((), sdt) if linesearch is None or not _tree.guards_range(sdt) else jax.lax.cond(
            state.count == 0, lambda: _scale.scale_for(value, g), lambda: state.scale)
        here, q = _scale.scaled(state._replace(params=params, value=value, grad=g, scale=sigma)), _scale.times(q, sigma)
        if state.bounds is not None or not scale_init_precond:  # (H0 = I is f's: ``_scale``)
            here = _scale.unit_h0(here)
        solver_here = dataclasses.replace(solver, value_dtype=fdt)
        objective, scaled = _scale.scaled_problem(lambda x, _: evaluate(x), solver_here, sigma)
        value, g = here.value, here.grad
        finite = (jnp.isfinite(value) | (linesearch is None)) & _tree.all_finite(g) & _tree.all_finite(q)
        u, new = scaled.step(here, None if evaluate is None else lambda x: objective(x, None), q=q, scale=lr,
                             exact_updates=True)
        if newton_check and evaluate is not None and _rescue.enabled(new, scaled) and not solver.fixed_search_steps:
            # below float64, the Newton model before PRECISION (``_rescue``; x stays, u is zero)
            new = _rescue.guarded(lambda: _rescue.resume(scaled, objective, None, new, q=q), lambda: new,
                                  objective, None, params)
        u = _tree.select(finite, u, _tree.zeros_like(u))
        new = _tree.select(finite, new, here._replace(status=code(Status.NONFINITE)))
        if state.bounds is not None:
            inside = _bounds.facts(state.bounds, params)[0] & _bounds.contains(params, state.bounds)
            u = _tree.select(inside, u, _tree.zeros_like(u))
            new = _tree.select(inside, new, here._replace(status=code(Status.INFEASIBLE)))
        return u, _scale.unscaled(new)

    def compiled(updates, state, params, value, grad, objective, extra_args):
        evaluate = None if objective is None else (lambda x: objective(x, (((), extra_args),)))
        return step(updates, state, params, value, grad, evaluate)

    def update_fn(updates, state: State, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        if params is None:
            raise ValueError("qnjax.lbfgs needs params: update(grad, state, params, value=..., value_fn=...)")
        if linesearch is not None:
            if value is None or value_fn is None:
                raise ValueError("qnjax.lbfgs with a line search needs value= and value_fn= "
                                 "(or pass linesearch=None)")
            _objective.check_loss(value)
        if _eagerly(extra_args):
            # Outside jax.jit the update's hundreds of operations would each be a program of
            # their own, compiled at a first call and dispatched one by one after (4.9 s, then
            # 0.5 s an update on 2-D Rosenbrock): as one program, value_fn as data.
            objective = None if linesearch is None else _as_data(value_fn, params, (), extra_args, state.value.dtype)
            return _eager(compiled, updates, state, params, value, grad, objective, extra_args)
        if linesearch is not None:
            vg = _objective.value_and_grad(value_fn, params, state.value.dtype)
            return step(updates, state, params, value, grad, lambda x: vg(x, **extra_args))
        return step(updates, state, params, value, grad, None)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _eagerly(arguments) -> bool:
    """Whether a call made now, with ``value_fn``'s extra ``arguments``, runs as one program of
    its own (``_eager``, ``_evaluated``): outside any transformation, and only where every
    extra argument is an array (``value_fn`` may branch on another in Python: such calls
    stay eager)."""
    return _compile.top_level() and all(isinstance(a, (jax.Array, np.ndarray)) for a in jax.tree.leaves(arguments))


def _as_data(value_fn, params, args, kwargs, sdt):
    """``value_fn(p, *args, **kwargs)`` as an ``_objective.Objective`` over the pair (args,
    kwargs): a new closure over new arrays is the same program's data."""
    return _objective.Objective.build(lambda p, a: value_fn(p, *a[0], **a[1]), params, ((args, kwargs),), sdt)


@_compile.jit(static_argnums=0, users=lambda arguments: (arguments["params"], arguments["extra_args"]))
def _eager(compiled, updates, state, params, value, grad, objective, extra_args):
    """``compiled(...)``, a transformation's update, as a program of its own (``update_fn``)."""
    return compiled(updates, state, params, value, grad, objective, extra_args)


@_compile.jit(users=lambda arguments: (arguments["params"], arguments["args"]))
def _evaluated(objective, params, args):
    """(value, real-space gradient) of ``objective`` at ``params``, as a program of its own."""
    return objective(params, (args,))[:2]


def value_and_grad_from_state(value_fn):
    """Like ``optax.value_and_grad_from_state``, for any state holding one ``value``
    and one ``grad`` field: returns the stored pair when ``value`` is finite, else
    evaluates ``value_fn``. The gradient is in optax's convention (conjugated for
    complex leaves), the loss and gradient are cast to the state's types, so
    mixed-precision params and a loss dtype other than the params' work."""

    def wrapped(params, *args, state, **kwargs):
        value = otu.tree_get(state, "value")
        grad = otu.tree_get(state, "grad")
        if value is None or grad is None:
            raise ValueError("the state has no 'value' and 'grad' fields (expected exactly one of each)")
        if _eagerly((args, kwargs)):  # (a lax.cond of new closures compiled on every call)
            if not np.isinf(np.asarray(value)):
                return value, grad
            return _evaluated(_as_data(value_fn, params, args, kwargs, value.dtype), params, (args, kwargs))

        def evaluate():
            f, g, _ = _objective.value_and_grad(value_fn, grad, value.dtype)(params, *args, **kwargs)
            return f, g

        return jax.lax.cond(jnp.isinf(value), evaluate, lambda: (value, grad))

    return wrapped


def _outside(params, box):
    """Raise ``ValueError`` naming the first leaf and index of ``params`` outside ``box`` (its bounds
    as cast, the test ``update`` makes), where both are concrete and in this process (read on the
    host: on a CPU without a copy, no program compiled); traced (``init`` under ``jit``) or spread
    over processes, nothing: ``update`` then gives status INFEASIBLE and zero updates."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    for path, x, lo, hi in zip(paths, *(jax.tree_util.tree_leaves(t) for t in (params, box.lower, box.upper))):
        # (no complex leaf gets here: ``_bounds.box`` refuses them)
        if any(isinstance(a, jax.core.Tracer) or (isinstance(a, jax.Array) and not a.is_fully_addressable)
               for a in (x, lo, hi)):
            continue
        x = np.asarray(x)
        lo, hi = (np.broadcast_to(np.asarray(b, x.dtype), x.shape) for b in (lo, hi))
        bad = ~((x >= lo) & (x <= hi))
        if np.any(bad):
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"qnjax.lbfgs: params{path} at index {at} is outside the bounds ({x[at]} not in "
                             f"[{lo[at]}, {hi[at]}]); start from jnp.clip(params, lower, upper)")
