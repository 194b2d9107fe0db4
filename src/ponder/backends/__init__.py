"""Backends behind the one seam in `base.py`."""

from ponder.backends.base import Backend, Capabilities

__all__ = ["Backend", "Capabilities"]
