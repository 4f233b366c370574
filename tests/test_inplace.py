"""The ring buffer is updated in place: no whole-buffer copy in the compiled loop.

A structural check of the optimised HLO (deterministic); the timing at n = 1e6
is `benchmarks/inplace.py` (make bench)."""

import importlib.util
import pathlib

import jax.numpy as jnp
import pytest

import qnjax
from qnjax._minimize import _solve, _Tolerances

spec = importlib.util.spec_from_file_location(
    "inplace", pathlib.Path(__file__).parents[1] / "benchmarks" / "inplace.py"
)
inplace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inplace)


@pytest.mark.parametrize("linesearch", ["Zoom", "MoreThuente", "HagerZhang", "Backtracking"])
def test_no_history_copy_in_the_loop(linesearch):
    if not hasattr(qnjax.linesearch, linesearch):
        pytest.skip(f"{linesearch} not available")
    n, m = 4099, 7  # shapes that appear nowhere else in the program
    sdt = jnp.dtype(jnp.float32)
    zero = jnp.zeros((), sdt)
    tols = _Tolerances(zero, zero, zero, zero, jnp.asarray(5, jnp.int32), jnp.asarray(100, jnp.int32))
    x0 = jnp.zeros(n, sdt)
    ls = getattr(qnjax.linesearch, linesearch)()
    text = _solve.lower(inplace.objective, False, m, sdt, x0, (), tols, ls).compile().as_text()
    slots = m + 1  # m pairs and the spare slot
    assert f"f32[{slots},{n}]" in text  # the buffers are there...
    assert inplace.buffer_copies(text, slots, n) == []  # ...and never copied whole
    # The detector itself finds a copy when there is one.
    fake = f"  %copy.1 = f32[{slots},{n}]{{1,0}} copy(%get-tuple-element.5)"
    assert len(inplace.buffer_copies(fake, slots, n)) == 1
