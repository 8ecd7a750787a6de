"""Time as a dependency: every wait in the tracker goes through a clock.

Injecting the clock lets tests run hours of backoff instantly, and lets the daemon cancel every
wait (rate budget, retry backoff) at once when it is told to stop.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Cancelled(Exception):
    """Raised out of a wait when the daemon is stopping; the poll in progress is abandoned."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards, for budgets and backoff."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; raises :class:`Cancelled` if the clock is stopped meanwhile."""
        ...


class SystemClock:
    """The real clock; once :meth:`stop` is called every wait ends with :class:`Cancelled`."""

    def __init__(self) -> None:
        self._stopped = threading.Event()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if self._stopped.wait(max(0.0, seconds)) or self._stopped.is_set():
            raise Cancelled("stopping")

    def stop(self) -> None:
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()
