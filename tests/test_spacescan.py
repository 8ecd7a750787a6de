"""The Spacescan client against served answers: good shapes read exactly, bad ones typed errors.

Every test builds the client as production does (a real ``requests.Session``, a shared
``RateBudget``, a ``RetryPolicy``) on a :class:`FakeClock`, and ``responses`` serves the answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
from fakeclock import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker import __version__
from tracker.clock import Cancelled
from tracker.ratelimit import RateBudget, RetryPolicy
from tracker.spacescan import (
    BadAnswer,
    Balances,
    RateLimited,
    Refused,
    SpacescanClient,
    SpacescanError,
    TokenBalance,
    Unavailable,
    parse_token_balances,
    parse_xch_balance,
)

BASE = "https://pro-api.spacescan.io"
KEY = "sk-SECRET-7Qz9-never-log-me"
ADDRESS = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
OTHER = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqm6ks6e8mvy"
TOKEN_URL = f"{BASE}/address/token-balance/{ADDRESS}"
XCH_URL = f"{BASE}/address/xch-balance/{ADDRESS}"
SBX = "a628c1c2c6fcb74d53746157e438e108eab5c0bb3e5c80ff9b1910b3e4832913"
DBX = "db1a9020d48d9d4ad22631b66ab4b9ebd3637ef7758ad38881348c5d24c38f20"
# The docs' example pair: this token id is asset id 14b40962…5cb495.
TOKEN_ID = "tkn1zj6qjckla7qaj49vpkft28kzrnn6ekxx9hvla7fs82j3cc2ukj2ssa84km"
TOKEN_ID_ASSET = "14b40962dfef81d954ac0d92b51ec21ce7acd8c62dd9fef9303aa51c615cb495"
EMPTY_TOKENS = '{"status": "success", "data": []}'


def make_client(
    clock: FakeClock,
    *,
    api_key: str | None = KEY,
    rpm: float = 60.0,
    retry: RetryPolicy | None = None,
    timeout_seconds: float = 30.0,
    base_url: str = BASE,
    budget: RateBudget | None = None,
) -> SpacescanClient:
    return SpacescanClient(
        base_url,
        session=requests.Session(),
        budget=budget or RateBudget(rpm, clock),
        clock=clock,
        retry=retry or RetryPolicy(),
        api_key=api_key,
        timeout_seconds=timeout_seconds,
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


def check_error(exc: BaseException) -> str:
    """Every failure is a SpacescanError with a short one-line message that hides the key."""
    assert isinstance(exc, SpacescanError)
    text = str(exc)
    assert text
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) < 300
    assert KEY not in text
    return text


def fetch_tokens(
    clock: FakeClock, api: responses.RequestsMock, body: str
) -> tuple[TokenBalance, ...]:
    serve(api, TOKEN_URL, body)
    result = make_client(clock).balances(ADDRESS, include_xch=False)
    assert result.xch_mojos is None
    return result.tokens


def fetch_xch(clock: FakeClock, api: responses.RequestsMock, body: str) -> int | None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, body)
    result = make_client(clock).balances(ADDRESS)
    assert result.tokens == ()
    return result.xch_mojos


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
        TokenBalance(asset_id=SBX, name="Spacebucks", symbol="SBX", mojos=1_234_567),
        TokenBalance(asset_id=DBX, name=None, symbol=None, mojos=1),
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
        TokenBalance(SBX, "Spacebucks", "SBX", 1_000_000),
        TokenBalance(DBX, "dexie bucks", "DBX", 7_000),
    )


def test_data_preferred_when_balance_is_not_a_list(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"balance": 12, "data": [{{"asset_id": "{SBX}", "balance": 2}}]}}'
    assert fetch_tokens(clock, api, body) == (TokenBalance(SBX, None, None, 2_000),)


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
    (token,) = fetch_tokens(clock, api, body)
    assert token.mojos == mojos
    assert type(token.mojos) is int


def test_float_arithmetic_would_have_failed_these_amounts() -> None:
    """Guards the exactness cases above: each is one that a float conversion gets wrong."""
    assert int(float("9007199254740.993") * 1000) != 9_007_199_254_740_993
    assert int(float("1.005") * 1000) != 1_005
    assert int(float("123456789012345.678") * 1000) != 123_456_789_012_345_678


def test_sums_like_point_one_plus_point_two_stay_exact(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = (
        f'{{"data": [{{"asset_id": "{SBX}", "balance": 0.1}},'
        f' {{"asset_id": "{DBX}", "balance": "0.2"}}]}}'
    )
    tokens = fetch_tokens(clock, api, body)
    assert sum(token.mojos for token in tokens) == 300
    assert 0.1 + 0.2 != 0.3  # what the same sum gives in floats


@pytest.mark.parametrize(
    "written", [SBX.upper(), "0x" + SBX, "0x" + SBX.upper(), SBX[:32].upper() + SBX[32:]]
)
def test_asset_ids_normalised_to_lowercase(
    clock: FakeClock, api: responses.RequestsMock, written: str
) -> None:
    body = f'{{"data": [{{"asset_id": "{written}", "balance": 1}}]}}'
    (token,) = fetch_tokens(clock, api, body)
    assert token.asset_id == SBX


def test_asset_id_derived_from_token_id_when_missing(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    assert TOKEN_ID_ASSET.startswith("14b40962")
    assert TOKEN_ID_ASSET.endswith("5cb495")
    body = f'{{"data": [{{"token_id": "{TOKEN_ID}", "balance": "5", "symbol": "X"}}]}}'
    assert fetch_tokens(clock, api, body) == (TokenBalance(TOKEN_ID_ASSET, None, "X", 5_000),)


def test_asset_id_null_falls_back_to_uppercase_token_id(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"data": [{{"asset_id": null, "token_id": "{TOKEN_ID.upper()}", "balance": 1}}]}}'
    assert fetch_tokens(clock, api, body) == (TokenBalance(TOKEN_ID_ASSET, None, None, 1_000),)


@pytest.mark.parametrize(
    "body", [EMPTY_TOKENS, '{"status": "success", "balance": []}', '{"data": []}']
)
def test_empty_list_means_no_tokens(
    clock: FakeClock, api: responses.RequestsMock, body: str
) -> None:
    assert fetch_tokens(clock, api, body) == ()


def test_names_are_trimmed_and_blank_names_are_none(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    body = f'{{"data": [{{"asset_id": "{SBX}", "balance": 1, "name": "  ", "symbol": " SBX "}}]}}'
    assert fetch_tokens(clock, api, body) == (TokenBalance(SBX, None, "SBX", 1_000),)


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
    assert make_client(clock).balances(ADDRESS, include_xch=False) == Balances((), None)
    assert [call.request.url for call in api.calls] == [TOKEN_URL]


def test_both_endpoints_read_in_one_call(clock: FakeClock, api: responses.RequestsMock) -> None:
    serve(api, TOKEN_URL, f'{{"data": [{{"asset_id": "{SBX}", "balance": "2.5"}}]}}')
    serve(api, XCH_URL, '{"mojo": 42}')
    assert make_client(clock).balances(ADDRESS) == Balances(
        (TokenBalance(SBX, None, None, 2_500),), 42
    )
    assert [call.request.url for call in api.calls] == [TOKEN_URL, XCH_URL]


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
    error: type[SpacescanError],
    fragment: str,
) -> None:
    api.get(TOKEN_URL, body=body, status=200)
    client = make_client(clock)
    with pytest.raises(SpacescanError) as info:
        client.balances(ADDRESS)
    assert type(info.value) is error
    text = check_error(info.value)
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
    pytest.param('{"mojo": 1e400}', BadAnswer, "too large", id="mojo-huge"),
    pytest.param('{"status": "failed", "message": "Invalid address"}', Refused,
                 "Invalid address", id="status-failed"),
    pytest.param('{"mojo": 1', BadAnswer, "not valid JSON", id="truncated"),
    pytest.param("<html></html>", BadAnswer, "HTML", id="html"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "error", "fragment"), BAD_XCH_ANSWERS)
def test_bad_xch_answer(
    clock: FakeClock,
    api: responses.RequestsMock,
    body: str,
    error: type[SpacescanError],
    fragment: str,
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, body)
    with pytest.raises(SpacescanError) as info:
        make_client(clock).balances(ADDRESS)
    assert type(info.value) is error
    text = check_error(info.value)
    assert fragment in text
    assert text.startswith("xch-balance: ")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from([SBX, "0x" + DBX, TOKEN_ID, "1.5", "-1", "1e3", "0.0001"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["asset_id", "token_id", "balance", "name", "data", "mojo", "xch"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rows=st.lists(JSON_VALUES, max_size=4),
    key=st.sampled_from(["data", "balance"]),
    payload=JSON_VALUES,
)
def test_any_answer_parses_or_raises_spacescan_error(
    rows: list[object], key: str, payload: object
) -> None:
    errors: list[str] = []
    for body in (json.dumps({key: rows}), json.dumps(payload)):
        for parse in (parse_token_balances, parse_xch_balance):
            try:
                parse(body)
            except SpacescanError as exc:
                errors.append(str(exc))
    assert all(error and "\n" not in error for error in errors)


# ---------------------------------------------------------------------------------------------
# HTTP: URLs, headers, timeouts


def test_requests_carry_user_agent_api_key_and_timeout(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, '{"mojo": 1}')
    make_client(clock, base_url=BASE + "/", timeout_seconds=45.0).balances(ADDRESS)
    assert [call.request.url for call in api.calls] == [TOKEN_URL, XCH_URL]
    for call in api.calls:
        headers = call.request.headers
        assert f"tracker/{__version__}" in headers["User-Agent"]
        assert headers["x-api-key"] == KEY
        timeout = call.request.req_kwargs["timeout"]
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        assert read == 45.0
        assert 0 < connect <= read


@pytest.mark.parametrize("api_key", [None, ""])
def test_no_api_key_header_without_a_key(
    clock: FakeClock, api: responses.RequestsMock, api_key: str | None
) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    serve(api, XCH_URL, '{"mojo": 1}')
    make_client(clock, api_key=api_key).balances(ADDRESS)
    for call in api.calls:
        assert "x-api-key" not in call.request.headers
        assert call.request.headers["User-Agent"].startswith(f"tracker/{__version__}")


def test_short_timeout_is_passed_as_is(clock: FakeClock, api: responses.RequestsMock) -> None:
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    make_client(clock, timeout_seconds=5.0).balances(ADDRESS, include_xch=False)
    timeout = api.calls[0].request.req_kwargs["timeout"]
    assert (max(timeout) if isinstance(timeout, tuple) else timeout) == 5.0


def test_repr_hides_the_key(clock: FakeClock) -> None:
    text = repr(make_client(clock))
    assert KEY not in text
    assert BASE in text
    assert "***" in text
    assert KEY not in repr(make_client(clock, api_key=None))


# ---------------------------------------------------------------------------------------------
# Retries


def test_429_with_retry_after_seconds_waits_then_succeeds(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, '{"status": "failed", "message": "rate limit exceeded"}', 429,
          {"Retry-After": "7"})  # fmt: skip
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    start = clock.monotonic()
    assert make_client(clock).balances(ADDRESS, include_xch=False).tokens == ()
    assert waits(clock) == [7]
    assert clock.monotonic() - start == 7
    assert len(api.calls) == 2


def test_429_with_http_date_retry_after(clock: FakeClock, api: responses.RequestsMock) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    serve(api, TOKEN_URL, "", 429, {"Retry-After": when})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    make_client(clock).balances(ADDRESS, include_xch=False)
    assert waits(clock) == [90]


def test_429_with_past_http_date_retries_at_once(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    when = format_datetime(clock.now() - timedelta(hours=1), usegmt=True)
    serve(api, TOKEN_URL, "", 429, {"Retry-After": when})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    make_client(clock, rpm=60).balances(ADDRESS, include_xch=False)
    assert waits(clock) == [1]  # only the budget's 1 s spacing: no backoff
    assert len(api.calls) == 2


def test_429_retry_after_too_long_fails_the_poll_and_pauses_the_budget(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 429, {"Retry-After": "86400"})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    client = make_client(clock, retry=RetryPolicy(max_retry_after=60, max_pause=600))
    with pytest.raises(RateLimited, match="asked to wait 86400 s"):
        client.balances(ADDRESS, include_xch=False)
    assert waits(clock) == []
    assert len(api.calls) == 1
    client.balances(ADDRESS, include_xch=False)  # the next poll waits out the (capped) pause
    assert waits(clock) == [600]


def test_429_with_unreadable_retry_after_backs_off(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 429, {"Retry-After": "soon"})
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    make_client(clock).balances(ADDRESS, include_xch=False)
    assert waits(clock) == [2]


def test_429_without_retry_after_backs_off_exponentially_then_gives_up(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    for _ in range(4):
        serve(api, TOKEN_URL, '{"status": "failed", "message": "rate limit exceeded"}', 429)
    with pytest.raises(RateLimited) as info:
        make_client(clock).balances(ADDRESS)
    text = check_error(info.value)
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
    tokens = make_client(clock).balances(ADDRESS, include_xch=False).tokens
    assert tokens == (TokenBalance(SBX, None, None, 1_000),)
    assert waits(clock) == [2]
    assert len(api.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("connection reset by peer"), requests.Timeout("read timed out")],
    ids=["connection-error", "timeout"],
)
def test_network_failures_are_retried(
    clock: FakeClock, api: responses.RequestsMock, failure: Exception
) -> None:
    serve(api, TOKEN_URL, failure)
    serve(api, TOKEN_URL, failure)
    serve(api, TOKEN_URL, EMPTY_TOKENS)
    assert make_client(clock).balances(ADDRESS, include_xch=False).tokens == ()
    assert waits(clock) == [2, 4]
    assert len(api.calls) == 3


@pytest.mark.parametrize(
    ("failure", "fragment"),
    [
        (requests.ConnectionError("connection refused"), "connection failed"),
        (requests.Timeout("read timed out"), "no answer within 30 s"),
        (requests.exceptions.ChunkedEncodingError("broken"), "connection failed"),
    ],
    ids=["connection-error", "timeout", "chunked"],
)
def test_gives_up_after_max_attempts_saying_how_many(
    clock: FakeClock, api: responses.RequestsMock, failure: Exception, fragment: str
) -> None:
    for _ in range(3):
        serve(api, TOKEN_URL, failure)
    client = make_client(clock, retry=RetryPolicy(max_attempts=3, base_seconds=1))
    with pytest.raises(Unavailable) as info:
        client.balances(ADDRESS)
    assert type(info.value) is Unavailable
    text = check_error(info.value)
    assert fragment in text
    assert "after 3 attempts" in text
    assert waits(clock) == [1, 2]
    assert len(api.calls) == 3


def test_all_server_errors_give_up(clock: FakeClock, api: responses.RequestsMock) -> None:
    for _ in range(4):
        serve(api, TOKEN_URL, '{"status": "failed", "message": "Service Unavailable"}', 503)
    with pytest.raises(Unavailable) as info:
        make_client(clock).balances(ADDRESS)
    text = check_error(info.value)
    assert "HTTP 503" in text
    assert "Service Unavailable" in text
    assert "after 4 attempts" in text
    assert waits(clock) == [2, 4, 8]


def test_single_attempt_policy_does_not_retry(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    serve(api, TOKEN_URL, "", 500)
    with pytest.raises(Unavailable) as info:
        make_client(clock, retry=RetryPolicy(max_attempts=1)).balances(ADDRESS)
    assert "attempts" not in check_error(info.value)
    assert len(api.calls) == 1
    assert waits(clock) == []


@pytest.mark.parametrize("status", [400, 404])
def test_invalid_address_is_refused_without_retry(
    clock: FakeClock, api: responses.RequestsMock, status: int
) -> None:
    serve(api, TOKEN_URL, '{"status": "failed", "message": "Invalid address"}', status)
    with pytest.raises(Refused) as info:
        make_client(clock).balances(ADDRESS)
    text = check_error(info.value)
    assert "Invalid address" in text
    assert str(status) in text
    assert len(api.calls) == 1
    assert waits(clock) == []


@pytest.mark.parametrize(("status", "api_key"), [(403, KEY), (403, None), (401, KEY)])
def test_forbidden_is_refused_without_retry_and_hints_at_the_key(
    clock: FakeClock, api: responses.RequestsMock, status: int, api_key: str | None
) -> None:
    serve(api, TOKEN_URL, "Forbidden", status)
    with pytest.raises(Refused) as info:
        make_client(clock, api_key=api_key).balances(ADDRESS)
    text = check_error(info.value)
    assert "API key" in text
    assert str(status) in text
    assert len(api.calls) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, f'{{"status": "failed", "message": "invalid x-api-key {KEY}"}}'),
        (200, f'{{"status": "failed", "message": "key {KEY} expired"}}'),
        (400, f'{{"message": "{KEY}"}}'),
    ],
)
def test_key_echoed_by_the_server_is_hidden(
    clock: FakeClock, api: responses.RequestsMock, status: int, body: str
) -> None:
    serve(api, TOKEN_URL, body, status)
    with pytest.raises(Refused) as info:
        make_client(clock).balances(ADDRESS)
    assert "***" in check_error(info.value)


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
    result = make_client(clock, rpm=6000).balances(ADDRESS)
    assert result == Balances((), 3)
    assert len(api.calls) == 4
    assert [w for w in waits(clock) if w >= 1] == [2, 2]


def test_rate_limit_message_in_a_200_body_gives_up_as_rate_limited(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    for _ in range(2):
        serve(api, TOKEN_URL, {"status": "failed", "message": "Rate limit exceeded"})
    with pytest.raises(RateLimited) as info:
        make_client(clock, retry=RetryPolicy(max_attempts=2)).balances(ADDRESS)
    text = check_error(info.value)
    assert "Rate limit exceeded" in text
    assert "after 2 attempts" in text


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
    client = make_client(clock, rpm=600, retry=RetryPolicy(max_attempts=1))
    start = clock.monotonic()
    first = record_times(api, clock, TOKEN_URL, [(429, "")])
    other = record_times(api, clock, f"{BASE}/address/token-balance/{OTHER}", [(200, EMPTY_TOKENS)])
    with pytest.raises(RateLimited):
        client.balances(ADDRESS, include_xch=False)
    assert client.balances(OTHER, include_xch=False).tokens == ()
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
    client = make_client(clock, rpm=600)
    start = clock.monotonic()
    first = record_times(api, clock, TOKEN_URL, [(429, ""), (200, EMPTY_TOKENS)])
    other = record_times(api, clock, f"{BASE}/address/token-balance/{OTHER}", [(200, EMPTY_TOKENS)])

    def other_caller() -> None:
        # While the first address waits out its 30 s, another address asks (in real life from
        # another thread): its request must not go out before the 30 s are over.
        assert client.balances(OTHER, include_xch=False).tokens == ()

    clock.hook = other_caller
    client.balances(ADDRESS, include_xch=False)
    assert first[0] == start
    assert other == [start + 30]
    assert first[1] > other[0]


def test_budget_spaces_the_two_endpoints(clock: FakeClock, api: responses.RequestsMock) -> None:
    token_times = record_times(api, clock, TOKEN_URL, [(200, EMPTY_TOKENS)])
    xch_times = record_times(api, clock, XCH_URL, [(200, '{"mojo": 1}')])
    make_client(clock, rpm=3).balances(ADDRESS)
    assert xch_times[0] - token_times[0] == 20


def test_stopped_clock_cancels_instead_of_failing(
    clock: FakeClock, api: responses.RequestsMock
) -> None:
    clock.stop()
    with pytest.raises(Cancelled):
        make_client(clock).balances(ADDRESS)
    assert len(api.calls) == 0


def test_stop_during_backoff_cancels(api: responses.RequestsMock) -> None:
    clock = HookedClock(threshold=0)
    clock.hook = clock.stop
    serve(api, TOKEN_URL, "", 503)
    with pytest.raises(Cancelled):
        make_client(clock).balances(ADDRESS)
    assert len(api.calls) == 1
