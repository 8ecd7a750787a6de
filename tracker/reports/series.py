"""One address's balances over a window, as the points where they changed (for charts)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from tracker.domain import units
from tracker.reports.changes import check_window
from tracker.reports.selection import asset_order, one_address, resolve_asset
from tracker.store import queries
from tracker.store.models import Delta


@dataclass(frozen=True)
class AssetSeries:
    """One asset's balance over a window, as steps: each point's balance holds until the next.

    The first point is the window's start (0 for an asset that appears later), then one point
    per change, then the last snapshot of the window, so the line spans the data it knows.
    """

    asset_id: str
    symbol: str | None
    name: str | None
    points: list[tuple[datetime, Decimal]]


@dataclass(frozen=True)
class Series:
    """The balances of one address over a window; ``since``/``until`` are the window asked for."""

    address: str
    label: str | None
    since: datetime | None
    until: datetime | None
    assets: list[AssetSeries]


def balance_series(
    engine: Engine,
    address: str | None = None,
    asset: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Series:
    """Each asset's balance of one address over a window, as the points where it changed.

    Built like the change report, from the balances at the window's start plus the deltas
    after it, so its size follows the number of changes, not of snapshots: a year of 5-minute
    polls is a handful of points per asset, not 100,000. Without ``address``, the database's
    only address. No snapshot inside the window gives a series without assets.
    """
    check_window(since, until)
    with engine.connect() as connection:
        who = one_address(connection, address)
        only = resolve_asset(connection, asset) if asset is not None else None
        empty = Series(who.address, who.label, since, until, [])
        end = queries.at_or_before(connection, [who.id], until).get(who.id)
        first = queries.at_or_after(connection, [who.id], since).get(who.id)
        if end is None or first is None or first.taken_at > end.taken_at:
            return empty
        at_since = queries.at_or_before(connection, [who.id], since) if since else {}
        start = at_since.get(who.id, first)
        held = queries.balances_of(connection, [start.id], only.id if only else None)[start.id]
        query = (
            select(Delta.taken_at, Delta.asset_id, Delta.balance_mojos)
            .where(
                Delta.address_id == who.id,
                Delta.taken_at > start.taken_at,
                Delta.taken_at <= end.taken_at,
            )
            .order_by(Delta.taken_at)
        )
        if only is not None:
            query = query.where(Delta.asset_id == only.id)
        changes = connection.execute(query).all()
        assets = queries.assets(connection, set(held) | {row.asset_id for row in changes})
    begin = max(since, start.taken_at) if since is not None else start.taken_at
    steps = {pk: [(begin, mojos)] for pk, mojos in held.items()}
    for taken_at, pk, mojos in changes:
        steps.setdefault(pk, [(begin, 0)]).append((taken_at, mojos))
    result = []
    for pk in sorted(steps, key=lambda pk: asset_order(assets[pk].asset_id, assets[pk].symbol)):
        points = steps[pk]
        if points[-1][0] < end.taken_at:
            points.append((end.taken_at, points[-1][1]))
        ref = assets[pk]
        exact = [(when, units(mojos, ref.decimals)) for when, mojos in points]
        result.append(AssetSeries(ref.asset_id, ref.symbol, ref.name, exact))
    return replace(empty, assets=result)
