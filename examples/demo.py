"""qnjax demo: the optax #1210 scenario, Rosenbrock in float32 and float64, and the
state-type comparison with optax.lbfgs. Run with `make demo`."""

import os

import jax

jax.config.update("jax_enable_x64", True)

import equinox.internal as eqxi  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import qnjax  # noqa: E402


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def optax_step(opt, fn):
    vg = qnjax.value_and_grad_from_state(fn)

    def step(carry, _):
        params, state = carry
        value, grad = vg(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fn)
        return (optax.apply_updates(params, updates), state), value

    return step


def seed_scenario():
    print("1. optax issue #1210: L-BFGS inside scan with jax_enable_x64, 100 steps")
    opt = qnjax.lbfgs()
    x0 = jnp.array([-1.2, 1.0] * 2)
    for name, scan in [
        ("jax.lax.scan", lambda f, c: jax.lax.scan(f, c, length=100)),
        ("equinox.internal.scan(kind='checkpointed')",
         lambda f, c: eqxi.scan(f, c, None, length=100, kind="checkpointed")),
    ]:
        (x, state), _ = scan(optax_step(opt, rosenbrock), (x0, opt.init(x0)))
        print(f"   {name:45s} f = {float(state.value):.3e}  x = {x}  status: {qnjax.Status(int(state.status)).name}")


def rosenbrock_both_precisions():
    print("\n2. qnjax.minimize on Rosenbrock (n = 10, x0 = (-1.2, 1, ...))")
    for dtype in (jnp.float32, jnp.float64):
        x0 = jnp.array([-1.2, 1.0] * 5, dtype)
        res = qnjax.minimize(rosenbrock, x0)
        print(f"   {jnp.dtype(dtype).name:8s} nit = {int(res.nit):3d}  nfev = {int(res.nfev):3d}  "
              f"f = {float(res.fun):.3e}  {res.message}")


def state_types_side_by_side():
    print("\n3. State types over 10 jitted updates (float32 params, x64 on)")
    x0 = jnp.array([-1.2, 1.0], jnp.float32)
    rows = []
    for name, opt in [("qnjax.lbfgs()", qnjax.lbfgs()), ("optax.lbfgs()", optax.lbfgs()),
                      ("keep_state_types(optax.lbfgs())", qnjax.keep_state_types(optax.lbfgs()))]:
        drift = qnjax.check_state_types(opt, x0, rosenbrock, steps=10)
        traces = []

        @jax.jit
        def step(params, state, opt=opt, traces=traces):
            traces.append(1)
            value, grad = jax.value_and_grad(rosenbrock)(params)
            updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=rosenbrock)
            return optax.apply_updates(params, updates), state

        params, state = x0, opt.init(x0)
        for _ in range(10):
            params, state = step(params, state)
        rows.append((name, len(drift), len(traces)))
    print(f"   {'optimizer':34s} {'drifting leaves':>16s} {'compilations':>13s}")
    for name, drift, compiles in rows:
        print(f"   {name:34s} {drift:16d} {compiles:13d}")


def convergence_plot(path="docs/convergence.png"):
    print(f"\n4. Convergence on Rosenbrock (n = 10) in float32 and float64, traced inside jit: {path}")
    runs, labels = [], []
    for dtype in (jnp.float32, jnp.float64):
        for name in ("more-thuente", "zoom"):
            x0 = jnp.array([-1.2, 1.0] * 5, dtype)
            runs.append(qnjax.minimize(rosenbrock, x0, trace=200, linesearch=qnjax.linesearch.get(name)))
            labels.append(f"{jnp.dtype(dtype).name}, {name}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    qnjax.plot(runs, labels=labels, fstar=0.0, path=path, title="qnjax.minimize on 10-D Rosenbrock")


if __name__ == "__main__":
    seed_scenario()
    rosenbrock_both_precisions()
    state_types_side_by_side()
    convergence_plot()
