"""The prices behind a question's values, read once and looked up by the valuation rule.

A report values thousands of balances and deltas; each value needs the latest price at or before
its moment. Rather than a query per value, the prices of every asset involved, over the window
(back by ``max_age``, the oldest a price may be and still count), are read once into
:class:`~tracker.valuation.PriceLine` s, which answer each lookup by bisection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, select

from tracker.domain import XCH
from tracker.store.models import Asset as AssetRow
from tracker.store.prices import price_lines
from tracker.valuation import (
    MICROSECOND,
    XCH_QUOTE,
    PriceLine,
    PricePoint,
    Valuation,
    value_of,
)

Digits = tuple[int, int]
"""An exact amount as (coefficient, decimals): (4680, 2) is 46.80."""


@dataclass(frozen=True)
class ValueRule:
    """What values are computed in: a currency (None: XCH values only) and the oldest a price
    may be at a snapshot's time and still value it."""

    currency: str | None
    max_age: timedelta

    @classmethod
    def of(cls, currency: str | None, max_age_seconds: float) -> ValueRule:
        return cls(currency, timedelta(seconds=max_age_seconds))


class PriceBook:
    """Prices of some assets over a window; values amounts at moments by the rule."""

    def __init__(
        self, rule: ValueRule, in_xch: dict[str, PriceLine], fiat: PriceLine | None
    ) -> None:
        self.rule = rule
        self.currency = rule.currency
        self._in_xch = in_xch
        self._fiat = fiat or PriceLine()
        self._empty = PriceLine()
        self._age = rule.max_age // MICROSECOND
        self._fiat_at: dict[int, int] = {}

    @classmethod
    def load(
        cls,
        connection: Connection,
        rule: ValueRule,
        asset_ids: Iterable[str],
        since: datetime | None,
        until: datetime | None,
    ) -> PriceBook:
        """The prices of ``asset_ids`` (and of XCH in the currency) that can value a moment
        from ``since`` to ``until`` (either open)."""
        wanted = set(asset_ids) | {XCH}
        keys = {
            row.asset_id: row.id
            for row in connection.execute(
                select(AssetRow.id, AssetRow.asset_id).where(AssetRow.asset_id.in_(sorted(wanted)))
            )
        }
        pairs = [(keys[a], XCH_QUOTE) for a in wanted if a != XCH and a in keys]
        if rule.currency is not None and XCH in keys:
            pairs.append((keys[XCH], rule.currency))
        start = since - rule.max_age if since is not None else None
        lines = price_lines(connection, pairs, start, until)
        by_key = {key: asset for asset, key in keys.items()}
        in_xch = {by_key[key]: line for (key, quote), line in lines.items() if quote == XCH_QUOTE}
        fiat = None
        if rule.currency is not None and XCH in keys:
            fiat = lines.get((keys[XCH], rule.currency))
        return cls(rule, in_xch, fiat)

    def line(self, asset_id: str) -> PriceLine:
        """The asset's prices in XCH (none for XCH itself)."""
        return self._in_xch.get(asset_id, self._empty)

    @property
    def fiat(self) -> PriceLine:
        """XCH's prices in the currency."""
        return self._fiat

    def price_xch(self, asset_id: str, moment: datetime) -> PricePoint | None:
        return None if asset_id == XCH else self.line(asset_id).at(moment, self.rule.max_age)

    def xch_price(self, moment: datetime) -> PricePoint | None:
        if self.currency is None:
            return None
        return self._fiat.at(moment, self.rule.max_age)

    def valuer(self, asset_id: str, decimals: int) -> Callable[[int, int], Digits | None]:
        """A function valuing mojos of the asset at a moment (microseconds since the epoch), by
        the rule: the value that counts (in the currency; without one, in XCH) as (coefficient,
        decimals), or None when unpriced. The digits of :meth:`value`, in integer arithmetic,
        for values by the ten thousand (a report's deltas)."""
        line = None if asset_id == XCH else self.line(asset_id)
        fiat = self._fiat if self.currency is not None else None
        age = self._age
        fiat_at = self._fiat_at  # the changes of one snapshot share its moment

        def value(mojos: int, moment: int) -> Digits | None:
            scale = decimals
            if line is not None:
                found = line.index_at(moment, age)
                if found < 0:
                    return None
                coefficient, extra = line.digits(found)
                mojos, scale = mojos * coefficient, scale + extra
            if fiat is not None:
                found = fiat_at.get(moment, -3)
                if found == -3:
                    found = fiat_at[moment] = fiat.index_at(moment, age)
                if found < 0:
                    return None
                coefficient, extra = fiat.digits(found)
                mojos, scale = mojos * coefficient, scale + extra
            return mojos, scale

        return value

    def value(self, asset_id: str, amount: Decimal, moment: datetime) -> Valuation:
        """``amount`` tokens of the asset as valued at ``moment`` (a snapshot's time)."""
        return value_of(
            asset_id,
            amount,
            self.price_xch(asset_id, moment),
            self.xch_price(moment),
            self.currency,
        )
