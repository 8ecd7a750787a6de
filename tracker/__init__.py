"""tracker: an exact, gap-aware history of Chia balances in a database you own.

The library's front door is :class:`tracker.Tracker` (``tracker.service.tracker``); the command
line is a thin layer over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from tracker.service.tracker import Tracker


def __getattr__(name: str) -> Any:
    # Lazily, so that `tracker --help` does not import the configuration and database layers.
    if name == "Tracker":
        from tracker.service.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'tracker' has no attribute {name!r}")


__all__ = ["Tracker", "__version__"]
