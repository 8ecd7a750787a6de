"""Values read back from a known priced history, on both databases: balances, the report with
flows and market, the value series, and the view agreeing with the library."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from tracker.reports.selection import Selection
from tracker.reports.value_report import value_report
from tracker.reports.value_series import value_series
from tracker.reports.values import TOTAL, valued_balances
from tracker.store.prices import PriceStore
from tracker.valuation import total

from support.priced import COLD, LONG, MAIN, SBX, SHORT, build, day


@pytest.fixture
def priced(engine: Engine) -> Engine:
    build(engine)
    return engine


def by(rows: list, *keys: str) -> dict:  # type: ignore[type-arg]
    return {tuple(getattr(r, k) for k in keys): r for r in rows}


def test_latest_balances_with_values(priced: Engine) -> None:
    rows = by(valued_balances(priced, LONG), "address", "asset_id")
    xch = rows[(MAIN, "xch")]
    assert (xch.price_xch, xch.value_xch, xch.price, xch.value) == (1, 7, 32, 224)
    assert str(xch.value) == "224.000000000000"
    assert xch.priced_at == day("2026-03-06T09:30")
    sbx = rows[(MAIN, SBX)]
    assert (sbx.price_xch, sbx.value_xch, sbx.price, sbx.value) == (
        Decimal("0.02"),
        Decimal("0.03000"),
        Decimal("0.64"),
        Decimal("0.96000"),
    )
    assert sbx.priced_at == day("2026-03-05T09:30")  # the older of its two prices
    assert rows[(COLD, "xch")].value == 2520


def test_balances_at_a_moment_and_unpriced(priced: Engine) -> None:
    rows = by(valued_balances(priced, SHORT, at=day("2026-01-20T12:00")), "address", "asset_id")
    assert rows[(MAIN, "xch")].value == 252
    sbx = rows[(MAIN, SBX)]  # its last price is 5 days old at the snapshot: too old
    assert (sbx.price_xch, sbx.value_xch, sbx.price, sbx.value, sbx.priced_at) == (None,) * 5
    assert sbx.balance == Decimal("1.000")


def test_portfolio_totals_say_what_is_unpriced(priced: Engine) -> None:
    rows = valued_balances(priced, SHORT, portfolio=True)
    xch, sbx, whole = rows
    assert (xch.address, xch.asset_id, xch.balance, xch.value, xch.unpriced) == (
        None,
        "xch",
        Decimal("97.000000000000"),
        Decimal("2744.000000000000"),
        0,
    )
    assert (sbx.asset_id, sbx.value, sbx.unpriced) == (SBX, None, 1)
    assert (whole.asset_id, whole.symbol, whole.value, whole.value_xch, whole.unpriced) == (
        None,
        TOTAL,
        Decimal("2744.000000000000"),
        Decimal("97.000000000000"),
        1,
    )
    longer = valued_balances(priced, LONG, portfolio=True)[-1]
    assert (longer.value, longer.unpriced) == (Decimal("2744.96000"), 0)


def test_report_splits_the_change_into_flows_and_market(priced: Engine) -> None:
    rows = by(value_report(priced, LONG), "address", "asset_id")
    main = rows[(MAIN, "xch")]
    assert (main.start_value, main.end_value, main.value_change, main.flows, main.market) == (
        200,
        224,
        24,
        -118,  # +2 XCH at 21, -5 XCH at 32
        142,  # 10 XCH from 20 to 21, then 12 XCH from 21 to 32
    )
    sbx = rows[(MAIN, SBX)]
    assert (sbx.start_value, sbx.end_value, sbx.flows, sbx.market) == (
        Decimal("0.2"),
        Decimal("0.96"),
        Decimal("0.3"),
        Decimal("0.46"),
    )
    cold = rows[(COLD, "xch")]
    assert (cold.value_change, cold.flows, cold.market) == (20, -280, 300)
    for row in rows.values():
        assert total([row.flows, row.market]) == row.value_change


def test_monthly_values_add_up_to_the_window(priced: Engine) -> None:
    months = value_report(priced, LONG, period="month", selection=Selection(address="main"))
    xch = [
        (r.period, r.start_value, r.end_value, r.flows, r.market)
        for r in months
        if r.asset_id == "xch"
    ]
    assert xch == [
        ("2026-01", 200, 252, 42, 10),
        ("2026-02", 252, 252, 0, 0),
        ("2026-03", 252, 224, -160, 132),
    ]
    whole = by(value_report(priced, LONG, selection=Selection(address="main")), "asset_id")
    for asset in ("xch", SBX):
        parts = [r for r in months if r.asset_id == asset]
        for field in ("value_change", "flows", "market"):
            assert total(getattr(r, field) for r in parts) == getattr(whole[(asset,)], field)


def test_report_totals_and_the_portfolio_row(priced: Engine) -> None:
    rows = value_report(priced, LONG, period="month", total=True)
    feb = {r.symbol: r for r in rows if r.period == "2026-02"}
    assert (feb["XCH"].start_value, feb["XCH"].end_value, feb["XCH"].unpriced) == (2752, 2752, 0)
    march = {r.symbol: r for r in rows if r.period == "2026-03"}
    assert march[TOTAL].asset_id is None
    assert march[TOTAL].start_balance is None
    for field in ("start_value", "end_value", "value_change", "flows", "market"):
        assert getattr(march[TOTAL], field) == getattr(march["XCH"], field) + getattr(
            march["SBX"], field
        )
    assert march[TOTAL].value_change == march[TOTAL].flows + march[TOTAL].market


def test_an_unpriced_row_is_left_out_of_totals_and_counted(priced: Engine) -> None:
    rows = value_report(priced, SHORT, total=True)
    sbx = next(r for r in rows if r.asset_id == SBX)
    # SBX at MAIN's last snapshot has a 24.5 h old price: unpriced, so no SBX sum.
    assert (sbx.start_value, sbx.end_value, sbx.flows, sbx.unpriced) == (None, None, None, 1)
    whole = rows[-1]
    assert (whole.symbol, whole.unpriced) == (TOTAL, 1)
    xch = next(r for r in rows if r.asset_id == "xch")
    assert whole.value_change == xch.value_change


def test_value_series(priced: Engine) -> None:
    series = value_series(priced, LONG)
    assert series.who == "all addresses (2)"
    assert series.times[0] == day("2026-01-15T10:00")
    assert series.times[-1] == day("2026-03-10T10:00")
    xch, sbx = series.assets
    at = dict(zip(series.times, xch.values, strict=True))
    assert at[day("2026-01-15T10:00")] == 200
    assert at[day("2026-02-10T10:00")] == 12 * 25 + 100 * 25
    assert at[day("2026-03-10T10:00")] == (7 + 90) * 28
    assert dict(zip(series.times, sbx.values, strict=True))[day("2026-03-10T10:00")] == Decimal(
        "0.84"
    )
    short = value_series(priced, SHORT, Selection(label="main"), since=day("2026-02-01"))
    assert short.who == "label main (1 address)"
    values = dict(zip(short.times, short.assets[0].values, strict=True))
    assert values[day("2026-02-01")] is None  # the last XCH price was 12 days old
    assert values[day("2026-03-06T10:00")] == 224


def test_the_view_agrees_with_the_library(priced: Engine) -> None:
    """balance_values, with the same settings, gives every value the library gives."""
    PriceStore(priced).configure("USD", 7200)
    with priced.connect() as connection:
        rows = connection.execute(
            text("SELECT address, asset_id, taken_at, value_xch, value FROM balance_values")
        ).all()
    assert len(rows) == 10
    for address, asset, taken, value_xch, value in rows:
        moment = datetime.fromisoformat(str(taken)).replace(tzinfo=UTC)
        (mine,) = [
            r
            for r in valued_balances(priced, SHORT, Selection(address=address), at=moment)
            if r.asset_id == asset
        ]
        shown = [None if v is None else format(v, "f") for v in (mine.value_xch, mine.value)]
        assert [
            None if v is None else (format(v, "f") if isinstance(v, Decimal) else v)
            for v in (value_xch, value)
        ] == shown


def test_metrics_export_values_read_at_scrape_time(priced: Engine) -> None:
    from tracker.domain import WatchedAddress
    from tracker.service.metrics import Metrics

    watched = [WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")]
    metrics = Metrics(priced, lambda: watched, 600, rule=SHORT)
    sample = metrics.registry.get_sample_value
    labels = {"address": MAIN, "label": "main", "asset_id": "xch", "symbol": "XCH"}
    assert sample("tracker_value", {**labels, "currency": "USD"}) == 224.0
    unpriced = {**labels, "asset_id": SBX, "symbol": "SBX", "currency": "USD"}
    assert sample("tracker_value", unpriced) is None  # absent, not 0
    assert sample("tracker_balance", {**labels, "asset_id": SBX, "symbol": "SBX"}) == 1.5
    assert sample("tracker_portfolio_value", {"currency": "USD"}) == 2744.0
    off = Metrics(priced, lambda: watched, 600)
    assert off.registry.get_sample_value("tracker_portfolio_value", {"currency": "USD"}) is None
