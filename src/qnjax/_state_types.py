"""Type stability of optimizer states: a checker and a fixing wrapper.

The problem
-----------
An optax optimizer is a pair ``init(params) -> state`` and
``update(updates, state, params, **extra) -> (updates, new_state)``.  JAX
programs built around it silently assume that ``new_state`` has *exactly* the
same abstract type as ``state``: the same tree structure and, for every leaf,
the same shape, dtype **and weak_type**.  When that assumption breaks:

* ``jax.lax.scan`` / ``jax.lax.while_loop`` over update steps fail because the
  carry changes type (optax issue #1210: with ``jax_enable_x64`` an L-BFGS
  counter went from int64 to int32 between iterations);
* a ``jax.jit``-compiled training step is traced and compiled a second time,
  because the second call sees a state whose avals differ from the first call.
  Weak types are part of the jit cache key, so a leaf that starts as
  ``~float32[]`` (a weakly typed value created from a Python scalar in
  ``init``) and comes back as ``float32[]`` after one update is enough.
  ``optax.lbfgs`` in optax 0.2.8 does exactly this for the three scalars of its
  linesearch ``info`` field.

The tools
---------
``check_state_types(optimizer, params, value_fn)`` runs a few updates and lists
every state leaf whose type differs from ``init``'s (one :class:`LeafChange` per
leaf, at the first step where it changed; a tree-structure change is reported
once under the path ``"<tree>"``).  It works for any optax
``GradientTransformation`` or ``GradientTransformationExtraArgs``.

``keep_state_types(optimizer)`` wraps any optax optimizer so that every update
returns a state with exactly the types of the ``state`` it was given:

Rules of the wrapper
--------------------
1. The reference types are those of the incoming ``state`` argument of
   ``update``.  They are static (avals of tracers under ``jit``; the array
   types outside of it), so nothing has to be remembered from ``init``, which
   may itself run under ``jit``.  On the first call the incoming state is
   ``init``'s output; since the wrapper restores it on every call, every later
   incoming state has ``init``'s types as well.
2. A leaf whose dtype or weak_type differs is cast back, value-preservingly as
   far as the dtypes allow (``float64 -> float32`` rounds), re-weakening or
   un-weakening as needed.
3. A change of a leaf's *shape*, or of the tree structure, is a real bug in
   the optimizer that no cast can repair: a ``ValueError`` naming the path(s)
   is raised (at trace time under ``jit``).
4. Extra keyword arguments (``value``, ``grad``, ``value_fn``, ...) are
   forwarded to the inner update only when it is a
   ``GradientTransformationExtraArgs``; a plain ``GradientTransformation`` is
   first lifted with ``optax.with_extra_args_support`` (which drops them).
5. Leaves that are not JAX values (if any) are passed through untouched.

Weakening an array keeps its dtype and values and only marks it weakly typed;
JAX has no public function for that, so the private
``jax._src.lax.lax._convert_element_type`` (stable for years) is used, with a
fallback on binding the ``convert_element_type`` primitive directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["LeafChange", "check_state_types", "keep_state_types"]

try:  # pragma: no cover - depends on the JAX version
    from jax._src.lax.lax import _convert_element_type as _private_convert
except Exception:  # pragma: no cover
    _private_convert = None

_typeof = getattr(jax, "typeof", None) or jax.core.get_aval


class LeafChange(NamedTuple):
    """One state leaf (or the tree itself) whose type changed during updates."""

    path: str  # jax.tree_util.keystr of the leaf's path, or "<tree>"
    before: str  # e.g. "float32[3] weak", "int64[]", "<structure ...>"
    after: str


class _LeafType(NamedTuple):
    shape: tuple[int, ...]
    dtype: Any
    weak_type: bool


def _leaf_type(x: Any) -> _LeafType | None:
    """Abstract type of a state leaf, or None when it is not a JAX value."""
    try:
        aval = _typeof(x)
        return _LeafType(tuple(aval.shape), aval.dtype, bool(getattr(aval, "weak_type", False)))
    except (TypeError, AttributeError):
        return None


def _describe(x: Any, t: _LeafType | None) -> str:
    if t is None:
        return f"<{type(x).__name__}>"
    shape = ",".join(str(d) for d in t.shape)
    return f"{t.dtype}[{shape}]" + (" weak" if t.weak_type else "")


def _leaves_by_path(tree: Any) -> tuple[dict[str, Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}, treedef


def _call_with_args(fn: Callable, args: tuple, kwargs: dict, params: Any) -> Any:
    return fn(params, *args, **kwargs)


def check_state_types(
    optimizer: optax.GradientTransformation,
    params: Any,
    value_fn: Callable[..., Any],
    *,
    steps: int = 3,
    jit: bool = True,
    fn_args: tuple = (),
    fn_kwargs: dict | None = None,
) -> list[LeafChange]:
    """List the state leaves of ``optimizer`` whose type drifts away from ``init``'s.

    Runs ``steps`` updates from ``optimizer.init(params)`` on the scalar
    objective ``value_fn(params, *fn_args, **fn_kwargs)`` (gradient by
    ``jax.value_and_grad``, params advanced with ``optax.apply_updates``) and
    compares every resulting state with the initial one.  Returns one
    :class:`LeafChange` per leaf whose shape, dtype or weak_type differs (at the
    first step where it differs), plus one with path ``"<tree>"`` if the tree
    structure changes; an empty list when the state is type-stable.

    A ``GradientTransformationExtraArgs`` is updated as
    ``update(grad, state, params, value=value, grad=grad, value_fn=f)`` where
    ``f`` takes params only; a plain ``GradientTransformation`` as
    ``update(grad, state, params)``.  With ``jit=True`` (the default, and the
    way optimizers are normally run) the step is ``jax.jit``-compiled.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fn_kwargs = dict(fn_kwargs or {})
    if fn_args or fn_kwargs:
        objective = functools.partial(_call_with_args, value_fn, tuple(fn_args), fn_kwargs)
    else:
        objective = value_fn
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)

    def step(params, state):
        value, grad = jax.value_and_grad(objective)(params)
        if extra_args:
            updates, state = optimizer.update(
                grad, state, params, value=value, grad=grad, value_fn=objective
            )
        else:
            updates, state = optimizer.update(grad, state, params)
        return optax.apply_updates(params, updates), state

    if jit:
        step = jax.jit(step)

    state = optimizer.init(params)
    ref_leaves, ref_def = _leaves_by_path(state)
    ref_types = {p: _leaf_type(x) for p, x in ref_leaves.items()}
    ref_desc = {p: _describe(ref_leaves[p], t) for p, t in ref_types.items()}

    changes: list[LeafChange] = []
    reported: set[str] = set()
    for _ in range(steps):
        params, state = step(params, state)
        leaves, treedef = _leaves_by_path(state)
        if treedef != ref_def and "<tree>" not in reported:
            reported.add("<tree>")
            changes.append(LeafChange("<tree>", f"<structure {ref_def}>", f"<structure {treedef}>"))
        for path, leaf in leaves.items():
            if path in reported or path not in ref_types:
                continue
            t = _leaf_type(leaf)
            if t != ref_types[path]:
                reported.add(path)
                changes.append(LeafChange(path, ref_desc[path], _describe(leaf, t)))
    return changes


def _weaken(x: Any, dtype: Any) -> Any:
    """Cast ``x`` to ``dtype`` and mark it weakly typed (values unchanged)."""
    dtype = np.dtype(dtype)
    if _private_convert is not None:
        try:
            return _private_convert(x, dtype, weak_type=True)
        except TypeError:  # pragma: no cover - older signature
            pass
    return jax.lax.convert_element_type_p.bind(  # pragma: no cover
        jnp.asarray(x), new_dtype=dtype, weak_type=True, sharding=None
    )


def _cast_leaf(path: str, x: Any, ref: Any) -> Any:
    want, have = _leaf_type(ref), _leaf_type(x)
    if want is None or have is None:
        return x
    if have.shape != want.shape:
        raise ValueError(
            f"keep_state_types: optimizer state leaf {path} changed shape during "
            f"update: {_describe(ref, want)} -> {_describe(x, have)}. A shape change "
            "cannot be cast away; the wrapped optimizer is not type-stable."
        )
    if have == want:
        return x
    extended = jax.dtypes.extended
    if jnp.issubdtype(want.dtype, extended) or jnp.issubdtype(have.dtype, extended):
        raise ValueError(
            f"keep_state_types: optimizer state leaf {path} changed its extended dtype "
            f"during update: {_describe(ref, want)} -> {_describe(x, have)}."
        )
    if want.weak_type:
        return _weaken(x, want.dtype)
    return jax.lax.convert_element_type(x, want.dtype)


def _restore_types(ref_state: Any, new_state: Any) -> Any:
    ref_leaves, ref_def = _leaves_by_path(ref_state)
    new_leaves, new_def = _leaves_by_path(new_state)
    if new_def != ref_def:
        gone = sorted(set(ref_leaves) - set(new_leaves))
        added = sorted(set(new_leaves) - set(ref_leaves))
        detail = []
        if gone:
            detail.append(f"removed leaves {gone}")
        if added:
            detail.append(f"added leaves {added}")
        if not detail:
            detail.append("same leaf paths, different node types")
        raise ValueError(
            "keep_state_types: the optimizer state's tree structure changed during "
            f"update ({'; '.join(detail)}): {ref_def} -> {new_def}"
        )
    fixed = [_cast_leaf(p, new_leaves[p], ref_leaves[p]) for p in ref_leaves]
    return jax.tree_util.tree_unflatten(ref_def, fixed)


def keep_state_types(optimizer: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap ``optimizer`` so that ``update`` returns a state typed exactly like its input.

    Every leaf of the new state is cast back to the dtype and weak_type of the
    corresponding leaf of the incoming ``state`` (which has ``init``'s types on
    the first call, hence on every call).  A shape change or a tree-structure
    change raises ``ValueError`` naming the offending path(s).  Extra keyword
    arguments of ``update`` reach the inner optimizer only if it is a
    ``GradientTransformationExtraArgs``.
    """
    inner = optimizer
    if not isinstance(inner, optax.GradientTransformationExtraArgs):
        inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return inner.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        return new_updates, _restore_types(state, new_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
