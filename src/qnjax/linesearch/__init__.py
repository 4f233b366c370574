"""Line searches: small immutable config objects with one method, ``search``.

``REGISTRY`` names every search (the bench's ``--linesearch``, the tests and the
docs iterate over it): adding one is one file and one line here.
"""

from ._backtracking import Backtracking
from ._base import LineSearch, LineSearchResult, LineSearchStatus
from ._hager_zhang import HagerZhang
from ._more_thuente import MoreThuente
from ._zoom import Zoom

REGISTRY = {"more-thuente": MoreThuente, "zoom": Zoom, "hager-zhang": HagerZhang, "backtracking": Backtracking}


def get(name: str, **settings) -> LineSearch:
    """The search registered as ``name`` with ``settings``: ``get("zoom", c2=0.5)``."""
    try:
        return REGISTRY[name](**settings)
    except KeyError:
        raise KeyError(f"unknown line search {name!r}; known: {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "Backtracking", "HagerZhang", "LineSearch", "LineSearchResult", "LineSearchStatus",
           "MoreThuente", "Zoom", "get"]
