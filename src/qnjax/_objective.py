"""The objective as every qnjax algorithm sees it: value in the scalar dtype,
gradient in the params' dtypes, checked once at trace time.

``fun(params, *args)`` must return a real floating scalar (or ``(scalar, aux)``
with ``has_aux``). A non-scalar loss raises ``ValueError`` and a non-float loss
``TypeError`` before anything is differentiated, with a message that says so.
The value is cast to the scalar dtype (so a float64 loss of float32 params
works) and each gradient leaf to its parameter's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _tree


def check_loss(out, has_aux: bool = False):
    """Raise a clear error unless ``out`` (a value or abstract value) is a real scalar."""
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("with has_aux=True, fun must return a pair (loss, aux)")
        out = out[0]
    shape, dtype = jnp.shape(out), jnp.result_type(out)
    if shape != ():
        raise ValueError(f"the loss must be a scalar, got an array of shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"the loss must be a real floating-point scalar, got dtype {dtype}")


def value_and_grad(fun, like, sdt, has_aux: bool = False):
    """``fun`` -> ``(params, *args) -> (value in sdt, (grad like ``like``, aux))``."""

    def evaluate(params, *args, **kwargs):
        check_loss(jax.eval_shape(lambda p: fun(p, *args, **kwargs), params), has_aux)
        if has_aux:
            (f, aux), g = jax.value_and_grad(fun, has_aux=True)(params, *args, **kwargs)
        else:
            (f, g), aux = jax.value_and_grad(fun)(params, *args, **kwargs), None
        return jnp.asarray(f).astype(sdt), (_tree.cast_like(g, like), aux)

    return evaluate
