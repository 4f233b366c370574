"""qnjax: type-stable, pytree-native L-BFGS for JAX.

* :func:`minimize`: the scipy-shaped front door, one compiled loop, jit/vmap-able;
* :func:`lbfgs`: an ``optax.GradientTransformationExtraArgs``, a drop-in for ``optax.lbfgs``;
* :class:`LBFGS` and :class:`State`: the one solver and state both faces run on;
* :mod:`linesearch`: line searches as small immutable config objects;
* :func:`check_state_types` / :func:`keep_state_types`: state-type tools for any optax optimizer;
* :mod:`problems`: test-problem catalogues (imported on use);
* :func:`plot` / :func:`plot_profile`: convergence plots from ``minimize(..., trace=K)`` and
  performance profiles (matplotlib).
"""

from . import linesearch
from ._callbacks import IntermediateResult
from ._implicit import ImplicitDiff
from ._minimize import minimize
from ._plot import plot, plot_profile
from ._result import OptimizeResult
from ._solver import LBFGS
from ._state import State
from ._state_types import LeafChange, check_state_types, keep_state_types
from ._status import Status
from ._trace import Trace
from ._transform import lbfgs, value_and_grad_from_state

__all__ = [
    "ImplicitDiff",
    "IntermediateResult",
    "LBFGS",
    "LeafChange",
    "OptimizeResult",
    "State",
    "Status",
    "Trace",
    "check_state_types",
    "keep_state_types",
    "lbfgs",
    "linesearch",
    "minimize",
    "plot",
    "plot_profile",
    "value_and_grad_from_state",
]
__version__ = "0.1.0"
