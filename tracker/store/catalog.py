"""The rows snapshots refer to: the watched addresses, and the assets with their names.

Both are written by whoever meets them first (another writer may insert the same row at the same
moment: the insert then does nothing), and never deleted: a removed address keeps its history.
An asset's name and symbol follow the latest source that sent them; a source that stops sending
one (null) does not erase it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tracker.domain import Asset, Observation, WatchedAddress
from tracker.store.models import Address, Base
from tracker.store.models import Asset as AssetRow


@dataclass(frozen=True)
class CachedAsset:
    id: int
    name: str | None
    symbol: str | None


def asset_keys(
    connection: Connection, cache: dict[str, CachedAsset], observations: Sequence[Observation]
) -> tuple[dict[str, int], dict[str, CachedAsset]]:
    """Keys of the observed assets, creating assets or updating their names.

    Returns the new cache entries separately: they may enter the cache only once the
    transaction has committed, or a rollback would leave the cache naming missing rows.
    """
    infos: dict[str, Asset] = {}
    for observation in observations:
        for asset_id in observation.balances:
            known = observation.assets.get(asset_id)
            if known is not None or asset_id not in infos:
                infos[asset_id] = observation.asset(asset_id)  # the latest poll's names win
    ids: dict[str, int] = {}
    stale = []
    for asset_id, info in infos.items():
        cached = cache.get(asset_id)
        if cached is None or merged(cached, info) != cached:
            stale.append(asset_id)
        else:
            ids[asset_id] = cached.id
    fresh: dict[str, CachedAsset] = {}
    if stale:
        ids.update(upsert_assets(connection, [infos[a] for a in stale], fresh))
    return ids, fresh


def upsert_assets(
    connection: Connection, infos: Sequence[Asset], fresh: dict[str, CachedAsset]
) -> dict[str, int]:
    for info in infos:
        connection.execute(
            _insert_ignore(
                connection,
                AssetRow,
                "asset_id",
                asset_id=info.asset_id,
                token_id=info.token_id,
                name=info.name,
                symbol=info.symbol,
                decimals=info.decimals,
            )
        )
    by_id = {info.asset_id: info for info in infos}
    rows = connection.execute(
        select(AssetRow.id, AssetRow.asset_id, AssetRow.name, AssetRow.symbol).where(
            AssetRow.asset_id.in_(list(by_id))
        )
    ).all()
    ids = {}
    for row in rows:
        stored = CachedAsset(row.id, row.name, row.symbol)
        names = merged(stored, by_id[row.asset_id])
        if names != stored:
            connection.execute(
                update(AssetRow)
                .where(AssetRow.id == row.id)
                .values(name=names.name, symbol=names.symbol)
            )
        ids[row.asset_id] = row.id
        fresh[row.asset_id] = names
    return ids


def merged(stored: CachedAsset, info: Asset) -> CachedAsset:
    """A name or symbol the source stops sending (null) keeps its last known value."""
    return CachedAsset(stored.id, info.name or stored.name, info.symbol or stored.symbol)


def sync_addresses(
    connection: Connection, watched: Sequence[WatchedAddress], now: datetime
) -> dict[str, int]:
    existing = {
        row.address: row.label for row in connection.execute(select(Address.address, Address.label))
    }
    for entry in watched:
        if entry.address not in existing:
            connection.execute(
                _insert_ignore(
                    connection,
                    Address,
                    "address",
                    address=entry.address,
                    label=entry.label,
                    added_at=now,
                )
            )
        elif existing[entry.address] != entry.label:
            connection.execute(
                update(Address).where(Address.address == entry.address).values(label=entry.label)
            )
    return {row.address: row.id for row in connection.execute(select(Address.id, Address.address))}


def _insert_ignore(
    connection: Connection, model: type[Base], unique: str, **values: object
) -> Insert:
    """INSERT that skips a row another writer inserted first (both databases support it)."""
    insert_ = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement: Insert = (
        insert_(model).values(**values).on_conflict_do_nothing(index_elements=[unique])
    )
    return statement
