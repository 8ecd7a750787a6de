"""The prices table and the ``balance_values`` view, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from tracker.domain import MAX_MOJOS, Asset, Observation, WatchedAddress
from tracker.store.prices import PriceRecord, PriceStore, settings_of
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN = make_address(41)
SBX = make_asset(0x5B)
T0 = datetime(2026, 2, 1, 9, 30, 15, 999_999, tzinfo=UTC)
INFOS = {"xch": Asset("xch", "Chia", "XCH"), SBX: Asset(SBX, "Spacebucks", "SBX")}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def snapshot(engine: Engine, when: datetime, balances: dict[str, int]) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main")], T0)
    store.record_one(Observation(MAIN, when, when, balances, INFOS))


def price(asset: str, quote: str, value: str, when: datetime) -> PriceRecord:
    return PriceRecord(asset, quote, Decimal(value), when, "test")


def text_of(value: object) -> str | None:
    """A view's exact number as text: NUMERIC (a Decimal) on PostgreSQL, text on SQLite."""
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def view(engine: Engine) -> dict[tuple[str, str], dict[str, str | None]]:
    """balance_values by (asset symbol, snapshot time ISO), numbers as text."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT symbol, taken_at, balance, currency, price_xch, value_xch, price, value,"
                " priced_at FROM balance_values"
            )
        ).mappings()
        result = {}
        for row in rows:
            taken = row["taken_at"]
            key = (row["symbol"], str(taken)[:19].replace("T", " "))
            fields = ("balance", "currency", "price_xch", "value_xch", "price", "value")
            result[key] = {name: text_of(row[name]) for name in fields}
            result[key]["priced_at"] = (
                None if row["priced_at"] is None else str(row["priced_at"])[:26]
            )
        return result


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def test_a_price_is_recorded_once_and_creates_its_asset(engine: Engine) -> None:
    store = PriceStore(engine)
    record = price("xch", "USD", "31.20", at(0))
    assert store.record([record, price(SBX, "xch", "0.0011", at(0))]) == 2
    assert store.record([record]) == 0
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM prices")).scalar() == 2
        assets = connection.execute(text("SELECT asset_id, decimals FROM assets ORDER BY 1")).all()
        stored = connection.execute(text("SELECT price FROM prices ORDER BY id")).scalars().all()
    assert sorted(assets) == sorted([("xch", 12), (SBX, 3)])
    assert [text_of(value) for value in stored] == ["31.2", "0.0011"]
    assert store.latest([("xch", "USD"), (SBX, "xch"), (SBX, "USD")]) == {
        ("xch", "USD"): at(0),
        (SBX, "xch"): at(0),
    }


def test_the_view_uses_the_last_writers_settings(engine: Engine) -> None:
    store = PriceStore(engine)
    with engine.connect() as connection:
        assert settings_of(connection) == ("USD", 7200)
    store.configure("EUR", 600)
    store.configure(None, 60)
    with engine.connect() as connection:
        assert settings_of(connection) == (None, 60)


def test_values_are_exact_products(engine: Engine) -> None:
    snapshot(engine, at(0), {"xch": 1_500_000_000_000, SBX: 9_007_199_254_740_993})
    PriceStore(engine).record(
        [price("xch", "USD", "31.2", at(-30)), price(SBX, "xch", "0.0011", at(-90))]
    )
    rows = view(engine)
    assert rows[("XCH", stamp(at(0)))] == {
        "balance": "1.500000000000",
        "currency": "USD",
        "price_xch": "1",
        "value_xch": "1.500000000000",
        "price": "31.2",
        "value": "46.8000000000000",
        "priced_at": str(at(-30).replace(tzinfo=None))[:26],
    }
    sbx = rows[("SBX", stamp(at(0)))]
    assert sbx == {
        "balance": "9007199254740.993",
        "currency": "USD",
        "price_xch": "0.0011",
        "value_xch": "9907919180.2150923",
        "price": "0.03432",
        "value": "309127078422.71087976",
        "priced_at": str(at(-90).replace(tzinfo=None))[:26],
    }


def test_beyond_64_bits_sqlite_still_multiplies_exactly(engine: Engine) -> None:
    snapshot(engine, at(0), {"xch": MAX_MOJOS, SBX: MAX_MOJOS})
    PriceStore(engine).record(
        [
            price("xch", "USD", "123456789012345678", at(0)),
            price(SBX, "xch", "0.987654321098765432", at(0)),
        ]
    )
    rows = view(engine)
    assert rows[("XCH", stamp(at(0)))]["value"] == "1138687895536349061688316.917875412146"
    sbx = rows[("SBX", stamp(at(0)))]
    digits = str(MAX_MOJOS * 987654321098765432 * 123456789012345678)
    assert sbx["value"] == f"{digits[:-21]}.{digits[-21:]}"
    assert sbx["value_xch"] == "9109503247301140.898986493900841503624"


def test_unpriced_is_null_never_zero_and_prices_expire(engine: Engine) -> None:
    snapshot(engine, at(0), {"xch": 10**12, SBX: 1000})
    snapshot(engine, at(120), {"xch": 10**12, SBX: 1000})
    snapshot(engine, at(240), {"xch": 10**12, SBX: 1000})
    # XCH priced 120 min (the default max age) before the second snapshot, to the microsecond.
    PriceStore(engine).record([price("xch", "USD", "30", at(0))])
    rows = view(engine)
    assert rows[("XCH", stamp(at(0)))]["value"] == "30.000000000000"
    assert rows[("XCH", stamp(at(120)))]["value"] == "30.000000000000"
    assert rows[("XCH", stamp(at(240)))]["value"] is None
    assert rows[("XCH", stamp(at(240)))]["value_xch"] == "1.000000000000"
    sbx = rows[("SBX", stamp(at(0)))]
    assert (sbx["price_xch"], sbx["value_xch"], sbx["price"], sbx["value"]) == (None,) * 4
    # One microsecond older than the limit is too old.
    PriceStore(engine).configure("USD", 7200 - 1)
    assert view(engine)[("XCH", stamp(at(120)))]["value"] is None


def test_without_a_currency_values_stay_in_xch(engine: Engine) -> None:
    snapshot(engine, at(0), {"xch": 10**12, SBX: 2000})
    store = PriceStore(engine)
    store.record([price("xch", "USD", "30", at(0)), price(SBX, "xch", "0.5", at(0))])
    store.configure(None, 7200)
    rows = view(engine)
    assert rows[("SBX", stamp(at(0)))] | {"priced_at": None} == {
        "balance": "2.000",
        "currency": None,
        "price_xch": "0.5",
        "value_xch": "1.0000",
        "price": None,
        "value": None,
        "priced_at": None,
    }
    assert rows[("XCH", stamp(at(0)))]["value"] is None


@pytest.mark.parametrize("currency", ["EUR"])
def test_only_the_configured_currency_counts(engine: Engine, currency: str) -> None:
    snapshot(engine, at(0), {"xch": 10**12})
    store = PriceStore(engine)
    store.record([price("xch", "USD", "30", at(0)), price("xch", "EUR", "27.5", at(-1))])
    store.configure(currency, 7200)
    assert view(engine)[("XCH", stamp(at(0)))]["price"] == "27.5"


def test_times_in_microseconds_are_exact_in_sql(engine: Engine) -> None:
    """What reports bisect prices with: the database's microseconds equal Python's."""
    from sqlalchemy import select

    from tracker.store.models import Price
    from tracker.store.prices import epoch_micros, micros_of
    from tracker.valuation import micros

    moments = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 1, 9, 30, 15, 999_999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
        datetime(2099, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    PriceStore(engine).record([price("xch", "USD", "1", when) for when in moments])
    column, read = micros_of(engine.dialect.name, Price.observed_at)
    order = Price.observed_at
    with engine.connect() as connection:
        computed = connection.execute(
            select(epoch_micros(engine.dialect.name, Price.observed_at)).order_by(order)
        )
        assert list(computed.scalars()) == [micros(when) for when in moments]
        read_here = connection.execute(select(column).order_by(order)).scalars()
        assert [read(value) for value in read_here] == [micros(when) for when in moments]
