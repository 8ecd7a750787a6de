"""Prometheus metrics and a health check for the daemon, on a port of its own.

Balances and poll health are read from the database when Prometheus scrapes (a ``Collector``),
not pushed as polls happen: every worker of a shared database, and a daemon restarted a second
ago, export every address's last stored balance. What only this process sees (request outcomes,
poll durations, dropped webhooks) are ordinary counters.

The registry belongs to this object, not to prometheus-client's process-wide default, so two
daemons in one test process (or a library user) never share counters. Balances are exported in
token units as floats: Prometheus stores float64, fine for graphs and alerts; the exact figures
stay in the database.

The server answers each client on its own thread with a socket timeout, so a client that
connects and says nothing cannot blind the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from tracker.domain import WatchedAddress
from tracker.errors import TrackerError
from tracker.reports.balances import balances
from tracker.reports.pricebook import ValueRule
from tracker.reports.status import status
from tracker.reports.values import valued_balances
from tracker.service.poller import PollSummary
from tracker.store import queries
from tracker.store.engine import describe
from tracker.store.models import Address, Delta
from tracker.valuation import total

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
CLIENT_TIMEOUT_SECONDS = 10.0


class StoredState(Collector):
    """Balances and poll health of the watched addresses, read from the database per scrape;
    with a ``rule``, their values too (by the valuation rule, as ``balances --value``)."""

    def __init__(
        self,
        engine: Engine,
        addresses: Callable[[], Sequence[WatchedAddress]],
        rule: ValueRule | None = None,
    ) -> None:
        self._engine = engine
        self._addresses = addresses
        self._rule = rule

    def collect(self) -> Iterator[Metric]:
        labels = ["address", "label"]
        balance = GaugeMetricFamily(
            "tracker_balance",
            "Balance at the last stored snapshot, in token units (XCH or CAT); 0 once an "
            "asset has left.",
            labels=[*labels, "asset_id", "symbol"],
        )
        last = GaugeMetricFamily(
            "tracker_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the address.",
            labels=labels,
        )
        failures = GaugeMetricFamily(
            "tracker_consecutive_failures",
            "Failed polls of the address since its last success.",
            labels=labels,
        )
        watched = {entry.address: entry.label or "" for entry in self._addresses()}
        values = _value_families() if self._rule is not None else ()
        try:
            self._balances(balance, watched)
            if values:
                self._values(*values, watched)
            for row in status(self._engine, count_snapshots=False):
                if row.address in watched:
                    who = [row.address, watched[row.address]]
                    failures.add_metric(who, row.consecutive_failures)
                    if row.last_success is not None:
                        last.add_metric(who, row.last_success.timestamp())
        except (SQLAlchemyError, TrackerError) as exc:
            log.warning("metrics: the database did not answer: %s", _reason(exc))
            return
        yield from (balance, last, failures, *values)

    def _values(
        self, value: GaugeMetricFamily, portfolio: GaugeMetricFamily, watched: dict[str, str]
    ) -> None:
        """Each priced holding's value in the currency, and their sum: unpriced ones are absent
        (a missing series, not a zero)."""
        assert self._rule is not None
        currency = self._rule.currency or ""
        priced = []
        for row in valued_balances(self._engine, self._rule):
            if row.address in watched and row.value is not None:
                labels = [row.address, watched[row.address], row.asset_id or "", row.symbol or ""]
                value.add_metric([*labels, currency], float(row.value))
                priced.append(row.value)
        portfolio.add_metric([currency], float(total(priced)))

    def _balances(self, family: GaugeMetricFamily, watched: dict[str, str]) -> None:
        held: dict[tuple[str, str], tuple[str, float]] = {}
        for row in balances(self._engine):
            if row.address in watched:
                held[(row.address, row.asset_id)] = (row.symbol or "", float(row.balance))
        for address, asset_id, symbol in self._left(watched):
            held.setdefault((address, asset_id), (symbol or "", 0.0))
        for (address, asset_id), (symbol, value) in sorted(held.items()):
            family.add_metric([address, watched[address], asset_id, symbol], value)

    def _left(self, watched: dict[str, str]) -> list[tuple[str, str, str | None]]:
        """Assets each address held once (they have a delta) and holds no more: shown at 0."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(Address.address, Delta.asset_id)
                .join(Address, Address.id == Delta.address_id)
                .where(Address.address.in_(list(watched)))
                .distinct()
            ).all()
            refs = queries.assets(connection, {row.asset_id for row in rows})
        return [
            (row.address, refs[row.asset_id].asset_id, refs[row.asset_id].symbol) for row in rows
        ]


def _value_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "tracker_value",
            "Value of the balance at the last stored snapshot, in the currency; absent when "
            "unpriced.",
            labels=["address", "label", "asset_id", "symbol", "currency"],
        ),
        GaugeMetricFamily(
            "tracker_portfolio_value",
            "Sum of tracker_value over the watched addresses (the priced holdings).",
            labels=["currency"],
        ),
    )


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TrackerError) else describe(exc)


class Metrics:
    """What the daemon exports, and whether it is healthy."""

    def __init__(
        self,
        engine: Engine,
        addresses: Callable[[], Sequence[WatchedAddress]],
        stale_after_seconds: float,
        *,
        shared: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        rule: ValueRule | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._engine = engine
        self._shared = shared
        self.stale_after_seconds = stale_after_seconds
        self._addresses = addresses
        self._monotonic = monotonic
        self._started = monotonic()
        self._succeeded: dict[str, float] = {}
        self._lock = threading.Lock()
        self.registry.register(StoredState(engine, addresses, rule))
        self.poll_duration = Histogram(
            "tracker_poll_duration_seconds",
            "Duration of a poll of every address.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.api_requests = Counter(
            "tracker_api_requests",
            "Source requests by endpoint and outcome (HTTP status, timeout, connection).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "tracker_webhook_failures",
            "Change notifications given up after every retry.",
            registry=self.registry,
        )

    def observe_request(self, endpoint: str, status: str) -> None:
        self.api_requests.labels(endpoint, status).inc()

    def observe_poll(self, summary: PollSummary) -> None:
        self.poll_duration.observe(summary.seconds)
        now = self._monotonic()
        with self._lock:
            for result in summary.results:
                if result.ok:
                    self._succeeded[result.address] = now

    def health(self) -> tuple[bool, str]:
        """Unhealthy when an address has had no successful poll for ``stale_after_seconds``.

        Ages are counted on the monotonic clock from this process's start or the address's
        last success, so a wall-clock jump neither hides nor invents an outage. A worker of a
        shared database polls only its share: the others' successes are read from the database.
        """
        now = self._monotonic()
        stale = []
        with self._lock:
            for entry in self._addresses():
                since = self._succeeded.get(entry.address, self._started)
                age = now - since
                if age > self.stale_after_seconds:
                    stale.append((entry, age, entry.address in self._succeeded))
        if stale and self._shared:
            stale = self._elsewhere(stale)
        if not stale:
            return True, "ok"
        entry, age, ever = max(stale, key=lambda item: item[1])
        what = "last successful poll" if ever else "no successful poll"
        name = entry.address + (f" ({entry.label})" if entry.label else "")
        total = len(self._addresses())
        return False, (
            f"{len(stale)} of {total} address{'es' if total != 1 else ''} stale "
            f"(limit {self.stale_after_seconds:.0f} s); the oldest: {name}, {what} {age:.0f} s ago"
        )

    def _elsewhere(
        self, stale: list[tuple[WatchedAddress, float, bool]]
    ) -> list[tuple[WatchedAddress, float, bool]]:
        """Of ``stale``, those that no worker polled lately either, by the database."""
        try:
            rows = {row.address: row for row in status(self._engine, count_snapshots=False)}
        except (SQLAlchemyError, TrackerError):
            return stale
        now = time.time()
        still = []
        for entry, age, ever in stale:
            row = rows.get(entry.address)
            if row is not None and row.last_success is not None:
                elsewhere = max(now - row.last_success.timestamp(), 0.0)
                if elsewhere <= self.stale_after_seconds:
                    continue
                age, ever = min(age, elsewhere), True
            still.append((entry, age, ever))
        return still

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """WSGI: /healthz answers 200 or 503 with a one-line reason; anything else is metrics."""
        if environ.get("PATH_INFO") == "/healthz":
            healthy, reason = self.health()
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
            return [f"{reason}\n".encode()]
        metrics_app = make_wsgi_app(self.registry)
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]


class _Handler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT_SECONDS  # a silent client is dropped, not waited for

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """Serves :class:`Metrics` over HTTP on daemon threads until :meth:`stop`."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._server = make_server(
            host, port, metrics.app, server_class=_Server, handler_class=_Handler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
