"""The prices behind a question's values, read once and looked up by the valuation rule.

A report values thousands of balances and deltas; each value needs the latest price at or before
its moment. Rather than a query per value, the prices of every asset involved, over the window
(back by ``max_age``, the oldest a price may be and still count), are read once into
:class:`~tracker.valuation.PriceLine` s, which answer each lookup by bisection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, select

from tracker.domain import XCH
from tracker.store.models import Asset as AssetRow
from tracker.store.prices import price_lines
from tracker.valuation import XCH_QUOTE, PriceLine, PricePoint, Valuation, value_of


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

    def value(self, asset_id: str, amount: Decimal, moment: datetime) -> Valuation:
        """``amount`` tokens of the asset as valued at ``moment`` (a snapshot's time)."""
        return value_of(
            asset_id,
            amount,
            self.price_xch(asset_id, moment),
            self.xch_price(moment),
            self.currency,
        )
