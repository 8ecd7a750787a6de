"""The one place that builds tracker's moving parts from its settings.

A poll (``tracker poll``), the daemon (``tracker run``) and the benchmarks all need the same
source, budget, store and poller, wired the same way; the daemon adds the lock, shared-mode
leases, metrics, webhooks and retention. They are assembled here and nowhere else.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tracker import __version__
from tracker.clock import SystemClock
from tracker.config import Settings
from tracker.domain import WatchedAddress
from tracker.errors import ConfigError
from tracker.reports.pricebook import ValueRule
from tracker.retention.prune import prune
from tracker.retry import RetryPolicy
from tracker.service.daemon import Daemon, Job
from tracker.service.metrics import Metrics, MetricsServer
from tracker.service.notify import WebhookNotifier
from tracker.service.poller import Poller, PollSummary
from tracker.service.pricing import PollPricing
from tracker.service.shared import Leases
from tracker.sources import http
from tracker.sources.base import BalanceSource
from tracker.sources.budget import Concurrency, RateBudget
from tracker.sources.prices import PriceSource
from tracker.sources.spacescan import SpacescanSource
from tracker.store.engine import database_error
from tracker.store.lock import DaemonLock
from tracker.store.prices import PriceStore
from tracker.store.writer import SnapshotStore

log = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 86_400
FREEZE_SECONDS = 3.0
"""At a stop, how long a write in progress may take to commit before the process leaves."""


def source(
    settings: Settings,
    clock: SystemClock,
    budget: RateBudget,
    on_response: Callable[[str, str], None] | None = None,
    on_answer_time: Callable[[float], None] | None = None,
) -> BalanceSource:
    """The balance source of these settings."""
    return spacescan_source(settings, clock, budget, on_response, on_answer_time)


def spacescan_source(
    settings: Settings,
    clock: SystemClock,
    budget: RateBudget,
    on_response: Callable[[str, str], None] | None = None,
    on_answer_time: Callable[[float], None] | None = None,
) -> SpacescanSource:
    """Spacescan's client: the balance source, and the way to its prices."""
    spacescan = settings.spacescan
    return SpacescanSource(
        spacescan.base_url,
        session=http.session(pool_size=spacescan.concurrency_cap),
        budget=budget,
        clock=clock,
        retry=RetryPolicy(max_attempts=spacescan.max_attempts),
        api_key=spacescan.key,
        limits=http.Limits(
            deadline_seconds=spacescan.timeout_seconds,
            connect_seconds=min(10.0, spacescan.timeout_seconds),
        ),
        include_xch=spacescan.include_xch,
        include_dust=spacescan.include_dust,
        on_response=on_response,
        on_answer_time=on_answer_time,
    )


def poller(
    settings: Settings,
    engine: Engine,
    clock: SystemClock,
    *,
    budget: RateBudget | None = None,
    on_response: Callable[[str, str], None] | None = None,
) -> Poller:
    """A poller reading from the settings' source into the database behind ``engine``."""
    budget = budget or RateBudget(settings.spacescan.requests_per_minute, clock)
    concurrency = Concurrency(budget, settings.spacescan.concurrency_cap)
    reader = source(settings, clock, budget, on_response, concurrency.observe)
    return Poller(
        reader,
        SnapshotStore(engine, clock),
        clock,
        concurrency=concurrency,
        pricing=pricing(settings, engine, clock, budget, reader, on_response),
    )


def pricing(
    settings: Settings,
    engine: Engine,
    clock: SystemClock,
    budget: RateBudget,
    reader: BalanceSource | None = None,
    on_response: Callable[[str, str], None] | None = None,
) -> PollPricing | None:
    """The prices of the polls, from Spacescan within ``budget`` (through the balance source
    itself when it is Spacescan: one session, one retry policy); None when valuation is off."""
    currency = settings.prices.fiat
    if currency is None:
        return None
    if not isinstance(reader, SpacescanSource):
        reader = spacescan_source(settings, clock, budget, on_response)
    return PollPricing(
        PriceSource(reader),
        PriceStore(engine, clock),
        clock,
        currency=currency,
        interval_seconds=settings.prices.interval_seconds,
        max_age_seconds=settings.prices.max_age,
    )


def value_rule(settings: Settings) -> ValueRule | None:
    """The settings' valuation rule (currency and maximum price age); None when off."""
    prices = settings.prices
    return None if prices.fiat is None else ValueRule.of(prices.fiat, prices.max_age)


def notifier(
    settings: Settings, clock: SystemClock, metrics: Metrics | None = None
) -> WebhookNotifier | None:
    hooks = settings.notifications
    if hooks.webhook_url is None:
        return None
    result = WebhookNotifier(
        hooks.webhook_url.get_secret_value(),
        session=http.session(pool_size=1),
        clock=clock,
        timeout_seconds=hooks.timeout_seconds,
        max_attempts=hooks.max_attempts,
        on_failure=metrics.webhook_failures.inc if metrics is not None else None,
    )
    log.info("change notifications to %s", result.target)
    return result.start()


@dataclass
class Outcome:
    """How a daemon ended: ``finished`` is False when a poll was abandoned (a thread may still
    wait on the network or the database: the caller should leave without joining it)."""

    finished: bool


@contextmanager
def stop_signals(clock: SystemClock) -> Iterator[None]:
    """SIGINT/SIGTERM stop the clock (ending every wait), until the daemon installs its own."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        clock.stop()

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_daemon(
    settings: Settings,
    engine: Engine,
    clock: SystemClock,
    lock: DaemonLock,
    reload: Callable[[], Sequence[WatchedAddress]],
) -> Outcome:
    """Run the daemon on ``engine`` (its lock taken, its schema current) until stopped."""
    shared = settings.workers.mode == "shared"
    daemon: Daemon | None = None
    metrics = server = None
    if settings.metrics.port is not None:
        metrics = Metrics(
            engine,
            lambda: daemon.addresses if daemon is not None else settings.watched,
            settings.stale_after_seconds,
            shared=shared,
            rule=value_rule(settings),
        )
        server = _serve_metrics(settings, metrics)
    budget = RateBudget(settings.spacescan.requests_per_minute, clock)
    polls = poller(
        settings,
        engine,
        clock,
        budget=budget,
        on_response=metrics.observe_request if metrics is not None else None,
    )
    leases = _leases(settings, engine, polls, clock, budget) if shared else None
    hooks = notifier(settings, clock, metrics)
    daemon = Daemon(
        polls,
        settings.watched,
        settings.interval_seconds if leases is None else leases.tick_seconds,
        clock,
        before_poll=lock.ensure,
        on_poll=_after_poll(metrics, hooks, leases),
        reload=reload,
        select=None if leases is None else leases.select,
        jobs=_retention_jobs(settings, engine, clock),
    )
    _announce(settings, polls.source)
    finished = daemon.run()
    if leases is not None and finished:
        leases.stop()
    if hooks is not None:
        hooks.stop(drain_seconds=2.0)
    if server is not None:
        server.stop()
    if not finished:
        # A request or a statement that does not answer is left; once the store is frozen no
        # write can start, so leaving without joining that thread loses nothing. The lock (and
        # the leases) go only after the freeze: never two writers.
        if not polls.store.freeze(FREEZE_SECONDS):
            log.warning("a database write did not finish; it is rolled back as the process ends")
        if leases is not None:
            leases.stop()
        lock.release()
    log.info("stopped")
    return Outcome(finished)


def _serve_metrics(settings: Settings, metrics: Metrics) -> MetricsServer:
    host, port = settings.metrics.host, settings.metrics.port
    assert port is not None
    try:
        server = MetricsServer(metrics, host, port).start()
    except OSError as exc:
        raise ConfigError(
            f"{settings.path}: metrics.port: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    return server


def _announce(settings: Settings, reader: BalanceSource) -> None:
    spacescan = settings.spacescan
    count = len(settings.addresses)
    log.info(
        "tracker %s: %d address%s every %d s from %s into %s (%g requests/min)",
        __version__,
        count,
        "" if count == 1 else "es",
        settings.interval_seconds,
        spacescan.base_url,
        settings.masked_database_url,
        spacescan.requests_per_minute,
    )
    minimum = reader.requests_per_read(count) * 60 / spacescan.requests_per_minute
    if minimum > settings.interval_seconds:
        log.warning(
            "a poll needs at least %.0f s at %g requests/min, more than the %d s interval: "
            "polls will run back to back (raise requests_per_minute or the interval)",
            minimum,
            spacescan.requests_per_minute,
            settings.interval_seconds,
        )


def _leases(
    settings: Settings, engine: Engine, polls: Poller, clock: SystemClock, budget: RateBudget
) -> Leases:
    """Shared mode: join the workers of this database (the budget is split unless `each`)."""
    leases = Leases(
        engine,
        polls.store,
        clock,
        interval_seconds=settings.interval_seconds,
        budget=budget if settings.workers.budget == "split" else None,
        requests_per_minute=settings.spacescan.requests_per_minute,
    )
    try:
        return leases.start()
    except SQLAlchemyError as exc:
        raise database_error(engine.url, exc) from None


def _retention_jobs(settings: Settings, engine: Engine, clock: SystemClock) -> list[Job]:
    """With ``[retention] keep``: prune once a day, first a day after start, between polls."""
    policy = settings.retention_policy
    if policy is None:
        return []

    def prune_once() -> None:
        # A stop between two of its transactions ends it early; what was done stays consistent.
        summary = prune(engine, policy, clock.now(), should_stop=lambda: clock.stopped)
        log.info("retention %s: %s", policy, summary.line())

    log.info("retention %s: pruning once a day", policy)
    return [Job("retention", RETENTION_EVERY_SECONDS, prune_once)]


def _after_poll(
    metrics: Metrics | None, hooks: WebhookNotifier | None, leases: Leases | None
) -> Callable[[PollSummary], None]:
    def after(summary: PollSummary) -> None:
        if leases is not None:  # first: the other workers wait for these leases
            leases.done(summary)
        if metrics is not None:
            metrics.observe_poll(summary)
        if hooks is not None:
            hooks.notify(summary)

    return after
