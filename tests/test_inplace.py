"""The ring buffer is updated in place: no whole-buffer copy in the compiled loop.

A structural check of the optimised HLO of ``qnjax.minimize`` (deterministic); the
timing at n = 1e6 is `benchmarks/inplace.py` (make bench). (For a few hundred
parameters XLA may fuse the buffer's update into its products and copy it: a few KB.)"""

import importlib.util
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest
from conftest import x64_off_only

import qnjax
from qnjax import _compile, _tree

spec = importlib.util.spec_from_file_location(
    "inplace", pathlib.Path(__file__).parents[1] / "benchmarks" / "inplace.py"
)
inplace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inplace)


# Every search around the default (compact) direction; the two-loop with the default search
# (the search runs between the writes, the direction reads the buffers). The other searches
# share the writes: they are checked once, above _tree.STACK_LIMIT, with XLA's default emitters.
CONFIGS = [(search, "compact") for search in sorted(qnjax.linesearch.REGISTRY)] + [("more-thuente", "two-loop")]


@x64_off_only  # a float32 program's structure: x64 changes only its index types
@pytest.mark.parametrize("linesearch, direction", CONFIGS)
@pytest.mark.parametrize("n", [4099, 70001])  # below and above _tree.STACK_LIMIT (other fusions)
@pytest.mark.parametrize("options", ["defaults", "qnjax"])  # a caller's jax.jit; minimize called directly
def test_no_history_copy_in_the_loop(linesearch, direction, n, options):
    if linesearch != "more-thuente" and (options == "qnjax" or n < _tree.STACK_LIMIT):
        pytest.skip("the other searches share the writes: with XLA's default emitters, above the stack limit")
    m = 7  # n and m + 1: shapes that appear nowhere else in the program
    x0 = jnp.zeros(n, jnp.float32)
    ls = qnjax.linesearch.get(linesearch)
    run = jax.jit(lambda x: inplace.solve(x, direction, memory_size=m, maxiter=5, linesearch=ls))
    # XLA's default emitters named explicitly: the x64-off suite runs with XLA_FLAGS choosing
    # the classic ones (Makefile), and options given here override the flags.
    xla = _compile.OPTIONS if options == "qnjax" else {"xla_cpu_use_fusion_emitters": True}
    text = run.lower(x0).compile(xla).as_text()
    slots = m + 1  # m pairs and the free slot
    assert f"f32[{2 * slots},{n}]" in text  # the buffer of S and Y is there...
    assert inplace.buffer_copies(text, slots, n) == []  # ...and never copied whole
    # The detector itself finds a copy when there is one.
    for shape in (f"{2 * slots},{n}", f"{slots},{n}"):  # the buffer, or one of its halves
        fake = f"  %copy.1 = f32[{shape}]{{1,0}} copy(%get-tuple-element.5)"
        assert len(inplace.buffer_copies(fake, slots, n)) == 1


@x64_off_only
@pytest.mark.parametrize("options", ["defaults", "qnjax"])
def test_no_history_copy_in_the_bounded_loop(options):
    """With bounds, beyond ``_memory.SKIP_EMPTY_FROM`` variables, the passes over the memory
    that a ``lax.cond`` skips while no pair is stored (the Cauchy point's products and the
    subspace step's weighted sum) read the buffer as a branch operand: it is still updated
    in place."""
    from qnjax import _memory

    m, n = 7, _memory.SKIP_EMPTY_FROM + 3
    x0 = jnp.full(n, 0.3, jnp.float32)
    run = jax.jit(lambda x: qnjax.minimize(inplace.objective, x, bounds=(0.0, 0.4), memory_size=m, maxiter=5))
    xla = _compile.OPTIONS if options == "qnjax" else {"xla_cpu_use_fusion_emitters": True}
    text = run.lower(x0).compile(xla).as_text()
    assert f"f32[{2 * (m + 1)},{n}]" in text
    assert inplace.buffer_copies(text, m + 1, n) == []


@x64_off_only
@pytest.mark.parametrize("options", ["defaults", "qnjax"])
def test_bounds_add_no_copy_of_x(options):
    """L-BFGS-B's pair s = P(x + t d) - x reads x, whose new value is written over it in place:
    x's new value is formed after the write of s (``_memory_update.after_write``), so the
    bounded program's loops copy no more parameter-sized vectors than the unbounded one's (it
    had copied x once an iteration) but one: the branch of the first direction, clip(-g, l - x,
    u - x), taken while no pair is stored, passes x through. (The copies outside the loops, at
    the program's ends, differ: there a float32 solve without bounds divides its gradient by
    f's scale, ``_scale``, which makes a new buffer.)"""
    n = 70001  # a size that appears nowhere else in the program
    x0 = jnp.full(n, 0.3, jnp.float32)
    xla = _compile.OPTIONS if options == "qnjax" else {"xla_cpu_use_fusion_emitters": True}
    copies = []
    for bounds in (None, (0.0, 0.4)):
        run = jax.jit(lambda x, bounds=bounds: qnjax.minimize(inplace.objective, x, bounds=bounds, maxiter=5))
        text = run.lower(x0).compile(xla).as_text()
        inner = [body for entry, body in re.findall(r"^(ENTRY )?%?[\w.\-]+ [^\n]*\{\n(.*?)\n\}", text, re.M | re.S)
                 if not entry]  # (every computation but the program's own: loop bodies, branches)
        copies.append(sum(len(re.findall(rf"= f32\[{n}\]\{{0\}} copy\(", body)) for body in inner))
    assert copies[0] > 0  # (the pattern finds the copies there are)
    assert copies[1] <= copies[0] + 1


@x64_off_only
@pytest.mark.parametrize("bounds_method", [None, "lbfgsb", "projected"])
@pytest.mark.parametrize("options", ["defaults", "qnjax"])
def test_no_history_copy_in_the_batched_loop(options, bounds_method):
    """Under ``jax.vmap`` each member writes its own rows (scatters): no member's kept row is
    read from the buffer as it was before the first write, so XLA updates the loop-carried
    buffer in place instead of copying it twice an iteration (6 batched 13-D problems; the
    copies had been found in a program of 1,000 batched 10-D ones); with bounds too (the
    Newton model's pair before PRECISION is written, masked, in the loop around the loop)."""
    batch, n, m = 6, 13, 7  # shapes that appear nowhere else in the program
    x0 = jnp.zeros((batch, n), jnp.float32)
    if bounds_method is None:
        one = lambda x: inplace.solve(x, "compact", memory_size=m, maxiter=5)  # noqa: E731
    else:
        one = lambda x: qnjax.minimize(inplace.objective, x, bounds=(-1.0, 0.5), bounds_method=bounds_method,  # noqa: E731
                                       memory_size=m, maxiter=5)
    run = jax.jit(jax.vmap(one))
    xla = _compile.OPTIONS if options == "qnjax" else {"xla_cpu_use_fusion_emitters": True}
    text = run.lower(x0).compile(xla).as_text()
    shape = f"f32[{batch},{2 * (m + 1)},{n}]"
    assert shape in text
    copies = [line for line in text.splitlines() if re.search(rf"= {re.escape(shape)}\{{[0-9,]*\}} copy\(", line)]
    assert copies == []
