"""Before a PRECISION stop below float64: the Newton model from Hessian-vector products.

PRECISION says that no step along the quasi-Newton direction nor along -g lowers f by more than
its rounding (``_verdict``). Below float64 that can hold far from a minimum: where the Hessian's
condition nears 1 / eps, the memory has not seen a direction of low curvature, and -g's decrease is
that of the stiffest directions (float32: Beale and BRYBND, n = 100, from 100 times their starts stopped
at f = 0.44, 0.27, f* = 0, reporting success; ``qnjax bench --rule same --dtype float32 --set all``).

The gradient still knows what the memory does not. Its derivative along v,

    H v = d/de g(x + e v) at e = 0      (``jax.jvp`` of the gradient: forward over reverse),

is exact up to rounding, one product costing about two evaluations. So before the run
stops with PRECISION, truncated conjugate gradients (``_conjugate_gradient``: at most
STEPS products) on the Newton equation

    H p = -g

(-g scaled to unit size by a power of two, p and H p scaled back: far from a minimum
g^T H g overflowed float32) give p and H p = -g - r (r the residual CG keeps) and the
model's decrease

    D = -(g^T p + p^T H p / 2).

Where D exceeds twice f's floor (a few units in its last place, ``_verdict.floor``) and p
moves x by more than rounding, x is not shown to be stationary: the exact pair

    s = p,    y = H p        (s^T y = p^T H p > 0)

goes to the memory as a step's would (the guard included; its last products become S^T (g - y),
Y^T (g - y), as after a probe, ``_probe``), the status is RUNNING and the loop resumes, searching along p
(``_rescued_step``). Beale then reaches f = 4e-8 and BRYBND 8.6e-4; on 1,600 random float32
least-squares fits (``python benchmarks/box_fits.py --methods unbounded --seeds 0-3``), the
false successes fell from 11 to 0 (``--batched``: 7 to 0). Where that search and the retry
along -g find no decrease either, the run stops PRECISION, the Newton model searched too.

**Another rescue** needs a step since the last (``count`` moved) that lowered f by at least
PROGRESS times what the last one's model promised, or by more than FLOORS times f's floor (a
decrease rounding cannot make: the run is moving); where the model does not predict f and f
has stopped falling, rescues end. (With PROGRESS alone, Meyer from 100 times its start in
float32, its Hessian's eigenvalues from -4.2 to 3.4e25, stopped PRECISION at f = 1.27e9 after
4,975 iterations, a false success: the last check had promised 8.3e7, the steps since had found
4.2e6, 3,500 of f's floors.)

**CG in x's own units.** Where the Euclidean CG gives no pair to store, it runs again
preconditioned by diag((|x_i| / max |x|)^2) (``x_metric``): the metric in which steps of the
same relative size in every variable have the same length, as rounding measures x (m_i = 0
where x_i = 0: the Euclidean CG has seen that variable). The Euclidean CG starts along -g, the
stiffest variable's, which at a badly scaled point may move where the model means nothing:
Meyer (x1 = 2e-9, g1 = -1.8e16, x3 = 8.5e3, f = 1.15e9; the Euclidean CG alone stopped PRECISION
there), whose Euclidean p (cosine 2e-15 with H p) raises f by 2.5e6 floors, the scaled p lowers
it by 2.2e5. With both rules, Meyer from 100 times its start runs to the bench's limit, 5,000
iterations, at f = 1.25e9 (MAXITER), claiming nothing.

A curvature that is not positive ends CG, but after its first step not before a step along
that direction at the curvature's absolute value (``floor``: eps times the first curvature
for a zero one; the pair is then of that modified H, s^T y > 0): along it the model still
falls at the rate of its slope, so x is not a minimum, however small the decrease along the
stiff -g (Meyer from 10 times its start had stopped PRECISION at f = 9.6e8, CG's second
direction at curvature -330, the decrease 7e-3 against f's floor of 912). Not where the model's
decrease is within f's floor: x is stationary to working precision (CRAGGLVY from 10 times its
start in float32, D = 8e-3, f = 1.1e5: a local minimum among tan's branches).

Where the model promises more but the memory's guard would refuse the pair, p^T H p <= eps |p|
|H p| (``_memory_update.push``: p^T H p within its own rounding), the pair stored is that of
H + mu I along p, y = H p + mu p, mu = 2 eps |H p| / |p| (the least shift the guard takes),
where g^T p < -2 floor (the refused pair had left the next direction the last one: Meyer from
100 times its start stopped PRECISION at f = 1.4e9 after 3 iterations). The products are
counted in ``nfev`` (each one evaluation of the gradient and its derivative) and are not made
where ``maxfev`` leaves too few.

With bounds (both methods) the model is that of the variables strictly inside their
bounds, F (those on a bound stay there): CG on F H F p = -F g, the pair (p, F H p), and
the decrease D(t) = -(t g^T p + t^2 p^T H p / 2) at t = 1 decides; the largest feasible
step along p, where below 1, must move x beyond rounding, and D there is what is promised
(not D at that step: a free variable just inside its bound made it below f's floor where D(1)
was far above, and a loop over ``qnjax.lbfgs`` stopped PRECISION 1e-3 above its minimum). The
next direction is p (L-BFGS-B: with its slope g^T p, and for ``push`` S^T p, Y^T p from SS's
and SY's rows). On 9,600 random float32 box least-squares fits (``python benchmarks/box_fits.py
--methods lbfgsb,projected --seeds 0-23``), runs that reported success above their minimum
fell from 16 to 0 (L-BFGS-B) and from 7 to 0 (projected).

Where: below float64 (float64 keeps scipy's steps), or where a leaf, or f (``_verdict.value_dtype``), is
narrower than the scalar dtype (PRECISION is then judged at the coarsest rounding, ``_tree.ulp_stepsizes``,
which finer leaves may not have reached), with or without bounds, where ``fun``'s gradient has a derivative
(not a ``jax.pure_callback``). The cost: the products at each PRECISION stop, and a longer compile (float32
2-D Rosenbrock's first call: 0.67-0.87 s without, 0.93-1.13 s with; CG's second metric 0.1 s more).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _bounds, _conjugate_gradient, _loop, _memory, _memory_update, _subspace, _tree, _verdict
from ._memory import CS
from ._scale import times
from ._state import State
from ._status import Status, code
from ._xla import where

STEPS = 10  # Hessian-vector products at most per rescue
PROGRESS = 0.1  # another rescue after f fell by this fraction of the last one's promise,
FLOORS = 4  # or by more than this many times f's floor


def enabled(state: State, solver) -> bool:
    """Whether ``solver``'s solve from ``state`` has rescues (static; the module docstring's Where)."""
    sdt = state.value.dtype
    return jnp.finfo(sdt).bits < 64 or _verdict.has_narrower(state.params, sdt, solver.value_dtype)


def run(loop, running, operands, carry, record=None):
    """``minimize``'s iterations, ``loop(operands, (state, records))``, then :func:`resume` where
    they stopped PRECISION, and again while it resumes them; under ``jax.vmap`` a finished
    member is kept as it is (``_loop``). ``record(solver, state, records)``: the trace's record
    of the products a rescue made (nit unchanged). Where :func:`enabled` is false, or tracing
    the rescue fails (``fun``'s gradient has no derivative: a ``jax.pure_callback``), the loop
    alone (an error of ``fun``'s own is raised again by it)."""
    state = carry[0]
    if not enabled(state, operands[0]):
        return loop(operands, carry)

    def trip(operands, c, active):
        solver, objective, args = operands
        s, rec = loop(operands, c)
        checked = resume(solver, objective, args, s, active)
        if record is not None:
            rec = _tree.select(checked.nfev > s.nfev, record(solver, checked, rec), rec)
        return checked, rec

    return guarded(lambda: _loop.while_running(lambda c: running(c[0]), trip, operands, carry),
                   lambda: loop(operands, carry), *operands[1:], state.params)


def guarded(with_rescue, without, objective, args, params):
    """``with_rescue()``, traced; where that fails and ``objective``'s gradient has no
    derivative (a ``jax.pure_callback``), ``without()``; any other error is raised."""
    try:
        return with_rescue()
    except Exception:
        if differentiable(objective, args, params):
            raise  # (the rescue's own error, not fun's)
        return without()


def hessian_product(objective, args, x, v):
    """H v at x: the derivative of ``objective``'s gradient along v (forward over reverse)."""
    return jax.jvp(lambda p: objective(p, args)[1], (x,), (v,))[1]


def differentiable(objective, args, params) -> bool:
    """Whether ``objective``'s gradient has a derivative along params (traced, not run)."""
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), a.dtype), params)
    try:
        jax.eval_shape(lambda x, v: hessian_product(objective, args, x, v), shapes, shapes)
    except Exception:  # noqa: BLE001
        return False
    return True


def newton(objective, args, state: State, steps, free=None, metric=None):
    """(p, H p, D, products made): truncated CG on H p = -g at ``state.params``, at most
    ``steps`` products (module docstring); with ``free`` (a bool pytree) on those variables
    alone, F H F p = -F g, and H p is F H p; with ``metric`` (a pytree like x) preconditioned
    by diag(metric)."""
    x, g, sdt = state.params, state.grad, state.value.dtype
    mask = (lambda t: t) if free is None else functools.partial(_bounds.on_free, free=free)
    precond = (lambda r: r) if metric is None else (lambda r: jax.tree.map(jnp.multiply, metric, r))
    # (CG on H p = -g scaled by a power of two to unit size, p and H p scaled back: far from a
    # minimum, g^T g and g^T H g overflowed float32, and the model was not seen)
    minus_g, factor = _tree.scaled_to_unit(mask(jax.tree.map(jnp.negative, g)), sdt)
    res = _conjugate_gradient.solve(lambda v: mask(hessian_product(objective, args, x, v)), minus_g, precond,
                                    jnp.zeros((), sdt), steps, sdt, floor=jnp.finfo(sdt).eps)
    # (scaled back by 1 / factor, a normal power of two; a float16 leaf in the scalar dtype: ``_scale.times``)
    p, hp = times(res.x, 1 / factor), times(_tree.sub(minus_g, res.r), 1 / factor)
    gp, php = _tree.inners([(g, p), (p, hp)], sdt)
    return p, hp, -(gp + php / 2), res.steps


def x_metric(params, sdt):
    """(|x_i| / max |x|)^2, a pytree like x: the preconditioner of CG in x's own units (module docstring)."""
    big = _tree.norm_inf(params, sdt)
    inv = where(big > 0, 1 / where(big > 0, big, 1), 0)
    return jax.tree.map(lambda a: jnp.square(jnp.abs(a) * inv.astype(_tree.real_dtype(a.dtype))).astype(a.dtype),
                        params)


def resume(solver, objective, args, state: State, active=None, q=None):
    """The state after the Newton check (module docstring) where ``state`` stopped PRECISION and
    another rescue is due (``State.newton``) and ``maxfev`` leaves the products: where the model
    promises more than rounding, its pair is stored and the status is RUNNING; ``nfev`` counts the
    products. ``active``: None, or a vmapped member's flag (``_loop``): the products are made for
    every member and every write masked (a ``lax.cond``, a select under vmap, would copy the
    history buffer). ``q``: None (``minimize``: the pair is written whole), or the Optax face's q
    of this update (in its memory's free slot; the pair is made only where q is the gradient):
    s = p is written, and q - H p as the start of y, which the next ``push`` subtracts from its q
    (the same gradient, x having stayed) to give H p. CG makes STEPS products whatever n (Meyer
    from its start with n = 3 stopped at f = 89.85 (f* = 87.9), with 10 it reaches 87.7)."""
    sdt = state.value.dtype
    # (the Optax face: n at most; with STEPS, its batched loops over float32 box fits made 8 false successes)
    steps = STEPS if q is None else min(STEPS, _tree.count(state.params))
    last, promised = state.newton[0], state.newton[1]
    want = (state.status == code(Status.PRECISION)) & (state.value < last)
    if active is not None:
        want = want & active
    fallen = last - state.value
    floor = _verdict.floor(state.value, state.scale, solver.value_dtype)
    want = want & ((fallen >= PROGRESS * promised) | (fallen > FLOORS * floor))
    if solver.maxfev is not None:
        want = want & (state.nfev + steps <= jnp.asarray(solver.maxfev, jnp.int32))

    def model():  # (p, y's row, go, products made, D, the memory's ``last``, the pair's products)
        box = state.bounds
        free = None if box is None else _bounds.inside(state.params, box)
        wanted = want
        if q is not None:  # (the pair's y is of the gradient's change: only where q is the gradient)
            wanted = wanted & functools.reduce(jnp.logical_and, [jnp.all(a == b) for a, b in
                                                                  zip(jax.tree.leaves(q), jax.tree.leaves(state.grad))])
        # (no product where not wanted: under jax.vmap, where lax.cond is a select, CG runs while a member wants it)
        ulps = _verdict.rounding_ulps(state.params, sdt, solver.value_dtype)  # (p moves x beyond rounding)
        eps = jnp.finfo(sdt).eps
        scaled = x_metric(state.params, sdt)

        def attempt(c):  # (CG in the Euclidean metric, then in x's own where that gave no pair)
            k, made = c[0], c[1]
            again = wanted if solver.maxfev is None else wanted & (
                state.nfev + made + steps <= jnp.asarray(solver.maxfev, jnp.int32))
            metric = jax.tree.map(lambda m: where(k == 0, jnp.ones_like(m), m), scaled)
            p, hp, _, more = newton(objective, args, state, where(again, steps, 0), free, metric)
            gp, php, pp, hphp = _tree.inners([(state.grad, p), (p, hp), (p, p), (hp, hp)], sdt)
            # (with bounds, the largest feasible step along p, if below 1: the decrease promised up to it)
            t = jnp.ones((), sdt) if box is None else jnp.minimum(_bounds.max_stepsize(state.params, p, box, sdt), 1)
            decrease = -(t * gp + t * t * php / 2)
            t_ulp = _tree.ulp_stepsizes(state.params, p, sdt)[0]
            full = -(gp + php / 2)  # (D(1) decides: module docstring)
            promising = (full > 2 * floor) & (ulps * t_ulp < t) & jnp.isfinite(decrease) & again
            # (where the memory's guard would refuse (p, H p), the pair of H + mu I: module docstring)
            plain = _memory_update.guard(php, hphp, pp)
            mu = where(plain, 0, 2 * eps * jnp.sqrt(hphp / where(pp > 0, pp, 1)))
            hp = _tree.add(hp, _tree.scale(mu, p, hp))
            php, hphp = php + mu * pp, hphp + mu * (2 * php + mu * pp)
            go = promising & (plain | (gp < -2 * floor)) & _memory_update.guard(php, hphp, pp)
            return k + 1, made + more, go, p, hp, decrease, jnp.stack([php, hphp, pp])

        z = _tree.zeros_like(state.params)
        start = (*jnp.zeros((2,), jnp.int32), jnp.asarray(False), z, z, jnp.zeros((), sdt), jnp.zeros((3,), sdt))
        _, made, go, p, hp, decrease, prods = jax.lax.while_loop(lambda c: (c[0] < 2) & ~c[2], attempt, start)
        y = hp if q is None else _tree.cast_like(_tree.sub(q, hp), q)
        return p, y, go, made, decrease.astype(sdt), _last(state, go, p, hp), prods

    def nothing():
        zeros = _tree.zeros_like(state.params)
        return (zeros, zeros if q is None else _tree.zeros_like(q), jnp.asarray(False), jnp.zeros((), jnp.int32),
                jnp.zeros((), sdt), state.memory.last, jnp.zeros((3,), sdt))

    # (only small values and two vectors leave the branch, and the buffers' rows are written
    # after it where ``go`` holds, else kept: a select over the whole state, as the lax.cond is
    # under jax.vmap, would keep both buffers alive, and XLA would copy the history)
    p, y, go, made, decrease, last, prods = model() if active is not None else jax.lax.cond(want, model, nothing)
    memory = state.memory._replace(last=last)
    # (the rows written depend on ``last``, read from the buffer: XLA orders that read first, in place)
    after = 0 * jnp.where(jnp.isfinite(last[0, 0]), last[0, 0], 0)
    p, y = (jax.tree.map(lambda v: v + after.astype(v.dtype), t) for t in (p, y))
    if q is None:
        written = _memory_update.record_step(memory, p, -jnp.ones((), sdt), active=go, y=y, prods=prods)
    else:
        written = _memory_update.record_step(memory, p, -jnp.ones((), sdt), active=go)
        at = _memory.size(memory) + 1 + memory.head  # (y's free slot: the start of the pair's y)
        kept = _memory.row(written.pairs, at)
        written = written._replace(pairs=_memory.write(written.pairs, at,
                                                       _tree.select(go, _tree.cast_like(y, kept), kept)))
    memory = written._replace(scalars=where(go, written.scalars, memory.scalars),
                              flags=where(go, written.flags, memory.flags))
    small = dict(status=code(Status.RUNNING), ties=jnp.zeros((), jnp.int32), tie_level=jnp.full((), jnp.inf, sdt),
                 tie_start=jnp.full((), jnp.inf, sdt), probes=jnp.zeros((), jnp.int32))
    checked = where(want, jnp.stack([state.value, where(go, decrease, 0), go.astype(sdt)]), state.newton).astype(sdt)
    return state._replace(memory=memory, nfev=state.nfev + made, newton=checked,
                          **{k: where(go, v, getattr(state, k)).astype(v.dtype) for k, v in small.items()})


def _last(state: State, go, p, hp):
    """The memory's ``last`` made ready for the pair (p, H p) where ``go``. The next direction
    completes the pair's column from its products at g, S^T y = S^T g - S^T (g - y) as after a
    probe (``_probe``): so ``last[:2]`` becomes S^T (g - y), Y^T (g - y) for the compact
    direction (without bounds, and ``bounds_method="projected"``), and over L-BFGS-B's kept free
    set F (``_reduced``) S^T F (g - y), Y^T F (g - y); where L-BFGS-B's direction keeps W^T d for
    ``push`` (``_subspace.keeps_products``), S^T p, Y^T p go to ``last[CS:]`` (read with the step -1)."""
    memory, sdt = state.memory, state.value.dtype
    if memory.gram.ri is None and memory.free is None:
        return memory.last
    before = _tree.sub(state.grad, hp)
    if memory.free is not None:
        before = _bounds.on_free(before, memory.free)
    last = memory.last.at[:2].set(jnp.stack(_memory.products(memory, before)))
    if memory.free is not None and _subspace.keeps_products(state.params, sdt):
        last = last.at[CS:].set(jnp.stack(_memory.products(memory, p)))
    return where(go, last, memory.last)
