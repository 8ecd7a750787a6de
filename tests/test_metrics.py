"""The Prometheus endpoint and /healthz, scraped over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from conftest import make_address, make_asset
from prometheus_client.parser import text_string_to_metric_families

from tracker.metrics import Metrics, MetricsServer
from tracker.poller import AddressResult, PollSummary
from tracker.snapshots import AssetInfo, Observation

ADDRESS = make_address(5)
CAT = make_asset(0xCA7)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class Now:
    def __init__(self) -> None:
        self.value = 1_000_000.0

    def __call__(self) -> float:
        return self.value


def ok(balances: dict[str, int]) -> AddressResult:
    assets = {
        "xch": AssetInfo("xch", None, "Chia", "XCH", 12),
        CAT: AssetInfo(CAT, None, "Cat", "CAT", 3),
    }
    observation = Observation(ADDRESS, NOW, NOW, balances, assets)
    return AddressResult(ADDRESS, "cold", True, observation=observation, deltas=())


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def served(now: Now) -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics(stale_after_seconds=600, now=now)
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        yield metrics, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample the endpoint serves, parsed with prometheus-client's own text parser."""
    answer = requests.get(f"{url}/metrics", timeout=5)
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


WHO = {"address": ADDRESS, "label": "cold"}


def test_balances_and_poll_health_are_exported(served: tuple[Metrics, str], now: Now) -> None:
    metrics, url = served
    metrics.observe_request("token-balance", "200")
    metrics.observe_request("token-balance", "429")
    metrics.observe_poll(PollSummary((ok({"xch": 1_500_000_000_000, CAT: 2500}),), 3.2))
    samples = scrape(url)
    assert value(samples, "tracker_balance", **WHO, asset_id="xch", symbol="XCH") == 1.5
    assert value(samples, "tracker_balance", **WHO, asset_id=CAT, symbol="CAT") == 2.5
    assert value(samples, "tracker_last_success_timestamp_seconds", **WHO) == now.value
    assert value(samples, "tracker_consecutive_failures", **WHO) == 0
    assert value(samples, "tracker_poll_duration_seconds_count") == 1
    requests_429 = {"endpoint": "token-balance", "status": "429"}
    assert value(samples, "tracker_api_requests_total", **requests_429) == 1

    failed = AddressResult(ADDRESS, "cold", False, error="HTTP 503")
    metrics.observe_poll(PollSummary((failed,), 1.0))
    metrics.observe_poll(PollSummary((failed,), 1.0))
    assert value(scrape(url), "tracker_consecutive_failures", **WHO) == 2

    metrics.observe_poll(PollSummary((ok({"xch": 1}),), 1.0))
    samples = scrape(url)
    assert value(samples, "tracker_balance", **WHO, asset_id=CAT, symbol="CAT") == 0
    assert value(samples, "tracker_consecutive_failures", **WHO) == 0


def test_healthz_fails_when_nothing_succeeded_for_too_long(
    served: tuple[Metrics, str], now: Now
) -> None:
    metrics, url = served
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    now.value += 601
    answer = requests.get(f"{url}/healthz", timeout=5)
    assert answer.status_code == 503
    assert "no successful poll for 601 s" in answer.text
    metrics.observe_poll(PollSummary((ok({"xch": 1}),), 1.0))
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    now.value += 599
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    now.value += 2
    assert "last successful poll for 601 s" in requests.get(f"{url}/healthz", timeout=5).text


def test_two_daemons_in_one_process_do_not_share_series(now: Now) -> None:
    first, second = Metrics(60, now), Metrics(60, now)
    first.observe_request("xch-balance", "200")
    assert (
        second.registry.get_sample_value(
            "tracker_api_requests_total", {"endpoint": "xch-balance", "status": "200"}
        )
        is None
    )
