"""``prices backfill``: XCH prices for history recorded before prices were (or while they failed).

Spacescan answers the XCH price at a past moment (``/stats/price?period=UNIX``). For every UTC
hour holding a snapshot that has no XCH price in the currency (none at or before it within
``max_age_seconds``), the price at the hour's start is fetched, one request per hour, and
recorded as observed at that instant: it values the hour's snapshots up to ``max_age_seconds``
after it. CAT prices in XCH have no history at Spacescan, so CATs stay unpriced unless a price
within ``max_age_seconds`` exists.

Requests go through the one request path (budget, retry policy); each price is committed as it
arrives, so a stop at any moment keeps what was fetched, and a second run asks only for what is
still missing. An hour Spacescan has no price for is asked again by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from tracker.clock import Cancelled, SystemClock
from tracker.config import Settings
from tracker.domain import XCH
from tracker.errors import SourceError
from tracker.reports.pricebook import PriceBook, ValueRule
from tracker.sanitize import printable
from tracker.sources.budget import RateBudget
from tracker.sources.prices import SOURCE_PAST, PriceSource
from tracker.store.models import Snapshot
from tracker.store.prices import PriceRecord, PriceStore
from tracker.valuation import PriceLine

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
PROGRESS_EVERY = 25


@dataclass
class BackfillSummary:
    """What a backfill did: hours that needed a price, and what came of each."""

    hours: int = 0
    recorded: int = 0
    unavailable: int = 0
    failed: int = 0
    stopped: bool = False

    def line(self) -> str:
        done = self.recorded + self.unavailable + self.failed
        text = (
            f"prices backfill: {self.hours} hour{'s' if self.hours != 1 else ''} needed an XCH "
            f"price; {self.recorded} recorded, {self.unavailable} not available at Spacescan, "
            f"{self.failed} failed"
        )
        return text + (f" (stopped after {done})" if self.stopped else "")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def needed_hours(engine: Engine, rule: ValueRule, since: datetime | None = None) -> list[datetime]:
    """The start of each UTC hour whose price would value a snapshot that has none.

    A snapshot more than ``max_age`` after its hour's start would stay unpriced by it: its hour
    is not asked for (lower ``max_age_seconds`` below an hour and such snapshots stay unpriced).
    """
    with engine.connect() as connection:
        book = PriceBook.load(connection, rule, [XCH], since, None)
        line = book.fiat
        known = {point.observed_at for point in line.points}
        query = select(Snapshot.taken_at).distinct().order_by(Snapshot.taken_at)
        if since is not None:
            query = query.where(Snapshot.taken_at >= since)
        result = connection.execution_options(yield_per=10_000).execute(query)
        return list(_unpriced_hours(result.scalars(), line, rule.max_age, known))


def _unpriced_hours(
    moments: Iterator[datetime], line: PriceLine, max_age: timedelta, known: set[datetime]
) -> Iterator[datetime]:
    last = None
    for moment in moments:
        hour = hour_of(moment)
        if hour == last or moment - hour > max_age or hour in known:
            continue
        if line.at(moment, max_age) is None:
            last = hour
            yield hour


def backfill(
    settings: Settings,
    engine: Engine,
    rule: ValueRule,
    clock: SystemClock,
    *,
    since: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackfillSummary:
    """Fetch and record the XCH price of every hour that needs one; stops when the clock does."""
    from tracker.service.assembly import spacescan_source

    assert rule.currency is not None
    say = progress or (lambda text: log.info("%s", text))
    hours = needed_hours(engine, rule, since)
    summary = BackfillSummary(hours=len(hours))
    if not hours:
        return summary
    budget = RateBudget(settings.spacescan.requests_per_minute, clock)
    prices = PriceSource(spacescan_source(settings, clock, budget))
    store = PriceStore(engine, clock)
    store.configure(rule.currency, int(rule.max_age.total_seconds()))
    minutes = len(hours) / settings.spacescan.requests_per_minute
    say(f"prices backfill: {len(hours)} hours to fetch, about {minutes:.0f} min at the budget")
    try:
        for number, hour in enumerate(hours, start=1):
            _one(prices, store, rule.currency, hour, summary)
            if number % PROGRESS_EVERY == 0:
                say(f"prices backfill: {number} of {len(hours)} hours ({hour:%Y-%m-%d %H}:00Z)")
    except Cancelled:
        summary.stopped = True
    return summary


def _one(
    prices: PriceSource,
    store: PriceStore,
    currency: str,
    hour: datetime,
    summary: BackfillSummary,
) -> None:
    try:
        price = prices.xch_price(currency, at=hour)
    except SourceError as exc:
        summary.failed += 1
        log.warning("prices backfill: %s: %s", f"{hour:%Y-%m-%d %H}:00Z", printable(str(exc)))
        return
    if price is None:
        summary.unavailable += 1
        return
    store.record([PriceRecord(XCH, currency, price, hour, SOURCE_PAST)])
    summary.recorded += 1
