"""Spacescan's address API as a balance source: two requests per address, within a budget.

Each address is read with ``/address/token-balance/{address}`` (the CATs) and, when XCH is
tracked, ``/address/xch-balance/{address}``. Every request waits for its slot in the shared
:class:`~tracker.sources.budget.RateBudget`, is bounded by :func:`~tracker.sources.http.fetch`
(total deadline, size limit, no redirect elsewhere) and is retried by the one
:class:`~tracker.retry.RetryPolicy` on a 429, a 5xx or a network failure. A 429 (or a rate-limit
message in a 200) pauses every request of the process, not just the one that got it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeVar

import requests

from tracker import __version__
from tracker.clock import Clock
from tracker.domain import XCH, XCH_ASSET, Observation, WatchedAddress
from tracker.errors import SourceError
from tracker.redact import Redactor
from tracker.retry import RetryPolicy
from tracker.sources import http
from tracker.sources.base import RateLimited, Refused, TimedOut, Unavailable
from tracker.sources.budget import RateBudget
from tracker.sources.spacescan_answers import (
    parse_token_answer,
    parse_xch_balance,
    server_message,
)

log = logging.getLogger(__name__)

USER_AGENT = f"tracker/{__version__} (Chia portfolio tracker; python-requests)"
_T = TypeVar("_T")


class SpacescanSource:
    """Reads one address per request pair; safe to share between threads.

    :param session: from :func:`tracker.sources.http.session` (tests hand in one that
        ``responses`` controls)
    :param on_response: told ``(endpoint, outcome)`` of every attempt (``"200"``, ``"429"``,
        ``"timeout"``, ``"connection"``): the metrics.
    """

    name = "spacescan"
    batch_size = 1

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session,
        budget: RateBudget,
        clock: Clock,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        limits: http.Limits | None = None,
        include_xch: bool = True,
        include_dust: bool = False,
        max_pause_seconds: float = 3600.0,
        on_response: Callable[[str, str], None] | None = None,
        on_answer_time: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._budget = budget
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._api_key = api_key
        self._redact = Redactor([api_key])
        self._limits = limits or http.Limits()
        self._include_xch = include_xch
        self._include_dust = include_dust
        self._max_pause = max_pause_seconds
        self._on_response = on_response or (lambda _endpoint, _outcome: None)
        # Told how long each answer took, budget waits excluded: how many to keep in flight.
        self._on_answer_time = on_answer_time or (lambda _seconds: None)

    def __repr__(self) -> str:
        return f"SpacescanSource({self.base_url!r}, api_key={'***' if self._api_key else None})"

    def requests_per_read(self, addresses: int) -> float:
        return addresses * (2 if self._include_xch else 1)

    def read(self, addresses: Sequence[WatchedAddress]) -> list[Observation | SourceError]:
        return [self._read_one(entry) for entry in addresses]

    def _read_one(self, entry: WatchedAddress) -> Observation | SourceError:
        started_at = self._clock.now()
        try:
            tokens = self._get("token-balance", entry, parse_token_answer)
            balances, assets = tokens.balances, tokens.assets
            if self._include_xch:
                balances[XCH] = self._get("xch-balance", entry, parse_xch_balance)
                assets[XCH] = XCH_ASSET
        except SourceError as exc:
            return exc
        return Observation(
            entry.address,
            started_at,
            self._clock.now(),
            balances,
            assets,
            prices_xch=tokens.prices_xch,
        )

    def _get(
        self,
        endpoint: str,
        entry: WatchedAddress,
        parse: Callable[[bytes, Callable[[str], str]], _T],
    ) -> _T:
        url = f"{self.base_url}/address/{endpoint}/{entry.address}"
        if endpoint == "xch-balance" and self._include_dust:
            url += "?include_dust=true"
        who = entry.address + (f" ({entry.label})" if entry.label else "")
        return self.request(endpoint, url, parse, who)

    def request(
        self,
        endpoint: str,
        url: str,
        parse: Callable[[bytes, Callable[[str], str]], _T],
        who: str,
    ) -> _T:
        """GET ``url`` within the budget, retried by the policy, its 200 body read by ``parse``.

        The one way a Spacescan request is made (balances and prices alike); ``who`` names the
        request in retry log lines. Raises the final ``SourceError``, or ``Cancelled``.
        """
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key

        attempts = 0

        def attempt(number: int) -> _T:
            nonlocal attempts
            attempts = number
            self._budget.acquire()
            return parse(self._answer(endpoint, url, headers), self._redact)

        def retrying(number: int, exc: Exception, wait: float) -> None:
            if isinstance(exc, RateLimited):
                # Every caller waits, not only this one.
                self._budget.pause(wait)
            level = logging.WARNING if number == 1 else logging.DEBUG
            log.log(
                level,
                "%s: %s: %s; trying again in %.0f s (attempt %d of %s)",
                who,
                endpoint,
                exc,
                wait,
                number + 1,
                self._retry.max_attempts,
            )

        try:
            return self._retry.run(
                attempt,
                self._clock,
                retryable=lambda exc: isinstance(exc, SourceError) and exc.retryable,
                hint=lambda exc: exc.retry_after if isinstance(exc, SourceError) else None,
                on_retry=retrying,
            )
        except SourceError as exc:
            raise self._final(endpoint, exc, attempts) from None

    def _final(self, endpoint: str, exc: SourceError, attempts: int) -> SourceError:
        """The error that ends this read: where, what, and how hard it was tried."""
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        too_long = exc.retry_after is not None and exc.retry_after > self._retry.max_hint_seconds
        if isinstance(exc, RateLimited):
            # Every caller waits, even when this one gives up: later polls honour a long
            # Retry-After too, up to a limit, while this poll does not wait it out.
            wait = self._retry.backoff(attempts, None if too_long else exc.retry_after)
            self._budget.pause(min(exc.retry_after or 0.0, self._max_pause) if too_long else wait)
        if too_long:
            suffix += f" (asked to wait {exc.retry_after:.0f} s)"
        final = type(exc)(self._redact(f"{endpoint}: {exc}{suffix}"))
        final.retry_after = exc.retry_after
        return final

    def _answer(self, endpoint: str, url: str, headers: dict[str, str]) -> bytes:
        """The body of a 200, or the error the answer amounts to."""
        sent = time.monotonic()
        try:
            answer = http.fetch(self._session, "GET", url, limits=self._limits, headers=headers)
        except Unavailable as exc:
            self._on_answer_time(time.monotonic() - sent)
            self._on_response(endpoint, "timeout" if isinstance(exc, TimedOut) else "connection")
            raise
        self._on_answer_time(time.monotonic() - sent)
        self._on_response(endpoint, str(answer.status))
        if answer.status == 200:
            return answer.body
        message = server_message(answer.body, self._redact)
        if answer.status == 429:
            raise RateLimited(f"HTTP 429 rate limited{message}", self._retry_after(answer))
        if answer.status >= 500:
            raise Unavailable(f"HTTP {answer.status}{message}")
        if answer.status in (401, 403):
            hint = " (check the API key)" if self._api_key else " (the host may need an API key)"
            raise Refused(f"HTTP {answer.status} forbidden{message}{hint}")
        raise Refused(f"HTTP {answer.status}{message}")

    def _retry_after(self, answer: http.Answer) -> float | None:
        value = answer.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            return max(0.0, seconds) if seconds == seconds else None  # NaN: no hint
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self._clock.now()).total_seconds())
