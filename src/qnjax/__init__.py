"""qnjax: type-stable, pytree-native L-BFGS for JAX."""

from . import linesearch
from ._minimize import OptimizeResult, minimize
from ._status import Status
from ._transform import LbfgsState, lbfgs, value_and_grad_from_state

__all__ = ["LbfgsState", "OptimizeResult", "Status", "minimize", "lbfgs", "linesearch", "value_and_grad_from_state"]
__version__ = "0.1.0"
