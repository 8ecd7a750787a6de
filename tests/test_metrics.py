"""The Prometheus endpoint and /healthz, scraped over real HTTP, read from the database."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tracker.domain import WatchedAddress
from tracker.service.metrics import Metrics, MetricsServer
from tracker.service.poller import AddressResult, PollSummary
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset
from support.history import observe

ADDRESS, OTHER = make_address(5), make_address(6)
CAT = make_asset(0xCA7)
T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
WATCHED = (WatchedAddress(ADDRESS, "cold"), WatchedAddress(OTHER, None))
NAMES = {CAT: ("Cat", "CAT")}


class Monotonic:
    def __init__(self) -> None:
        self.value = 1_000_000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def store(engine: Engine) -> SnapshotStore:
    store = SnapshotStore(engine)
    store.sync_addresses(WATCHED, T0)
    return store


@pytest.fixture
def served(engine: Engine, monotonic: Monotonic) -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics(engine, lambda: WATCHED, stale_after_seconds=600, monotonic=monotonic)
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        yield metrics, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample the endpoint serves, parsed with prometheus-client's own text parser."""
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


WHO = {"address": ADDRESS, "label": "cold"}


def test_balances_and_poll_health_come_from_the_database(
    served: tuple[Metrics, str], store: SnapshotStore
) -> None:
    """What any worker or a daemon restarted a second ago exports: the stored state."""
    _, url = served
    assert value(scrape(url), "tracker_balance", **WHO, asset_id="xch", symbol="XCH") is None
    store.record_one(observe(ADDRESS, T0, {"xch": 1_500_000_000_000, CAT: 2500}, NAMES))
    samples = scrape(url)
    assert value(samples, "tracker_balance", **WHO, asset_id="xch", symbol="XCH") == 1.5
    assert value(samples, "tracker_balance", **WHO, asset_id=CAT, symbol="CAT") == 2.5
    assert value(samples, "tracker_last_success_timestamp_seconds", **WHO) == T0.timestamp()
    assert value(samples, "tracker_consecutive_failures", **WHO) == 0

    later = T0 + timedelta(minutes=5)
    store.record_failure(ADDRESS, later, later, "HTTP 503")
    store.record_failure(ADDRESS, later + timedelta(minutes=5), later, "HTTP 503")
    assert value(scrape(url), "tracker_consecutive_failures", **WHO) == 2

    store.record_one(observe(ADDRESS, T0 + timedelta(hours=1), {"xch": 1}))
    samples = scrape(url)
    assert value(samples, "tracker_balance", **WHO, asset_id=CAT, symbol="CAT") == 0  # it left
    assert value(samples, "tracker_balance", **WHO, asset_id="xch", symbol="XCH") == 1e-12
    assert value(samples, "tracker_consecutive_failures", **WHO) == 0


def test_process_counters_are_exported(served: tuple[Metrics, str]) -> None:
    metrics, url = served
    metrics.observe_request("token-balance", "200")
    metrics.observe_request("token-balance", "429")
    metrics.observe_poll(PollSummary((), 3.2))
    samples = scrape(url)
    assert value(samples, "tracker_poll_duration_seconds_count") == 1
    requests_429 = {"endpoint": "token-balance", "status": "429"}
    assert value(samples, "tracker_api_requests_total", **requests_429) == 1


def test_healthz_names_the_stale_address(served: tuple[Metrics, str], monotonic: Monotonic) -> None:
    metrics, url = served
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    monotonic.value += 601
    answer = requests.get(f"{url}/healthz", timeout=10)
    assert answer.status_code == 503
    assert "2 of 2 addresses stale" in answer.text
    metrics.observe_poll(PollSummary((AddressResult(ADDRESS, "cold", True),), 1.0))
    answer = requests.get(f"{url}/healthz", timeout=10)
    assert answer.status_code == 503, "the other address is still stale"
    assert "1 of 2 addresses stale" in answer.text
    assert f"{OTHER}, no successful poll 601 s ago" in answer.text
    metrics.observe_poll(PollSummary((AddressResult(OTHER, None, True),), 1.0))
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    monotonic.value += 599
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    monotonic.value += 2
    assert "last successful poll 601 s ago" in requests.get(f"{url}/healthz", timeout=10).text


def test_an_idle_client_does_not_blind_the_others(served: tuple[Metrics, str]) -> None:
    _, url = served
    port = int(url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        assert "tracker_poll_duration_seconds" in requests.get(f"{url}/metrics", timeout=10).text
        half.close()
    finally:
        for sock in idle:
            sock.close()


def test_two_daemons_in_one_process_do_not_share_series(engine: Engine) -> None:
    first = Metrics(engine, lambda: WATCHED, 60)
    second = Metrics(engine, lambda: WATCHED, 60)
    first.observe_request("xch-balance", "200")
    assert (
        second.registry.get_sample_value(
            "tracker_api_requests_total", {"endpoint": "xch-balance", "status": "200"}
        )
        is None
    )
