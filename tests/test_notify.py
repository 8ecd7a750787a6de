"""Change notifications, received by a local HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tracker.domain import Asset, AssetDelta, Observation
from tracker.service.notify import WebhookNotifier
from tracker.service.poller import AddressResult, PollSummary
from tracker.sources import http

from support import make_address, make_asset
from support.clock import FakeClock
from support.process import wait_for
from support.webhooks import Receiver

ADDRESS = make_address(8)
CAT = make_asset(0xCA7)
T = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)


def summary() -> PollSummary:
    assets = {
        "xch": Asset("xch", "Chia", "XCH"),
        CAT: Asset(CAT, "Cat", "CAT"),
    }
    observation = Observation(ADDRESS, T, T, {"xch": 250_000_000_000}, assets)
    deltas = (AssetDelta("xch", 1_000_000_000_000, 250_000_000_000), AssetDelta(CAT, 1500, 0))
    result = AddressResult(
        ADDRESS, "hot", True, observation=observation, deltas=deltas, symbols={CAT: "CAT"}
    )
    failed = AddressResult(make_address(9), None, False, error="HTTP 503")
    return PollSummary((result, failed), 1.0)


def test_one_post_per_delta_with_exact_amounts(receiver: Receiver) -> None:
    with http.session() as session:
        notifier = WebhookNotifier(receiver.url, session=session, clock=FakeClock()).start()
        notifier.notify(summary())
        notifier.stop(drain_seconds=10)
    assert receiver.received == [
        {
            "address": ADDRESS,
            "label": "hot",
            "asset_id": "xch",
            "symbol": "XCH",
            "previous": "1.000000000000",
            "new": "0.250000000000",
            "delta": "-0.750000000000",
            "previous_mojos": "1000000000000",
            "new_mojos": "250000000000",
            "delta_mojos": "-750000000000",
            "taken_at": "2026-11-24T12:30:00Z",
        },
        {
            "address": ADDRESS,
            "label": "hot",
            "asset_id": CAT,
            "symbol": "CAT",
            "previous": "1.500",
            "new": "0.000",
            "delta": "-1.500",
            "previous_mojos": "1500",
            "new_mojos": "0",
            "delta_mojos": "-1500",
            "taken_at": "2026-11-24T12:30:00Z",
        },
    ]
    assert receiver.headers_seen[0]["Content-Type"] == "application/json"
    assert notifier.sent == 2
    assert notifier.target == f"http://127.0.0.1:{receiver.server_port}"


def test_the_log_names_only_the_webhook_origin() -> None:
    secret = "https://hookuser:HookPa55Secret@hooks.example:8443/path/T0KEN?token=abc123"
    notifier = WebhookNotifier(secret, session=http.session(), clock=FakeClock())
    assert notifier.target == "https://hooks.example:8443"


def test_failures_are_retried_then_counted(receiver: Receiver, caplog: Any) -> None:
    receiver.statuses = [503, 500, 503, 503, 503]
    clock = FakeClock()
    failures: list[int] = []
    with http.session() as session:
        notifier = WebhookNotifier(
            receiver.url,
            session=session,
            clock=clock,
            max_attempts=3,
            on_failure=lambda: failures.append(1),
        ).start()
        notifier.notify(summary())
        notifier.stop(drain_seconds=10)
    # First document: 503, 500, 503 -> given up; second: 503, 503, then 200.
    assert [d["asset_id"] for d in receiver.received] == [CAT]
    assert (notifier.sent, notifier.failed, len(failures)) == (1, 1, 1)
    assert clock.sleeps == [2.0, 4.0, 2.0, 4.0]
    assert "failed (HTTP 503); dropped" in caplog.text
    assert "s3cret-token" not in caplog.text


def test_a_slow_webhook_never_blocks_the_poll(receiver: Receiver) -> None:
    receiver.hold.clear()
    with http.session() as session:
        notifier = WebhookNotifier(receiver.url, session=session, clock=FakeClock()).start()
        notifier.notify(summary())
        assert receiver.received == []  # notify() returned while the first POST still waits
        receiver.hold.set()
        wait_for(lambda: len(receiver.received) == 2, "both notifications")
        notifier.stop(drain_seconds=5)
