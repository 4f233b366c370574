"""One L-BFGS solver and one state, shared by :func:`qnjax.minimize` and :func:`qnjax.lbfgs`.

``LBFGS`` is an immutable config (a pytree: the memory size, the direction
method and the dtype are static; the line search's settings and the tolerances
are leaves). ``init`` creates every state leaf (``_state``: the only place that
does, so dtype and sharding rules are applied once) and ``step`` is one iteration
from a state that describes the point ``params``:

1. ``_memory_update.push``: last iteration's tentative pair (s, y) is stored if it
   passes the curvature guard (``minimize`` recorded it whole at the end of that
   iteration, ``_memory_update.pair``; the Optax face's q arrives now, and ``push``
   takes the difference);
2. ``direction``: d = -scale H q (q the gradient, or what the Optax face was given) by the
   compact representation (``_compact``, default) or the two-loop recursion (after a rescue,
   its step p: ``_rescued_step``); in float32, where <g, d> or <d, d> overflow (a gradient beyond
   1.8e19), d is scaled by a power of two and the step sizes by its inverse (``_tree.unoverflowed``);
3. ``first_stepsize``: 1, or 1 / ||d||_2 (a first step of unit length in x, as
   scipy's L-BFGS-B) while no curvature pair was ever stored; both make the iterates
   invariant to scaling f (a dropped memory keeps its scale gamma, H = gamma I);
4. if the full step t = 1 would move x by no more than rounding (``ulp_stepsize``),
   or the line search along phi(t) = f(x + t d) (limits per call: the evaluations
   left, ``max_stepsize``, no trial below rounding, and, where the quasi-Newton
   model promises no decrease beyond f's rounding (``_verdict.floor``), no trial once
   the slopes bound phi's fall within it too: a search at f's floor ends after a few
   trials) finds no decrease (or, having run out of trials, only one within f's
   rounding noise), or its point is a tie beyond those allowed in a row
   (``_verdict``), x stays and the memory is dropped: the next iteration searches
   along -g (a *retry*, not an iteration); or, below float64 and at most
   ``_probe.MAX_PROBES`` times in a row, the memory is kept with the pair of one of the
   search's trials (a *probe*: where f's rounding hides a decrease, the gradient still
   measures curvature). Along -g, no decrease is final: PRECISION
   if the search saw f rise within a few units in the last place of x (a minimiser
   along -g lies there) or the decrease its slopes promise is within f's rounding
   noise (``_verdict.at_precision``), else LINESEARCH_FAILED; without bounds the
   dropped pairs are then restored (``_memory.restore``), so the final state and
   ``hess_inv`` keep what was learnt;
5. otherwise x_{k+1} = x_k + t d, and the update goes to the memory's free slot (with minimize's y = g_{k+1} - g_k);
6. the status (``_verdict.rules``) from the facts of this iteration.

The seams later capabilities attach to: ``direction``, ``first_stepsize``, ``max_stepsize``, ``stationarity``.

With bounds (``init(..., bounds=Box)``: the state carries them, so they are traced
values) the iteration is L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995; ``_subspace``):
the pair's Gram row comes from the direction's kept products (``push(kept=True)``,
``_subspace.keeps_products``; else from a pass over the memory, ``direct=True``), the
direction is x_bar - x from the Cauchy point and the subspace step, the first trial and
the largest step are scipy's (``_first_trial``), every trial point is projected
onto the box (``_bounds.trial``), a failed factorisation or an uphill direction drops the
memory as a failed search does (below float64 all but the newest pair: ``_subspace``), and
the stationarity measure is ||P(x - g) - x||_inf.
With ``bounds_method="projected"`` it is projected L-BFGS (``_projected``): the compact H
on the variables not held on a bound, the search along the projected path P(x + t d)
(no largest step; the path's slope past the largest feasible step; with no pair stored,
L-BFGS-B's step to P(x - g)), the pair's products from the vectors where the path held a
variable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import (
    _bounds,
    _compact,
    _first_trial,
    _memory,
    _memory_update,
    _origin,
    _probe,
    _projected,
    _rescued_step,
    _state,
    _subspace,
    _tree,
    _two_loop,
    _unsearched,
    _verdict,
)
from ._objective import Evaluated
from ._state import State
from ._status import decide
from ._xla import where
from .linesearch import MoreThuente

DIRECTIONS = {"compact": _compact, "two-loop": _two_loop}
BOUNDS_METHODS = ("lbfgsb", "projected")


def _static(**kw):
    return dataclasses.field(metadata=dict(static=True), **kw)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LBFGS:
    """L-BFGS with a line search. Numeric settings are pytree leaves (changing them does not recompile);
    ``None`` tolerances take the scalar dtype's defaults (``_status``). ``value_dtype`` is set by both faces,
    from the dtype f comes in (``minimize``: what ``fun`` returns; ``lbfgs``: ``value``): leave it None."""

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
    bounds_method: str = _static(default="lbfgsb")  # with bounds: "lbfgsb" (_subspace) or "projected" (_projected)
    value_dtype: Any = _static(default=None)  # f's, where narrower than the scalar dtype (_verdict.value_dtype)

    def __post_init__(self):
        if not isinstance(self.memory_size, int) or isinstance(self.memory_size, bool) or self.memory_size < 1:
            raise ValueError(f"memory_size must be an integer >= 1, got {self.memory_size!r}")
        if self.direction_method not in DIRECTIONS:
            raise ValueError(f"unknown direction method {self.direction_method!r}; known: {', '.join(DIRECTIONS)}")
        if self.bounds_method not in BOUNDS_METHODS:
            raise ValueError(f"unknown bounds method {self.bounds_method!r}; known: {', '.join(BOUNDS_METHODS)}")

    # ----------------------------------------------------------------- state
    def init(self, params, value=None, grad=None, aux=None, bounds=None) -> State:
        """The state at ``params`` (``value`` +inf and a zero gradient unless given);
        ``bounds``: a ``_bounds.Box`` (L-BFGS-B; ``params`` must lie in it). Every leaf
        is created where its parameter lives (``_sharding``)."""
        _tree.check_params(params)
        if bounds is not None and not isinstance(bounds, _bounds.Box):
            bounds = _bounds.box(params, bounds)
        state = _state.create(self, params, value, grad, bounds)
        return state._replace(params=params, aux=aux)

    # ----------------------------------------------------------------- seams
    def direction(self, memory, q, scale, newest=None):
        """(d = -scale H q, memory); where ``newest`` holds, scale times the newest s (``_rescued_step``)."""
        minus = -jnp.asarray(scale).astype(memory.dtype)
        if self.direction_method == "compact":
            return _compact.inverse_hessian(memory, q, minus, newest=newest)
        d, memory = _two_loop.inverse_hessian(memory, q, minus)
        return _rescued_step.along(newest, memory, d, scale), memory

    def first_stepsize(self, memory, dd, unit=1.0):
        """``unit`` (1: the model's step; ``step`` rescales d where its products overflow), except while no
        curvature pair was ever stored (H = I has no scale): 1 / ||d||_2 (``dd`` = <d, d>), a unit step in x."""
        norm = jnp.sqrt(where(dd > 0, dd, 1))  # (no sqrt(0): its derivative is infinite)
        # (the select between sqrt and the division also keeps XLA's 1/sqrt from becoming rsqrt's rounding)
        return where(~memory.flags[2], 1 / where(dd > 0, norm, 1), jnp.ones_like(dd) * unit)

    def max_stepsize(self, params, d, bounds=None):
        """inf, or with bounds the largest feasible step along d."""
        sdt = _tree.scalar_dtype(params, self.scalar_dtype)
        return jnp.full((), jnp.inf, sdt) if bounds is None else _bounds.max_stepsize(params, d, bounds, sdt)

    def stationarity(self, params, grad, bounds=None, scale=None):
        """The measure GTOL compares with ``gtol``: max |g_i|, or with bounds the
        projected gradient's ||P(x - g) - x||_inf (of f's own g, ``grad`` being f times ``scale``'s)."""
        sdt = _tree.scalar_dtype(params, self.scalar_dtype)
        return _tree.norm_inf(grad, sdt) if bounds is None else _bounds.stationarity(params, grad, bounds, sdt, scale)

    # ----------------------------------------------------------------- iteration
    def start_status(self, state: State):
        """The status of a state before any iteration (``_verdict.start_rules``)."""
        return decide(_verdict.start_rules(self, state))

    def step(self, state: State, evaluate: Callable, *, q=None, scale=1.0, active=True,
             exact_updates=False) -> tuple[Any, State]:
        return self.step_with_search(state, evaluate, q=q, scale=scale, active=active,
                                     exact_updates=exact_updates)[:2]

    def step_with_search(self, state: State, evaluate: Callable, *, q=None, scale=1.0, active=True,
                         exact_updates=False):
        """One iteration (module docstring) from ``state``: (updates, new state, the line search's result
        or None). ``evaluate(params) -> (value, real-space grad, aux)``; ``q`` (default: the gradient) is
        what the memory multiplies and differences; ``scale`` multiplies the direction; ``active=False``
        makes the line search evaluate nothing and leaves the memory's buffers and small matrices as
        they are (a finished member of a vmapped batch: ``_state.hold`` keeps the rest of its state). With
        bounds, ``q`` must be the gradient, ``scale`` is 1, and ``exact_updates`` (the Optax face)
        evaluates at params + updates bit for bit (``_bounds.trial``), else at the projection itself."""
        params, value, grad, box = state.params, state.value, state.grad, state.bounds
        sdt = value.dtype
        ulps = _verdict.rounding_ulps(params, sdt, self.value_dtype)  # (fewer units in x's last place: no step)
        # With q the gradient and a search (``minimize``) the search's last evaluation gives the next gradient,
        # so the pair is recorded whole at the end of this step (``_memory_update.pair``) and ``push`` reads and
        # writes no buffer row; else (the Optax face: q given at each call) it differences q with the free slot's.
        whole = q is None and self.linesearch is not None
        q = grad if q is None or box is not None else q
        held = None if active is True else jnp.asarray(active)  # (the memory's writes are masked by it)
        lbfgsb, projected = (box is not None and self.bounds_method == m for m in BOUNDS_METHODS)
        kept = lbfgsb and _subspace.keeps_products(params, sdt)
        memory, stored = _memory_update.push(state.memory, None if whole else q, self.scale_init_precond,
                                             direct=lbfgsb and not kept, kept=kept, active=held)
        slope0, usable, again = None, True, jnp.asarray(False)  # (again: searched again, ``_first_trial``)
        newest = _rescued_step.pending(state, stored, self)  # (the direction is the last rescue's p)
        if box is None:
            d, memory = self.direction(memory, q, scale, newest)
        elif projected:
            d, memory = _projected.direction(memory, params, grad, box, state.scale)
            d = _rescued_step.along(newest, memory, d)
        else:  # (L-BFGS-B needs S^T S and S^T Y's lower triangle only, from ``push``: S^T y, Y^T Y, R^-1 stale)
            d, usable, memory, slope0 = _rescued_step.along_subspace(
                newest, kept, grad, *_subspace.direction(memory, params, grad, box, sdt, stored))
        empty = memory.count == 0
        if slope0 is None:
            slope0, dd = _tree.inners([(grad, d), (d, d)], sdt)
        else:  # (the direction's own g^T d: no second pass over g and d)
            dd = _tree.inner(d, d, sdt)
        unit = jnp.ones((), sdt)  # the step t = unit: the direction as the model gives it
        if self.linesearch is not None and _tree.guards_range(sdt):
            d, slope0, dd, factor = _tree.unoverflowed(d, grad, slope0, dd, sdt)
            unit = 1 / factor
        t0 = self.first_stepsize(memory, dd, unit)
        t_max = self.max_stepsize(params, d, box)
        t_ray = t_max if projected else None  # (projected: up to t_ray along the ray x + t d; past it, the arc)
        t_ulp, t_ulp_each, x_norm, t_coarse = _tree.ulp_stepsizes(params, d, sdt, self.value_dtype)
        origin = _origin.origin(state, x_norm, sdt, self.value_dtype)
        floor = _verdict.floor(value, state.scale, self.value_dtype)
        visible = _first_trial.visible(slope0, unit, floor, sdt)  # (the model step's decrease is seen)
        if lbfgsb:  # scipy's first trial and largest step
            t0, t_max, again = _first_trial.lbfgsb(state, box, params, memory.flags[2], unit, ulps * t_ulp, t0,
                                                   t_max, visible)
        elif projected:
            t0, t_max, again = _first_trial.projected(state, box, params, empty, unit, ulps * t_ulp, dd, t_ray,
                                                      visible)
        if self.linesearch is None:  # the Optax face without a line search: the step is d itself
            return _unsearched.step(self, state, memory, q, d, empty, held, scale)

        def point(t, final=False):
            # (barriers: u and x materialised in the leaves' dtypes, no FMA or excess precision)
            u = jax.lax.optimization_barrier(_tree.scale(t, d, params, exact_zero=final))
            if box is not None:
                return _bounds.trial(params, u, box, exact_updates)
            return u, jax.lax.optimization_barrier(_tree.add(params, u))

        def phi(t):
            at = point(t)[1]
            f, g, aux = evaluate(at)
            slope = _projected.slope(g, d, at, box, sdt, t <= t_ray) if projected else _tree.inner(g, d, sdt)
            return f, slope, Evaluated(g, aux)

        budget = jnp.asarray(self.linesearch.max_steps, jnp.int32)
        if self.maxfev is not None:
            budget = jnp.minimum(budget, jnp.asarray(self.maxfev, jnp.int32) - state.nfev)
        allowed = budget  # (what maxfev leaves: it cut the search short where the search made them all)
        # A slope below the smallest normal number cannot guide a search (its tests underflow): no evaluation.
        budget = where(active & usable & ~origin & (-slope0 >= jnp.finfo(sdt).tiny), jnp.maximum(budget, 0), 0)
        # A decrease within f's rounding is not worth trials (``linesearch._base``: the search stops
        # when its slopes bound phi's fall below it) where the model agrees: a pair has given H its
        # scale (trials are at the model's scale: a far trial's curvature says nothing of phi near 0)
        # and the model's own decrease along d, -phi'(0) t0 / 2 at its minimiser t0 = 1, is within
        # the floor (where the model promises more, a few trials' slopes may just have missed it).
        negligible = where(memory.flags[2] & (-slope0 * t0 <= 2 * floor), floor, 0).astype(sdt)
        res = self.linesearch.search(phi, value, slope0, Evaluated(grad, state.aux), t0,
                                     keep_probe=_probe.enabled(sdt, whole),
                                     max_steps=budget, max_stepsize=t_max,
                                     min_stepsize=jnp.minimum(ulps * jnp.minimum(t_ulp, t_ulp_each), t_max),
                                     rounding_stepsize=ulps * t_ulp, negligible=negligible,
                                     fixed_steps=self.fixed_search_steps)
        # The step is taken, or x stays (``_verdict``), then maybe with a trial's pair stored (``_probe``)
        judged = _verdict.judge(state, res, slope0, t0, floor)
        moved = judged.moved
        taken, failed = where(moved, res.stepsize, jnp.zeros((), sdt)), ~moved
        probe, t_pair, slope_pair = _probe.taken(state, res, moved, empty, slope0, taken)  # (None: no probes)
        u, x_new = _probe.stays(probe, params, *point(t_pair, True))  # x_new is params where x stays
        new_grad = _tree.select(moved, res.grad.grad, grad)
        pair = _memory_update.pair(u, grad, _probe.pair_grad(probe, res, new_grad), t_pair, slope0, slope_pair, dd,
                                   _probe.either(probe, moved), sdt,
                                   along_ray=t_pair <= t_ray if projected else True) if whole else {}
        memory, u = _probe.complete_later(memory, probe, lambda: jax.tree.map(jnp.subtract, res.grad.grad, grad), u)
        memory = _memory_update.record_step(memory, u, -jnp.asarray(scale).astype(sdt) * t_pair / unit, held, **pair)
        if box is not None:  # (x_new formed again once the memory has read x: no copy of x)
            x_new = _probe.stays(probe, params, *point(_memory_update.after_write(memory, t_pair), True))[1]
        memory = _memory.clear(memory, _probe.unless(probe, failed), lbfgsb and _subspace.keeps_newest(usable, sdt))
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
            probes=_probe.count(state, judged, probe, res.value),
            newton=_rescued_step.taken(state, self, origin),
            start_scale=_origin.start_scale(state, x_norm),
            **_verdict.tie_fields(state, judged),
        )
        final = (failed & empty & ~again) | origin  # (at the origin nothing was searched: ``_origin``)
        if not lbfgsb:  # the pairs dropped for the retry are kept when the run stops (not with
            # bounds: L-BFGS-B's free-set products of the dropped pairs are not kept)
            new = new._replace(memory=_memory.restore(new.memory, final))
        rules = _verdict.rules(self, state, new, res, judged, final=final, slope0=slope0, t_round=ulps * t_coarse,
                               spent=(allowed < self.linesearch.max_steps) & (res.nfev >= allowed),
                               t_model=where(memory.flags[2], unit, jnp.inf).astype(sdt), t_max=t_max, origin=origin)
        return u, new._replace(status=decide(rules + _verdict.spent(self, new))), res
