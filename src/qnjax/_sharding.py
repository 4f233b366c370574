"""Where state leaves live: each one inherits its parameter's sharding.

A state created from parameters that live on devices (``jax.device_put`` with a
``NamedSharding`` over a ``Mesh``, or committed to one device) is created where its
parameters are, never gathered on device 0 first (optax#548 created the optimiser
state on device 0):

* a leaf shaped like its parameter (the gradient, a full-shape bound) gets the
  parameter's sharding;
* a memory buffer (m + 1, *shape) gets the parameter's partition spec with the
  history axis unsharded, ``P(None, *spec)``: each device holds the history of its
  own slice of the parameter, so the products with the memory are local passes
  followed by one small reduction across devices;
* every scalar and small matrix (value, counters, Gram matrices) is replicated over
  the mesh of the first sharded parameter.

``init`` builds the state in one compiled program with these output shardings
(:func:`plan` returns None, and nothing changes, when no parameter is placed:
traced values inside ``jit``, NumPy arrays, arrays on the default device). Inside
``jit`` the shardings come from XLA's propagation instead: the state that
``minimize`` returns, and the one an update returns from a sharded state, keep
their parameters' shardings (tests/test_sharding.py checks both, and that the
compiled loop gathers no parameter-sized array).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding


def _placed(leaf) -> bool:
    """Is ``leaf`` a concrete array placed by the user: on a mesh (a ``NamedSharding``, even
    of one device), or anywhere but on the default device?"""
    if not isinstance(leaf, jax.Array) or isinstance(leaf, jax.core.Tracer):
        return False
    if isinstance(leaf.sharding, NamedSharding):
        return True
    devices = leaf.sharding.device_set
    default = jax.config.jax_default_device
    if default is None or isinstance(default, str):  # unset, or a platform name
        default = jax.devices(default)[0]
    return len(devices) > 1 or next(iter(devices)) != default


@dataclasses.dataclass(frozen=True)
class Plan:
    like: Any  # pytree of params' structure: the sharding of a leaf shaped like the parameter
    stacked: Any  # pytree of params' structure: the sharding of a (k, *shape) buffer (the memory's)
    replicated: Any  # the sharding of every other state leaf


def _replicated_on(sharding):
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(), memory_kind=sharding.memory_kind)
    devices = sorted(sharding.device_set, key=lambda d: d.id)
    if len(devices) == 1:
        return SingleDeviceSharding(devices[0])
    return NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec())


def _stacked(sharding, ndim):
    """The sharding of a buffer (k, *shape) whose rows are laid out like ``sharding``."""
    if isinstance(sharding, NamedSharding):
        spec = tuple(sharding.spec) + (None,) * (ndim - len(sharding.spec))
        return NamedSharding(sharding.mesh, PartitionSpec(None, *spec), memory_kind=sharding.memory_kind)
    if isinstance(sharding, SingleDeviceSharding):
        return sharding
    return _replicated_on(sharding)  # another kind of sharding: its devices, replicated


def plan(params) -> Plan | None:
    """The shardings of the state leaves for ``params``, or None when no leaf is placed."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    placed = [leaf for leaf in leaves if _placed(leaf)]
    if not placed:
        return None
    first = next((leaf.sharding for leaf in placed if isinstance(leaf.sharding, NamedSharding)), placed[0].sharding)
    replicated = _replicated_on(first)
    like = [leaf.sharding if _placed(leaf) else replicated for leaf in leaves]
    stacked = [_stacked(s, np.ndim(leaf)) if _placed(leaf) else replicated for s, leaf in zip(like, leaves)]
    return Plan(like=jax.tree_util.tree_unflatten(treedef, like),
                stacked=jax.tree_util.tree_unflatten(treedef, stacked), replicated=replicated)
