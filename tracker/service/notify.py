"""Change notifications: one webhook POST per balance change, sent off the poll's path.

Deltas are queued after they are committed and sent by a background thread, so a slow or dead
webhook never delays a poll. Each POST is retried with backoff; one that still fails is logged
and counted, then dropped: the history in the database is the record, the webhook is a nudge.
Delivery is at most once per delta: a notification queued when the process stops is lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import requests

from tracker import __version__
from tracker.clock import Cancelled, Clock
from tracker.domain import decimals_of, units
from tracker.errors import SourceError
from tracker.redact import origin
from tracker.retry import RetryPolicy
from tracker.service.poller import PollSummary
from tracker.sources import http
from tracker.sources.base import Refused
from tracker.times import iso
from tracker.valuation import Valuation

log = logging.getLogger(__name__)

_STOP = object()


def payloads(summary: PollSummary) -> list[dict[str, Any]]:
    """The JSON documents for every delta of a poll; amounts as exact decimal strings."""
    documents = []
    for result in summary.results:
        if result.observation is None:
            continue
        for delta in result.deltas:
            decimals = decimals_of(delta.asset)
            info = result.observation.assets.get(delta.asset)
            document: dict[str, Any] = {
                "address": result.address,
                "label": result.label,
                "asset_id": delta.asset,
                "symbol": info.symbol if info else result.symbols.get(delta.asset),
                "previous": format(units(delta.previous_mojos, decimals), "f"),
                "new": format(units(delta.mojos, decimals), "f"),
                "delta": format(units(delta.delta_mojos, decimals), "f"),
                "previous_mojos": str(delta.previous_mojos),
                "new_mojos": str(delta.mojos),
                "delta_mojos": str(delta.delta_mojos),
                "taken_at": iso(result.observation.taken_at),
            }
            value = result.values.get(delta.asset)
            if value is not None:  # the poll was valued: what the change was worth
                document.update(valued(value))
            documents.append(document)
    return documents


def valued(value: Valuation) -> dict[str, str | None]:
    """The price and value of a change, exact decimal strings; null where unpriced."""
    fields = {
        "price_xch": value.price_xch,
        "value_xch": value.value_xch,
        "price": value.price,
        "value": value.value,
    }
    return {
        "currency": value.currency,
        **{key: None if amount is None else format(amount, "f") for key, amount in fields.items()},
    }


class WebhookNotifier:
    """POSTs queued change documents to ``url`` from a background thread."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session,
        clock: Clock,
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
        backoff_seconds: float = 2.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._limits = http.Limits(deadline_seconds=timeout_seconds, max_bytes=2**20)
        self._retry = RetryPolicy(max_attempts=max_attempts, base_seconds=backoff_seconds)
        self._on_failure = on_failure
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="webhook", daemon=True)
        # The URL may carry a token or credentials (Slack, Discord, user:password@): logs name
        # only its origin.
        self.target = origin(url)
        self.sent = 0
        self.failed = 0

    def start(self) -> WebhookNotifier:
        self._thread.start()
        return self

    def notify(self, summary: PollSummary) -> None:
        for document in payloads(summary):
            self._queue.put(document)

    def stop(self, drain_seconds: float = 0.0) -> None:
        """Send what is queued for up to ``drain_seconds``, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout=drain_seconds)
        left = self._queue.qsize()
        if self._thread.is_alive() and left:
            log.warning("%d change notifications to %s not sent (stopping)", left, self.target)

    def _work(self) -> None:
        while True:
            document = self._queue.get()
            if document is _STOP:
                return
            try:
                self._send(document)
            except Cancelled:
                return

    def _send(self, document: object) -> None:
        body = json.dumps(document).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tracker/{__version__} (webhook)",
        }

        def attempt(_number: int) -> None:
            answer = http.fetch(
                self._session, "POST", self._url, limits=self._limits, headers=headers, data=body
            )
            if answer.status >= 300:
                error = SourceError(f"HTTP {answer.status}")
                # The receiver rejects this document (4xx but 429): asking again will not help.
                error.retryable = answer.status == 429 or answer.status >= 500
                raise error

        try:
            self._retry.run(
                attempt,
                self._clock,
                retryable=lambda exc: isinstance(exc, SourceError) and exc.retryable,
            )
        except SourceError as exc:
            self.failed += 1
            problem = str(exc) if not isinstance(exc, Refused) else f"refused: {exc}"
            log.warning("change notification to %s failed (%s); dropped", self.target, problem)
            if self._on_failure is not None:
                self._on_failure()
        else:
            self.sent += 1
