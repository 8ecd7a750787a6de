"""Fuzzing of everything that parses text from outside: Spacescan's answers, times, policies.

Each parser either returns what it promises (exact integers of mojos, an aware UTC time in range,
a policy that prints back to itself) or raises its own one-line error; never anything else, and
never a float. Examples are bounded so that the file runs in a few seconds; the regressions found
so far are pinned as explicit examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tracker.domain import MAX_MOJOS, Asset, is_asset_id, token_id
from tracker.errors import SourceError, UsageError
from tracker.retention.policy import TIERS, Policy, PolicyError, parse_policy
from tracker.sources.base import BadAnswer
from tracker.sources.spacescan_answers import parse_token_balances, parse_xch_balance
from tracker.times import EARLIEST, LATEST, MAX_AGE, parse_age, parse_moment

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SBX = "a628c1c2c6fcb74d53746157e438e108eab5c0bb3e5c80ff9b1910b3e4832913"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text
    assert "\n" not in text
    assert "\r" not in text
    return text


# --- JSON-ish answers ----------------------------------------------------------------------------


class Raw(str):
    """JSON text written as is (a number as Spacescan would write it)."""


def dump(value: object) -> str:
    """JSON text for ``value``, with Decimals and Raw numbers written exactly (never via float)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


NUMBER_TEXT = st.sampled_from(
    ["1.5", "-1", "1e3", "0.0001", "1E+400", "1e-999999", "١٢٣", "１２", "0x10", "1_000", " 7 ",
     "NaN", "Infinity", "1.2345678901234567e18", "9223372036854775808", "", "-0", ".5", "5."]
)  # fmt: skip
# Numbers as a JSON writer may put them, including the constants Python's json accepts.
RAW_NUMBERS = st.sampled_from(
    ["1.5", "-1", "1e3", "0.0001", "1E+400", "1e-999999", "-0", "1.2345678901234567e18",
     "9223372036854775808", "1e99999999999999999999", "NaN", "Infinity", "-Infinity"]
).map(Raw)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    RAW_NUMBERS,
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=12),
    NUMBER_TEXT,
    st.sampled_from([SBX, "0x" + SBX.upper(), token_id(SBX), "success", "failed", "rate limit"]),
)
KEYS = st.one_of(
    st.sampled_from(
        ["status", "message", "data", "balance", "asset_id", "token_id", "name", "symbol",
         "mojo", "xch"]
    ),
    st.text(max_size=6),
)  # fmt: skip
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
ROW = st.fixed_dictionaries(
    {},
    optional={
        "asset_id": st.one_of(st.sampled_from([SBX, SBX.upper(), "0x" + SBX]), LEAVES),
        "token_id": st.one_of(st.just(token_id(SBX)), LEAVES),
        "balance": st.one_of(NUMBERS, NUMBER_TEXT, LEAVES),
        "name": LEAVES,
        "symbol": LEAVES,
    },
)
TOKEN_ANSWERS = st.builds(
    lambda key, rows, status: {"status": status, key: rows},
    st.sampled_from(["data", "balance"]),
    st.lists(st.one_of(ROW, JSON), max_size=4),
    st.sampled_from(["success", "success", "failed"]),
)
XCH_ANSWERS = st.one_of(
    st.fixed_dictionaries({}, optional={"mojo": LEAVES, "xch": LEAVES, "status": LEAVES}),
    st.builds(lambda inner: {"data": inner}, st.dictionaries(KEYS, LEAVES, max_size=3)),
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    JSON.map(dump),
    TOKEN_ANSWERS.map(dump),
    XCH_ANSWERS.map(dump),
)


def check_tokens(body: str | bytes) -> tuple[dict[str, int], dict[str, Asset]] | None:
    """The parse, checked to be exact ints under asset ids, or None after a SourceError."""
    try:
        balances, assets = parse_token_balances(body)
    except SourceError as exc:
        one_line(exc)
        return None
    assert balances.keys() == assets.keys()
    for asset_id, mojos in balances.items():
        assert is_asset_id(asset_id)
        assert type(mojos) is int
        assert 0 <= mojos <= MAX_MOJOS
        assert assets[asset_id].asset_id == asset_id
    return balances, assets


def check_xch(body: str | bytes) -> int | None:
    try:
        mojos = parse_xch_balance(body)
    except SourceError as exc:
        one_line(exc)
        return None
    assert type(mojos) is int
    assert 0 <= mojos <= MAX_MOJOS
    return mojos


@FUZZ
@given(body=BODIES)
def test_any_answer_parses_to_exact_ints_or_a_source_error(body: str | bytes) -> None:
    check_tokens(body)
    check_xch(body)


@FUZZ
@given(rows=st.lists(ROW, max_size=4), key=st.sampled_from(["data", "balance"]))
def test_any_token_rows_parse_to_exact_ints_or_a_source_error(
    rows: list[dict[str, object]], key: str
) -> None:
    check_tokens(dump({"status": "success", key: rows}))


MOJOS = st.one_of(
    st.integers(min_value=0, max_value=MAX_MOJOS),
    st.integers(min_value=2**53 - 5, max_value=2**53 + 5),  # where floats stop being exact
    st.sampled_from([0, 1, 999, 1000, 1001, MAX_MOJOS]),
)


def written(mojos: int, decimals: int, style: int) -> str:
    """``mojos`` as a decimal amount of tokens, in one of the ways a JSON writer may put it."""
    amount = Decimal(mojos).scaleb(-decimals)
    text = [
        f"{amount:f}",  # 1234.567
        f"{amount:E}",  # 1.234567E+3
        f"{amount:f}" + "000",  # trailing zeros
        str(amount),  # Python's own form (may be 1.234E+5 or 0.001)
    ][style]
    return text


@FUZZ
@given(mojos=MOJOS, style=st.integers(0, 3), quoted=st.booleans())
def test_token_amounts_round_trip_exactly(mojos: int, style: int, quoted: bool) -> None:
    text = written(mojos, 3, style)
    balance = json.dumps(text) if quoted else text
    body = f'{{"data": [{{"asset_id": "{SBX}", "balance": {balance}}}]}}'
    assert check_tokens(body) == ({SBX: mojos}, {SBX: Asset(SBX)})


@FUZZ
@given(mojos=MOJOS, style=st.integers(0, 3), quoted=st.booleans())
def test_xch_amounts_round_trip_exactly(mojos: int, style: int, quoted: bool) -> None:
    text = written(mojos, 12, style)
    xch = json.dumps(text) if quoted else text
    assert check_xch(f'{{"xch": {xch}}}') == mojos
    mojo = json.dumps(str(mojos)) if quoted else str(mojos)
    assert check_xch(f'{{"xch": 1e-30, "mojo": {mojo}}}') == mojos


@FUZZ
@given(
    whole=st.integers(min_value=0, max_value=10**15),
    fraction=st.integers(min_value=1, max_value=9),
    digits=st.integers(min_value=4, max_value=40),
)
def test_a_fraction_of_a_mojo_is_refused_never_rounded(
    whole: int, fraction: int, digits: int
) -> None:
    amount = f"{whole}.{'0' * (digits - 1)}{fraction}"  # a non-zero digit past the 3rd place
    with pytest.raises(BadAnswer, match="fraction of a mojo"):
        parse_token_balances(f'{{"data": [{{"asset_id": "{SBX}", "balance": {amount}}}]}}')


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (parse_token_balances, f'{{"data": [{{"asset_id": "{SBX}", "balance": "١٢٣"}}]}}'),
        (parse_token_balances, f'{{"data": [{{"asset_id": "{SBX}", "balance": "１２３"}}]}}'),
        (parse_xch_balance, '{"mojo": "١٢٣"}'),
        (parse_xch_balance, '{"xch": "١٢٣"}'),
        (parse_xch_balance, '{"mojo": "١٢٣"}'.encode()),
    ],
)
def test_non_ascii_digits_are_not_a_number(
    parse: Callable[[str | bytes], object], body: str | bytes
) -> None:
    assert int("١٢٣") == 123  # what Python alone would accept
    assert Decimal("１２３") == 123
    with pytest.raises(BadAnswer, match="expected a number"):
        parse(body)


@pytest.mark.parametrize(
    "mojo", ["1.2345678901234567e18", '"1.2345678901234567e18"', "9007199254740993.0", "1e19"]
)
def test_mojo_written_as_a_float_past_2_53_is_refused(mojo: str) -> None:
    assert float("1.2345678901234567e18") == 1234567890123456768  # the digits a float invents
    with pytest.raises(BadAnswer, match="written as a float"):
        parse_xch_balance(f'{{"mojo": {mojo}}}')


# --- times ---------------------------------------------------------------------------------------

TIME_TEXT = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A\s?[0-9]{1,14}[smhdwSMHDW]?\s?\Z"),
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda moment: moment.isoformat()),
    st.builds(
        lambda year, offset: f"{year:04d}-12-31T23:59:59{offset}",
        st.integers(1, 9999),
        st.sampled_from(["", "Z", "+14:00", "-14:00", "+00:00", "-23:59"]),
    ),
)
AGE = re.compile(r"[0-9]+[smhdw]", re.ASCII)
NOWS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@FUZZ
@given(text=TIME_TEXT, now=NOWS)
@example(text="9999999d", now=NOW)
@example(text="9999-12-31T23:59:59-14:00", now=NOW)
@example(text="0001-01-01T00:00:00+14:00", now=NOW)
@example(text="999999999999w", now=NOW)
def test_parse_moment_is_an_aware_utc_time_in_range_or_a_usage_error(
    text: str, now: datetime
) -> None:
    try:
        moment = parse_moment(text, now)
    except UsageError as exc:
        one_line(exc)
        return
    assert moment.utcoffset() == timedelta(0)
    if AGE.fullmatch(text.strip().lower()):
        assert moment == now - parse_age(text)  # up to a century back from now
    else:
        assert EARLIEST <= moment <= LATEST


@FUZZ
@given(text=TIME_TEXT, units=st.sampled_from(["smhdw", "hdw", "d"]))
def test_parse_age_is_a_bounded_duration_or_a_usage_error(text: str, units: str) -> None:
    try:
        age = parse_age(text, units)
    except UsageError as exc:
        one_line(exc)
        return
    assert timedelta(0) <= age <= MAX_AGE
    assert text.strip()[-1].lower() in units


@pytest.mark.parametrize(
    "text",
    ["9999999d", "36501d", "5300w", "999999999999s", "9999-12-31T23:59:59-14:00",
     "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "9000-01-01T00:00:01Z", "٢٠٢٦-01-01",
     "7 d", "-7d", "1.5d", ""],
)  # fmt: skip
def test_out_of_range_or_malformed_times_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_moment(text, NOW)
    assert repr(text) in one_line(info.value)  # names what it refused


def test_an_age_of_a_century_is_the_limit() -> None:
    assert parse_moment("36500d", NOW) == NOW - timedelta(days=36_500)
    assert parse_age("5214w") == timedelta(weeks=5214)
    with pytest.raises(UsageError, match="too long ago"):
        parse_age("5215w")


# --- retention policies --------------------------------------------------------------------------

AGES = st.one_of(
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**6), st.sampled_from("hdwsmHD")),
    st.sampled_from(["forever", "FOREVER", "", "7", "d", "1.5d", "-1d", "9999999d", "forever "]),
)
PARTS = st.builds(
    lambda tier, age, colon: f"{tier}{colon}{age}",
    st.one_of(st.sampled_from([*TIERS, "ALL", " daily ", "yearly", ""]), st.text(max_size=5)),
    AGES,
    st.sampled_from([":", ":", " : ", "", "::"]),
)
POLICY_TEXT = st.one_of(
    st.lists(PARTS, min_size=0, max_size=6).map(",".join),
    st.text(max_size=40),
)


@FUZZ
@given(text=POLICY_TEXT)
@example(text="all:7d,hourly:90d,daily:forever")
@example(text="all:7d,hourly:9999999d")
@example(text="all:forever,daily:7d")
def test_parse_policy_is_a_policy_that_prints_back_or_a_policy_error(text: str) -> None:
    try:
        policy = parse_policy(text)
    except PolicyError as exc:
        error: PolicyError | None = exc
    else:
        error = None
    if error is not None:
        assert isinstance(error, UsageError)
        one_line(error)
        return
    assert isinstance(policy, Policy)
    assert policy.rules
    assert parse_policy(str(policy)) == policy
    tiers = [TIERS.index(rule.tier) for rule in policy.rules]
    assert tiers == sorted(set(tiers))
    ages = [rule.age for rule in policy.rules]
    assert None not in ages[:-1]
    finite = [age for age in ages if age is not None]
    assert finite == sorted(set(finite))
    assert all(timedelta(0) < age <= MAX_AGE for age in finite)


@FUZZ
@given(
    tiers=st.lists(st.sampled_from(TIERS), min_size=1, max_size=5, unique=True).map(
        lambda chosen: sorted(chosen, key=TIERS.index)
    ),
    hours=st.lists(st.integers(1, 36_500 * 24), min_size=5, max_size=5, unique=True).map(sorted),
    forever=st.booleans(),
)
def test_every_well_formed_policy_parses(tiers: list[str], hours: list[int], forever: bool) -> None:
    ages = [f"{hour}h" for hour in hours[: len(tiers)]]
    if forever:
        ages[-1] = "forever"
    policy = parse_policy(",".join(f"{tier}:{age}" for tier, age in zip(tiers, ages, strict=True)))
    assert [rule.tier for rule in policy.rules] == tiers
    expected: list[timedelta | None] = [timedelta(hours=hour) for hour in hours[: len(tiers)]]
    if forever:
        expected[-1] = None
    assert [rule.age for rule in policy.rules] == expected
