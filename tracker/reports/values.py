"""What each holding is worth: balances valued by the rule, and the portfolio's total.

The balances are those of :func:`~tracker.reports.balances.balances` (the latest snapshot of each
address, or the last at or before a moment); each is valued at its own snapshot's time with the
prices of :class:`~tracker.reports.pricebook.PriceBook`. A total sums what is priced and says how
many holdings it left out: a known value is never mixed with a missing one as if it were zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine

from tracker.reports.balances import BalanceRow, balances
from tracker.reports.pricebook import PriceBook, ValueRule
from tracker.reports.selection import EVERYTHING, Selection, asset_order
from tracker.valuation import Valuation, total

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TOTAL = "total"
"""The symbol of the portfolio's row in totals (its asset id is None)."""


@dataclass(slots=True)
class ValueRow:
    """A holding with its value, or (``total``) an asset across addresses, or the portfolio.

    ``unpriced`` (totals only) counts the holdings without a value, left out of the sums.
    """

    address: str | None
    label: str | None
    asset_id: str | None
    symbol: str | None
    taken_at: datetime | None
    balance: Decimal | None
    balance_mojos: int | None
    currency: str | None
    price_xch: Decimal | None
    value_xch: Decimal | None
    price: Decimal | None
    value: Decimal | None
    priced_at: datetime | None
    unpriced: int | None = None


def valued(row: BalanceRow, worth: Valuation) -> ValueRow:
    return ValueRow(
        row.address,
        row.label,
        row.asset_id,
        row.symbol,
        row.taken_at,
        row.balance,
        row.balance_mojos,
        worth.currency,
        worth.price_xch,
        worth.value_xch,
        worth.price,
        worth.value,
        worth.priced_at,
    )


def valued_balances(
    engine: Engine,
    rule: ValueRule,
    selection: Selection = EVERYTHING,
    at: datetime | None = None,
    *,
    portfolio: bool = False,
) -> list[ValueRow]:
    """Each address's balances (the latest, or at ``at``) with their prices and values; with
    ``portfolio``, one row per asset across the addresses and a last row for the whole."""
    rows = balances(engine, selection, at)
    if not rows:
        return []
    moments = [row.taken_at for row in rows]
    with engine.connect() as connection:
        book = PriceBook.load(
            connection, rule, {row.asset_id for row in rows}, min(moments), max(moments)
        )
    result = [valued(row, book.value(row.asset_id, row.balance, row.taken_at)) for row in rows]
    return totals(result, rule.currency) if portfolio else result


def summed(rows: Sequence[BalanceRow]) -> list[ValueRow]:
    """The balances of each asset across the addresses, without values."""
    unvalued = Valuation(None, None, None, None, None, None)
    per_asset = totals([valued(row, unvalued) for row in rows], None)[:-1]
    for row in per_asset:
        row.unpriced = None
    return per_asset


def totals(rows: Sequence[ValueRow], currency: str | None) -> list[ValueRow]:
    """Per asset across addresses (XCH first), then the portfolio (``symbol`` :data:`TOTAL`)."""
    by_asset: dict[str, list[ValueRow]] = defaultdict(list)
    for row in rows:
        if row.asset_id is not None:
            by_asset[row.asset_id].append(row)
    assets = [_asset_total(group, currency) for group in by_asset.values()]
    assets.sort(key=lambda r: asset_order(r.asset_id or "", r.symbol))
    whole = ValueRow(
        None,
        None,
        None,
        TOTAL,
        min((r.taken_at for r in assets if r.taken_at is not None), default=None),
        None,
        None,
        currency,
        None,
        _sum_or_none([r.value_xch for r in assets]),
        None,
        _sum_or_none([r.value for r in assets]) if currency else None,
        min((r.priced_at for r in assets if r.priced_at is not None), default=None),
        sum(r.unpriced or 0 for r in assets),
    )
    return [*assets, whole]


def _asset_total(group: list[ValueRow], currency: str | None) -> ValueRow:
    """One asset across addresses: the sums of what is known; prices of the latest snapshot."""
    latest = max(group, key=lambda r: r.taken_at or _EPOCH)
    counted = [r.value if currency else r.value_xch for r in group]
    first = group[0]
    return ValueRow(
        None,
        None,
        first.asset_id,
        first.symbol,
        min(r.taken_at for r in group if r.taken_at is not None),
        total(r.balance for r in group if r.balance is not None),
        sum(r.balance_mojos or 0 for r in group),
        currency,
        latest.price_xch,
        _sum_or_none([r.value_xch for r in group]),
        latest.price,
        _sum_or_none([r.value for r in group]) if currency else None,
        min((r.priced_at for r in group if r.priced_at is not None), default=None),
        sum(value is None for value in counted),
    )


def _sum_or_none(values: Sequence[Decimal | None]) -> Decimal | None:
    """The sum of the known values; None when none is known."""
    known = [value for value in values if value is not None]
    return total(known) if known else None
