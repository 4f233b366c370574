"""Line searches: small immutable config objects with one method, ``search``."""

from ._backtracking import Backtracking
from ._base import LineSearchResult, LineSearchStatus
from ._hager_zhang import HagerZhang
from ._more_thuente import MoreThuente
from ._zoom import Zoom

__all__ = ["LineSearchResult", "LineSearchStatus", "Zoom"]
__all__ += ["Backtracking", "HagerZhang", "MoreThuente"]
