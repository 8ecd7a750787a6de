"""What holdings are worth: prices, the valuation rule and the arithmetic of value changes.

Pure: no I/O, no clock. Every source, store, report and the daemon value things through here, so
the rule is written once:

- a CAT is priced in XCH and XCH in the fiat currency; a CAT's fiat value is its XCH value times
  the XCH price, so the two values always agree;
- a snapshot is valued with the latest price observed at or before its time and no older than
  ``max_age``; without one its value is None (unpriced), never zero;
- a change of value splits into ``flows`` (each delta valued at its own snapshot's prices: what
  came in or went out, at the time) and ``market`` (the rest: what prices did), so that
  ``flows + market == value_change`` exactly.

Arithmetic is exact: products and sums of ``Decimal`` in a context that never rounds (the
default context keeps 28 digits, which a large balance times a long price exceeds).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, InvalidOperation

from tracker.domain import XCH

XCH_QUOTE = "xch"
"""The quote of a CAT's price (in XCH); a fiat price's quote is its currency code (``USD``)."""
PRICE_DIGITS = 18
"""Significant digits a price may have (a float rendered as JSON has at most 17)."""
PRICE_SCALE = 30
"""Decimals a price may have."""
ONE = Decimal(1)
FIAT_PLACES = 2
XCH_PLACES = 6
"""Decimals shown for reading (tables, log lines); JSON, CSV and the database keep every one."""

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and what the databases are asked for."""
    return (moment - EPOCH) // MICROSECOND


def canonical_price(value: Decimal) -> Decimal | None:
    """A price as tracker keeps it, or None when it cannot be one.

    Positive and finite, written without an exponent or trailing zeros (``31.20`` and ``3.12E1``
    are both ``31.2``: the same number), with at most :data:`PRICE_DIGITS` significant digits
    and :data:`PRICE_SCALE` decimals. Zero is no price: a market that knows none is not a token
    worth nothing, and an unpriced holding must never count as zero.
    """
    try:
        if not value.is_finite() or value <= 0:
            return None
        text = format(value.normalize(_EXACT), "f")
    except (InvalidOperation, ArithmeticError):
        return None
    whole, _, fraction = text.partition(".")
    digits = (whole + fraction).lstrip("0")
    if len(digits) > PRICE_DIGITS or len(fraction) > PRICE_SCALE:
        return None
    return Decimal(text)


def times(*factors: Decimal) -> Decimal:
    """The exact product (every digit kept: the scale is the sum of the factors' scales)."""
    product = ONE
    for factor in factors:
        product = _EXACT.multiply(product, factor)
    return product


def total(values: Iterable[Decimal]) -> Decimal:
    """The exact sum."""
    result = Decimal(0)
    for value in values:
        result = _EXACT.add(result, value)
    return result


def from_digits(coefficient: int, decimals: int) -> Decimal:
    """``coefficient`` times 10^-``decimals``, exactly (every decimal kept)."""
    return Decimal(coefficient).scaleb(-decimals, _EXACT)


def minus(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.subtract(a, b)


def rounded(amount: Decimal, places: int) -> Decimal:
    """For display only: ``places`` decimals, half away from zero."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_EXACT)


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One observed price: ``price`` per token (in XCH or the fiat currency) at ``observed_at``."""

    price: Decimal
    observed_at: datetime


class PriceLine:
    """One asset's prices in one quote over time, answering the valuation rule.

    Times are kept as integers of microseconds since the epoch (exact, and cheap to bisect a
    year of hourly prices), prices as given (``Decimal``, or their text, made exact when used).
    """

    def __init__(self, points: Iterable[PricePoint] = ()) -> None:
        ordered = sorted(points, key=lambda point: point.observed_at)
        self._times = [micros(point.observed_at) for point in ordered]
        self._prices: list[Decimal | str] = [point.price for point in ordered]
        self._made: dict[int, PricePoint] = {}
        self._digits: dict[int, tuple[int, int]] = {}

    @classmethod
    def of(cls, times: list[int], prices: Sequence[Decimal | str]) -> PriceLine:
        """A line from times (microseconds since the epoch, ascending) and their prices."""
        line = cls()
        line._times, line._prices = times, list(prices)
        return line

    def __len__(self) -> int:
        return len(self._times)

    @property
    def points(self) -> list[PricePoint]:
        return [self.point(index) for index in range(len(self._times))]

    def point(self, index: int) -> PricePoint:
        made = self._made.get(index)
        if made is None:
            price = self._prices[index]
            made = PricePoint(
                price if isinstance(price, Decimal) else Decimal(price),
                EPOCH + timedelta(microseconds=self._times[index]),
            )
            self._made[index] = made
        return made

    def digits(self, index: int) -> tuple[int, int]:
        """The price at ``index`` as (coefficient, decimals): ``0.0011`` is (11, 4). Integer
        arithmetic on these is exact and far cheaper than ``Decimal`` for many values."""
        found = self._digits.get(index)
        if found is None:
            price = self._prices[index]
            if isinstance(price, str):  # canonical text from the database: 0.0011, 31.2, 7
                point = price.find(".")
                scale = 0 if point < 0 else len(price) - point - 1
                found = (int(price.replace(".", "")), scale)
            else:
                scale = max(-price.as_tuple().exponent, 0)  # type: ignore[operator]
                found = (int(price.scaleb(scale, _EXACT)), scale)
            self._digits[index] = found
        return found

    def index_at(self, moment: int, max_age: int) -> int:
        """The rule in microseconds: the position of the latest price at or before ``moment``
        and at most ``max_age`` older, or -1."""
        found = bisect.bisect_right(self._times, moment) - 1
        return found if found >= 0 and moment - self._times[found] <= max_age else -1

    def at(self, moment: datetime, max_age: timedelta) -> PricePoint | None:
        """The latest price observed at or before ``moment`` and at most ``max_age`` old then."""
        found = self.index_at(micros(moment), max_age // MICROSECOND)
        return self.point(found) if found >= 0 else None


@dataclass(frozen=True, slots=True)
class Valuation:
    """What an amount of one asset is worth at one moment; None where unpriced.

    ``price_xch`` is 1 for XCH; ``price`` is per token in ``currency``; ``priced_at`` is when the
    oldest price behind the values was observed (None when nothing is priced).
    """

    currency: str | None
    price_xch: Decimal | None
    value_xch: Decimal | None
    price: Decimal | None
    value: Decimal | None
    priced_at: datetime | None

    @property
    def priced(self) -> bool:
        """Whether the fiat value is known (or, without a currency, the XCH value)."""
        return self.value is not None if self.currency else self.value_xch is not None


def value_of(
    asset_id: str,
    amount: Decimal,
    price_xch: PricePoint | None,
    xch_price: PricePoint | None,
    currency: str | None,
) -> Valuation:
    """Value ``amount`` tokens of an asset with its price in XCH (ignored for XCH itself) and the
    XCH price in ``currency``, both already chosen by the rule (:meth:`PriceLine.at`)."""
    fiat = xch_price if currency is not None else None
    if asset_id == XCH:
        in_xch, when = ONE, None
    elif price_xch is not None:
        in_xch, when = price_xch.price, price_xch.observed_at
    else:
        return Valuation(currency, None, None, None, None, None)
    value_xch = amount if asset_id == XCH else times(amount, in_xch)
    if fiat is None:
        return Valuation(currency, in_xch, value_xch, None, None, when)
    earliest = fiat.observed_at if when is None else min(when, fiat.observed_at)
    return Valuation(
        currency,
        in_xch,
        value_xch,
        fiat.price if asset_id == XCH else times(in_xch, fiat.price),
        times(value_xch, fiat.price),
        earliest,
    )


def amount_of(valuation: Valuation) -> Decimal | None:
    """The value that counts: in the currency, or in XCH when there is none."""
    return valuation.value if valuation.currency else valuation.value_xch


@dataclass(frozen=True, slots=True)
class ValueChange:
    """How a holding's value moved over a window; None where a part is unpriced."""

    start_value: Decimal | None
    end_value: Decimal | None
    value_change: Decimal | None
    flows: Decimal | None
    market: Decimal | None

    @property
    def priced(self) -> bool:
        return None not in (self.start_value, self.end_value, self.flows)


def split_change(
    start_value: Decimal | None, end_value: Decimal | None, flow_values: Sequence[Decimal | None]
) -> ValueChange:
    """``value_change = end - start``; ``flows`` the sum of the deltas' own values (None if any
    is unpriced); ``market = value_change - flows``, so the two always add up exactly."""
    flows = None if any(v is None for v in flow_values) else total(v for v in flow_values if v)
    return split(start_value, end_value, flows)


def split(
    start_value: Decimal | None, end_value: Decimal | None, flows: Decimal | None
) -> ValueChange:
    """:func:`split_change` with the flows already summed."""
    change = None if start_value is None or end_value is None else minus(end_value, start_value)
    market = None if change is None or flows is None else minus(change, flows)
    return ValueChange(start_value, end_value, change, flows, market)


def sum_changes(parts: Iterable[ValueChange]) -> tuple[ValueChange, int]:
    """The sum of the fully priced parts, and how many parts were left out as (partly)
    unpriced: a total never mixes a known value with a missing one."""
    priced = []
    unpriced = 0
    for part in parts:
        if part.priced:
            priced.append(part)
        else:
            unpriced += 1
    if not priced:
        return ValueChange(None, None, None, None, None), unpriced
    return (
        ValueChange(
            total(p.start_value for p in priced if p.start_value is not None),
            total(p.end_value for p in priced if p.end_value is not None),
            total(p.value_change for p in priced if p.value_change is not None),
            total(p.flows for p in priced if p.flows is not None),
            total(p.market for p in priced if p.market is not None),
        ),
        unpriced,
    )
