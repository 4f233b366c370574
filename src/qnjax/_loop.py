"""The iteration loop of ``minimize``, and its form under ``jax.vmap``.

Unbatched it is ``lax.while_loop``: while ``running(carry)``, carry = body(operands,
carry, None). Under ``jax.vmap`` JAX's own rule for a while loop whose condition differs
between members runs the body for every member while any runs and then selects, for each
member, between the new carry and the old one: every array the loop carries is read twice
and written once per iteration. A solver's largest arrays are its memory (the pairs and
the small matrices: about 2 m^2 + 2 m n entries per member), so for 1,000 batched 10-D
problems that select was a large part of the time.

Here the batched form (``jax.custom_batching.custom_vmap``) is instead

    while any(running(member)):
        member = body(operands, member, active=running(member))   for every member,

and ``body`` keeps a finished member as it is (``active`` False): ``LBFGS.step`` with
``active=False`` evaluates nothing and leaves the memory's buffers untouched (its writes
are of rows, masked), and :func:`qnjax._state.hold` selects the remaining, small,
fields. A finished member's carry never changes: its result is bit for bit the one it
gets in a batch that stops when it does (``tests/test_minimize.py``). ``operands`` (the
solver, the objective, ``fun``'s arguments) are passed explicitly, batched or not, as
``custom_vmap`` needs; ``running`` and ``body`` must not close over traced values.

Where one member's iteration branches on its own data (L-BFGS-B beyond
``_free_gram.incremental``'s size: how far along its path the Cauchy point lies, how many
variables changed), ``_minimize`` asks for ``sequential``: the members take the iteration
one after another (``jax.lax.map``, a finished one skipped by a ``lax.cond``), so each
branch stays a branch; vmapped, every branch would run for every member, and
``lax.top_k`` would become a full sort of every member's breakpoints.

``custom_vmap`` cannot be differentiated in reverse mode; nothing is: ``minimize``'s
derivatives go through the implicit function theorem (``_implicit``), and the unrolled
adjoint has a loop of its own (``_unrolled.loop``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def while_running(running, body, operands, carry, sequential=False):
    """``while running(carry): carry = body(operands, carry, None)``; under ``jax.vmap``
    the loop above, with ``body(operands, member, active)``: for every member at once, or,
    with ``sequential`` (static), one member after another (``jax.lax.map``), where a
    member's iteration branches on its own data: there each ``lax.cond`` stays a branch,
    which in a vmapped body would run all its branches for every member (and
    ``lax.top_k`` a full sort)."""

    @jax.custom_batching.custom_vmap
    def loop(operands, carry):
        return jax.lax.while_loop(running, lambda c: body(operands, c, None), carry)

    @loop.def_vmap
    def rule(axis_size, in_batched, operands, carry):
        batched_operands, batched_carry = in_batched
        carry = jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)),
                             carry, batched_carry)
        axes = jax.tree.map(lambda b: 0 if b else None, batched_operands)
        each_running = jax.vmap(running)

        def member(ops, c):
            return body(ops, c, running(c))

        if sequential:
            leaves, treedef = jax.tree.flatten(operands)
            flags = treedef.flatten_up_to(batched_operands)

            def one(mapped_and_member):
                mapped, c = mapped_and_member
                it = iter(mapped)
                ops = treedef.unflatten([next(it) if f else leaf for leaf, f in zip(leaves, flags)])
                return jax.lax.cond(running(c), lambda: member(ops, c), lambda: c)  # (a finished one: nothing)

            def step(c):
                return jax.lax.map(one, ([leaf for leaf, f in zip(leaves, flags) if f], c))
        else:
            def step(c):
                return jax.vmap(member, in_axes=(axes, 0))(operands, c)

        out = jax.lax.while_loop(lambda c: jnp.any(each_running(c)), step, carry)
        return out, jax.tree.map(lambda _: True, out)

    return loop(operands, carry)


def batched(tree) -> bool:
    """Whether ``jax.vmap`` is batching an array of ``tree`` where this is traced (static):
    the batched loop above, or a user's ``vmap`` of the Optax face. False where that
    cannot be told (another JAX's internals)."""
    try:
        from jax._src.interpreters import batching

        return any(isinstance(leaf, batching.BatchTracer) for leaf in jax.tree.leaves(tree))
    except Exception:  # noqa: BLE001
        return False
