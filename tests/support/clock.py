"""A clock for tests: sleeping advances time instantly and is recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tracker.clock import Cancelled


class FakeClock:
    """Time that moves only when slept on or advanced; ``on_sleep`` hears of every sleep."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._wall = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        self._mono = 1000.0
        self.sleeps: list[float] = []
        self.stopped = False
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> datetime:
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def sleep(self, seconds: float) -> None:
        if self.stopped:
            raise Cancelled("stopping")
        with self._lock:
            self.sleeps.append(seconds)
            self._advance(max(0.0, seconds))
        if self.on_sleep is not None:
            self.on_sleep(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._advance(seconds)

    def jump(self, seconds: float) -> None:
        """Move the wall clock only (NTP, an operator), not the monotonic one."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)

    def _advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def stop(self) -> None:
        self.stopped = True
