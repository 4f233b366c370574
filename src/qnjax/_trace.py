"""A run's history, recorded inside the compiled loop: ``minimize(..., trace=K)``.

One *record* per state the loop passes through: the start (the point ``x0``, or the
state a run resumes from) and the state after every pass of the loop body. A pass
that moves x is an iteration (``nit`` goes up by one); a pass that does not (the
quasi-Newton step found no decrease, the memory was dropped and the next pass
searches along -g) keeps ``nit`` and shows its line search's status. Each record
holds

    nit, nfev, fun = f(x), gnorm = the stationarity measure (max |g_i|),
    stepsize (of the step that led here; 0 at the start and where x stayed),
    linesearch_status (of that step's search), status (the run's, after it).

The buffers have a fixed size, 2K rows, so the trace works under ``jax.jit`` and
``jax.vmap``: rows 0..K-1 keep the first K records, rows K..2K-1 the last K (a ring
while the loop runs, put in chronological order at the end). Rows never written
have ``nit = -1`` and NaN values; when a run makes at most 2K records, each appears
once, in order. Recording reads what the iteration computed anyway (the
stationarity measure is the one GTOL tests), so it changes no iterate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._xla import where


class Trace(NamedTuple):
    """Records of a run (module docstring): arrays of 2K rows, the first K records then
    the last K, chronological; unused rows have ``nit == -1``. ``records`` counts every
    record made, kept or not."""

    nit: jax.Array  # int32
    nfev: jax.Array  # int32
    fun: jax.Array  # scalar dtype
    gnorm: jax.Array  # scalar dtype: max |g_i|
    stepsize: jax.Array  # scalar dtype
    linesearch_status: jax.Array  # int32 LineSearchStatus
    status: jax.Array  # int32 Status
    records: jax.Array  # int32 scalar

    @property
    def kept(self):
        """bool (2K,): which rows hold a record."""
        return self.nit >= 0

    def as_numpy(self):
        """The kept rows as a dict of numpy arrays, in order (host only, unbatched: a batch's
        members keep different rows, which flattened together were one member's records)."""
        import numpy as np

        if np.ndim(self.records):
            raise ValueError("as_numpy of a batched trace: index one member first "
                             "(jax.tree.map(lambda a: a[i], res.trace))")
        keep = np.asarray(self.kept)
        return {name: np.asarray(getattr(self, name))[keep] for name in Trace._fields if name != "records"}


def init(length: int, sdt) -> Trace:
    rows = 2 * int(length)
    ints = jnp.full((rows,), -1, jnp.int32)
    nans = jnp.full((rows,), jnp.nan, sdt)
    return Trace(nit=ints, nfev=ints, fun=nans, gnorm=nans, stepsize=nans, linesearch_status=ints,
                 status=ints, records=jnp.zeros((), jnp.int32))


def record(trace: Trace, state, gnorm) -> Trace:
    """Append the record of ``state`` (a ``qnjax.State``) with its stationarity measure."""
    k = trace.nit.shape[0] // 2
    r = trace.records
    row = where(r < k, r, k + (r - k) % k)
    values = (state.count, state.nfev, state.value, gnorm, state.stepsize, state.linesearch_status, state.status)
    columns = [jax.lax.dynamic_update_index_in_dim(col, jnp.asarray(v).astype(col.dtype), row, 0)
               for col, v in zip(trace[:-1], values)]
    return Trace(*columns, records=r + 1)


def finish(trace: Trace) -> Trace:
    """Put the ring of last records in chronological order."""
    k = trace.nit.shape[0] // 2
    in_ring = trace.records - k
    start = where(in_ring > k, in_ring % k, 0)

    def order(col):
        return jnp.concatenate([col[:k], jnp.roll(col[k:], -start)])

    return Trace(*(order(col) for col in trace[:-1]), records=trace.records)
