"""Line searches: small immutable config objects with one method, ``search``."""

from ._base import LineSearchResult, LineSearchStatus
from ._zoom import Zoom

__all__ = ["LineSearchResult", "LineSearchStatus", "Zoom"]
