"""Sharded parameters, in subprocesses (JAX's device count is fixed when it starts).

* ``tests/multidevice/test_8_devices.py`` runs under pytest with 8 CPU devices: state
  shardings in both faces, 1-D and 2-D meshes, a pytree mixing sharded and replicated
  leaves, bounds, and the collectives in the compiled programs. It runs in the x64-on
  run, which covers float32, float64 and mixed leaves in one process (CI time).
* ``tests/multidevice/solve_sharded.py`` (the multi-process recipe of docs/sharding.md)
  runs as 2 processes on localhost with 2 CPU devices each (``jax.distributed``, CPU
  collectives) and must give the one-process solution. It runs in the x64-off run.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import X64, run_pytest

import qnjax

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent


def _env(devices):
    flags = os.environ.get("XLA_FLAGS", "")
    return dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
                PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.skipif(not X64, reason="runs once, in the x64-on run (float32, float64 and mixed leaves)")
def test_eight_device_suite():
    run, tail = run_pytest("-W", "ignore::DeprecationWarning", str(HERE / "multidevice"), env=_env(8))
    assert run.returncode == 0, tail
    assert "11 passed" in run.stdout and "skipped" not in run.stdout, tail


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(X64, reason="runs once, in the x64-off run (the recipe is float32)")
def test_two_processes_solve_like_one():
    script = HERE / "multidevice" / "solve_sharded.py"
    coordinator = f"localhost:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(script), str(i), "2", coordinator], env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=600))
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    got = json.loads(outs[0][0].strip().splitlines()[-1])
    assert got["devices"] == 4 and "data" in got["spec"]

    # The same problem in this process, on one device.
    n = 256
    target = jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)
    weights = 1.0 + jnp.arange(n, dtype=jnp.float32) / n

    def loss(x):
        r = x - target
        return jnp.sum(weights * r**2 + 0.05 * r**4) + 0.1 * jnp.sum(r) ** 2

    one = qnjax.minimize(loss, jnp.zeros(n, jnp.float32))
    assert got["status"] == int(one.status) and qnjax.Status(got["status"]).success
    x = np.asarray(got["x"], np.float32)
    np.testing.assert_allclose(x, np.asarray(one.x), atol=1e-5)
    np.testing.assert_allclose(x, np.asarray(target), atol=1e-4)  # and it is the minimiser
    assert abs(got["fun"] - float(one.fun)) <= 1e-6
    assert jax.device_count() == 1  # this process was not changed by the subprocesses


def test_the_recipe_in_the_docs_is_the_tested_script():
    page = (ROOT / "docs" / "sharding.md").read_text()
    assert (HERE / "multidevice" / "solve_sharded.py").read_text() in page
