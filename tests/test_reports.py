"""Reports from a known history, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import make_address, make_asset
from sqlalchemy import Engine, text

from tracker import reports
from tracker.config import WatchedAddress
from tracker.snapshots import AssetInfo, Observation, SnapshotStore

MAIN, COLD = make_address(1), make_address(2)
SBX = make_asset(0x5B)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def history(engine: Engine) -> Engine:
    """MAIN: XCH 1 → 3 → 3 → 2.5 and SBX appears at h1 and leaves at h3; COLD: XCH 7 from h2."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")], T0)
    infos = {
        "xch": AssetInfo("xch", None, "Chia", "XCH", 12),
        SBX: AssetInfo(SBX, "tkn1...", "Spacebucks", "SBX", 3),
    }

    def snap(address: str, hours: float, balances: dict[str, int]) -> None:
        store.record_success(Observation(address, at(hours), at(hours), balances, infos))

    snap(MAIN, 0, {"xch": 10**12})
    snap(MAIN, 1, {"xch": 3 * 10**12, SBX: 1500})
    snap(MAIN, 2, {"xch": 3 * 10**12, SBX: 1500})
    snap(COLD, 2, {"xch": 7 * 10**12})
    snap(MAIN, 3, {"xch": 25 * 10**11})
    return engine


def test_latest_balances(history: Engine) -> None:
    rows = reports.latest_balances(history)
    assert [(r.address, r.label, r.asset_id, r.balance, r.taken_at) for r in rows] == sorted(
        [
            (MAIN, "main", "xch", Decimal("2.500000000000"), at(3)),
            (COLD, "cold", "xch", Decimal("7.000000000000"), at(2)),
        ]
    )
    assert reports.latest_balances(history, "cold")[0].balance_mojos == 7 * 10**12


def test_report_over_all_history(history: Engine) -> None:
    rows = {(r.address, r.asset_id): r for r in reports.change_report(history)}
    xch = rows[(MAIN, "xch")]
    assert (xch.start_balance, xch.end_balance, xch.change, xch.changes) == (
        Decimal("1.000000000000"),
        Decimal("2.500000000000"),
        Decimal("1.500000000000"),
        2,
    )
    assert (xch.start_at, xch.end_at) == (at(0), at(3))
    sbx = rows[(MAIN, SBX)]
    assert (sbx.symbol, sbx.start_balance, sbx.end_balance, sbx.change, sbx.changes) == (
        "SBX",
        Decimal("0.000"),
        Decimal("0.000"),
        Decimal("0.000"),
        2,
    )
    cold = rows[(COLD, "xch")]
    assert (cold.change_mojos, cold.changes) == (0, 0)


def test_report_window(history: Engine) -> None:
    rows = reports.change_report(history, since=at(1.5), until=at(2.5), address="main")
    assert {r.asset_id: (r.start_balance_mojos, r.end_balance_mojos, r.changes) for r in rows} == {
        "xch": (3 * 10**12, 3 * 10**12, 0),
        SBX: (1500, 1500, 0),
    }
    later = reports.change_report(history, since=at(2.5), address=MAIN)
    assert {r.asset_id: (r.change_mojos, r.changes) for r in later} == {
        "xch": (-5 * 10**11, 1),
        SBX: (-1500, 1),
    }
    # A window that starts before the history uses the first snapshot as its start.
    early = reports.change_report(history, since=at(-10), until=at(1), address=MAIN)
    assert {r.asset_id: (r.change_mojos, r.changes) for r in early} == {
        "xch": (2 * 10**12, 1),
        SBX: (1500, 1),
    }
    assert reports.change_report(history, until=at(-1)) == []


def test_change_equals_the_sum_of_deltas(history: Engine) -> None:
    with history.connect() as connection:
        rows = connection.execute(
            text("SELECT address, asset_id, delta_mojos FROM balance_changes")
        ).all()
    sums: dict[tuple[str, str], int] = {}
    for address, asset, delta in rows:
        sums[(address, asset)] = sums.get((address, asset), 0) + delta
    report = reports.change_report(history)
    assert {(r.address, r.asset_id): r.change_mojos for r in report if r.changes} == sums
    assert sum(r.changes for r in report) == len(rows)


def test_history_keeps_assets_visible_at_zero(history: Engine) -> None:
    rows = reports.history(history, MAIN)
    assert [(r.taken_at, r.asset_id, r.balance_mojos) for r in rows] == [
        (at(0), "xch", 10**12),
        (at(1), "xch", 3 * 10**12),
        (at(1), SBX, 1500),
        (at(2), "xch", 3 * 10**12),
        (at(2), SBX, 1500),
        (at(3), "xch", 25 * 10**11),
        (at(3), SBX, 0),
    ]
    only = reports.history(history, "main", "sbx")
    assert [(r.taken_at, r.balance) for r in only] == [
        (at(1), Decimal("1.500")),
        (at(2), Decimal("1.500")),
        (at(3), Decimal("0.000")),
    ]


def test_unknown_address_or_asset_is_a_clear_error(history: Engine) -> None:
    with pytest.raises(reports.ReportError, match="unknown address"):
        reports.history(history, make_address(99))
    with pytest.raises(reports.ReportError, match="unknown asset"):
        reports.history(history, MAIN, "nope")
    with pytest.raises(reports.ReportError, match="before"):
        reports.change_report(history, since=at(2), until=at(1))
