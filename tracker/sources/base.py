"""What a balance source is: something that reads addresses and returns observations.

Spacescan's HTTP API and the Chia chain itself are both sources; the poller speaks only this
protocol, so a new source plugs in without touching it. A source reads a batch of addresses at a
time (Spacescan one, a full node many: its RPC takes many puzzle hashes in one call) and answers,
for each address, an :class:`~tracker.domain.Observation` or the error that kept it from one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tracker.domain import Observation, WatchedAddress
from tracker.errors import SourceError


class BadAnswer(SourceError):
    """The source answered, but not with something that can be trusted as balances."""


class Refused(SourceError):
    """The source said no (``status: failed``, HTTP 4xx, a redirect elsewhere): asking again
    will not help."""


class Unavailable(SourceError):
    """Network failure, timeout or HTTP 5xx: worth retrying."""

    retryable = True


class TimedOut(Unavailable):
    """No (complete) answer within the request's deadline."""


class RateLimited(Unavailable):
    """HTTP 429 or a rate-limit message: every request waits, not just this one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BalanceSource(Protocol):
    """Reads the balances of addresses; safe to call from several threads at once."""

    name: str
    """``spacescan`` or ``chain``: recorded with every snapshot it produced."""

    batch_size: int
    """How many addresses one :meth:`read` takes (the poller cuts its list to this size)."""

    def read(self, addresses: Sequence[WatchedAddress]) -> list[Observation | SourceError]:
        """One outcome per address, in order. Never raises ``SourceError`` itself."""
        ...

    def requests_per_read(self, addresses: int) -> float:
        """Requests a read of ``addresses`` addresses costs: how the daemon sizes its budget."""
        ...
