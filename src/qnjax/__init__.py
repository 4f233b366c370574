"""qnjax: type-stable, pytree-native L-BFGS for JAX.

* :func:`minimize`: the scipy-shaped front door, one compiled loop, jit/vmap-able;
* :func:`lbfgs`: an ``optax.GradientTransformationExtraArgs``, a drop-in for ``optax.lbfgs``;
* :class:`LBFGS` and :class:`State`: the one solver and state both faces run on;
* :mod:`linesearch`: line searches as small immutable config objects;
* :func:`check_state_types` / :func:`keep_state_types`: state-type tools for any optax optimizer;
* :mod:`problems`: test-problem catalogues (imported on use).
"""

from . import linesearch
from ._minimize import OptimizeResult, minimize
from ._solver import LBFGS, State
from ._state_types import LeafChange, check_state_types, keep_state_types
from ._status import Status
from ._transform import lbfgs, value_and_grad_from_state

__all__ = [
    "LBFGS",
    "LeafChange",
    "OptimizeResult",
    "State",
    "Status",
    "check_state_types",
    "keep_state_types",
    "lbfgs",
    "linesearch",
    "minimize",
    "value_and_grad_from_state",
]
__version__ = "0.1.0"
