"""Moved: the HTTP engines' base is public now, in `unillm.backends.http`. This module only
re-exports it for code not yet switched (unillm/bench/sse.py imports `SSEParser` from here)."""

from .http import *  # noqa: F403
from .http import __all__  # noqa: F401
