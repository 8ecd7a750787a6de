"""Balances: each address's latest (or at a moment), and one address's series over time."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from tracker.domain import units
from tracker.reports.selection import (
    EVERYTHING,
    Selection,
    asset_order,
    ids,
    resolve_addresses,
    resolve_asset,
    selected_asset,
)
from tracker.store import queries
from tracker.store.models import Snapshot, SnapshotBalance


@dataclass(frozen=True, slots=True)
class BalanceRow:
    address: str
    label: str | None
    asset_id: str
    symbol: str | None
    name: str | None
    taken_at: datetime
    balance_mojos: int
    balance: Decimal


def balances(
    engine: Engine, selection: Selection = EVERYTHING, at: datetime | None = None
) -> list[BalanceRow]:
    """Each address's balances at its last snapshot at or before ``at`` (default: the latest)."""
    with engine.connect() as connection:
        addresses = resolve_addresses(connection, selection)
        only = selected_asset(connection, selection)
        found = queries.at_or_before(connection, ids(addresses), at)
        who = {found[a.id].id: a for a in addresses if a.id in found}
        if not who:
            return []
        taken = {snap.id: snap.taken_at for snap in found.values()}
        held = queries.balances_of(connection, list(who), only.id if only else None)
        assets = queries.assets(connection, {pk for mojos in held.values() for pk in mojos})
    rows = [
        BalanceRow(
            who[snapshot_id].address,
            who[snapshot_id].label,
            assets[pk].asset_id,
            assets[pk].symbol,
            assets[pk].name,
            taken[snapshot_id],
            mojos,
            units(mojos, assets[pk].decimals),
        )
        for snapshot_id, by_asset in held.items()
        for pk, mojos in by_asset.items()
    ]
    return sorted(rows, key=lambda r: (r.address, asset_order(r.asset_id, r.symbol)))


def first_taken(engine: Engine, selection: Selection = EVERYTHING) -> datetime | None:
    """When the history of the selected addresses starts (None: nothing stored yet)."""
    with engine.connect() as connection:
        addresses = resolve_addresses(connection, selection)
        found = queries.first(connection, ids(addresses))
    return min((snap.taken_at for snap in found.values()), default=None)


def history(
    engine: Engine,
    address: str,
    asset: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BalanceRow]:
    """The balance of every asset at every snapshot of ``address`` from ``since`` to ``until``
    (both included), oldest first.

    Once an asset has appeared it stays in the series with 0 while it is not held, so a series
    never just stops: the drop to zero is visible.
    """
    with engine.connect() as connection:
        (who,) = resolve_addresses(connection, Selection(address=address))
        only = resolve_asset(connection, asset) if asset is not None else None
        window = [Snapshot.address_id == who.id]
        if since is not None:
            window.append(Snapshot.taken_at >= since)
        if until is not None:
            window.append(Snapshot.taken_at <= until)
        snapshots = connection.execute(
            select(Snapshot.id, Snapshot.taken_at).where(*window).order_by(Snapshot.taken_at)
        ).all()
        query = (
            select(
                SnapshotBalance.snapshot_id,
                SnapshotBalance.asset_id,
                SnapshotBalance.balance_mojos,
            )
            .join(Snapshot, Snapshot.id == SnapshotBalance.snapshot_id)
            .where(*window)
        )
        if only is not None:
            query = query.where(SnapshotBalance.asset_id == only.id)
        by_snapshot: dict[int, dict[int, int]] = defaultdict(dict)
        for snapshot_id, asset_pk, mojos in connection.execute(query):
            by_snapshot[snapshot_id][asset_pk] = mojos
        assets = queries.assets(connection, {pk for held in by_snapshot.values() for pk in held})
    order = sorted(assets.values(), key=lambda a: asset_order(a.asset_id, a.symbol))
    rows: list[BalanceRow] = []
    seen: set[int] = set()
    for snapshot in snapshots:
        held = by_snapshot.get(snapshot.id, {})
        seen.update(held)
        for ref in order:
            if ref.id in seen:
                mojos = held.get(ref.id, 0)
                rows.append(
                    BalanceRow(
                        who.address,
                        who.label,
                        ref.asset_id,
                        ref.symbol,
                        ref.name,
                        snapshot.taken_at,
                        mojos,
                        units(mojos, ref.decimals),
                    )
                )
    return rows
