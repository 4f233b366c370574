"""The solver's one state type, ``State``, and the one place its leaves are created.

Every leaf has the dtype, shape and weak type it will keep through every update
(under ``jit``, ``scan``, ``while_loop``, ``vmap``, x32 and x64): f in the scalar
dtype, the gradient in its parameters' dtypes, the memory as ``_memory.init`` makes
it, counters int32 and never weak. ``fresh`` builds them and ``create`` makes them
where they live (one program when called eagerly): with sharded parameters
(``_sharding``), ``shardings`` puts the gradient and the memory's rows like their
parameter, the history axis unsharded, the rest replicated. ``hold`` keeps a
finished batch member's state (``_loop``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _bounds, _compile, _memory, _sharding, _tree
from ._state_types import _weaken as weaken
from ._status import Status, code
from ._xla import where
from .linesearch import LineSearchStatus


class State(NamedTuple):
    """Everything one iteration needs and leaves; ``value`` and ``grad`` are the only
    fields so named (``optax.value_and_grad_from_state`` finds them)."""

    params: Any  # the point the other fields describe
    value: jax.Array  # f(params) in the scalar dtype; +inf: not evaluated
    grad: Any  # gradient at params, real-space (conjugated for complex leaves), params' dtypes
    aux: Any  # fun's aux at params (None without has_aux)
    memory: _memory.Memory
    stepsize: jax.Array  # scalar dtype: the last step size taken
    count: jax.Array  # int32: iterations that moved x (nit)
    nfev: jax.Array  # int32: evaluations of f and its gradient
    status: jax.Array  # int32 Status
    linesearch_status: jax.Array  # int32 LineSearchStatus of the last search
    ties: jax.Array  # int32: consecutive steps that moved x without lowering f (since the count restarted)
    tie_level: jax.Array  # scalar dtype: the decrease the model promised where that count began
    tie_start: jax.Array  # scalar dtype: the decrease it promised at the first of those steps (+inf: none)
    probes: jax.Array  # int32: probes (x stayed, a trial's pair stored) since f last fell beyond its noise (``_probe``)
    newton: jax.Array  # (3,) scalar dtype: f where the last Newton model was taken, the decrease it
    # promised, and 1 where its step p is the next direction (``_rescue``; [inf, 0, 0]: none yet)
    start_scale: jax.Array  # (2,) scalar dtype: max |x0_i| and |f(x0)|, set by the first iteration
    # (``_origin.start_scale``; 0 until then): ``_origin.at_origin``
    scale: jax.Array  # scalar dtype: the power of two f and its gradient are multiplied by (``_scale``:
    # the memory and f's tolerances are of scale * f, and minimize's value and grad; the Optax face's are the user's)
    bounds: Any = None  # a _bounds.Box (leaves in the params' dtypes), or None: unconstrained


def fresh(solver, params, value, grad, bounds) -> State:
    """Every state leaf but ``params`` and ``aux`` (None here), for ``solver`` (an ``LBFGS``:
    its memory size, direction method and scalar dtype)."""
    sdt = _tree.scalar_dtype(params, solver.scalar_dtype)
    return State(
        params=None,
        value=jnp.full((), jnp.inf, sdt) if value is None else jnp.asarray(value).astype(sdt),
        grad=_tree.zeros_like(params) if grad is None else _tree.cast_like(grad, params),
        aux=None,
        # (with bounds L-BFGS-B's matrices, or the projected method's compact H, whatever the direction)
        memory=_memory.init(params, solver.memory_size, sdt,
                            bounded=bounds is not None and solver.bounds_method == "lbfgsb",
                            compact=(solver.bounds_method == "projected") if bounds is not None
                            else solver.direction_method == "compact"),
        stepsize=jnp.zeros((), sdt),
        count=jnp.zeros((), jnp.int32),
        nfev=jnp.zeros((), jnp.int32),
        status=code(Status.RUNNING),
        linesearch_status=jnp.asarray(int(LineSearchStatus.SUCCESS), jnp.int32),
        ties=jnp.zeros((), jnp.int32),
        tie_level=jnp.full((), jnp.inf, sdt),
        tie_start=jnp.full((), jnp.inf, sdt),
        probes=jnp.zeros((), jnp.int32),
        newton=jnp.array([jnp.inf, 0, 0], sdt),
        start_scale=jnp.zeros((2,), sdt),
        scale=jnp.ones((), sdt),
        bounds=bounds,
    )


_fresh_jitted = jax.jit(fresh)


def typed_like(x, like):
    """``x`` (of ``like``'s dtypes) with each leaf weakly typed where ``like``'s is, values unchanged
    (``minimize``'s x and gradient: its loop carries strong types)."""
    return jax.tree.map(lambda a, b: weaken(a, a.dtype) if getattr(b, "weak_type", False) else a, x, like)


def create(solver, params, value, grad, bounds) -> State:
    """:func:`fresh`, each leaf created where its parameter lives (``_sharding``)."""
    plan = _sharding.plan(params)
    if plan is None and _compile.top_level():
        # Called eagerly (the Optax face's ``init``), each of the state's few operations would
        # be a program of its own, compiled at a first call (twelve: 157 of a first init's
        # 252 ms); as one program, one compile. (Traced, inside ``minimize``'s solve, the
        # operations join the caller's program.)
        return _fresh_jitted(solver, params, value, grad, bounds)
    if plan is None:
        return fresh(solver, params, value, grad, bounds)
    shapes = jax.eval_shape(fresh, solver, params, value, grad, bounds)
    return jax.jit(fresh, out_shardings=shardings(shapes, params, plan))(solver, params, value, grad, bounds)


def shardings(shapes: State, params, plan: _sharding.Plan) -> State:
    """The output shardings of :func:`fresh`: the gradient (and a bound shaped like its
    parameter) like the parameter, the memory buffers stacked, the rest replicated."""
    out = jax.tree.map(lambda _: plan.replicated, shapes)
    memory = out.memory._replace(pairs=plan.stacked,
                                 free=None if shapes.memory.free is None else plan.like)
    bounds = out.bounds
    if shapes.bounds is not None:
        def side(b):
            return jax.tree.map(lambda s, p, like: like if s.shape == np.shape(p) else plan.replicated,
                                b, params, plan.like)
        bounds = _bounds.Box(side(shapes.bounds.lower), side(shapes.bounds.upper))
    return out._replace(grad=plan.like, memory=memory, bounds=bounds)


def hold(active, new: State, old: State) -> State:
    """``new`` where ``active``, else ``old`` (a finished member of a batch, ``_loop``),
    except the memory's pairs and small matrices, taken from ``new`` as they are: a step
    with ``active`` False leaves them unchanged, and they are most of what a member carries."""
    def small(state):
        return state._replace(memory=state.memory._replace(pairs=None, gram=None))

    held = jax.tree.map(lambda a, b: b if a is b else where(active, a, b), small(new), small(old))
    return held._replace(memory=held.memory._replace(pairs=new.memory.pairs, gram=new.memory.gram))


def check_resumed(box, state) -> None:
    """A resumed ``state`` goes on in its own box (``minimize(..., state=res.state)``): bounds
    given with it must be that box, else ValueError (the state's point, gradient and memory
    are of the old box: start a new run from ``res.x``). Concrete bounds are compared; traced
    ones cannot be here, and the state's box is used."""
    if box is None or state is None:
        return
    if state.bounds is None:
        raise ValueError("bounds given with the state of a run without bounds: start a new run from res.x")
    pairs = list(zip(jax.tree.leaves(box), jax.tree.leaves(state.bounds)))
    if any(isinstance(a, jax.core.Tracer) for pair in pairs for a in pair):
        return
    same = jax.tree.structure(box) == jax.tree.structure(state.bounds)
    if not same or not all(np.shape(a) == np.shape(b) and np.array_equal(a, b) for a, b in pairs):
        raise ValueError("bounds other than those of the run the state comes from: a resumed run keeps its box "
                         "(pass bounds=None, or start a new run from res.x with the new bounds)")
