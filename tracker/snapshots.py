"""The snapshot store: writes one poll's outcome, and nothing else, in one transaction.

A snapshot, its balance rows, its deltas and its poll attempt are committed together or not at
all, so a crash or a stop at any moment leaves either the whole snapshot or no trace of it. The
previous snapshot is read inside the same transaction, which keeps deltas right across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from tracker.config import WatchedAddress
from tracker.db import write_transaction
from tracker.deltas import AssetDelta, compute_deltas
from tracker.models import Address, Asset, Base, Delta, PollAttempt, Snapshot, SnapshotBalance

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 1000
LOCKED_ATTEMPTS = 3
LOCKED_BACKOFF_SECONDS = 1.0

_T = TypeVar("_T")


class StoreError(Exception):
    """A snapshot that must not be written (for example the clock went backwards)."""


@dataclass(frozen=True)
class AssetInfo:
    asset_id: str
    token_id: str | None
    name: str | None
    symbol: str | None
    decimals: int


@dataclass(frozen=True)
class Observation:
    """What one successful fetch saw: balances in mojos keyed by asset id (``xch`` for XCH)."""

    address: str
    started_at: datetime
    taken_at: datetime
    balances: dict[str, int]
    assets: dict[str, AssetInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredSnapshot:
    snapshot_id: int
    baseline: bool
    deltas: list[AssetDelta[str]]
    # Symbols of the changed assets, including those that left (absent from the observation).
    symbols: dict[str, str | None] = field(default_factory=dict)


class SnapshotStore:
    """Writes polls to the database. Writes from several threads are serialised here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._address_ids: dict[str, int] = {}
        self._assets: dict[str, _CachedAsset] = {}
        self._write_lock = threading.Lock()

    def freeze(self) -> None:
        """Wait for a write in progress to commit, then refuse all further writes (forever).

        Called before the process exits without waiting for a poll that hangs on the network.
        """
        self._write_lock.acquire()

    def sync_addresses(self, watched: Sequence[WatchedAddress], now: datetime) -> None:
        """Make every configured address known, with its current label; never delete any."""
        self._address_ids = self._write(lambda connection: _sync(connection, watched, now))

    def record_success(self, observation: Observation) -> StoredSnapshot:
        """Store a snapshot with its balances, deltas and poll attempt, atomically."""
        address_id = self._address_id(observation.address)
        stored, fresh_assets = self._write(
            lambda connection: self._store(connection, address_id, observation)
        )
        self._assets.update(fresh_assets)
        return stored

    def record_failure(
        self, address: str, started_at: datetime, finished_at: datetime, error: str
    ) -> None:
        """Leave a visible trace of a failed poll; no snapshot, no balances, no deltas."""
        statement = insert(PollAttempt).values(
            address_id=self._address_id(address),
            started_at=started_at,
            finished_at=finished_at,
            ok=False,
            error=error[:MAX_ERROR_LENGTH],
            snapshot_id=None,
        )
        self._write(lambda connection: connection.execute(statement))

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work`` in one write transaction; again if SQLite says another writer has the lock.

        SQLite already waits ``busy_timeout`` for the lock; a writer that holds it longer (a
        backup, a user's own script) gets a few more tries before this write is given up.
        """
        with self._write_lock:
            for attempt in range(1, LOCKED_ATTEMPTS + 1):
                try:
                    with write_transaction(self.engine) as connection:
                        return work(connection)
                except OperationalError as exc:
                    if attempt == LOCKED_ATTEMPTS or not _is_locked(exc):
                        raise
                    log.warning("database is locked by another writer; trying again")
                    time.sleep(LOCKED_BACKOFF_SECONDS * attempt)
        raise AssertionError("unreachable")

    def _store(
        self, connection: Connection, address_id: int, observation: Observation
    ) -> tuple[StoredSnapshot, dict[str, _CachedAsset]]:
        # Two writers of one address (the daemon and a `tracker poll`) take turns here: on
        # PostgreSQL through this row lock, on SQLite through BEGIN IMMEDIATE. So the previous
        # snapshot read below is always the latest committed one, and deltas chain correctly.
        connection.execute(select(Address.id).where(Address.id == address_id).with_for_update())
        assets, fresh_assets = self._asset_ids(connection, observation)
        current = {assets[asset]: mojos for asset, mojos in observation.balances.items()}
        previous_row = connection.execute(
            select(Snapshot.id, Snapshot.taken_at)
            .where(Snapshot.address_id == address_id)
            .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
            .limit(1)
        ).first()
        previous: dict[int, int] | None = None
        names = {pk: asset for asset, pk in assets.items()}
        symbols: dict[str, str | None] = {
            asset: info.symbol for asset, info in observation.assets.items() if info.symbol
        }
        if previous_row is not None:
            if observation.taken_at <= previous_row.taken_at:
                raise StoreError(
                    f"a snapshot taken at {previous_row.taken_at.isoformat()} is already stored, "
                    f"not before this one ({observation.taken_at.isoformat()}): another tracker "
                    "polled this address meanwhile, or the clock went back; this one is dropped"
                )
            balance_rows = connection.execute(
                select(
                    SnapshotBalance.asset_id,
                    Asset.asset_id,
                    Asset.symbol,
                    SnapshotBalance.balance_mojos,
                )
                .join(Asset, Asset.id == SnapshotBalance.asset_id)
                .where(SnapshotBalance.snapshot_id == previous_row.id)
            ).all()
            previous = {pk: mojos for pk, _, _, mojos in balance_rows}
            names.update((pk, asset) for pk, asset, _, _ in balance_rows)
            for _, asset, symbol, _ in balance_rows:
                symbols.setdefault(asset, symbol)
        deltas = compute_deltas(previous, current)

        snapshot_id = connection.execute(
            insert(Snapshot)
            .values(address_id=address_id, taken_at=observation.taken_at)
            .returning(Snapshot.id)
        ).scalar_one()
        if current:
            connection.execute(
                insert(SnapshotBalance),
                [
                    {"snapshot_id": snapshot_id, "asset_id": asset, "balance_mojos": mojos}
                    for asset, mojos in current.items()
                ],
            )
        if deltas:
            assert previous_row is not None
            connection.execute(
                insert(Delta),
                [
                    {
                        "snapshot_id": snapshot_id,
                        "asset_id": delta.asset,
                        "previous_snapshot_id": previous_row.id,
                        "previous_balance_mojos": delta.previous_mojos,
                        "balance_mojos": delta.mojos,
                        "delta_mojos": delta.delta_mojos,
                    }
                    for delta in deltas
                ],
            )
        connection.execute(
            insert(PollAttempt).values(
                address_id=address_id,
                started_at=observation.started_at,
                finished_at=observation.taken_at,
                ok=True,
                error=None,
                snapshot_id=snapshot_id,
            )
        )
        stored = StoredSnapshot(
            snapshot_id=snapshot_id,
            baseline=previous_row is None,
            deltas=[AssetDelta(names[d.asset], d.previous_mojos, d.mojos) for d in deltas],
            symbols={names[d.asset]: symbols.get(names[d.asset]) for d in deltas},
        )
        return stored, fresh_assets

    def _address_id(self, address: str) -> int:
        try:
            return self._address_ids[address]
        except KeyError:
            raise StoreError(f"{address} is not a tracked address (sync_addresses first)") from None

    def _asset_ids(
        self, connection: Connection, observation: Observation
    ) -> tuple[dict[str, int], dict[str, _CachedAsset]]:
        """Primary keys of the observed assets, creating assets or updating their names.

        Returns the new cache entries separately: they may enter the cache only once the
        transaction has committed, or a rollback would leave the cache naming missing rows.
        """
        ids: dict[str, int] = {}
        stale = []
        for asset_id in observation.balances:
            cached = self._assets.get(asset_id)
            info = observation.assets.get(asset_id)
            if cached is None or (info is not None and _merged(cached, info) != cached):
                stale.append(asset_id)
            else:
                ids[asset_id] = cached.id
        fresh: dict[str, _CachedAsset] = {}
        if not stale:
            return ids, fresh
        for asset_id in stale:
            info = observation.assets.get(asset_id) or AssetInfo(asset_id, None, None, None, 3)
            connection.execute(
                _insert_ignore(
                    connection,
                    Asset,
                    "asset_id",
                    asset_id=info.asset_id,
                    token_id=info.token_id,
                    name=info.name,
                    symbol=info.symbol,
                    decimals=info.decimals,
                )
            )
        rows = connection.execute(
            select(Asset.id, Asset.asset_id, Asset.name, Asset.symbol).where(
                Asset.asset_id.in_(stale)
            )
        ).all()
        for row in rows:
            stored = _CachedAsset(row.id, row.name, row.symbol)
            info = observation.assets.get(row.asset_id)
            merged = _merged(stored, info) if info is not None else stored
            if merged != stored:
                connection.execute(
                    update(Asset)
                    .where(Asset.id == row.id)
                    .values(name=merged.name, symbol=merged.symbol)
                )
            ids[row.asset_id] = row.id
            fresh[row.asset_id] = merged
        return ids, fresh


@dataclass(frozen=True)
class _CachedAsset:
    id: int
    name: str | None
    symbol: str | None


def _merged(stored: _CachedAsset, info: AssetInfo) -> _CachedAsset:
    """A name or symbol the API stops sending (null) keeps its last known value."""
    return _CachedAsset(stored.id, info.name or stored.name, info.symbol or stored.symbol)


def _sync(
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


def _is_locked(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()


def _insert_ignore(
    connection: Connection, model: type[Base], unique: str, **values: object
) -> Insert:
    """INSERT that skips a row another writer inserted first (both databases support it)."""
    insert_ = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement: Insert = (
        insert_(model).values(**values).on_conflict_do_nothing(index_elements=[unique])
    )
    return statement
