"""Spacescan's prices against served answers: every documented shape read exactly, the rest typed.

Built as production builds it (a bounded session, the shared ``RateBudget``, the ``RetryPolicy``)
on a :class:`FakeClock`; ``responses`` serves the answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tracker.retry import RetryPolicy
from tracker.sources import http
from tracker.sources.base import BadAnswer, RateLimited, Refused
from tracker.sources.budget import RateBudget
from tracker.sources.prices import PriceSource
from tracker.sources.spacescan import SpacescanSource
from tracker.sources.spacescan_answers import parse_token_answer, price_of

from support.clock import FakeClock

BASE = "https://pro-api.spacescan.io"
KEY = "sk-SECRET-prices"
SBX = "a628c1c2c6fcb74d53746157e438e108eab5c0bb3e5c80ff9b1910b3e4832913"
XCH_PRICE = f"{BASE}/stats/price"
TOKEN_PRICE = f"{BASE}/token/price/{SBX}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def prices(clock: FakeClock, budget: RateBudget | None = None) -> PriceSource:
    client = SpacescanSource(
        BASE,
        session=http.session(),
        budget=budget or RateBudget(60.0, clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=3),
        api_key=KEY,
    )
    return PriceSource(client)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"status": "success", "price": 31.2}', "31.2"),
        ('{"status": "success", "price": "31.20"}', "31.2"),
        ('{"status": "success", "price": 12345678901234567.1}', "12345678901234567.1"),
        ('{"status": "success", "price": {"usd": "31.2", "xch": "1"}}', "31.2"),
        ('{"status": "success", "price": {"USD": 31.2}}', "31.2"),
        ('{"status": "success", "data": {"price": 0.000000000001}}', "0.000000000001"),
        ('{"status": "success", "price": 3.12e1}', "31.2"),
        ('{"price": 7}', "7"),
        ('{"status": "success", "price": null}', None),
        ('{"status": "success", "price": 0}', None),
        ('{"status": "success", "price": "0.00"}', None),
        ('{"status": "success", "price": {"eur": 29.1}}', None),
    ],
)
def test_xch_price_shapes(
    clock: FakeClock, api: responses.RequestsMock, body: str, expected: str | None
) -> None:
    api.get(XCH_PRICE, body=body)
    price = prices(clock).xch_price("USD")
    assert price == (None if expected is None else Decimal(expected))
    if expected is not None:
        assert format(price, "f") == expected  # exact digits, no float on the way


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ('{"status": "success", "price": "abc"}', BadAnswer, "not a usable price"),
        ('{"status": "success", "price": -1}', BadAnswer, "not a usable price"),
        ('{"status": "success", "price": true}', BadAnswer, "not a usable price"),
        ('{"status": "success", "price": 1e400}', BadAnswer, "not a usable price"),
        ('{"status": "success", "price": 0.1234567890123456789}', BadAnswer, "usable"),
        ('{"status": "success"}', BadAnswer, "no price in the answer"),
        ('{"status": "failed", "message": "No price for that time"}', Refused, "No price"),
        ("<html>busy</html>", BadAnswer, "HTML"),
        ("[1]", BadAnswer, "JSON list"),
    ],
)
def test_bad_xch_price_answers_are_typed_errors(
    clock: FakeClock, api: responses.RequestsMock, body: str, error: type, message: str
) -> None:
    api.get(XCH_PRICE, body=body)
    with pytest.raises(error, match=message):
        prices(clock).xch_price("USD")


def test_xch_price_request_names_the_currency_both_ways_and_the_moment(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    api.get(XCH_PRICE, body='{"status": "success", "price": 28.4}')
    at = datetime(2025, 3, 1, 13, tzinfo=UTC)
    assert prices(clock).xch_price("EUR", at) == Decimal("28.4")
    request = api.calls[0].request
    query = parse_qs(urlsplit(request.url or "").query)
    assert query == {"currency": ["EUR"], "cur": ["EUR"], "period": [str(int(at.timestamp()))]}
    assert request.headers["x-api-key"] == KEY
    assert request.headers["User-Agent"].startswith("tracker/")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"status": "success", "price": {"usd": "0.026", "xch": "0.0011"}}', "0.0011"),
        ('{"status": "success", "price": {"usd": 0.026, "xch": 0.0011}}', "0.0011"),
        ('{"status": "success", "price": {"USD": "0.026", "XCH": "0.00110"}}', "0.0011"),
        ('{"status": "success", "data": {"price": {"xch": "2"}}}', "2"),
        ('{"status": "success", "price": {"usd": "0.026"}}', None),
        ('{"status": "success", "price": {"usd": "0.026", "xch": null}}', None),
        ('{"status": "success", "price": null}', None),
    ],
)
def test_token_price_in_xch(
    clock: FakeClock, api: responses.RequestsMock, body: str, expected: str | None
) -> None:
    api.get(TOKEN_PRICE, body=body)
    price = prices(clock).token_price(SBX, "USD")
    assert price == (None if expected is None else Decimal(expected))


def test_token_price_without_a_currency_is_a_bad_answer(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    api.get(TOKEN_PRICE, body='{"status": "success", "price": 0.0011}')
    with pytest.raises(BadAnswer, match="does not say its currency"):
        prices(clock).token_price(SBX, "USD")


def test_unknown_token_is_refused_without_retry(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    api.get(TOKEN_PRICE, status=404, json={"status": "failed", "message": "Token not found"})
    with pytest.raises(Refused, match="HTTP 404: Token not found"):
        prices(clock).token_price(SBX, "USD")
    assert len(api.calls) == 1


def test_a_malformed_asset_id_is_never_sent(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="not a CAT asset id"):
        prices(clock).token_price("../../admin", "USD")


def test_server_errors_are_retried_by_the_one_policy(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    api.get(XCH_PRICE, status=503)
    api.get(XCH_PRICE, status=500)
    api.get(XCH_PRICE, body='{"status": "success", "price": 30}')
    assert prices(clock).xch_price("USD") == 30
    assert len(api.calls) == 3
    assert [s for s in clock.sleeps if s >= 1] == [2.0, 4.0]


def test_a_429_gives_up_after_the_attempts_and_pauses_the_shared_budget(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    budget = RateBudget(60.0, clock)
    for _ in range(3):
        api.get(XCH_PRICE, status=429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited, match="stats-price: HTTP 429"):
        prices(clock, budget).xch_price("USD")
    before = clock.monotonic()
    budget.acquire()  # a balance request of the same process waits too
    assert clock.monotonic() - before >= 29


def test_price_requests_take_their_turn_in_the_budget(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    api.get(XCH_PRICE, body='{"status": "success", "price": 30}')
    api.get(TOKEN_PRICE, body='{"status": "success", "price": {"xch": "0.1"}}')
    source = prices(clock, RateBudget(6.0, clock))  # one request every 10 s
    source.xch_price("USD")
    source.token_price(SBX, "USD")
    assert clock.sleeps == [0.0, 10.0]


# -- price_xch in token-balance rows: a bonus, never a reason to fail the balances ---------------

ROW = '{{"asset_id": "{asset}", "balance": "1.5"{extra}}}'


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (', "price_xch": 0.0123', "0.0123"),
        (', "price_xch": "0.0123"', "0.0123"),
        (', "price_xch": "0.01230"', "0.0123"),
        (', "price_xch": 2', "2"),
        (', "price_xch": null', None),
        ("", None),
        (', "price_xch": "n/a"', None),
        (', "price_xch": ""', None),
        (', "price_xch": -0.5', None),
        (', "price_xch": 0', None),
        (', "price_xch": true', None),
        (', "price_xch": {"xch": 1}', None),
        (', "price_xch": [1]', None),
        (', "price_xch": 1e999999', None),
        (', "price_xch": "1e-400"', None),
        (', "price_xch": 0.12345678901234567891', None),
    ],
)
def test_row_price_is_read_exactly_or_left_out(extra: str, expected: str | None) -> None:
    body = '{"status": "success", "data": [' + ROW.format(asset=SBX, extra=extra) + "]}"
    answer = parse_token_answer(body)
    assert answer.balances == {SBX: 1500}
    assert answer.prices_xch == ({} if expected is None else {SBX: Decimal(expected)})


def test_price_of_never_raises() -> None:
    for value in [None, "x", "1.2.3", "١٢", b"1", 1.5, object(), Decimal("NaN"), Decimal("-Inf")]:
        assert price_of(value) is None
