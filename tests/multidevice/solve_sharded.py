"""Solve one problem whose parameters are sharded over every device of every process.

Run once per process: python solve_sharded.py PROCESS_ID NUM_PROCESSES HOST:PORT
(process 0 hosts the coordinator at HOST:PORT). Process 0 prints the result as JSON.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import qnjax

process_id, num_processes, coordinator = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives; GPUs and TPUs need no setting
jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)

mesh = Mesh(np.array(jax.devices()), ("data",))  # every device of every process, in one axis
n = 256
x0 = jax.make_array_from_callback((n,), NamedSharding(mesh, P("data")), lambda index: np.zeros(n, np.float32)[index])
weights = 1.0 + jnp.arange(n, dtype=jnp.float32) / n


def loss(x):
    r = x - jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)
    return jnp.sum(weights * r**2 + 0.05 * r**4) + 0.1 * jnp.sum(r) ** 2


res = qnjax.minimize(loss, x0)  # x, grad and the state stay sharded like x0
x = multihost_utils.process_allgather(res.x, tiled=True)  # the whole solution on every process
if process_id == 0:
    print(json.dumps({"status": int(res.status), "nit": int(res.nit), "fun": float(res.fun),
                      "devices": jax.device_count(), "spec": str(res.x.sharding.spec), "x": x.tolist()}))
