"""The request budget: how fast a source may ask, shared by every request of the process.

The free Spacescan host bans bursts (about one request per 20 s, judged over a ~10 s window), so
the budget spaces requests evenly instead of allowing a burst of a minute's worth: any 60 s
window then holds at most ``requests_per_minute`` requests, and no short window holds more than
its share.
"""

from __future__ import annotations

import threading

from tracker.clock import Clock


class RateBudget:
    """Hands out request start times at least ``60 / requests_per_minute`` seconds apart.

    Thread-safe: callers reserve a slot under the lock, then wait for it outside the lock, so
    concurrent pollers queue fairly. :meth:`pause` pushes every later slot back, which is what a
    429 from the server means for all callers, not just the one that received it.
    """

    def __init__(self, requests_per_minute: float, clock: Clock) -> None:
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        self.interval = 60.0 / requests_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")

    def acquire(self) -> None:
        """Wait until this caller may send one request (raises ``Cancelled`` when stopping)."""
        with self._lock:
            now = self._clock.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        self._clock.sleep(slot - now)

    def set_requests_per_minute(self, requests_per_minute: float) -> None:
        """Change the pace of the requests not yet reserved (a shared budget was split anew)."""
        if requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive")
        with self._lock:
            self.interval = 60.0 / requests_per_minute

    def pause(self, seconds: float) -> None:
        """No request may start for ``seconds`` from now (a server-side rate limit was hit)."""
        with self._lock:
            self._next = max(self._next, self._clock.monotonic() + seconds)
