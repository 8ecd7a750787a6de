"""Reports from a known history, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from tracker.domain import Asset, Observation, WatchedAddress, units
from tracker.errors import NotFound, UsageError
from tracker.reports.balances import balances
from tracker.reports.balances import history as address_history
from tracker.reports.changes import change_report
from tracker.reports.periods import PERIODS
from tracker.reports.selection import Selection
from tracker.reports.status import status
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN, COLD = make_address(1), make_address(2)
SBX = make_asset(0x5B)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def known(engine: Engine) -> Engine:
    """MAIN: XCH 1 → 3 → 3 → 2.5 and SBX appears at h1 and leaves at h3; COLD: XCH 7 from h2."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")], T0)
    infos = {
        "xch": Asset("xch", "Chia", "XCH"),
        SBX: Asset(SBX, "Spacebucks", "SBX"),
    }

    def snap(address: str, hours: float, balances: dict[str, int]) -> None:
        store.record_one(Observation(address, at(hours), at(hours), balances, infos))

    snap(MAIN, 0, {"xch": 10**12})
    snap(MAIN, 1, {"xch": 3 * 10**12, SBX: 1500})
    snap(MAIN, 2, {"xch": 3 * 10**12, SBX: 1500})
    snap(COLD, 2, {"xch": 7 * 10**12})
    snap(MAIN, 3, {"xch": 25 * 10**11})
    return engine


def test_latest_balances(known: Engine) -> None:
    rows = balances(known)
    assert [(r.address, r.label, r.asset_id, r.balance, r.taken_at) for r in rows] == sorted(
        [
            (MAIN, "main", "xch", Decimal("2.500000000000"), at(3)),
            (COLD, "cold", "xch", Decimal("7.000000000000"), at(2)),
        ]
    )
    assert balances(known, Selection(address="cold"))[0].balance_mojos == 7 * 10**12


def test_report_over_all_history(known: Engine) -> None:
    rows = {(r.address, r.asset_id): r for r in change_report(known)}
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


def test_report_window(known: Engine) -> None:
    rows = change_report(known, since=at(1.5), until=at(2.5), selection=Selection(address="main"))
    assert {r.asset_id: (r.start_balance_mojos, r.end_balance_mojos, r.changes) for r in rows} == {
        "xch": (3 * 10**12, 3 * 10**12, 0),
        SBX: (1500, 1500, 0),
    }
    later = change_report(known, since=at(2.5), selection=Selection(address=MAIN))
    assert {r.asset_id: (r.change_mojos, r.changes) for r in later} == {
        "xch": (-5 * 10**11, 1),
        SBX: (-1500, 1),
    }
    # A window that starts before the history uses the first snapshot as its start.
    early = change_report(known, since=at(-10), until=at(1), selection=Selection(address=MAIN))
    assert {r.asset_id: (r.change_mojos, r.changes) for r in early} == {
        "xch": (2 * 10**12, 1),
        SBX: (1500, 1),
    }
    assert change_report(known, until=at(-1)) == []


def test_change_equals_the_sum_of_deltas(known: Engine) -> None:
    with known.connect() as connection:
        rows = connection.execute(
            text("SELECT address, asset_id, delta_mojos FROM balance_changes")
        ).all()
    sums: dict[tuple[str, str], int] = {}
    for address, asset, delta in rows:
        sums[(address, asset)] = sums.get((address, asset), 0) + delta
    report = change_report(known)
    assert {(r.address, r.asset_id): r.change_mojos for r in report if r.changes} == sums
    assert sum(r.changes for r in report) == len(rows)


def test_history_keeps_assets_visible_at_zero(known: Engine) -> None:
    rows = address_history(known, MAIN)
    assert [(r.taken_at, r.asset_id, r.balance_mojos) for r in rows] == [
        (at(0), "xch", 10**12),
        (at(1), "xch", 3 * 10**12),
        (at(1), SBX, 1500),
        (at(2), "xch", 3 * 10**12),
        (at(2), SBX, 1500),
        (at(3), "xch", 25 * 10**11),
        (at(3), SBX, 0),
    ]
    only = address_history(known, "main", "sbx")
    assert [(r.taken_at, r.balance) for r in only] == [
        (at(1), Decimal("1.500")),
        (at(2), Decimal("1.500")),
        (at(3), Decimal("0.000")),
    ]


def test_unknown_address_or_asset_is_a_clear_error(known: Engine) -> None:
    with pytest.raises(NotFound, match="unknown address"):
        address_history(known, make_address(99))
    with pytest.raises(NotFound, match="unknown asset"):
        address_history(known, MAIN, "nope")
    with pytest.raises(UsageError, match="before"):
        change_report(known, since=at(2), until=at(1))


FUND_A, FUND_B = make_address(21), make_address(22)
XCH = 10**12


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def months(engine: Engine) -> Engine:
    """Two addresses labelled "fund" over three months (see the test expectations below)."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(FUND_A, "fund"), WatchedAddress(FUND_B, "fund")], T0)
    infos = {
        "xch": Asset("xch", "Chia", "XCH"),
        SBX: Asset(SBX, "Spacebucks", "SBX"),
    }
    for address, when, held in [
        (FUND_A, "2026-01-15T10:00", {"xch": 10 * XCH}),
        (FUND_A, "2026-01-20T10:00", {"xch": 12 * XCH}),
        (FUND_B, "2026-02-10T10:00", {"xch": 100 * XCH}),
        (FUND_A, "2026-03-05T10:00", {"xch": 12 * XCH, SBX: 1000}),
        (FUND_A, "2026-03-06T10:00", {"xch": 7 * XCH, SBX: 1000}),
        (FUND_B, "2026-03-10T10:00", {"xch": 90 * XCH}),
    ]:
        store.record_one(Observation(address, day(when), day(when), held, infos))
    store.record_failure(
        FUND_B, day("2026-03-11"), day("2026-03-11"), "HTTP 503 (after 4 attempts)"
    )
    return engine


def test_monthly_report_shows_empty_periods_as_no_change(months: Engine) -> None:
    rows = change_report(months, period="month", selection=Selection(label="fund"))
    got = {
        (r.address, r.period, r.asset_id): (r.start_balance_mojos, r.end_balance_mojos, r.changes)
        for r in rows
    }
    assert got == {
        (FUND_A, "2026-01", "xch"): (10 * XCH, 12 * XCH, 1),
        (FUND_A, "2026-02", "xch"): (12 * XCH, 12 * XCH, 0),
        (FUND_A, "2026-03", "xch"): (12 * XCH, 7 * XCH, 1),
        (FUND_A, "2026-03", SBX): (0, 1000, 1),
        (FUND_B, "2026-02", "xch"): (100 * XCH, 100 * XCH, 0),
        (FUND_B, "2026-03", "xch"): (100 * XCH, 90 * XCH, 1),
    }
    march = next(r for r in rows if r.period == "2026-03" and r.asset_id == SBX)
    assert (march.start_at, march.end_at) == (day("2026-03-01"), day("2026-04-01"))
    assert march.change == Decimal("1.000")


def test_periods_sum_to_the_whole_window(months: Engine) -> None:
    for period in PERIODS:
        rows = change_report(months, period=period)
        whole = change_report(months)
        for row in whole:
            parts = [r for r in rows if (r.address, r.asset_id) == (row.address, row.asset_id)]
            assert sum(r.change_mojos for r in parts) == row.change_mojos, period
            assert sum(r.changes for r in parts) == row.changes, period


def test_weekly_and_daily_periods_are_utc_iso(months: Engine) -> None:
    weeks = change_report(
        months, since=day("2026-01-14"), until=day("2026-01-25T23:59"), period="week"
    )
    assert [(r.period, r.start_at.date().isoformat(), r.changes) for r in weeks] == [
        ("2026-W03", "2026-01-12", 0),
        ("2026-W04", "2026-01-19", 1),
    ]
    days = change_report(
        months,
        since=day("2026-03-05"),
        until=day("2026-03-07"),
        period="day",
        selection=Selection(address=FUND_A, asset="xch"),
    )
    assert [(r.period, r.change_mojos) for r in days] == [
        ("2026-03-05", 0),
        ("2026-03-06", -5 * XCH),
        ("2026-03-07", 0),
    ]


def test_total_is_the_portfolio_per_asset(months: Engine) -> None:
    total = change_report(months, since=day("2026-02-15"), total=True)
    assert [(r.address, r.asset_id, r.start_balance, r.end_balance, r.changes) for r in total] == [
        (None, "xch", Decimal("112.000000000000"), Decimal("97.000000000000"), 2),
        (None, SBX, Decimal("0.000"), Decimal("1.000"), 1),
    ]
    monthly = change_report(months, period="month", total=True)
    assert [(r.period, r.asset_id, r.end_balance_mojos) for r in monthly] == [
        ("2026-01", "xch", 12 * XCH),
        ("2026-02", "xch", 112 * XCH),
        ("2026-03", "xch", 97 * XCH),
        ("2026-03", SBX, 1000),
    ]


def test_balances_at_a_moment(months: Engine) -> None:
    rows = balances(months, at=day("2026-02-15"))
    assert [(r.address, r.asset_id, r.balance_mojos, r.taken_at) for r in rows] == sorted(
        [
            (FUND_A, "xch", 12 * XCH, day("2026-01-20T10:00")),
            (FUND_B, "xch", 100 * XCH, day("2026-02-10T10:00")),
        ]
    )
    assert balances(months, at=day("2026-01-01")) == []
    exact = balances(months, at=day("2026-03-05T10:00"), selection=Selection(asset="SBX"))
    assert [(r.address, r.balance) for r in exact] == [(FUND_A, Decimal("1.000"))]


def test_label_selects_every_address_with_it(months: Engine) -> None:
    assert {r.address for r in balances(months, Selection(label="fund"))} == {
        FUND_A,
        FUND_B,
    }
    with pytest.raises(NotFound, match="several addresses"):
        balances(months, Selection(address="fund"))
    with pytest.raises(NotFound, match="no address has the label"):
        balances(months, Selection(label="nobody"))


def test_status_shows_failures_since_the_last_success(months: Engine) -> None:
    rows = {r.address: r for r in status(months)}
    assert rows[FUND_A].consecutive_failures == 0
    assert rows[FUND_A].last_success == day("2026-03-06T10:00")
    assert rows[FUND_A].snapshots == 4
    assert rows[FUND_B].consecutive_failures == 1
    assert rows[FUND_B].last_error == "HTTP 503 (after 4 attempts)"
    assert rows[FUND_B].last_attempt == day("2026-03-11")


def test_units_stay_exact_beyond_the_default_decimal_precision() -> None:
    # A portfolio total of many large balances can pass 28 significant digits.
    assert str(units(10**40 + 1, 12)) == "10000000000000000000000000000.000000000001"
    assert str(units(-(10**30) - 1, 3)) == "-1000000000000000000000000000.001"
