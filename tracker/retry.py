"""The one retry policy: how often to try again, and how long to wait in between.

Every loop that tries again (a Spacescan or chain request, a webhook POST, a write that found
SQLite locked, a daemon waiting for the lock) is :meth:`RetryPolicy.run` with its own settings, so
the rules are written once: exponential backoff with a cap, a server's ``Retry-After`` honoured up
to a limit, and every wait taken on the injected clock, which a stopping daemon cancels at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tracker.clock import Clock

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Try up to ``max_attempts`` times (None: until stopped), waiting ``base_seconds`` times
    ``multiplier`` to the power of the failed attempts so far, at most ``max_seconds``.

    A wait the failure itself asks for (``Retry-After``) replaces the backoff, unless it is longer
    than ``max_hint_seconds``: then the policy gives up at once rather than stall its caller (the
    next scheduled poll tries again).
    """

    max_attempts: int | None = 4
    base_seconds: float = 2.0
    multiplier: float = 2.0
    max_seconds: float = 120.0
    max_hint_seconds: float = 300.0

    def backoff(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if hint is not None:
            return min(max(hint, 0.0), self.max_hint_seconds)
        # The exponent is bounded: 2.0 ** 1024 overflows, and the cap applies long before.
        return min(self.max_seconds, self.base_seconds * self.multiplier ** min(attempt - 1, 64))

    def gives_up(self, attempt: int, hint: float | None = None) -> bool:
        """Whether failed attempt ``attempt`` is the last one."""
        if hint is not None and hint > self.max_hint_seconds:
            return True
        return self.max_attempts is not None and attempt >= self.max_attempts

    def run(
        self,
        work: Callable[[int], T],
        clock: Clock,
        *,
        retryable: Callable[[Exception], bool],
        hint: Callable[[Exception], float | None] = lambda _exc: None,
        on_retry: Callable[[int, Exception, float], None] | None = None,
    ) -> T:
        """``work(attempt)`` until it returns, or raises something not ``retryable``, or the
        attempts run out (then its last exception propagates).

        ``on_retry(attempt, exc, wait)`` hears of every failure that will be retried, before the
        wait (to log it, or to pause other callers). Waits raise ``Cancelled`` when the clock
        is stopped.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return work(attempt)
            except Exception as exc:
                wanted = hint(exc)
                if not retryable(exc) or self.gives_up(attempt, wanted):
                    raise
                wait = self.backoff(attempt, wanted)
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                clock.sleep(wait)
