"""The valuation rule and the arithmetic of value changes, pure, for any history (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tracker.domain import MAX_MOJOS, XCH, units
from tracker.valuation import (
    PRICE_DIGITS,
    PRICE_SCALE,
    PriceLine,
    PricePoint,
    ValueChange,
    canonical_price,
    minus,
    rounded,
    split_change,
    sum_changes,
    times,
    total,
    value_of,
)

CAT = "ab" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)

digits = st.integers(min_value=1, max_value=10**PRICE_DIGITS - 1)
prices = st.builds(
    lambda d, scale: canonical_price(Decimal(d).scaleb(-scale)),
    digits,
    st.integers(min_value=0, max_value=PRICE_SCALE - 6),
).filter(lambda p: p is not None)
mojos = st.integers(min_value=0, max_value=MAX_MOJOS)
moments = st.integers(min_value=0, max_value=10_000).map(lambda s: T0 + timedelta(minutes=s))


def test_canonical_price_examples() -> None:
    assert str(canonical_price(Decimal("31.20"))) == "31.2"
    assert str(canonical_price(Decimal("3.12E+1"))) == "31.2"
    assert str(canonical_price(Decimal("1E+2"))) == "100"
    assert format(canonical_price(Decimal("1E-30")) or 0, "f") == "0." + "0" * 29 + "1"
    for bad in [
        "0",
        "-1",
        "NaN",
        "Infinity",
        "1E-31",
        "1234567890123456789",
        "0.1234567890123456789",
    ]:
        assert canonical_price(Decimal(bad)) is None, bad


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_canonical_price_keeps_the_number_or_refuses_it(value: Decimal) -> None:
    price = canonical_price(value)
    if price is None:
        return
    assert price == value
    assert price > 0
    text = format(price, "f")
    whole, _, fraction = text.partition(".")
    assert not fraction.endswith("0")
    assert len((whole + fraction).lstrip("0")) <= PRICE_DIGITS
    assert len(fraction) <= PRICE_SCALE


@given(
    st.lists(st.tuples(moments, prices), max_size=30, unique_by=lambda p: p[0]),
    moments,
    st.integers(min_value=0, max_value=5000),
)
def test_a_moment_gets_the_latest_price_at_or_before_it_and_not_too_old(
    points: list[tuple[datetime, Decimal]], moment: datetime, max_age_minutes: int
) -> None:
    line = PriceLine(PricePoint(price, when) for when, price in points)
    max_age = timedelta(minutes=max_age_minutes)
    earlier = [(when, price) for when, price in points if when <= moment]
    found = line.at(moment, max_age)
    if not earlier or moment - max(earlier)[0] > max_age:
        assert found is None
    else:
        when, price = max(earlier)
        assert found == PricePoint(price, when)


@given(mojos, prices, prices)
def test_a_cat_is_worth_its_xch_value_at_the_xch_price(
    balance: int, in_xch: Decimal, xch_price: Decimal
) -> None:
    amount = units(balance, 3)
    worth = value_of(CAT, amount, PricePoint(in_xch, T0), PricePoint(xch_price, T0 + HOUR), "USD")
    assert worth.value_xch == times(amount, in_xch)
    assert worth.value_xch is not None
    assert worth.value == times(worth.value_xch, xch_price)
    assert worth.price == times(in_xch, xch_price)
    assert worth.price is not None
    assert times(amount, worth.price) == worth.value  # the two routes agree exactly
    assert worth.priced_at == T0


@given(mojos, prices)
def test_xch_is_priced_one_in_xch(balance: int, xch_price: Decimal) -> None:
    amount = units(balance, 12)
    worth = value_of(XCH, amount, None, PricePoint(xch_price, T0), "EUR")
    assert (worth.price_xch, worth.value_xch, worth.price) == (1, amount, xch_price)
    assert worth.value == times(amount, xch_price)
    assert (worth.currency, worth.priced_at) == ("EUR", T0)


def test_unpriced_is_none_never_zero() -> None:
    cat = value_of(CAT, Decimal("5.000"), None, PricePoint(Decimal(30), T0), "USD")
    assert (cat.price_xch, cat.value_xch, cat.price, cat.value, cat.priced) == (
        None,
        None,
        None,
        None,
        False,
    )
    no_fiat = value_of(CAT, Decimal("5.000"), PricePoint(Decimal("0.5"), T0), None, "USD")
    assert (no_fiat.value_xch, no_fiat.value, no_fiat.priced) == (Decimal("2.5000"), None, False)
    xch = value_of(XCH, Decimal("1.5"), None, None, "USD")
    assert (xch.value_xch, xch.value, xch.priced) == (Decimal("1.5"), None, False)
    off = value_of(XCH, Decimal("1.5"), None, None, None)
    assert (off.value_xch, off.value, off.priced) == (Decimal("1.5"), None, True)


def test_exact_beyond_the_default_precision() -> None:
    big = units(MAX_MOJOS, 12)
    price = Decimal("123456789012345678")
    product = str(MAX_MOJOS * 123456789012345678)  # the digits, by integer arithmetic
    assert format(times(big, price), "f") == f"{product[:-12]}.{product[-12:]}"
    assert minus(total([times(big, price), Decimal("1E-30")]), Decimal("1E-30")) == times(
        big, price
    )


# -- flows and market ----------------------------------------------------------------------------

history = st.lists(
    st.tuples(st.integers(min_value=0, max_value=2**62), prices), min_size=1, max_size=25
)


def valued(steps: list[tuple[int, Decimal]]) -> tuple[list[Decimal], list[Decimal]]:
    """The value of each snapshot, and of each delta at its own snapshot's price."""
    values = [times(units(balance, 12), price) for balance, price in steps]
    flows = [
        times(units(balance - before, 12), price)
        for (before, _), (balance, price) in itertools.pairwise(steps)
    ]
    return values, flows


@given(history)
def test_flows_plus_market_is_the_value_change_exactly(steps: list[tuple[int, Decimal]]) -> None:
    values, flows = valued(steps)
    change = split_change(values[0], values[-1], flows)
    assert change.value_change == minus(values[-1], values[0])
    assert change.flows is not None
    assert change.market is not None
    assert total([change.flows, change.market]) == change.value_change


@given(history, st.integers(min_value=1, max_value=24))
def test_periods_add_up_to_the_window(steps: list[tuple[int, Decimal]], cut: int) -> None:
    """The end of one period is the start of the next (the same snapshot, the same price)."""
    values, flows = valued(steps)
    whole = split_change(values[0], values[-1], flows)
    bounds = sorted({0, *range(0, len(values), cut), len(values) - 1})
    parts = [split_change(values[a], values[b], flows[a:b]) for a, b in itertools.pairwise(bounds)]
    summed, unpriced = sum_changes(parts) if parts else (whole, 0)
    assert unpriced == 0
    for field in ("value_change", "flows", "market"):
        assert getattr(summed, field) == getattr(whole, field), field


@given(history)
def test_constant_prices_are_all_flows_and_constant_balances_all_market(
    steps: list[tuple[int, Decimal]],
) -> None:
    price = steps[0][1]
    same_price = [(balance, price) for balance, _ in steps]
    values, flows = valued(same_price)
    change = split_change(values[0], values[-1], flows)
    assert change.market == 0
    assert change.flows == change.value_change
    same_balance = [(steps[0][0], p) for _, p in steps]
    values, flows = valued(same_balance)
    change = split_change(values[0], values[-1], flows)
    assert change.flows == 0
    assert change.market == change.value_change


def test_an_unpriced_part_leaves_the_sum_and_is_counted() -> None:
    priced = split_change(Decimal(10), Decimal(15), [Decimal(2)])
    assert (priced.value_change, priced.flows, priced.market) == (5, 2, 3)
    no_flow_price = split_change(Decimal(10), Decimal(15), [Decimal(2), None])
    assert (no_flow_price.value_change, no_flow_price.flows, no_flow_price.market) == (
        5,
        None,
        None,
    )
    no_start = split_change(None, Decimal(15), [])
    assert (no_start.value_change, no_start.flows, no_start.market) == (None, 0, None)
    summed, unpriced = sum_changes([priced, no_flow_price, no_start, priced])
    assert unpriced == 2
    assert summed == ValueChange(Decimal(20), Decimal(30), Decimal(10), Decimal(4), Decimal(6))
    assert sum_changes([no_start]) == (ValueChange(None, None, None, None, None), 1)


def test_rounding_is_for_display_only() -> None:
    assert str(rounded(Decimal("46.8050000000000"), 2)) == "46.81"
    assert str(rounded(Decimal("-0.0000005"), 6)) == "-0.000001"
    assert str(rounded(units(MAX_MOJOS, 12), 6)) == "9223372.036855"
