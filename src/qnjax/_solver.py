"""One L-BFGS solver and one state, shared by :func:`qnjax.minimize` and :func:`qnjax.lbfgs`.

``LBFGS`` is an immutable config (a pytree: the memory size, the direction
method and the dtype are static; the line search's settings and the tolerances
are leaves). ``init`` creates every state leaf (the only place that does, so
dtype and sharding rules are applied once) and ``step`` is one iteration from a
state that describes the point ``params``:

1. ``_memory.push``: last iteration's tentative pair (s, y) is stored if it passes
   the curvature guard (``minimize`` recorded it whole at the end of that iteration,
   ``_pair``; the Optax face's q arrives now, and ``push`` takes the difference);
2. ``direction``: d = -scale H q (q the gradient, or what the Optax face was given)
   by the compact representation (``_compact``, default) or the two-loop recursion; in
   float32, where <g, d> or <d, d> overflow (a gradient beyond 1.8e19), d is scaled by a
   power of two and the step sizes by its inverse (``_unoverflowed``);
3. ``first_stepsize``: 1, or 1 / ||d||_2 (a first step of unit length in x, as
   scipy's L-BFGS-B) while no curvature pair was ever stored; both make the iterates
   invariant to scaling f (a dropped memory keeps its scale gamma, H = gamma I);
4. if the full step t = 1 would move x by no more than rounding (``ulp_stepsize``),
   or the line search along phi(t) = f(x + t d) (limits per call: the evaluations
   left, ``max_stepsize``, no trial below rounding, and, where the quasi-Newton model
   promises no decrease beyond f's rounding (``_floor``), no trial once the slopes bound
   phi's fall within it too: a search at f's floor ends after a few trials) finds no
   decrease (or, having run out of trials, only one within f's rounding noise:
   ``_noise``), x stays and the memory is dropped: the next iteration searches along
   -g (a *retry*, not an iteration). Along -g, no decrease is final: PRECISION if the
   search saw f rise within a few units in the last place of x (a minimiser along -g
   lies there) or the decrease its slopes promise is within f's rounding noise
   (``_at_precision``), else LINESEARCH_FAILED; without bounds the dropped pairs are
   then restored (``_memory.restore``), so the final state and ``hess_inv`` keep what
   was learnt;
5. otherwise x_{k+1} = x_k + t d, and the update goes to the memory's free slot (with
   minimize's y = g_{k+1} - g_k and the pair's products);
6. the status (``_status``) from the facts of this iteration.

The seams later capabilities attach to are methods: ``direction``,
``first_stepsize``, ``max_stepsize``, ``stationarity``.

With bounds (``init(..., bounds=Box)``: the state carries them, so they are traced
values) the iteration is L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995; ``_subspace``):
the pair's Gram row comes from the direction's kept products (``push(kept=True)``,
``_subspace.keeps_products``; else from a pass over the memory, ``direct=True``), the
direction is x_bar - x from the Cauchy point and the subspace step, the first trial
and the largest step are scipy's (the first trial, while no pair was ever stored:
1 / ||d|| unless every variable is boxed, else 1; the step at most 1 in the first
iteration when some bound is finite, afterwards at most the largest feasible step),
every trial point is projected onto the box (``_bounds.trial``), the overflow guard is the
same (in float32, d and the step sizes rescaled by a power of two), a failed
factorisation or an uphill direction drops the memory
as a failed search does, and the stationarity measure is ||P(x - g) - x||_inf.
With every bound infinite the iterates are the unconstrained ones up to rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _bounds, _compact, _compile, _memory, _sharding, _subspace, _tree, _two_loop
from ._compile import where
from ._objective import Evaluated
from ._status import Status, code, decide
from .linesearch import LineSearchStatus, MoreThuente

# A step moving x by at most this many units in the last place counts as no step at all.
ROUNDING_ULPS = 8
# Steps in a row that move x without lowering f (ties, see ``step``): MAX_TIES while the decrease
# the model promises is not resolved, TIE_PATIENCE while it is but has not fallen to TIE_FALL
# times its value where the count began (then the count restarts).
MAX_TIES = 2
TIE_PATIENCE = 10
TIE_FALL = 0.7
# Resolved: the promise above eps^RESOLVED times its value at the run's first tie (it measures the
# squared distance to the model's minimiser, which has then fallen by eps^0.75: 6.6e-6 in float32).
RESOLVED = 1.5
DIRECTIONS = {"compact": _compact, "two-loop": _two_loop}


def _floor(value):
    """A few units in the last place of f at ``value``: the least change rounding can hide."""
    sdt = value.dtype
    return ROUNDING_ULPS * jnp.maximum(jnp.finfo(sdt).eps * jnp.abs(value), jnp.finfo(sdt).tiny)


def _noise(res, floor):
    """The change in f that rounding can hide at x: ``floor`` (``_floor`` of f at x), or more
    where the search's trials showed more (``res.noise``: the part of their change in f that
    their slopes do not explain, at trials near x or where f came back exactly unchanged)."""
    return jnp.maximum(floor, res.noise)


def _pair(u, grad, new_grad, t, slope0, slope, dd, moved, sdt):
    """The whole pair of a step u = t d for ``_memory.record_step``: y = g_new - g (zero where
    x stays: ``moved`` False, g_new = g) and the products <s, y>, <y, y>, <s, s>. <y, y> is
    one pass over the two gradients; <s, y> = t (phi'(t) - phi'(0)) and <s, s> = t^2 <d, d>
    come from the search's slopes and the direction's norm (vector-free: no pass over s),
    where every leaf is at least as wide as the scalar dtype; narrower leaves are rounded
    when stored, so their products are taken of the rounded vectors."""
    y = jax.tree.map(lambda a, b: a - b, new_grad, grad)
    wide = all(jnp.finfo(_tree.dtype_of(leaf)).bits >= jnp.finfo(sdt).bits for leaf in jax.tree_util.tree_leaves(u))
    if wide:  # (of g - g_new: XLA would write y out first to share it between the sum and the store)
        minus_y = jax.tree.map(lambda a, b: b - a, new_grad, grad)
        yy = _tree.inner(minus_y, minus_y, sdt)
        sy, ss = where(moved, t * (slope - slope0), 0), where(moved, t * t * dd, 0)
    else:
        sy, yy, ss = _tree.inners([(u, y), (y, y), (u, u)], sdt)
    return dict(y=y, prods=jnp.stack([sy, yy, ss]).astype(sdt))


def _unoverflowed(d, grad, slope0, dd, sdt):
    """(d', slope0', dd', factor): where <g, d> or <d, d> overflow (a direction beyond the
    square root of the largest number: 1.8e19 in float32, as a far start's gradient can be)
    or underflow (below the smallest normal number: f scaled by 1e-20 in float32 has
    <g, g> ~ 1e-40, which left no search), d' = factor d with factor a power of two that
    brings d's largest component near 1, and its products, which are then finite and, where
    g is not itself below the smallest normal number's square root, normal; else everything
    as given and factor 1. Only d's
    length changes: the caller scales the step sizes it derives by 1 / factor. (A branch:
    its passes are made only where the products overflowed, but under ``jax.vmap`` both
    sides run, a few kernels an iteration; so it is made only where ``_tree.guards_range``.)"""
    def rescaled():
        scaled, factor = _tree.scaled_to_unit(d, sdt)
        slope, norm2 = _tree.inners([(grad, scaled), (scaled, scaled)], sdt)
        return scaled, slope, norm2, factor

    tiny = jnp.finfo(sdt).tiny  # (and where they underflow: f scaled by 1e-20 has <g, g> ~ 1e-40)
    over = ~(jnp.isfinite(slope0) & jnp.isfinite(dd)) | (dd < tiny) | (jnp.abs(slope0) < tiny)
    return jax.lax.cond(over, rescaled, lambda: (d, slope0, dd, jnp.ones((), sdt)))


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
    bounds: Any = None  # a _bounds.Box (leaves in the params' dtypes), or None: unconstrained


def _fresh(solver, params, value, grad, bounds) -> State:
    """Every state leaf but ``params`` and ``aux`` (None here)."""
    sdt = _tree.scalar_dtype(params, solver.scalar_dtype)
    return State(
        params=None,
        value=jnp.full((), jnp.inf, sdt) if value is None else jnp.asarray(value).astype(sdt),
        grad=_tree.zeros_like(params) if grad is None else _tree.cast_like(grad, params),
        aux=None,
        memory=_memory.init(params, solver.memory_size, sdt, bounded=bounds is not None,
                            compact=bounds is None and solver.direction_method == "compact"),
        stepsize=jnp.zeros((), sdt),
        count=jnp.zeros((), jnp.int32),
        nfev=jnp.zeros((), jnp.int32),
        status=code(Status.RUNNING),
        linesearch_status=jnp.asarray(int(LineSearchStatus.SUCCESS), jnp.int32),
        ties=jnp.zeros((), jnp.int32),
        tie_level=jnp.full((), jnp.inf, sdt),
        tie_start=jnp.full((), jnp.inf, sdt),
        bounds=bounds,
    )


_fresh_jitted = jax.jit(_fresh)


def _state_shardings(shapes: State, params, plan: _sharding.Plan) -> State:
    """The output shardings of :func:`_fresh`: the gradient (and a bound shaped like its
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


def _static(**kw):
    return dataclasses.field(metadata=dict(static=True), **kw)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LBFGS:
    """L-BFGS with a line search. Numeric settings are pytree leaves (changing them does
    not recompile); ``None`` tolerances take the scalar dtype's defaults (``_status``)."""

    memory_size: int = _static(default=10)
    linesearch: Any = dataclasses.field(default_factory=MoreThuente)
    gtol: Any = None
    ftol: Any = None
    fatol: Any = None
    maxiter: Any = None  # None: no limit
    maxfev: Any = None
    direction_method: str = _static(default="compact")
    scale_init_precond: bool = _static(default=True)
    scalar_dtype: Any = _static(default=None)
    fixed_search_steps: int = _static(default=0)  # > 0: the line search's loop has this static trip count

    def __post_init__(self):
        if not isinstance(self.memory_size, int) or isinstance(self.memory_size, bool) or self.memory_size < 1:
            raise ValueError(f"memory_size must be an integer >= 1, got {self.memory_size!r}")
        if self.direction_method not in DIRECTIONS:
            raise ValueError(f"unknown direction method {self.direction_method!r}; known: {', '.join(DIRECTIONS)}")

    # ----------------------------------------------------------------- state
    def init(self, params, value=None, grad=None, aux=None, bounds=None) -> State:
        """The state at ``params`` (``value`` +inf and a zero gradient unless given);
        ``bounds``: a ``_bounds.Box`` (L-BFGS-B; ``params`` must lie in it). Every leaf
        is created where its parameter lives (``_sharding``)."""
        _tree.check_params(params)
        if bounds is not None and not isinstance(bounds, _bounds.Box):
            bounds = _bounds.box(params, bounds)
        plan = _sharding.plan(params)
        if plan is None and _compile.top_level():
            # Called eagerly (the Optax face's ``init``), each of the state's few operations would
            # be a program of its own, compiled at a first call (twelve: 157 of a first init's
            # 252 ms); as one program, one compile. (Traced, inside ``minimize``'s solve, the
            # operations join the caller's program.)
            state = _fresh_jitted(self, params, value, grad, bounds)
        elif plan is None:
            state = _fresh(self, params, value, grad, bounds)
        else:
            shapes = jax.eval_shape(_fresh, self, params, value, grad, bounds)
            state = jax.jit(_fresh, out_shardings=_state_shardings(shapes, params, plan))(
                self, params, value, grad, bounds)
        return state._replace(params=params, aux=aux)

    # ----------------------------------------------------------------- seams
    def direction(self, memory, q, scale):
        """(d = -scale H q, memory)."""
        sdt = memory.dtype
        return DIRECTIONS[self.direction_method].inverse_hessian(memory, q, -jnp.asarray(scale).astype(sdt))

    def first_stepsize(self, memory, dd, unit=1.0):
        """``unit`` (1: the model's step; ``step`` rescales d where its products overflow),
        except while no curvature pair was ever stored (H = I has no scale), where it is
        1 / ||d||_2 (``dd`` = <d, d>), a step of unit length in x."""
        norm = jnp.sqrt(where(dd > 0, dd, 1))  # (no sqrt(0): its derivative is infinite)
        # (the select between sqrt and the division also keeps XLA from rewriting 1/sqrt as rsqrt,
        # which rounds differently)
        return where(~memory.flags[2], 1 / where(dd > 0, norm, 1), jnp.ones_like(dd) * unit)

    def max_stepsize(self, params, d, bounds=None):
        """inf, or with bounds the largest feasible step along d."""
        sdt = _tree.scalar_dtype(params, self.scalar_dtype)
        if bounds is None:
            return jnp.full((), jnp.inf, sdt)
        return _bounds.max_stepsize(params, d, bounds, sdt)

    def stationarity(self, params, grad, bounds=None):
        """The measure GTOL compares with ``gtol``: max |g_i|, or with bounds the
        projected gradient's ||P(x - g) - x||_inf."""
        sdt = _tree.scalar_dtype(params, self.scalar_dtype)
        if bounds is None:
            return _tree.norm_inf(grad, sdt)
        return _bounds.stationarity(params, grad, bounds, sdt)

    def ftol_for(self, sdt):
        return jnp.asarray(0.0 if self.ftol is None else self.ftol).astype(sdt)

    @staticmethod
    def _at_precision(res, slope0, noise, t_round, t_model):
        """After a search along -g (phi(t) = f(x - t g), phi'(0) = ``slope0``) that found no
        decrease, or one within the noise (then ``res`` is at its best trial): is x stationary to working
        precision? Yes if a minimiser of phi lies within rounding of x (f rises, with a
        non-negative slope, at the step t_round that moves x by a few units in the last
        place), or if the largest decrease along -g is within twice f's rounding noise. The
        decrease is estimated from slopes: phi'(0)^2 / 2c with the curvature
        c = (phi'(t) - phi'(0)) / t at the smallest trial t, and at most |phi'(0)| t_r / 2
        with t_r the smallest trial whose slope is not negative or the step ``t_model`` that
        minimises the quasi-Newton model along -g (1 once the memory has given H0 = gamma I
        a curvature scale: the model's decrease g^T H0 g / 2). ``noise`` is f's rounding
        noise at x (``_noise``)."""
        in_x = res.rising <= 1.01 * t_round
        t, _, d = res.smallest
        curvature = (d - slope0) / t
        decrease = where(curvature > 0, slope0 * slope0 / (2 * curvature), jnp.inf)
        decrease = jnp.minimum(decrease, -slope0 * jnp.minimum(res.rising, t_model) / 2)
        in_f = decrease <= 2 * noise  # the decrease is itself an upper bound
        return in_x | in_f

    # ----------------------------------------------------------------- iteration
    def start_status(self, state: State):
        """The status of a state before any iteration (INFEASIBLE, NONFINITE, GTOL, MAXITER or
        MAXFEV when a budget is already spent, as with ``maxiter=0``, else RUNNING)."""
        sdt = state.value.dtype
        finite = jnp.isfinite(state.value) & _tree.all_finite(state.grad)
        gtol = jnp.asarray(0 if self.gtol is None else self.gtol).astype(sdt)
        rules = [(~finite, Status.NONFINITE),
                 (self.stationarity(state.params, state.grad, state.bounds) <= gtol, Status.GTOL)]
        if state.bounds is not None:
            rules.insert(0, (~_bounds.facts(state.bounds, state.params)[0], Status.INFEASIBLE))
        return decide(rules + self.spent(state))

    def spent(self, state: State):
        """The status rules of the budgets: MAXITER once ``count`` reaches ``maxiter``, MAXFEV
        once ``nfev`` reaches ``maxfev`` (none for a budget that is None)."""
        rules = []
        if self.maxiter is not None:
            rules.append((state.count >= jnp.asarray(self.maxiter, jnp.int32), Status.MAXITER))
        if self.maxfev is not None:
            rules.append((state.nfev >= jnp.asarray(self.maxfev, jnp.int32), Status.MAXFEV))
        return rules

    def step(self, state: State, evaluate: Callable, *, q=None, scale=1.0, active=True,
             exact_updates=False) -> tuple[Any, State]:
        return self.step_with_search(state, evaluate, q=q, scale=scale, active=active,
                                     exact_updates=exact_updates)[:2]

    def step_with_search(self, state: State, evaluate: Callable, *, q=None, scale=1.0, active=True,
                         exact_updates=False):
        """One iteration (module docstring) from ``state``; returns (updates, new state, the
        line search's result or None).

        ``evaluate(params) -> (value, real-space grad, aux)``; ``q`` (default: the
        gradient) is what the memory multiplies and differences; ``scale`` multiplies
        the direction; ``active=False`` makes the line search evaluate nothing and leaves
        the memory's buffers and small matrices as they are (a finished member of a vmapped
        batch: :func:`hold` keeps the rest of its state). With bounds, ``q`` must be the
        gradient, ``scale`` is 1, and ``exact_updates`` (the Optax face) evaluates at params + updates
        bit for bit (``_bounds.trial``), else at the projection itself."""
        params, value, grad, box = state.params, state.value, state.grad, state.bounds
        sdt = value.dtype
        # With q the gradient and a search (``minimize``) the search's last evaluation gives the
        # next gradient, so the pair is recorded whole at the end of this step (``_pair``) and
        # ``push`` reads and writes no buffer row; else (the Optax face: q is given at each call)
        # ``push`` differences q with the q it left in the free slot.
        whole = q is None and self.linesearch is not None
        q = grad if q is None or box is not None else q
        held = None if active is True else jnp.asarray(active)  # (the memory's writes are masked by it)
        kept = box is not None and _subspace.keeps_products(params, sdt)
        memory, stored = _memory.push(state.memory, None if whole else q, self.scale_init_precond,
                                      direct=box is not None and not kept, kept=kept, active=held)
        slope0 = None
        if box is None:
            d, memory = self.direction(memory, q, scale)
            usable = True
        else:
            # (L-BFGS-B needs S^T S, the lower triangle of S^T Y and its diagonal only, all
            # from ``push``: no products with q, and S^T y, Y^T Y, R^-1 are left stale.)
            d, usable, memory, slope0 = _subspace.direction(memory, params, grad, box, sdt, stored)
        empty = memory.count == 0
        if slope0 is None:
            slope0, dd = _tree.inners([(grad, d), (d, d)], sdt)
        else:  # (the direction's own g^T d: no second pass over g and d)
            dd = _tree.inner(d, d, sdt)
        unit = jnp.ones((), sdt)  # the step t = unit: the direction as the model gives it
        if self.linesearch is not None and _tree.guards_range(sdt):
            d, slope0, dd, factor = _unoverflowed(d, grad, slope0, dd, sdt)
            unit = 1 / factor
        t0 = self.first_stepsize(memory, dd, unit)
        t_max = self.max_stepsize(params, d, box)
        t_ulp, t_ulp_each = _tree.ulp_stepsizes(params, d, sdt)
        if box is not None:
            # scipy's: a first trial of 1 when every variable is boxed (while no pair was stored),
            # and a step of at most 1 when constrained in the first iteration only (later searches
            # along a direction without curvature information may go as far as the box allows);
            # neither where the step of 1 moves x by rounding only (f scaled by 1e-20: d = P(x - g) - x
            # ~ 1e-20): there the first trial is of unit length, as without bounds
            _, constrained, boxed = _bounds.facts(box, params)
            resolved = unit > ROUNDING_ULPS * t_ulp
            t0 = where(~memory.flags[2] & boxed & resolved, unit, t0).astype(sdt)
            t_max = where((state.count == 0) & constrained & resolved, jnp.minimum(t_max, unit), t_max)
            t0 = jnp.minimum(t0, t_max)

        if self.linesearch is None:  # the Optax face without a line search: the step is d itself
            norm = jnp.sqrt(_tree.inner(q, q, sdt))
            if _tree.guards_range(sdt):  # (||q||^2 overflows beyond 1.8e19 in float32)
                def scaled_norm():
                    scaled, factor = _tree.scaled_to_unit(q, sdt)
                    return jnp.sqrt(_tree.inner(scaled, scaled, sdt)) / factor

                norm = jax.lax.cond(jnp.isfinite(norm), lambda: norm, scaled_norm)
            t = where(empty & self.scale_init_precond,
                          jnp.minimum(1, 1 / jnp.maximum(norm, jnp.finfo(sdt).tiny)), 1)
            u = _tree.scale(t.astype(sdt), d, params)
            memory = _memory.record_step(memory, u, -jnp.asarray(scale).astype(sdt) * t, held)
            new = state._replace(params=_tree.add(params, u), value=jnp.full((), jnp.inf, sdt), memory=memory,
                                 stepsize=t.astype(sdt), count=state.count + 1)
            gtol = jnp.asarray(0 if self.gtol is None else self.gtol).astype(sdt)
            return u, new._replace(status=decide([(self.stationarity(params, grad) <= gtol, Status.GTOL)])), None

        def point(t):
            # Barriers: materialise u and x in the leaves' dtypes, so no FMA or excess
            # precision makes the evaluated point differ from params + updates.
            u = jax.lax.optimization_barrier(_tree.scale(t, d, params))
            if box is not None:
                return _bounds.trial(params, u, box, exact_updates)
            return u, jax.lax.optimization_barrier(_tree.add(params, u))

        def phi(t):
            f, g, aux = evaluate(point(t)[1])
            return f, _tree.inner(g, d, sdt), Evaluated(g, aux)

        budget = jnp.asarray(self.linesearch.max_steps, jnp.int32)
        if self.maxfev is not None:
            budget = jnp.minimum(budget, jnp.asarray(self.maxfev, jnp.int32) - state.nfev)
        spent = budget < self.linesearch.max_steps  # (maxfev cut this search short)
        # A directional derivative below the smallest normal number cannot guide a search
        # (and its tests underflow): no evaluation, as a search that found nothing.
        budget = where(active & usable & (-slope0 >= jnp.finfo(sdt).tiny), jnp.maximum(budget, 0), 0)
        # A decrease within f's rounding is not worth trials (``linesearch._base``: the search stops
        # when its slopes bound phi's fall below it) where the model agrees: a pair has given H its
        # scale (trials are at the model's scale: a far trial's curvature says nothing of phi near 0)
        # and the model's own decrease along d, -phi'(0) t0 / 2 at its minimiser t0 = 1, is within
        # the floor (where the model promises more, a few trials' slopes may just have missed it).
        floor = _floor(value)
        negligible = where(memory.flags[2] & (-slope0 * t0 <= 2 * floor), floor, 0).astype(sdt)
        res = self.linesearch.search(phi, value, slope0, Evaluated(grad, state.aux), t0,
                                     max_steps=budget, max_stepsize=t_max,
                                     min_stepsize=jnp.minimum(ROUNDING_ULPS * jnp.minimum(t_ulp, t_ulp_each), t_max),
                                     rounding_stepsize=ROUNDING_ULPS * t_ulp, negligible=negligible,
                                     fixed_steps=self.fixed_search_steps)
        # A step that does not lower f (a tie the approximate Wolfe test let through) lets the
        # slopes lead through a region where f is flat at its rounding (a plateau, a saddle in
        # float32, or f = 1e6 + a sum of squares: f's rounding hides what the exact gradient still
        # sees). Ties wander at a minimum, where the gradient is its own rounding noise, so few
        # are taken in a row: MAX_TIES, or, below float64, while the decrease the model promises
        # along d is resolved (RESOLVED), TIE_PATIENCE, the count restarting each time that promise
        # falls to TIE_FALL times its value where the count began (progress: at a minimum, where
        # the slopes are rounding, it does not keep falling).
        tie = res.value >= value
        promised = -slope0 * t0 / 2
        if jnp.finfo(sdt).bits >= 64:  # (float64: f's rounding hides 1e-16 of f, x is then within about
            # 1e-8 of the model's minimiser, and the run keeps scipy's steps; float32: 3e-4, worse with a constant)
            resolved = jnp.zeros((), bool)
        else:
            resolution = float(jnp.finfo(sdt).eps) ** RESOLVED
            resolved = (promised > resolution * state.tie_start) & (promised > jnp.finfo(sdt).tiny)
        ties = where((state.ties > 0) & resolved & (promised <= TIE_FALL * state.tie_level), 0, state.ties)
        # A search that ran out of trials (DECREASE) with a decrease f's rounding can hide has
        # found nothing: its step only chases rounding (a run at f's floor can take thousands of
        # such steps, each moving a tiny component of x); it is treated as a failed search.
        noise = _noise(res, floor)
        lost = (res.status == LineSearchStatus.DECREASE) & (value - res.value <= noise)
        allowed = ties < where(resolved, TIE_PATIENCE, MAX_TIES)
        moved = (res.status != LineSearchStatus.FAILED) & ~lost & (~tie | allowed)
        moved = _compile.once(state.nfev < 0, moved)  # (read by every update below; nfev >= 0)
        taken = where(moved, res.stepsize, jnp.zeros((), sdt))
        u, x_new = point(taken)  # u is zero and x_new params when x stays
        new_grad = _tree.select(moved, res.grad.grad, grad)
        pair = _pair(u, grad, new_grad, taken, slope0, res.slope, dd, moved, sdt) if whole else {}
        memory = _memory.record_step(memory, u, -jnp.asarray(scale).astype(sdt) * taken / unit, held, **pair)
        failed = ~moved
        memory = _memory.clear(memory, failed)
        new = state._replace(
            params=x_new,
            value=where(moved, res.value, value),
            grad=new_grad,
            aux=_tree.select(moved, res.grad.aux, state.aux),
            memory=memory,
            stepsize=taken,
            count=state.count + moved.astype(jnp.int32),
            nfev=state.nfev + res.nfev,
            linesearch_status=res.status,
            ties=where(moved, where(tie, ties + 1, 0), ties).astype(jnp.int32),
            tie_level=where(moved & tie & (ties == 0), promised, state.tie_level).astype(sdt),
            tie_start=where(moved, where(tie, where(state.ties == 0, promised, state.tie_start), jnp.inf),
                            state.tie_start).astype(sdt),
        )
        final = failed & empty
        if box is None:  # the pairs dropped for the retry are kept when the run stops (not with
            # bounds: L-BFGS-B's free-set products of the dropped pairs are not kept)
            new = new._replace(memory=_memory.restore(new.memory, final))
        # With bounds, also when the whole feasible part of the direction (up to t_max, which
        # the search tried) moves x by no more than rounding: no feasible step lowers f.
        precision = final & (self._at_precision(res, slope0, noise, ROUNDING_ULPS * t_ulp,
                                                  where(memory.flags[2], unit, jnp.inf).astype(sdt))
                             | (t_max <= 1.01 * ROUNDING_ULPS * t_ulp))
        out_of_budget = final & spent
        f_new = new.value
        ftol, fatol = self.ftol_for(sdt), jnp.asarray(0 if self.fatol is None else self.fatol).astype(sdt)
        bound = jnp.maximum(ftol * jnp.maximum(jnp.abs(value), jnp.abs(f_new)), fatol)
        normal = res.status == LineSearchStatus.SUCCESS
        converged_f = normal & ((ftol > 0) | (fatol > 0)) & (value - f_new <= bound)
        gtol = jnp.asarray(0 if self.gtol is None else self.gtol).astype(sdt)
        rules = [
            (self.stationarity(new.params, new.grad, box) <= gtol, Status.GTOL),
            (precision, Status.PRECISION),
            (out_of_budget, Status.MAXFEV),
            (final, Status.LINESEARCH_FAILED),
            (converged_f, Status.FTOL),
        ]
        return u, new._replace(status=decide(rules + self.spent(new))), res
