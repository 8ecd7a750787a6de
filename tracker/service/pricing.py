"""Prices for the polls: which to fetch and when, recorded at the poll's time; changes valued.

After a poll has stored its snapshots, :class:`PollPricing` decides what the poll needs: the XCH
price in the currency, and each CAT's price in XCH (for the CATs held, and those that changed,
including one that left). A CAT's price comes from the token-balance answer's ``price_xch`` when a
row carried one (no request), else from ``/token/price``. Each (asset, quote) is fetched at most
once per ``interval_seconds`` for the whole daemon: not when this process tried it within the
interval, nor when the database holds a price of it that recent (a restarted daemon, another
worker of a shared database). Requests share the poll's budget and retry policy.

A price fetched for a poll counts as observed at the poll's first snapshot time, so every
snapshot of the poll is valued with it. A price request that fails is logged and never fails the
poll; its holdings are valued with an older price while one is within ``max_age_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import SQLAlchemyError

from tracker.clock import Cancelled, Clock
from tracker.domain import XCH, units
from tracker.errors import SourceError, StoreError
from tracker.reports.pricebook import PriceBook, ValueRule
from tracker.sanitize import printable
from tracker.service.poller import AddressResult
from tracker.sources.prices import SOURCE_NOW, SOURCE_ROWS, PriceSource
from tracker.store.engine import describe
from tracker.store.prices import PriceRecord, PriceStore
from tracker.valuation import XCH_QUOTE, Valuation

log = logging.getLogger(__name__)

Pair = tuple[str, str]
"""(asset id, quote): ``("xch", "USD")`` or ``(cat asset id, "xch")``."""


class PollPricing:
    """Called with a poll's results once they are stored; returns them with their changes
    valued. Never raises: a failure costs prices, not the poll."""

    def __init__(
        self,
        source: PriceSource,
        store: PriceStore,
        clock: Clock,
        *,
        currency: str,
        interval_seconds: float,
        max_age_seconds: float,
    ) -> None:
        self.source = source
        self.store = store
        self.currency = currency
        self.rule = ValueRule.of(currency, max_age_seconds)
        self._clock = clock
        self._interval = interval_seconds
        self._tried: dict[Pair, float] = {}
        self._configured = False

    def __call__(self, results: list[AddressResult]) -> list[AddressResult]:
        seen = [r for r in results if r.ok and r.observation is not None]
        if not seen:
            return results
        try:
            self._configure()
            self.fetch(seen)
            return self._valued(results)
        except Cancelled:
            log.info("prices not fetched: stopping")
        except (StoreError, SQLAlchemyError) as exc:
            reason = str(exc) if isinstance(exc, StoreError) else describe(exc)
            log.warning("prices: the database failed: %s", reason)
        except Exception as exc:  # a bug in pricing must not cost the poll
            log.error("prices: %s: %s", type(exc).__name__, exc)
            log.debug("prices failure", exc_info=True)
        return results

    def _configure(self) -> None:
        """Once: tell the database which currency and age the view values with."""
        if not self._configured:
            self.store.configure(self.currency, int(self.rule.max_age.total_seconds()))
            self._configured = True

    def fetch(self, results: Sequence[AddressResult]) -> list[PriceRecord]:
        """Fetch and record the prices that are due for these (stored) results."""
        observations = sorted(
            (r.observation for r in results if r.observation is not None),
            key=lambda o: o.taken_at,
        )
        at = observations[0].taken_at
        cats = {a for o in observations for a in o.balances if a != XCH}
        cats |= {d.asset for r in results for d in r.deltas if d.asset != XCH}
        wanted = [(XCH, self.currency), *((cat, XCH_QUOTE) for cat in sorted(cats))]
        due = self._due(wanted, at)
        records = []
        carried = {a: p for o in reversed(observations) for a, p in o.prices_xch.items()}
        for asset, quote in due:
            in_rows = carried.get(asset)
            self._tried[(asset, quote)] = self._clock.monotonic()
            if in_rows is not None:
                records.append(PriceRecord(asset, quote, in_rows, at, SOURCE_ROWS))
                continue
            price = self._ask(asset)
            if price is not None:
                records.append(PriceRecord(asset, quote, price, at, SOURCE_NOW))
        if records:
            self.store.record(records)
            log.debug("prices: %d recorded at %s", len(records), at.isoformat())
        return records

    def _due(self, wanted: Sequence[Pair], at: datetime) -> list[Pair]:
        """Those not tried by this process within the interval, nor priced in the database
        within it (by a previous run, or another worker)."""
        now = self._clock.monotonic()
        untried = [p for p in wanted if now - self._tried.get(p, -1e18) >= self._interval]
        if not untried:
            return []
        recent = self.store.latest(untried)
        window = timedelta(seconds=self._interval)
        return [p for p in untried if p not in recent or at - recent[p] >= window]

    def _ask(self, asset: str) -> Decimal | None:
        """One price request; a failure is logged, and the holdings stay unpriced meanwhile."""
        what = "the XCH price" if asset == XCH else f"the price of {asset[:8]}…"
        try:
            if asset == XCH:
                price = self.source.xch_price(self.currency)
            else:
                price = self.source.token_price(asset, self.currency)
        except SourceError as exc:
            log.warning("prices: %s not fetched: %s", what, printable(str(exc)))
            return None
        if price is None:
            log.info("prices: Spacescan has no %s", what.removeprefix("the "))
        return price

    def _valued(self, results: list[AddressResult]) -> list[AddressResult]:
        """Each change valued at its snapshot's time (the rule of tracker.valuation)."""
        changed = [r for r in results if r.deltas and r.observation is not None]
        if not changed:
            return results
        times = [r.observation.taken_at for r in changed if r.observation is not None]
        assets = {d.asset for r in changed for d in r.deltas}
        with self.store.engine.connect() as connection:
            book = PriceBook.load(connection, self.rule, assets, min(times), max(times))
        return [self._value(result, book) for result in results]

    @staticmethod
    def _value(result: AddressResult, book: PriceBook) -> AddressResult:
        if not result.deltas or result.observation is None:
            return result
        moment = result.observation.taken_at
        values: dict[str, Valuation] = {}
        for delta in result.deltas:
            amount = units(delta.delta_mojos, result.observation.asset(delta.asset).decimals)
            values[delta.asset] = book.value(delta.asset, amount, moment)
        return replace(result, values=values)
