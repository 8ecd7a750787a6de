"""Prometheus metrics and a health check for the daemon, on a port of its own.

The registry belongs to this object, not to prometheus-client's process-wide default, so two
daemons in one test process (or a library user) never share counters. Balances are exported in
token units as floats: Prometheus stores float64, which is fine for graphs and alerts; the exact
figures stay in the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from tracker.poller import PollSummary
from tracker.spacescan import CAT_DECIMALS, XCH_DECIMALS

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Metrics:
    """What the daemon has seen, as Prometheus series; also decides whether it is healthy."""

    def __init__(self, stale_after_seconds: float, now: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.stale_after_seconds = stale_after_seconds
        self._now = now
        self._started = now()
        self._last_success: float | None = None
        self._held: dict[str, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        labels = ["address", "label"]
        self.balance = Gauge(
            "tracker_balance",
            "Balance at the last successful poll, in token units (XCH or CAT).",
            [*labels, "asset_id", "symbol"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "tracker_last_success_timestamp_seconds",
            "Unix time of the last successful poll of the address.",
            labels,
            registry=self.registry,
        )
        self.consecutive_failures = Gauge(
            "tracker_consecutive_failures",
            "Failed polls of the address since its last success.",
            labels,
            registry=self.registry,
        )
        self.poll_duration = Histogram(
            "tracker_poll_duration_seconds",
            "Duration of a poll of every address.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.api_requests = Counter(
            "tracker_api_requests",
            "Spacescan requests by endpoint and outcome (HTTP status, timeout, connection).",
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
        now = self._now()
        with self._lock:
            for result in summary.results:
                who = (result.address, result.label or "")
                if not result.ok:
                    self.consecutive_failures.labels(*who).inc()
                    continue
                self._last_success = now
                self.consecutive_failures.labels(*who).set(0)
                self.last_success.labels(*who).set(now)
                if result.observation is None:
                    continue
                held = set()
                for asset, mojos in result.observation.balances.items():
                    info = result.observation.assets.get(asset)
                    symbol = (info.symbol if info else None) or ""
                    decimals = XCH_DECIMALS if asset == "xch" else CAT_DECIMALS
                    self.balance.labels(*who, asset, symbol).set(mojos / 10**decimals)
                    held.add((asset, symbol))
                for asset, symbol in self._held.get(result.address, set()) - held:
                    self.balance.labels(*who, asset, symbol).set(0)  # it left: show the drop
                self._held[result.address] = held

    def health(self) -> tuple[bool, str]:
        """Unhealthy when no address has succeeded for ``stale_after_seconds`` (or since start)."""
        with self._lock:
            since = self._last_success if self._last_success is not None else self._started
        age = self._now() - since
        if age > self.stale_after_seconds:
            what = "no successful poll" if self._last_success is None else "last successful poll"
            return False, f"{what} for {age:.0f} s (limit {self.stale_after_seconds:.0f} s)"
        return True, "ok"

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


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass


class MetricsServer:
    """Serves :class:`Metrics` over HTTP on a daemon thread until :meth:`stop`."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._server: WSGIServer = make_server(host, port, metrics.app, handler_class=_Quiet)
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
