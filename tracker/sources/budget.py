"""The request budget: how fast a source may ask, shared by every request of the process.

The free Spacescan host bans bursts (about one request per 20 s, judged over a ~10 s window), so
the budget spaces requests evenly instead of allowing a burst of a minute's worth: any 60 s
window then holds at most ``requests_per_minute`` requests, and no short window holds more than
its share.
"""

from __future__ import annotations

import math
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


class Concurrency:
    """How many reads may be in flight at once: enough that the budget, not the pool, sets the
    pace, and no more.

    Little's law: requests in flight = requests per second x answer time. The answer time is
    learnt from the answers themselves (a moving average); the limit is that product with some
    headroom, between 1 and ``cap``. When one request at a time keeps up with the budget (the
    free host: one request per 20 s, answers in seconds), it stays at one.
    """

    HEADROOM = 1.5
    SMOOTHING = 0.2

    def __init__(self, budget: RateBudget, cap: int, answer_seconds: float = 1.0) -> None:
        self._budget = budget
        self.cap = max(1, cap)
        self._answer = answer_seconds
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        """One request took ``seconds`` from sending to its whole answer."""
        with self._lock:
            self._answer += self.SMOOTHING * (max(seconds, 0.0) - self._answer)

    @property
    def answer_seconds(self) -> float:
        with self._lock:
            return self._answer

    @property
    def limit(self) -> int:
        in_flight = self.answer_seconds / self._budget.interval
        if in_flight <= 1.0:
            return 1
        return max(1, min(self.cap, math.ceil(in_flight * self.HEADROOM)))
