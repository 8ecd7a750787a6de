"""The Spacescan source against served answers: good shapes read exactly, bad ones typed errors.

Every test builds the source as production does (a bounded session from
:func:`tracker.sources.http.session`, a shared ``RateBudget``, a ``RetryPolicy``) on a
:class:`FakeClock`, and ``responses`` serves the answers. A read never raises a ``SourceError``:
it answers one Observation or one error per address.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses

from tracker import __version__
from tracker.clock import Cancelled
from tracker.domain import XCH, XCH_ASSET, Asset, Observation, WatchedAddress
from tracker.errors import SourceError
from tracker.retry import RetryPolicy
from tracker.sources import http
from tracker.sources.base import BadAnswer, RateLimited, Refused, TimedOut, Unavailable
from tracker.sources.budget import RateBudget
from tracker.sources.spacescan import SpacescanSource
from tracker.sources.spacescan_answers import (
    parse_token_balances,
    parse_xch_balance,
    server_message,
)

from support.clock import FakeClock

BASE = "https://pro-api.spacescan.io"
KEY = "sk-SECRET-7Qz9-never-log-me"
ADDRESS = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
OTHER = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqm6ks6e8mvy"
TOKEN_URL = f"{BASE}/address/token-balance/{ADDRESS}"
XCH_URL = f"{BASE}/address/xch-balance/{ADDRESS}"
OTHER_TOKEN_URL = f"{BASE}/address/token-balance/{OTHER}"
SBX = "a628c1c2c6fcb74d53746157e438e108eab5c0bb3e5c80ff9b1910b3e4832913"
DBX = "db1a9020d48d9d4ad22631b66ab4b9ebd3637ef7758ad38881348c5d24c38f20"
# The docs' example pair: this token id is asset id 14b40962…5cb495.
TOKEN_ID = "tkn1zj6qjckla7qaj49vpkft28kzrnn6ekxx9hvla7fs82j3cc2ukj2ssa84km"
TOKEN_ID_ASSET = "14b40962dfef81d954ac0d92b51ec21ce7acd8c62dd9fef9303aa51c615cb495"
EMPTY_TOKENS = '{"status": "success", "data": []}'


def make_source(
    clock: FakeClock,
    *,
    api_key: str | None = KEY,
    rpm: float = 60.0,
    retry: RetryPolicy | None = None,
    deadline_seconds: float = 30.0,
    max_bytes: int = 32 * 2**20,
    base_url: str = BASE,
    budget: RateBudget | None = None,
    include_xch: bool = True,
    include_dust: bool = False,
    max_pause_seconds: float = 3600.0,
    on_response: Callable[[str, str], None] | None = None,
) -> SpacescanSource:
    return SpacescanSource(
        base_url,
        session=http.session(),
        budget=budget or RateBudget(rpm, clock),
        clock=clock,
        retry=retry or RetryPolicy(),
        api_key=api_key,
        limits=http.Limits(deadline_seconds=deadline_seconds, max_bytes=max_bytes),
        include_xch=include_xch,
        include_dust=include_dust,
        max_pause_seconds=max_pause_seconds,
        on_response=on_response,
    )


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def serve(
    api: responses.RequestsMock,
    url: str,
    body: str | dict[str, Any] | Exception,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> None:
    if isinstance(body, dict):
        body = json.dumps(body)
    api.get(url, body=body, status=status, headers=headers, content_type="application/json")


def waits(clock: FakeClock) -> list[float]:
    """The waits that took time (the budget's zero-length waits left out)."""
    return [seconds for seconds in clock.sleeps if seconds > 0]


def read_one(source: SpacescanSource, address: str = ADDRESS) -> Observation | SourceError:
    outcomes = source.read([WatchedAddress(address)])
    assert len(outcomes) == 1
    return outcomes[0]


def observe(source: SpacescanSource, address: str = ADDRESS) -> Observation:
    outcome = read_one(source, address)
    assert isinstance(outcome, Observation), outcome
    assert outcome.address == address
    return outcome


def check_error(outcome: Observation | SourceError) -> str:
    """Every failure is a SourceError with a short one-line message that hides the key."""
    assert isinstance(outcome, SourceError), outcome
    text = str(outcome)
    assert text
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) < 300
    assert KEY not in text
    return text


def failure(source: SpacescanSource, address: str = ADDRESS) -> SourceError:
    outcome = read_one(source, address)
    check_error(outcome)
    assert isinstance(outcome, SourceError)
    return outcome


def fetch_tokens(
    clock: FakeClock, api: responses.RequestsMock, body: str
) -> tuple[dict[str, int], dict[str, Asset]]:
    """The balances and assets of a token answer, read without XCH."""
    serve(api, TOKEN_URL, body)
    observation = observe(make_source(clock, include_xch=False))
    assert XCH not in observation.balances
    assert observation.balances.keys() == observation.assets.keys()
    return observation.balances, observation.assets


def fetch_xch(clock: FakeClock, api: responses.RequestsMock, body: str) -> int:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, body)
    observation = observe(make_source(clock))
    assert observation.balances.keys() == {XCH}
    assert observation.assets == {XCH: XCH_ASSET}
    return observation.balances[XCH]


# ---------------------------------------------------------------------------------------------
# Good token answers


def test_list_under_data_with_extra_fields_mixed_number_types_and_null_names(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f"""{{"status": "success", "page": 1, "data": [
        {{"asset_id": "{SBX}", "name": "Spacebucks", "symbol": "SBX", "preview_url": null,
          "balance": 1234.567, "price_xch": 0.0123, "price": 0.25, "total_value": 308.64}},
        {{"asset_id": "{DBX}", "name": null, "symbol": null, "balance": "0.001",
          "price": "NaN", "extra": {{"nested": [1, 2]}}}}
    ]}}"""
    assert fetch_tokens(clock, api, body) == (
        {SBX: 1_234_567, DBX: 1},
        {SBX: Asset(SBX, "Spacebucks", "SBX"), DBX: Asset(DBX, None, None)},
    )


def test_documented_list_under_balance_with_string_exponent(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f"""{{"status": "success", "balance": [
        {{"asset_id": "{SBX}", "token_id": "{TOKEN_ID}", "balance": "1e3", "name": "Spacebucks",
          "symbol": "SBX"}},
        {{"asset_id": "{DBX}", "balance": 7, "name": "dexie bucks", "symbol": "DBX"}}
    ]}}"""
    assert fetch_tokens(clock, api, body) == (
        {SBX: 1_000_000, DBX: 7_000},
        {SBX: Asset(SBX, "Spacebucks", "SBX"), DBX: Asset(DBX, "dexie bucks", "DBX")},
    )


def test_data_preferred_when_balance_is_not_a_list(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"balance": 12, "data": [{{"asset_id": "{SBX}", "balance": 2}}]}}'
    assert fetch_tokens(clock, api, body) == ({SBX: 2_000}, {SBX: Asset(SBX)})


@pytest.mark.parametrize(
    ("amount", "mojos"),
    [
        # 2**53 + 1 CAT mojos: the nearest double is 2**53, so any float step would lose the 3.
        ("9007199254740.993", 9_007_199_254_740_993),
        ('"9007199254740.993"', 9_007_199_254_740_993),
        ("0.001", 1),
        ("1.005", 1_005),  # float: 1.005 * 1000 == 1004.999…
        ('"1.001"', 1_001),  # float: int(1.001 * 1000) == 1000
        ("0.1", 100),
        ("0.2", 200),
        ("123456789012345.678", 123_456_789_012_345_678),  # 18 digits
        ('"123456789012345.678"', 123_456_789_012_345_678),
        ("9223372036854775.807", 2**63 - 1),  # the largest storable amount
        ("0", 0),
        ('"0.000"', 0),
        ("1E3", 1_000_000),
        ('"2e-3"', 2),
        ('" 42 "', 42_000),
        ("1.0000000000", 1_000),
    ],
)
def test_token_amounts_are_exact(
    clock: FakeClock, api: responses.RequestsMock, amount: str, mojos: int
) -> None:
    body = f'{{"status": "success", "data": [{{"asset_id": "{SBX}", "balance": {amount}}}]}}'
    balances, _ = fetch_tokens(clock, api, body)
    assert balances == {SBX: mojos}
    assert type(balances[SBX]) is int


def test_sums_like_point_one_plus_point_two_stay_exact(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = (
        f'{{"data": [{{"asset_id": "{SBX}", "balance": 0.1}},'
        f' {{"asset_id": "{DBX}", "balance": "0.2"}}]}}'
    )
    balances, _ = fetch_tokens(clock, api, body)
    assert sum(balances.values()) == 300
    assert 0.1 + 0.2 != 0.3  # what the same sum gives in floats


@pytest.mark.parametrize(
    "written", [SBX.upper(), "0x" + SBX, "0x" + SBX.upper(), SBX[:32].upper() + SBX[32:]]
)
def test_asset_ids_normalised_to_lowercase(
    clock: FakeClock, api: responses.RequestsMock, written: str
) -> None:
    body = f'{{"data": [{{"asset_id": "{written}", "balance": 1}}]}}'
    balances, assets = fetch_tokens(clock, api, body)
    assert balances == {SBX: 1_000}
    assert assets[SBX].asset_id == SBX


def test_asset_id_derived_from_token_id_when_missing(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    assert TOKEN_ID_ASSET.startswith("14b40962")
    assert TOKEN_ID_ASSET.endswith("5cb495")
    body = f'{{"data": [{{"token_id": "{TOKEN_ID}", "balance": "5", "symbol": "X"}}]}}'
    balances, assets = fetch_tokens(clock, api, body)
    assert balances == {TOKEN_ID_ASSET: 5_000}
    assert assets == {TOKEN_ID_ASSET: Asset(TOKEN_ID_ASSET, None, "X")}
    assert assets[TOKEN_ID_ASSET].token_id == TOKEN_ID


def test_asset_id_null_falls_back_to_uppercase_token_id(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"data": [{{"asset_id": null, "token_id": "{TOKEN_ID.upper()}", "balance": 1}}]}}'
    assert fetch_tokens(clock, api, body) == (
        {TOKEN_ID_ASSET: 1_000},
        {TOKEN_ID_ASSET: Asset(TOKEN_ID_ASSET)},
    )


@pytest.mark.parametrize(
    "body", [EMPTY_TOKENS, '{"status": "success", "balance": []}', '{"data": []}']
)
def test_empty_list_means_no_tokens(
    clock: FakeClock, api: responses.RequestsMock, body: str
) -> None:
    assert fetch_tokens(clock, api, body) == ({}, {})


def test_names_are_trimmed_and_blank_names_are_none(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"data": [{{"asset_id": "{SBX}", "balance": 1, "name": "  ", "symbol": " SBX "}}]}}'
    assert fetch_tokens(clock, api, body) == ({SBX: 1_000}, {SBX: Asset(SBX, None, "SBX")})


def test_names_are_kept_as_sent_but_clipped(clock: FakeClock, api: responses.RequestsMock) -> None:
    # Escaping is each sink's job (sanitize); the source keeps the text, at most 200 characters.
    name = "\u001b[31mEvil\u001b[0m"
    body = json.dumps(
        {"data": [{"asset_id": SBX, "balance": 1, "name": name, "symbol": "S" * 500}]}
    )
    _, assets = fetch_tokens(clock, api, body)
    assert assets[SBX].name == "\x1b[31mEvil\x1b[0m"
    assert assets[SBX].symbol == "S" * 200


# ---------------------------------------------------------------------------------------------
# Good XCH answers


@pytest.mark.parametrize(
    ("body", "mojos"),
    [
        ('{"status": "success", "xch": 1.234567891234, "mojo": 1234567891234}', 1_234_567_891_234),
        ('{"data": {"xch": 1.234567891234, "mojo": 1234567891234}}', 1_234_567_891_234),
        ('{"status": "success", "data": {"mojo": "1234567891234"}}', 1_234_567_891_234),
        ('{"status": "success", "xch": "1.2", "mojo": "1234567891234"}', 1_234_567_891_234),
        ('{"mojo": 999999999999999999}', 999_999_999_999_999_999),  # 18 digits
        ('{"mojo": 9223372036854775807}', 2**63 - 1),
        ('{"mojo": 0}', 0),
        ('{"mojo": 12.0}', 12),
        ('{"mojo": 1.5e3}', 1_500),  # written as a float, but exact at this size
        ('{"mojo": "9007199254740991"}', 2**53 - 1),
        # Only xch: converted from its decimal text (a float would give 299999999999).
        ('{"status": "success", "xch": 0.3}', 300_000_000_000),
        ('{"xch": "9007.199254740993"}', 9_007_199_254_740_993),
        ('{"data": {"xch": "1e-12"}}', 1),
        # mojo is the exact field: it wins over a rounded xch.
        ('{"xch": 1.0, "mojo": 999999999999}', 999_999_999_999),
    ],
)  # fmt: skip
def test_xch_balance(clock: FakeClock, api: responses.RequestsMock, body: str, mojos: int) -> None:
    assert fetch_xch(clock, api, body) == mojos


def test_include_xch_false_makes_no_xch_request(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    source = make_source(clock, include_xch=False)
    assert observe(source).balances == {}
    assert [call.request.url for call in api.calls] == [TOKEN_URL]
    assert source.requests_per_read(5) == 5
    assert make_source(clock).requests_per_read(5) == 10


def test_both_endpoints_read_in_one_call(clock: FakeClock, api: responses.RequestsMock) -> None:
    serve(api, TOKEN_URL, f'{{"data": [{{"asset_id": "{SBX}", "balance": "2.5"}}]}}')
    serve(api, XCH_URL, '{"mojo": 42}')
    observation = observe(make_source(clock))
    assert observation.balances == {SBX: 2_500, XCH: 42}
    assert observation.assets == {SBX: Asset(SBX), XCH: XCH_ASSET}
    assert [call.request.url for call in api.calls] == [TOKEN_URL, XCH_URL]


def test_include_dust_asks_for_dust_on_the_xch_endpoint_only(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL + "?include_dust=true", '{"mojo": 9999}')
    assert observe(make_source(clock, include_dust=True)).balances == {XCH: 9_999}
    assert [call.request.url for call in api.calls] == [TOKEN_URL, XCH_URL + "?include_dust=true"]


def test_observation_times_span_the_read(clock: FakeClock, api: responses.RequestsMock) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, '{"mojo": 1}')
    started = clock.now()
    observation = observe(make_source(clock, rpm=3))
    assert observation.started_at == started
    # The XCH request waited its 20 s slot: the snapshot is as of the end of the read.
    assert observation.taken_at == started + timedelta(seconds=20)


def test_read_answers_one_outcome_per_address_in_order(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, '{"status": "failed", "message": "Invalid address"}', 400)
    serve(api, OTHER_TOKEN_URL, EMPTY_TOKENS)
    source = make_source(clock, include_xch=False)
    first, second = source.read([WatchedAddress(ADDRESS, "cold"), WatchedAddress(OTHER)])
    assert isinstance(first, Refused)
    assert isinstance(second, Observation)
    assert second.address == OTHER
    assert source.read([]) == []


# ---------------------------------------------------------------------------------------------
# Bad answers: each one typed error, one line, never another exception

TOO_PRECISE = "0.001" + "0" * 100 + "1"  # beyond 80 significant digits: must not be rounded away


def row(balance: str, asset: str = f'"{SBX}"') -> str:
    return f'{{"status": "success", "data": [{{"asset_id": {asset}, "balance": {balance}}}]}}'


BAD_TOKEN_ANSWERS = [
    pytest.param("<html><body>502 Bad Gateway</body></html>", BadAnswer, "HTML", id="html"),
    pytest.param("  \n<!DOCTYPE html><html>", BadAnswer, "HTML", id="html-leading-space"),
    pytest.param('{"status": "success", "data": [{"asset_id": "', BadAnswer, "not valid JSON",
                 id="truncated"),
    pytest.param("", BadAnswer, "not valid JSON", id="empty-body"),
    pytest.param("[" * 50_000, BadAnswer, "not valid JSON", id="deep-nesting"),
    pytest.param(b"\xff\xfe\x00{", BadAnswer, "not valid JSON", id="binary"),
    pytest.param("[]", BadAnswer, "JSON list", id="json-array"),
    pytest.param('"ok"', BadAnswer, "JSON str", id="json-string"),
    pytest.param("null", BadAnswer, "JSON NoneType", id="json-null"),
    pytest.param('{"status": "failed", "message": "Invalid address"}', Refused,
                 "Invalid address", id="status-failed"),
    pytest.param('{"status": "error"}', Refused, "status error", id="status-error"),
    pytest.param('{"status": "failed", "message": "bad\\nthing\\r\\nhere"}', Refused,
                 "bad thing here", id="multiline-message"),
    pytest.param('{"status": "success"}', BadAnswer, "no token list", id="missing-list"),
    pytest.param('{"status": "success", "data": null}', BadAnswer, "no token list",
                 id="data-null"),
    pytest.param('{"data": {"balance": 1}}', BadAnswer, "no token list", id="data-object"),
    pytest.param('{"data": ["x"]}', BadAnswer, "expected an object", id="row-string"),
    pytest.param('{"data": [null]}', BadAnswer, "expected an object", id="row-null"),
    pytest.param(row('"abc"'), BadAnswer, "expected a number", id="amount-abc"),
    pytest.param(row('""'), BadAnswer, "expected a number", id="amount-empty-string"),
    pytest.param(row('"1.2.3"'), BadAnswer, "expected a number", id="amount-two-points"),
    pytest.param(row('"0x10"'), BadAnswer, "expected a number", id="amount-hex"),
    pytest.param(row('"1_000"'), BadAnswer, "expected a number", id="amount-underscore"),
    pytest.param(row("true"), BadAnswer, "boolean", id="amount-true"),
    pytest.param(row("false"), BadAnswer, "boolean", id="amount-false"),
    pytest.param(row("{}"), BadAnswer, "an object", id="amount-object"),
    pytest.param(row("[]"), BadAnswer, "a list", id="amount-list"),
    pytest.param(row("null"), BadAnswer, "null", id="amount-null"),
    pytest.param(f'{{"data": [{{"asset_id": "{SBX}"}}]}}', BadAnswer, "no balance",
                 id="amount-missing"),
    pytest.param(row("-1"), BadAnswer, "negative", id="negative"),
    pytest.param(row('"-0.001"'), BadAnswer, "negative", id="negative-string"),
    pytest.param(row("1.0001"), BadAnswer, "fraction of a mojo", id="fraction-cat"),
    pytest.param(row('"0.0005"'), BadAnswer, "fraction of a mojo", id="fraction-cat-string"),
    pytest.param(row(TOO_PRECISE), BadAnswer, "fraction of a mojo", id="fraction-beyond-precision"),
    pytest.param(row("1e-999999999"), BadAnswer, "fraction of a mojo", id="tiny-exponent"),
    pytest.param(row("NaN"), BadAnswer, "not valid JSON", id="nan"),
    pytest.param(row("Infinity"), BadAnswer, "not valid JSON", id="infinity"),
    pytest.param(row("-Infinity"), BadAnswer, "not valid JSON", id="minus-infinity"),
    pytest.param(row('"NaN"'), BadAnswer, "expected a number", id="nan-string"),
    pytest.param(row('"Infinity"'), BadAnswer, "expected a number", id="infinity-string"),
    pytest.param(row('"\u0661\u0662\u0663"'), BadAnswer, "expected a number",
                 id="arabic-indic-digits"),
    pytest.param(row('"\uff11\uff12"'), BadAnswer, "expected a number", id="fullwidth-digits"),
    pytest.param(row("1e999999"), BadAnswer, "too large", id="huge-exponent"),
    pytest.param(row('"1e400"'), BadAnswer, "too large", id="huge-exponent-string"),
    pytest.param(row("1e99999999999999999999"), BadAnswer, "not valid JSON",
                 id="exponent-beyond-decimal"),
    pytest.param(row('"1' + "0" * 4000 + '"'), BadAnswer, "too large", id="4000-digit-string"),
    pytest.param(row("1" + "0" * 5000), BadAnswer, "not valid JSON", id="5000-digit-number"),
    pytest.param(row("9223372036854775.808"), BadAnswer, "64-bit", id="beyond-int64"),
    pytest.param(row('"10000000000000000000"'), BadAnswer, "64-bit", id="beyond-int64-string"),
    pytest.param(row("1", '"abc"'), BadAnswer, "malformed asset_id", id="asset-short"),
    pytest.param(row("1", f'"{SBX[:-1]}"'), BadAnswer, "malformed asset_id", id="asset-63-hex"),
    pytest.param(row("1", f'"{SBX}0"'), BadAnswer, "malformed asset_id", id="asset-65-hex"),
    pytest.param(row("1", f'"{"g" * 64}"'), BadAnswer, "malformed asset_id", id="asset-not-hex"),
    pytest.param(row("1", f'" {SBX}"'), BadAnswer, "malformed asset_id", id="asset-space"),
    pytest.param(row("1", "12"), BadAnswer, "malformed asset_id", id="asset-number"),
    pytest.param(row("1", "null"), BadAnswer, "malformed asset_id", id="asset-null-no-token-id"),
    pytest.param(f'{{"data": [{{"token_id": "{TOKEN_ID[:-1]}q", "balance": 1}}]}}', BadAnswer,
                 "malformed token_id", id="token-id-bad-checksum"),
    pytest.param(f'{{"data": [{{"token_id": "{ADDRESS}", "balance": 1}}]}}', BadAnswer,
                 "malformed token_id", id="token-id-wrong-prefix"),
    pytest.param('{"data": [{"token_id": 5, "balance": 1}]}', BadAnswer,
                 "malformed asset_id", id="token-id-number"),
    pytest.param(
        f'{{"data": [{{"asset_id": "{SBX}", "balance": 1}}, {{"asset_id": "{DBX}", "balance": 2}},'
        f' {{"asset_id": "{SBX.upper()}", "balance": 3}}]}}',
        BadAnswer, "listed twice", id="duplicate-asset",
    ),
    pytest.param(
        f'{{"data": [{{"asset_id": "{TOKEN_ID_ASSET}", "balance": 1}},'
        f' {{"token_id": "{TOKEN_ID}", "balance": 3}}]}}',
        BadAnswer, "listed twice", id="duplicate-via-token-id",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("body", "error", "fragment"), BAD_TOKEN_ANSWERS)
def test_bad_token_answer(
    clock: FakeClock,
    api: responses.RequestsMock,
    body: str | bytes,
    error: type[SourceError],
    fragment: str,
) -> None:
    api.get(TOKEN_URL, body=body, status=200)
    outcome = read_one(make_source(clock))
    assert type(outcome) is error
    text = check_error(outcome)
    assert fragment in text
    assert text.startswith("token-balance: ")
    assert len(api.calls) == 1  # a bad answer is not asked again
    assert waits(clock) == []


BAD_XCH_ANSWERS = [
    pytest.param('{"status": "success"}', BadAnswer, "no XCH balance", id="missing"),
    pytest.param('{"status": "success", "data": null}', BadAnswer, "no XCH balance",
                 id="data-null"),
    pytest.param('{"data": [{"mojo": 1}]}', BadAnswer, "no XCH balance", id="data-list"),
    pytest.param('{"mojo": null}', BadAnswer, "null", id="mojo-null"),
    pytest.param('{"mojo": "abc"}', BadAnswer, "expected a number", id="mojo-abc"),
    pytest.param('{"mojo": true}', BadAnswer, "boolean", id="mojo-true"),
    pytest.param('{"mojo": -5}', BadAnswer, "negative", id="mojo-negative"),
    pytest.param('{"mojo": 0.5}', BadAnswer, "fraction of a mojo", id="mojo-half"),
    pytest.param('{"mojo": "12.000001"}', BadAnswer, "fraction of a mojo", id="mojo-fraction"),
    pytest.param('{"xch": "1.0000000000001"}', BadAnswer, "fraction of a mojo",
                 id="xch-13-decimals"),
    pytest.param('{"mojo": 9223372036854775808}', BadAnswer, "64-bit", id="mojo-beyond-int64"),
    pytest.param('{"xch": 9223372.036854775808}', BadAnswer, "64-bit", id="xch-beyond-int64"),
    pytest.param('{"mojo": NaN}', BadAnswer, "not valid JSON", id="mojo-nan"),
    pytest.param('{"mojo": 1e400}', BadAnswer, "written as a float", id="mojo-huge"),
    pytest.param('{"xch": 1e400}', BadAnswer, "too large", id="xch-huge"),
    pytest.param('{"status": "failed", "message": "Invalid address"}', Refused,
                 "Invalid address", id="status-failed"),
    pytest.param('{"mojo": 1', BadAnswer, "not valid JSON", id="truncated"),
    pytest.param("<html></html>", BadAnswer, "HTML", id="html"),
    # A mojo count a float has already rounded (past 2**53) is refused, not trusted.
    pytest.param('{"mojo": 1.2345678901234567e18}', BadAnswer, "written as a float",
                 id="mojo-float-exponent"),
    pytest.param('{"mojo": "1.2345678901234567e18"}', BadAnswer, "written as a float",
                 id="mojo-float-exponent-string"),
    pytest.param('{"mojo": 9007199254740993.0}', BadAnswer, "written as a float",
                 id="mojo-float-past-2-53"),
    pytest.param('{"mojo": "\u0661\u0662\u0663"}', BadAnswer, "expected a number",
                 id="mojo-arabic-indic-digits"),
    pytest.param('{"xch": "\uff11"}', BadAnswer, "expected a number", id="xch-fullwidth-digit"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "error", "fragment"), BAD_XCH_ANSWERS)
def test_bad_xch_answer(
    clock: FakeClock,
    api: responses.RequestsMock,
    body: str,
    error: type[SourceError],
    fragment: str,
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, body)
    outcome = read_one(make_source(clock))
    assert type(outcome) is error
    text = check_error(outcome)
    assert fragment in text
    assert text.startswith("xch-balance: ")


# ---------------------------------------------------------------------------------------------
# The answer parser on its own


@pytest.mark.parametrize("as_bytes", [False, True])
def test_parser_takes_text_or_bytes(as_bytes: bool) -> None:
    tokens = f'{{"data": [{{"asset_id": "{SBX}", "balance": "1.5", "symbol": "SBX"}}]}}'
    xch = '{"mojo": 7}'
    assert parse_token_balances(tokens.encode() if as_bytes else tokens) == (
        {SBX: 1_500},
        {SBX: Asset(SBX, None, "SBX")},
    )
    assert parse_xch_balance(xch.encode() if as_bytes else xch) == 7


def test_parser_redacts_before_it_quotes_the_answer() -> None:
    def redact(text: str) -> str:
        return text.replace(KEY, "***")

    body = json.dumps({"status": "failed", "message": f"bad key {KEY}"})
    for parse in (parse_token_balances, parse_xch_balance):
        with pytest.raises(Refused) as info:
            parse(body, redact)
        assert str(info.value) == "status failed: bad key ***"


def test_parser_returns_exact_ints_never_floats() -> None:
    balances, _ = parse_token_balances(f'{{"data": [{{"asset_id": "{SBX}", "balance": 0.1}}]}}')
    assert balances == {SBX: 100}
    assert type(balances[SBX]) is int
    mojos = parse_xch_balance('{"xch": 0.000000000001}')
    assert (mojos, type(mojos)) == (1, int)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message": "Invalid address"}', ": Invalid address"),
        (b'{"status": "failed", "message": "two\\nlines"}', ": two lines"),
        (b'{"message": ""}', ""),
        (b"[1, 2]", ""),
        (b"<html>", ""),
        (b"", ""),
        (json.dumps({"message": "x" * 500}).encode(), ": " + "x" * 119 + "…"),
    ],
)
def test_server_message_is_one_short_line_or_nothing(body: bytes, expected: str) -> None:
    assert server_message(body) == expected


# ---------------------------------------------------------------------------------------------
# HTTP: URLs, headers, deadlines, redirects, sizes


def test_requests_carry_user_agent_api_key_and_deadline(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, '{"mojo": 1}')
    observe(make_source(clock, base_url=BASE + "/", deadline_seconds=45.0))
    assert [call.request.url for call in api.calls] == [TOKEN_URL, XCH_URL]
    for call in api.calls:
        headers = call.request.headers
        assert f"tracker/{__version__}" in headers["User-Agent"]
        assert headers["x-api-key"] == KEY
        assert headers["Accept"] == "application/json"
        connect, read = call.request.req_kwargs["timeout"]  # type: ignore[attr-defined]
        # What is left of the request's total deadline, which has only just started.
        assert 40 < read <= 45.0
        assert 0 < connect <= read


@pytest.mark.parametrize("api_key", [None, ""])
def test_no_api_key_header_without_a_key(
    clock: FakeClock, api: responses.RequestsMock, api_key: str | None
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, '{"mojo": 1}')
    observe(make_source(clock, api_key=api_key))
    for call in api.calls:
        assert "x-api-key" not in call.request.headers
        assert call.request.headers["User-Agent"].startswith(f"tracker/{__version__}")


def test_repr_hides_the_key(clock: FakeClock) -> None:
    text = repr(make_source(clock))
    assert KEY not in text
    assert BASE in text
    assert "***" in text
    assert "api_key=None" in repr(make_source(clock, api_key=None))


def test_redirect_to_another_host_is_refused_without_sending_the_key_there(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 302, {"Location": "https://evil.example/steal"})
    error = failure(make_source(clock))
    assert type(error) is Refused
    assert "redirected to https://evil.example" in str(error)
    assert [call.request.url for call in api.calls] == [TOKEN_URL]  # not followed, not retried


def test_redirect_within_the_host_is_followed_with_the_key(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    moved = f"{BASE}/v2/address/token-balance/{ADDRESS}"
    serve(api, TOKEN_URL, "", 301, {"Location": f"/v2/address/token-balance/{ADDRESS}"})
    serve(api, moved, f'{{"data": [{{"asset_id": "{SBX}", "balance": 1}}]}}')
    assert observe(make_source(clock, include_xch=False)).balances == {SBX: 1_000}
    assert [call.request.url for call in api.calls] == [TOKEN_URL, moved]
    assert api.calls[1].request.headers["x-api-key"] == KEY


def test_oversized_answer_is_a_bad_answer_and_not_retried(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    rows = [{"asset_id": f"{n:064x}", "balance": 1} for n in range(100)]
    serve(api, TOKEN_URL, json.dumps({"data": rows}))
    error = failure(make_source(clock, max_bytes=1000))
    assert type(error) is BadAnswer
    assert "larger than 1,000 bytes" in str(error)
    assert len(api.calls) == 1


# ---------------------------------------------------------------------------------------------
# Retries


def test_429_with_retry_after_seconds_waits_then_succeeds(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, '{"status": "failed", "message": "rate limit exceeded"}', 429,
          {"Retry-After": "7"})  # fmt: skip
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    start = clock.monotonic()
    assert observe(make_source(clock, include_xch=False)).balances == {}
    assert waits(clock) == [7]
    assert clock.monotonic() - start == 7
    assert len(api.calls) == 2


def test_429_with_http_date_retry_after(clock: FakeClock, api: responses.RequestsMock) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    serve(api, TOKEN_URL, "", 429, {"Retry-After": when})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    observe(make_source(clock, include_xch=False))
    assert waits(clock) == [90]


def test_429_with_past_http_date_retries_at_once(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    when = format_datetime(clock.now() - timedelta(hours=1), usegmt=True)
    serve(api, TOKEN_URL, "", 429, {"Retry-After": when})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    observe(make_source(clock, rpm=60, include_xch=False))
    assert waits(clock) == [1]  # only the budget's 1 s spacing: no backoff
    assert len(api.calls) == 2


def test_429_retry_after_too_long_fails_the_poll_and_pauses_the_budget(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 429, {"Retry-After": "86400"})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    source = make_source(
        clock,
        retry=RetryPolicy(max_hint_seconds=60),
        max_pause_seconds=600,
        include_xch=False,
    )
    error = failure(source)
    assert type(error) is RateLimited
    assert "asked to wait 86400 s" in str(error)
    assert error.retry_after == 86400
    assert waits(clock) == []
    assert len(api.calls) == 1
    observe(source)  # the next poll waits out the (capped) pause
    assert waits(clock) == [600]


@pytest.mark.parametrize("value", ["soon", "nan", "", "Wed, 99 Foo 2026"])
def test_429_with_unreadable_retry_after_backs_off(
    clock: FakeClock, api: responses.RequestsMock, value: str
) -> None:
    serve(api, TOKEN_URL, "", 429, {"Retry-After": value})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    observe(make_source(clock, include_xch=False))
    assert waits(clock) == [2]


def test_429_without_retry_after_backs_off_exponentially_then_gives_up(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    for _ in range(4):
        serve(api, TOKEN_URL, '{"status": "failed", "message": "rate limit exceeded"}', 429)
    error = failure(make_source(clock))
    assert type(error) is RateLimited
    text = str(error)
    assert "429" in text
    assert "4 attempts" in text
    assert waits(clock) == [2, 4, 8]
    assert len(api.calls) == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(
    clock: FakeClock, api: responses.RequestsMock, status: int
) -> None:
    serve(api, TOKEN_URL, "<html>oops</html>", status)
    serve(api, TOKEN_URL, f'{{"data": [{{"asset_id": "{SBX}", "balance": 1}}]}}')
    assert observe(make_source(clock, include_xch=False)).balances == {SBX: 1_000}
    assert waits(clock) == [2]
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    "failure_",
    [requests.ConnectionError("connection reset by peer"), requests.Timeout("read timed out")],
    ids=["connection-error", "timeout"],
)
def test_network_failures_are_retried(
    clock: FakeClock, api: responses.RequestsMock, failure_: Exception
) -> None:
    serve(api, TOKEN_URL, failure_)
    serve(api, TOKEN_URL, failure_)
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    assert observe(make_source(clock, include_xch=False)).balances == {}
    assert waits(clock) == [2, 4]
    assert len(api.calls) == 3


@pytest.mark.parametrize(
    ("failure_", "error", "fragment"),
    [
        (requests.ConnectionError("connection refused"), Unavailable, "connection failed"),
        (requests.Timeout("read timed out"), TimedOut, "no answer within 30 s"),
        (requests.exceptions.ChunkedEncodingError("broken"), Unavailable, "connection failed"),
    ],
    ids=["connection-error", "timeout", "chunked"],
)
def test_gives_up_after_max_attempts_saying_how_many(
    clock: FakeClock,
    api: responses.RequestsMock,
    failure_: Exception,
    error: type[SourceError],
    fragment: str,
) -> None:
    for _ in range(3):
        serve(api, TOKEN_URL, failure_)
    source = make_source(clock, retry=RetryPolicy(max_attempts=3, base_seconds=1))
    outcome = failure(source)
    assert type(outcome) is error
    text = str(outcome)
    assert fragment in text
    assert "after 3 attempts" in text
    assert waits(clock) == [1, 2]
    assert len(api.calls) == 3


def test_all_server_errors_give_up(clock: FakeClock, api: responses.RequestsMock) -> None:
    for _ in range(4):
        serve(api, TOKEN_URL, '{"status": "failed", "message": "Service Unavailable"}', 503)
    error = failure(make_source(clock))
    assert type(error) is Unavailable
    text = str(error)
    assert "HTTP 503" in text
    assert "Service Unavailable" in text
    assert "after 4 attempts" in text
    assert waits(clock) == [2, 4, 8]


def test_single_attempt_policy_does_not_retry(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 500)
    error = failure(make_source(clock, retry=RetryPolicy(max_attempts=1)))
    assert "attempts" not in str(error)
    assert len(api.calls) == 1
    assert waits(clock) == []


@pytest.mark.parametrize("status", [400, 404])
def test_invalid_address_is_refused_without_retry(
    clock: FakeClock, api: responses.RequestsMock, status: int
) -> None:
    serve(api, TOKEN_URL, '{"status": "failed", "message": "Invalid address"}', status)
    error = failure(make_source(clock))
    assert type(error) is Refused
    text = str(error)
    assert "Invalid address" in text
    assert str(status) in text
    assert len(api.calls) == 1
    assert waits(clock) == []


@pytest.mark.parametrize(("status", "api_key"), [(403, KEY), (403, None), (401, KEY)])
def test_forbidden_is_refused_without_retry_and_hints_at_the_key(
    clock: FakeClock, api: responses.RequestsMock, status: int, api_key: str | None
) -> None:
    serve(api, TOKEN_URL, "Forbidden", status)
    error = failure(make_source(clock, api_key=api_key))
    assert type(error) is Refused
    text = str(error)
    assert "API key" in text
    assert str(status) in text
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, f'{{"status": "failed", "message": "invalid x-api-key {KEY}"}}'),
        (200, f'{{"status": "failed", "message": "key {KEY} expired"}}'),
        (400, f'{{"message": "{KEY}"}}'),
        (400, json.dumps({"message": f"key {KEY!r} in quotes"})),
        # The key straddles the point where a long message is clipped: no prefix may survive.
        (400, json.dumps({"message": "x" * (119 - len(KEY) // 2) + KEY})),
        (200, json.dumps({"status": "failed", "message": "y" * (115 - len(KEY) // 2) + KEY})),
    ],
)
def test_key_echoed_by_the_server_is_hidden(
    clock: FakeClock, api: responses.RequestsMock, status: int, body: str
) -> None:
    serve(api, TOKEN_URL, body, status)
    error = failure(make_source(clock))
    assert type(error) is Refused
    assert not any(KEY[:n] in str(error) for n in range(6, len(KEY) + 1))


def test_retries_are_logged_without_the_key(
    clock: FakeClock, api: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    serve(api, TOKEN_URL, f'{{"status": "failed", "message": "down, key {KEY}"}}', 503)
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    caplog.set_level(logging.DEBUG, logger="tracker.sources.spacescan")
    source = make_source(clock, include_xch=False)
    assert isinstance(source.read([WatchedAddress(ADDRESS, "cold wallet")])[0], Observation)
    (record,) = [r for r in caplog.records if r.name == "tracker.sources.spacescan"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert ADDRESS in message
    assert "(cold wallet)" in message
    assert "HTTP 503" in message
    assert "attempt 2 of 4" in message
    assert KEY not in message


@pytest.mark.parametrize(
    "message", ["Rate limit exceeded", "Too Many Requests", "ratelimit: slow down"]
)
def test_rate_limit_message_in_a_200_body_is_retried(
    clock: FakeClock, api: responses.RequestsMock, message: str
) -> None:
    serve(api, TOKEN_URL, {"status": "failed", "message": message})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, {"status": "failed", "message": message})
    serve(api, XCH_URL, {"mojo": 3})
    assert observe(make_source(clock, rpm=6000)).balances == {XCH: 3}
    assert len(api.calls) == 4
    assert [w for w in waits(clock) if w >= 1] == [2, 2]


def test_rate_limit_message_in_a_200_body_gives_up_as_rate_limited(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    for _ in range(2):
        serve(api, TOKEN_URL, {"status": "failed", "message": "Rate limit exceeded"})
    error = failure(make_source(clock, retry=RetryPolicy(max_attempts=2)))
    assert type(error) is RateLimited
    text = str(error)
    assert "Rate limit exceeded" in text
    assert "after 2 attempts" in text


def test_every_attempt_is_reported(clock: FakeClock, api: responses.RequestsMock) -> None:
    serve(api, TOKEN_URL, "", 429)
    serve(api, TOKEN_URL, requests.Timeout("read timed out"))
    serve(api, TOKEN_URL, requests.ConnectionError("reset"))
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, "", 503)
    serve(api, XCH_URL, '{"mojo": 1}')
    heard: list[tuple[str, str]] = []
    observe(
        make_source(clock, on_response=lambda endpoint, outcome: heard.append((endpoint, outcome)))
    )
    assert heard == [
        ("token-balance", "429"),
        ("token-balance", "timeout"),
        ("token-balance", "connection"),
        ("token-balance", "200"),
        ("xch-balance", "503"),
        ("xch-balance", "200"),
    ]


def record_times(
    api: responses.RequestsMock, clock: FakeClock, url: str, answers: list[tuple[int, str]]
) -> list[float]:
    """Serve ``answers`` in turn at ``url``, recording the clock when each request arrives."""
    times: list[float] = []
    queue = list(answers)

    def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        times.append(clock.monotonic())
        status, body = queue.pop(0)
        headers = {"Retry-After": "30"} if status == 429 else {}
        return status, headers, body

    api.add_callback(responses.GET, url, callback=callback)
    return times


def test_429_pauses_the_shared_budget_for_other_requests(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    """A 429 on one address (here its last attempt) holds back the next address's request."""
    source = make_source(clock, rpm=600, retry=RetryPolicy(max_attempts=1), include_xch=False)
    start = clock.monotonic()
    first = record_times(api, clock, TOKEN_URL, [(429, "")])
    other = record_times(api, clock, OTHER_TOKEN_URL, [(200, EMPTY_TOKENS)])
    limited, observed = source.read([WatchedAddress(ADDRESS), WatchedAddress(OTHER)])
    assert isinstance(limited, RateLimited)
    assert isinstance(observed, Observation)
    assert first == [start]
    assert other == [start + 30]


class HookedClock(FakeClock):
    """Runs ``hook`` once, at the start of the first wait longer than ``threshold`` seconds."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.hook: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        hook = self.hook
        if hook is not None and seconds > self.threshold:
            self.hook = None
            hook()
        super().sleep(seconds)


def test_other_callers_wait_while_one_backs_off_from_a_429(api: responses.RequestsMock) -> None:
    clock = HookedClock(threshold=5)
    source = make_source(clock, rpm=600, include_xch=False)
    start = clock.monotonic()
    first = record_times(api, clock, TOKEN_URL, [(429, ""), (200, EMPTY_TOKENS)])
    other = record_times(api, clock, OTHER_TOKEN_URL, [(200, EMPTY_TOKENS)])

    def other_caller() -> None:
        # While the first address waits out its 30 s, another address asks (in real life from
        # another thread): its request must not go out before the 30 s are over.
        assert observe(source, OTHER).balances == {}

    clock.hook = other_caller
    observe(source)
    assert first[0] == start
    assert other == [start + 30]
    assert first[1] > other[0]


def test_budget_spaces_the_two_endpoints(clock: FakeClock, api: responses.RequestsMock) -> None:
    token_times = record_times(api, clock, TOKEN_URL, [(200, EMPTY_TOKENS)])
    xch_times = record_times(api, clock, XCH_URL, [(200, '{"mojo": 1}')])
    observe(make_source(clock, rpm=3))
    assert xch_times[0] - token_times[0] == 20


def test_stopped_clock_cancels_instead_of_failing(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    clock.stop()
    with pytest.raises(Cancelled):
        make_source(clock).read([WatchedAddress(ADDRESS)])
    assert len(api.calls) == 0


def test_stop_during_backoff_cancels(api: responses.RequestsMock) -> None:
    clock = HookedClock(threshold=0)
    clock.hook = clock.stop
    serve(api, TOKEN_URL, "", 503)
    with pytest.raises(Cancelled):
        make_source(clock).read([WatchedAddress(ADDRESS), WatchedAddress(OTHER)])
    assert len(api.calls) == 1
