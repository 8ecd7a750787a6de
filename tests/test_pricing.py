"""Prices beside the polls, against the fake API on both databases: what is fetched when, what is
recorded, and what the changes were worth."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tracker.clock import Cancelled
from tracker.config import parse
from tracker.domain import WatchedAddress
from tracker.service import assembly
from tracker.service.notify import payloads
from tracker.service.poller import Poller, PollSummary

from support import make_address, make_asset
from support.clock import FakeClock
from support.fakeapi import FakeSpacescan, Response

ALICE, BOB = make_address(31), make_address(32)
SBX, DBX = make_asset(0x5B), make_asset(0xDB)
START = datetime(2026, 5, 1, 12, tzinfo=UTC)
XCH = 10**12


@pytest.fixture
def api() -> Iterator[FakeSpacescan]:
    with FakeSpacescan(variance=True) as fake:
        fake.set_xch(ALICE, 2 * XCH)
        fake.set_xch(BOB, 5 * XCH)
        fake.set_token(ALICE, SBX, "1.5", name="Spacebucks", symbol="SBX")
        fake.set_token(BOB, SBX, 10, name="Spacebucks", symbol="SBX")
        fake.set_token(BOB, DBX, 3, name="Dexie", symbol="DBX")
        fake.set_xch_price("31.2")
        fake.set_token_price(SBX, "0.0011", "0.034")
        fake.set_token_price(DBX, "0.25")
        yield fake


def make_poller(engine: Engine, api: FakeSpacescan, clock: FakeClock, **prices: object) -> Poller:
    settings = parse(
        {
            "database": {"url": engine.url.render_as_string(hide_password=False)},
            "spacescan": {"base_url": api.url, "requests_per_minute": 6000.0, "max_attempts": 2},
            "prices": {"currency": "USD", "interval_seconds": 3600, **prices},
            "addresses": [{"address": ALICE, "label": "alice"}, {"address": BOB}],
        },
        Path("tracker.toml"),
        {},
    )
    return assembly.poller(settings, engine, clock)  # type: ignore[arg-type]


def poll(poller: Poller, clock: FakeClock, minutes: float = 5) -> PollSummary:
    clock.advance(minutes * 60)
    return poller.poll([WatchedAddress(ALICE, "alice"), WatchedAddress(BOB)])


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT a.asset_id, p.quote, p.price, p.observed_at, p.source FROM prices p"
                    " JOIN assets a ON a.id = p.asset_id ORDER BY p.observed_at, a.asset_id"
                )
            )
        ]


def first_taken(summary: PollSummary) -> datetime:
    return min(r.observation.taken_at for r in summary.results if r.observation is not None)


def test_a_poll_records_its_prices_at_its_first_snapshot(
    engine: Engine, api: FakeSpacescan
) -> None:
    clock = FakeClock(START)
    summary = poll(make_poller(engine, api, clock), clock)
    assert summary.ok == 2
    rows = [(a, q, Decimal(str(p)), s) for a, q, p, when, s in stored(engine)]
    assert sorted(rows) == [
        (SBX, "xch", Decimal("0.0011"), "spacescan-balance"),
        (DBX, "xch", Decimal("0.25"), "spacescan-balance"),
        ("xch", "USD", Decimal("31.2"), "spacescan"),
    ]
    assert {moment(when) for *_, when, _ in stored(engine)} == {first_taken(summary)}
    # The rows carried the CATs' prices: no /token/price request; one XCH price for both.
    assert api.count(path_contains="/token/price") == 0
    assert api.count(path_contains="/stats/price") == 1
    with engine.connect() as connection:
        assert connection.execute(
            text("SELECT currency, max_age_seconds FROM price_settings")
        ).one() == ("USD", 7200)


def test_without_row_prices_each_cat_is_asked_for_once(engine: Engine) -> None:
    with FakeSpacescan(row_prices=False) as fake:
        fake.set_token(ALICE, SBX, 1)
        fake.set_token(BOB, SBX, 2)
        fake.set_token(BOB, DBX, 3)
        fake.set_xch_price("30")
        fake.set_token_price(SBX, "0.5")
        fake.set_token_price(DBX, "0.125", "4")
        clock = FakeClock(START)
        poll(make_poller(engine, fake, clock), clock)
        assert fake.count(path_contains=f"/token/price/{SBX}") == 1
        assert fake.count(path_contains=f"/token/price/{DBX}") == 1
        assert {(a, Decimal(str(p)), s) for a, _, p, _, s in stored(engine)} == {
            (SBX, Decimal("0.5"), "spacescan"),
            (DBX, Decimal("0.125"), "spacescan"),
            ("xch", Decimal(30), "spacescan"),
        }


def test_prices_are_fetched_at_most_once_per_interval_even_across_restarts(
    engine: Engine, api: FakeSpacescan
) -> None:
    clock = FakeClock(START)
    poller = make_poller(engine, api, clock)
    poll(poller, clock)
    poll(poller, clock, minutes=30)
    assert api.count(path_contains="/stats/price") == 1
    restarted = make_poller(engine, api, clock)  # knows nothing, but the database does
    poll(restarted, clock, minutes=20)
    assert api.count(path_contains="/stats/price") == 1
    assert len(stored(engine)) == 3
    poll(restarted, clock, minutes=15)  # 65 minutes after the first
    assert api.count(path_contains="/stats/price") == 2
    assert len(stored(engine)) == 6


def test_a_failed_price_request_never_fails_the_poll(
    engine: Engine, api: FakeSpacescan, caplog: pytest.LogCaptureFixture
) -> None:
    api.push("/stats/price", Response(503), Response(503))
    clock = FakeClock(START)
    poller = make_poller(engine, api, clock)
    with caplog.at_level(logging.WARNING):
        summary = poll(poller, clock)
    assert (summary.ok, summary.failed) == (2, 0)
    assert "prices: the XCH price not fetched: stats-price: HTTP 503" in caplog.text
    assert {a for a, *_ in stored(engine)} == {SBX, DBX}
    # Tried within the interval: not again at the next poll (the budget is for balances).
    poll(poller, clock)
    assert api.count(path_contains="/stats/price") == 2  # the two attempts of the first try


def test_valuation_off_sends_no_price_request(engine: Engine, api: FakeSpacescan) -> None:
    clock = FakeClock(START)
    poll(make_poller(engine, api, clock, currency="none"), clock)
    assert api.count(path_contains="price") == 0
    assert stored(engine) == []


def test_changes_carry_their_value(
    engine: Engine, api: FakeSpacescan, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(START)
    poller = make_poller(engine, api, clock)
    poll(poller, clock)
    api.set_xch(ALICE, 3 * XCH + 5 * 10**11)  # +1.5 XCH
    api.remove_token(ALICE, SBX)  # -1.5 SBX: it left, and is still valued
    with caplog.at_level(logging.INFO, logger="tracker.service.poller"):
        summary = poll(poller, clock)
    alice = next(r for r in summary.results if r.address == ALICE)
    xch, sbx = alice.values["xch"], alice.values[SBX]
    assert (xch.value_xch, xch.price, xch.value) == (
        Decimal("1.500000000000"),
        Decimal("31.2"),
        Decimal("46.8000000000000"),
    )
    assert (sbx.price_xch, sbx.value_xch, sbx.value) == (
        Decimal("0.0011"),
        Decimal("-0.0016500"),
        Decimal("-0.05148000"),
    )
    assert (
        "XCH +1.500000000000 (2.000000000000 → 3.500000000000), worth +1.500000 XCH, +46.80 USD"
        in caplog.text
    )
    assert "SBX -1.500 (1.500 → 0.000), worth -0.001650 XCH, -0.05 USD" in caplog.text
    documents = {d["asset_id"]: d for d in payloads(summary)}
    assert documents["xch"]["value"] == "46.8000000000000"
    assert {
        key: documents[SBX][key] for key in ("currency", "price_xch", "value_xch", "price", "value")
    } == {
        "currency": "USD",
        "price_xch": "0.0011",
        "value_xch": "-0.0016500",
        "price": "0.03432",
        "value": "-0.05148000",
    }


def test_a_change_without_a_price_says_so(engine: Engine, api: FakeSpacescan) -> None:
    clock = FakeClock(START)
    poller = make_poller(engine, api, clock, max_age_seconds=600, interval_seconds=3600)
    poll(poller, clock)
    api.set_xch(BOB, 6 * XCH)
    summary = poll(poller, clock, minutes=20)  # the price is 20 min old, at most 10 allowed
    bob = next(r for r in summary.results if r.address == BOB)
    assert bob.values["xch"].value is None
    assert next(d for d in payloads(summary) if d["asset_id"] == "xch")["value"] is None


def test_a_stop_while_fetching_prices_keeps_the_poll(engine: Engine, api: FakeSpacescan) -> None:
    clock = FakeClock(START)
    poller = make_poller(engine, api, clock)
    pricing = poller._pricing
    assert pricing is not None

    def stopping(_currency: str, _at: object = None) -> Decimal:
        raise Cancelled("stopping")

    pricing.source.xch_price = stopping  # type: ignore[attr-defined, method-assign]
    summary = poll(poller, clock)
    assert summary.ok == 2
    assert stored(engine) == []


def moment(value: object) -> datetime:
    """A time from a view: text on SQLite, a timestamptz on PostgreSQL."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(when, datetime)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def test_every_snapshot_of_a_poll_is_valued_with_its_prices(
    engine: Engine, api: FakeSpacescan
) -> None:
    clock = FakeClock(START)
    summary = poll(make_poller(engine, api, clock), clock)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT taken_at, value, priced_at FROM balance_values")
        ).all()
    assert len(rows) == 5
    assert all(value is not None for _, value, _ in rows)
    assert {moment(priced) for _, _, priced in rows} == {first_taken(summary)}
    assert all(moment(priced) <= moment(taken) for taken, _, priced in rows)


# -- [prices] in the configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "fiat", "max_age"),
    [
        ({}, "USD", 7200),
        ({"currency": "eur", "interval_seconds": 600}, "EUR", 1200),
        ({"currency": " chf ", "max_age_seconds": 90}, "CHF", 90),
        ({"currency": "None"}, None, 7200),
    ],
)
def test_prices_config(section: dict[str, object], fiat: str | None, max_age: int) -> None:
    settings = parse({"prices": section}, Path("t.toml"), {})
    assert (settings.prices.fiat, settings.prices.max_age) == (fiat, max_age)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"currency": "dollars"}, "t.toml: prices.currency: must be an ISO 4217 currency code"),
        ({"currency": "U$D"}, "prices.currency: must be an ISO 4217"),
        ({"currency": 840}, "prices.currency: Input should be a valid string, got 840"),
        ({"interval_seconds": "1h"}, "prices.interval_seconds: Input should be a valid integer"),
        ({"interval_seconds": 0}, "prices.interval_seconds: Input should be greater than or equal"),
        ({"max_age_seconds": -5}, "prices.max_age_seconds: Input should be greater than or equal"),
        ({"max_age": 60}, "prices.max_age: unknown key (check the spelling)"),
    ],
)
def test_bad_prices_config_is_one_line_naming_the_key(
    section: dict[str, object], message: str
) -> None:
    from tracker.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse({"prices": section}, Path("t.toml"), {})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
