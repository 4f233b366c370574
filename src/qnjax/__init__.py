"""qnjax: type-stable, pytree-native L-BFGS for JAX."""

from . import linesearch
from ._minimize import OptimizeResult, minimize
from ._state_types import LeafChange, check_state_types, keep_state_types
from ._status import Status
from ._transform import LbfgsState, lbfgs, value_and_grad_from_state

__all__ = [
    "LeafChange",
    "check_state_types",
    "keep_state_types",
    "LbfgsState", "OptimizeResult", "Status", "minimize", "lbfgs", "linesearch", "value_and_grad_from_state"]
__version__ = "0.1.0"
