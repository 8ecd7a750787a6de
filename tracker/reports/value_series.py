"""The portfolio's value over time, per asset, for a chart.

Built like the balance series (start balances plus the deltas after them, so its size follows the
number of changes, not of snapshots) for every selected address at once: each asset's balance,
summed over the addresses, is a step function; its value at a moment is that balance valued with
the prices of that moment (the latest at most ``max_age`` old; without one, None: a gap in the
band, never zero). The moments are those where something changed (a balance, a price), thinned
to an even grid when there are too many to draw.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, bindparam, select

from tracker.domain import units
from tracker.reports.changes import check_window, windows_of
from tracker.reports.pricebook import PriceBook, ValueRule
from tracker.reports.selection import (
    EVERYTHING,
    Selection,
    asset_order,
    resolve_addresses,
    selected_asset,
)
from tracker.store import queries
from tracker.store.models import Delta
from tracker.store.queries import AssetRef
from tracker.valuation import amount_of

MAX_POINTS = 2000
"""More moments than this are thinned to an even grid (a chart is a few thousand pixels)."""


@dataclass(frozen=True)
class AssetValues:
    """One asset's value (in the currency) at each of the series' times; None: unpriced."""

    asset_id: str
    symbol: str | None
    name: str | None
    values: list[Decimal | None]


@dataclass(frozen=True)
class ValueSeries:
    """Values of a selection of addresses: ``who`` names it for the title."""

    who: str
    currency: str | None
    since: datetime | None
    until: datetime | None
    times: list[datetime]
    assets: list[AssetValues]


def value_series(
    engine: Engine,
    rule: ValueRule,
    selection: Selection = EVERYTHING,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ValueSeries:
    """The value of the selected addresses' holdings over a window, per asset."""
    check_window(since, until)
    with engine.connect() as connection:
        addresses = resolve_addresses(connection, selection)
        only = selected_asset(connection, selection)
        windows = windows_of(connection, addresses, since, until)
        starts = queries.balances_of(
            connection, [start.id for start, _ in windows.values()], only.id if only else None
        )
        query = select(Delta.taken_at, Delta.asset_id, Delta.delta_mojos).where(
            Delta.address_id == bindparam("address"),
            Delta.taken_at > bindparam("after"),
            Delta.taken_at <= bindparam("through"),
        )
        if only is not None:
            query = query.where(Delta.asset_id == only.id)
        events: list[tuple[datetime, int, int]] = []
        for address_id, (start, end) in windows.items():
            events += [(start.taken_at, pk, m) for pk, m in starts.get(start.id, {}).items()]
            events += connection.execute(
                query, {"address": address_id, "after": start.taken_at, "through": end.taken_at}
            ).all()
        assets = queries.assets(connection, {pk for _, pk, _ in events})
        ends = [end.taken_at for _, end in windows.values()]
        begin = min((s.taken_at for s, _ in windows.values()), default=None)
        book = PriceBook.load(
            connection, rule, {a.asset_id for a in assets.values()}, begin, max(ends, default=None)
        )
    who = _who(selection, len(addresses))
    if begin is None:
        return ValueSeries(who, rule.currency, since, until, [], [])
    first = max(begin, since) if since is not None else begin
    times = _moments(events, book, assets, first, max(ends))
    return ValueSeries(
        who, rule.currency, since, until, times, _values(events, assets, book, times)
    )


def _who(selection: Selection, count: int) -> str:
    if selection.address is not None:
        return selection.address
    if selection.label is not None:
        return f"label {selection.label} ({count} address{'es' if count != 1 else ''})"
    return f"all addresses ({count})"


def _moments(
    events: list[tuple[datetime, int, int]],
    book: PriceBook,
    assets: dict[int, AssetRef],
    first: datetime,
    last: datetime,
) -> list[datetime]:
    """Where a value may change: balance changes and prices, from ``first`` to ``last``."""
    found = {first, last} | {when for when, _, _ in events if first < when <= last}
    lines = [book.fiat, *(book.line(a.asset_id) for a in assets.values())]
    found |= {p.observed_at for line in lines for p in line.points if first < p.observed_at < last}
    times = sorted(found)
    if len(times) <= MAX_POINTS:
        return times
    step = (last - first) / (MAX_POINTS - 1)
    return [first + step * n for n in range(MAX_POINTS - 1)] + [last]


def _values(
    events: list[tuple[datetime, int, int]],
    assets: dict[int, AssetRef],
    book: PriceBook,
    times: list[datetime],
) -> list[AssetValues]:
    """Sweep the balance changes in time order; value each asset's total at every moment."""
    pending = list(events)
    heapq.heapify(pending)
    held: dict[int, int] = defaultdict(int)
    series: dict[int, list[Decimal | None]] = {pk: [] for pk in assets}
    for moment in times:
        while pending and pending[0][0] <= moment:
            _, pk, mojos = heapq.heappop(pending)
            held[pk] += mojos
        for pk, ref in assets.items():
            mojos = held[pk]
            worth = book.value(ref.asset_id, units(mojos, ref.decimals), moment)
            series[pk].append(Decimal(0) if mojos == 0 else amount_of(worth))
    order = sorted(assets.values(), key=lambda a: asset_order(a.asset_id, a.symbol))
    return [AssetValues(a.asset_id, a.symbol, a.name, series[a.id]) for a in order]
