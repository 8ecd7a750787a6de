"""One poll cycle: fetched concurrently, stored one by one, every outcome recorded."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from tracker.domain import Observation, WatchedAddress
from tracker.errors import SourceError
from tracker.retry import RetryPolicy
from tracker.service.poller import Poller
from tracker.sources import http
from tracker.sources.budget import Concurrency, RateBudget
from tracker.sources.spacescan import SpacescanSource
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.models import PollAttempt, Snapshot, SnapshotBalance
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset
from support.clock import FakeClock
from support.history import observe

BASE = "https://api.example.test"
GOOD, BAD = make_address(1), make_address(2)
CAT = make_asset(0xC)


def make_poller(engine: Engine, clock: FakeClock) -> Poller:
    client = SpacescanSource(
        BASE,
        session=http.session(),
        budget=RateBudget(6000, clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=2),
    )
    return Poller(client, SnapshotStore(engine, clock), clock, concurrency=2)


def serve_good(mock: responses.RequestsMock, address: str) -> None:
    body = {"status": "success", "data": [{"asset_id": CAT, "balance": "1.5", "symbol": "C"}]}
    mock.get(f"{BASE}/address/token-balance/{address}", json=body)
    mock.get(f"{BASE}/address/xch-balance/{address}", json={"status": "success", "mojo": 7})


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(Snapshot)).scalar_one(),
            connection.execute(select(func.count()).select_from(SnapshotBalance)).scalar_one(),
            connection.execute(
                select(func.count()).select_from(PollAttempt).where(~PollAttempt.ok)
            ).scalar_one(),
        )


def test_one_bad_address_does_not_stop_the_others(engine: Engine, clock: FakeClock) -> None:
    poller = make_poller(engine, clock)
    with responses.RequestsMock() as mock:
        serve_good(mock, GOOD)
        mock.get(f"{BASE}/address/token-balance/{BAD}", body="<html>oops</html>")
        summary = poller.poll([WatchedAddress(GOOD, "good"), WatchedAddress(BAD, "bad")])
    assert (summary.ok, summary.failed, summary.changes) == (1, 1, 0)
    failed = next(r for r in summary.results if not r.ok)
    assert failed.address == BAD
    assert failed.error is not None
    assert "HTML" in failed.error
    assert counts(engine) == (1, 2, 1)
    assert "1 of 2 addresses ok, 1 failed" in summary.line()


def test_a_stop_mid_poll_is_recorded_as_a_failed_attempt(engine: Engine, clock: FakeClock) -> None:
    poller = make_poller(engine, clock)
    clock.stop()
    summary = poller.poll([WatchedAddress(GOOD, None)])
    assert summary.failed == 1
    assert summary.results[0].error == "cancelled: stopping"
    assert counts(engine) == (0, 0, 1)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["status", "data", "balance", "asset_id", "mojo", "xch", "message", "x"]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
garbage = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda rows: json.dumps({"status": "success", "data": rows}).encode(),
        st.lists(
            st.fixed_dictionaries(
                {"asset_id": st.just(CAT) | st.text(max_size=70)},
                optional={"balance": json_values},
            ),
            min_size=1,
            max_size=3,
        ),
    ),
)


def test_garbage_answers_never_become_snapshots(tmp_path: Path) -> None:
    engine = engines.create(f"sqlite:///{tmp_path / 'garbage.db'}")
    migrate.upgrade(engine)
    clock = FakeClock()
    poller = make_poller(engine, clock)
    polls = 0

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body=garbage, status=st.sampled_from([200, 200, 200, 400, 404, 500]))
    def check(body: bytes, status: int) -> None:
        nonlocal polls
        clock.advance(1)
        before = counts(engine)[0]
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.get(f"{BASE}/address/token-balance/{BAD}", body=body, status=status)
            mock.get(f"{BASE}/address/xch-balance/{BAD}", body=body, status=status)
            summary = poller.poll([WatchedAddress(BAD, None)])
        polls += 1
        result = summary.results[0]
        snapshots = counts(engine)[0]
        if result.ok:
            # A few generated bodies are valid answers; they must be exactly what was sent.
            assert status == 200
            assert snapshots == before + 1
        else:
            assert snapshots == before, "a bad answer was stored"
            assert result.error
            assert "\n" not in result.error
        assert counts(engine)[2] + snapshots == polls

    try:
        check()
    finally:
        engine.dispose()


class _Counting:
    """A source whose reads take a moment and count how many run at once."""

    name = "counting"
    batch_size = 1

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def requests_per_read(self, addresses: int) -> float:
        return addresses

    def read(self, addresses: Sequence[WatchedAddress]) -> list[Observation | SourceError]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.05)
        with self.lock:
            self.now -= 1
        return [observe(entry.address, datetime.now(UTC), {"xch": 1}) for entry in addresses]


def test_concurrency_follows_the_budget() -> None:
    clock = FakeClock()
    free = Concurrency(RateBudget(3, clock), cap=64)
    for _ in range(50):
        free.observe(16.0)  # a large wallet on the free host: one request per 20 s keeps up
    assert free.limit == 1
    pro = Concurrency(RateBudget(600, clock), cap=64)
    for _ in range(50):
        pro.observe(1.0)
    assert pro.limit == 15  # 10 requests/s x 1 s, with headroom
    fast = Concurrency(RateBudget(100_000, clock), cap=64)
    assert fast.limit == 64  # never above the cap


@pytest.mark.parametrize(("per_minute", "most"), [(3, 1), (100_000, 5)])
def test_a_poll_keeps_no_more_reads_in_flight_than_the_pace_needs(
    engine: Engine, per_minute: int, most: int
) -> None:
    clock = FakeClock()
    source = _Counting()
    concurrency = Concurrency(RateBudget(per_minute, clock), cap=5)
    poller = Poller(source, SnapshotStore(engine, clock), clock, concurrency=concurrency)
    summary = poller.poll([WatchedAddress(make_address(100 + n), None) for n in range(12)])
    assert summary.ok == 12
    assert source.most <= most
    if most > 1:
        assert source.most > 1, "reads were not overlapped"
