"""The snapshot store: writes polls' outcomes, each snapshot all or nothing.

A snapshot, its balance rows, its deltas and its poll attempt are committed together or not at
all, so a crash or a stop at any moment leaves either the whole snapshot or no trace of it. The
previous snapshot is read inside the same transaction, which keeps deltas right across restarts.

Several polls that are ready together are committed together (:meth:`SnapshotStore.record_many`):
a commit costs a flush to disk, which would otherwise bound a large poll cycle. A batch that
fails is rolled back whole and its polls are stored one by one, so one refused snapshot never
costs the others theirs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from sqlalchemy import Connection, Engine, Insert, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from tracker.config import WatchedAddress
from tracker.db import write_transaction
from tracker.deltas import AssetDelta, compute_deltas
from tracker.models import Address, Asset, Base, Delta, PollAttempt, Snapshot, SnapshotBalance

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 1000
LOCKED_ATTEMPTS = 3
LOCKED_BACKOFF_SECONDS = 1.0
MAX_BATCH = 100
"""Polls per transaction at most: a stop waits for the batch being written (a second or so)."""

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
        (stored,) = self._record_batch([observation])
        return stored

    def record_many(
        self, observations: Sequence[Observation]
    ) -> list[StoredSnapshot | StoreError | SQLAlchemyError]:
        """Store several polls, in order, up to ``MAX_BATCH`` per transaction; each outcome is
        its snapshot or the error that kept it out. A batch that fails (one refused snapshot,
        an address given twice, a lost connection) is stored again one poll at a time."""
        outcomes: list[StoredSnapshot | StoreError | SQLAlchemyError] = []
        for start in range(0, len(observations), MAX_BATCH):
            batch = observations[start : start + MAX_BATCH]
            if len(batch) > 1:
                try:
                    outcomes.extend(self._record_batch(batch))
                    continue
                except (SQLAlchemyError, StoreError) as exc:
                    log.debug("a batch of %d polls failed (%s); one by one", len(batch), exc)
            outcomes.extend(self._record_one(observation) for observation in batch)
        return outcomes

    def _record_one(
        self, observation: Observation
    ) -> StoredSnapshot | StoreError | SQLAlchemyError:
        try:
            return self.record_success(observation)
        except (SQLAlchemyError, StoreError) as exc:
            return exc

    def _record_batch(self, observations: Sequence[Observation]) -> list[StoredSnapshot]:
        address_ids = [self._address_id(observation.address) for observation in observations]
        if len(set(address_ids)) != len(address_ids):
            raise StoreError("an address twice in one batch")  # the caller goes one by one
        stored, fresh_assets = self._write(
            partial(self._store, address_ids=address_ids, observations=observations)
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
        self, connection: Connection, address_ids: list[int], observations: Sequence[Observation]
    ) -> tuple[list[StoredSnapshot], dict[str, _CachedAsset]]:
        """Write the polls of distinct addresses, a handful of statements for the whole batch.

        Statements per batch rather than per poll: what a poll costs is then mostly its rows,
        which is what a large poll cycle must afford.
        """
        # Two writers of one address (the daemon and a `tracker poll`) take turns here: on
        # PostgreSQL through these row locks (taken in id order, so two batches cannot
        # deadlock), on SQLite through BEGIN IMMEDIATE. So the previous snapshots read below are
        # the latest committed ones, and deltas chain correctly.
        connection.execute(_LOCK_ADDRESSES, {"ids": address_ids})
        assets, fresh_assets = self._asset_ids(connection, observations)
        names = {pk: asset for asset, pk in assets.items()}
        latest = _latest_snapshots(connection, address_ids)
        before: dict[int, dict[int, int]] = defaultdict(dict)
        symbols_before: dict[str, str | None] = {}
        if latest:
            for snapshot_id, pk, asset, symbol, mojos in connection.execute(
                _BALANCES_OF, {"ids": [row[0] for row in latest.values()]}
            ):
                before[snapshot_id][pk] = mojos
                names[pk] = asset
                symbols_before.setdefault(asset, symbol)

        plans = []
        for address_id, observation in zip(address_ids, observations, strict=True):
            current = {assets[asset]: mojos for asset, mojos in observation.balances.items()}
            previous = latest.get(address_id)
            if previous is not None and observation.taken_at <= previous[1]:
                raise StoreError(
                    f"a snapshot taken at {previous[1].isoformat()} is already stored, "
                    f"not before this one ({observation.taken_at.isoformat()}): another tracker "
                    "polled this address meanwhile, or the clock went back; this one is dropped"
                )
            held = before[previous[0]] if previous is not None else None
            plans.append(
                (address_id, observation, current, previous, compute_deltas(held, current))
            )

        snapshot_ids = (
            connection.execute(
                _INSERT_SNAPSHOTS,
                [
                    {"address_id": address_id, "taken_at": observation.taken_at}
                    for address_id, observation, _, _, _ in plans
                ],
            )
            .scalars()
            .all()
        )
        balance_rows = [
            {"snapshot_id": snapshot_id, "asset_id": asset, "balance_mojos": mojos}
            for snapshot_id, (_, _, current, _, _) in zip(snapshot_ids, plans, strict=True)
            for asset, mojos in current.items()
        ]
        if balance_rows:
            connection.execute(_INSERT_BALANCES, balance_rows)
        delta_rows = [
            {
                "snapshot_id": snapshot_id,
                "asset_id": delta.asset,
                "previous_snapshot_id": previous[0],
                "address_id": address_id,
                "taken_at": observation.taken_at,
                "previous_balance_mojos": delta.previous_mojos,
                "balance_mojos": delta.mojos,
                "delta_mojos": delta.delta_mojos,
            }
            for snapshot_id, (address_id, observation, _, previous, deltas) in zip(
                snapshot_ids, plans, strict=True
            )
            if previous is not None
            for delta in deltas
        ]
        if delta_rows:
            connection.execute(_INSERT_DELTAS, delta_rows)
        connection.execute(
            _INSERT_ATTEMPTS,
            [
                {
                    "address_id": address_id,
                    "started_at": observation.started_at,
                    "finished_at": observation.taken_at,
                    "ok": True,
                    "error": None,
                    "snapshot_id": snapshot_id,
                }
                for snapshot_id, (address_id, observation, _, _, _) in zip(
                    snapshot_ids, plans, strict=True
                )
            ],
        )

        stored = []
        for snapshot_id, (_, observation, _, previous, deltas) in zip(
            snapshot_ids, plans, strict=True
        ):
            symbols = {a: info.symbol for a, info in observation.assets.items() if info.symbol}
            changed = [names[delta.asset] for delta in deltas]
            stored.append(
                StoredSnapshot(
                    snapshot_id=snapshot_id,
                    baseline=previous is None,
                    deltas=[
                        AssetDelta(name, delta.previous_mojos, delta.mojos)
                        for name, delta in zip(changed, deltas, strict=True)
                    ],
                    symbols={
                        name: symbols[name] if name in symbols else symbols_before.get(name)
                        for name in changed
                    },
                )
            )
        return stored, fresh_assets

    def _address_id(self, address: str) -> int:
        try:
            return self._address_ids[address]
        except KeyError:
            raise StoreError(f"{address} is not a tracked address (sync_addresses first)") from None

    def _asset_ids(
        self, connection: Connection, observations: Sequence[Observation]
    ) -> tuple[dict[str, int], dict[str, _CachedAsset]]:
        """Primary keys of the observed assets, creating assets or updating their names.

        Returns the new cache entries separately: they may enter the cache only once the
        transaction has committed, or a rollback would leave the cache naming missing rows.
        """
        infos: dict[str, AssetInfo | None] = {}
        for observation in observations:
            for asset_id in observation.balances:
                info = observation.assets.get(asset_id)
                if info is not None or asset_id not in infos:
                    infos[asset_id] = info  # the latest poll's names win, as one by one
        ids: dict[str, int] = {}
        stale = []
        for asset_id, info in infos.items():
            cached = self._assets.get(asset_id)
            if cached is None or (info is not None and _merged(cached, info) != cached):
                stale.append(asset_id)
            else:
                ids[asset_id] = cached.id
        fresh: dict[str, _CachedAsset] = {}
        if not stale:
            return ids, fresh
        for asset_id in stale:
            info = infos[asset_id] or AssetInfo(asset_id, None, None, None, 3)
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
            info = infos[row.asset_id]
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


# The write path's statements, built once: building a statement costs more CPU than running it,
# and a large poll cycle runs them for every batch while its fetches need the interpreter too.
_LOCK_ADDRESSES = (
    select(Address.id)
    .where(Address.id.in_(bindparam("ids", expanding=True)))
    .order_by(Address.id)
    .with_for_update()
)
_LATEST = select(Snapshot.address_id, Snapshot.id, Snapshot.taken_at).where(
    Snapshot.id.in_(
        select(
            select(Snapshot.id)
            .where(Snapshot.address_id == Address.id)
            .order_by(Snapshot.taken_at.desc())  # (address_id, taken_at) is unique: no ties
            .limit(1)
            .correlate(Address)
            .scalar_subquery()
        )
        .select_from(Address)
        .where(Address.id.in_(bindparam("ids", expanding=True)))
    )
)
_BALANCES_OF = (
    select(
        SnapshotBalance.snapshot_id,
        SnapshotBalance.asset_id,
        Asset.asset_id,
        Asset.symbol,
        SnapshotBalance.balance_mojos,
    )
    .join(Asset, Asset.id == SnapshotBalance.asset_id)
    .where(SnapshotBalance.snapshot_id.in_(bindparam("ids", expanding=True)))
)
_INSERT_SNAPSHOTS = insert(Snapshot).returning(Snapshot.id, sort_by_parameter_order=True)
_INSERT_BALANCES = insert(SnapshotBalance)
_INSERT_DELTAS = insert(Delta)
_INSERT_ATTEMPTS = insert(PollAttempt)


def _latest_snapshots(
    connection: Connection, address_ids: Sequence[int]
) -> dict[int, tuple[int, datetime]]:
    """Each address's latest snapshot (id, taken_at), one index probe per address."""
    rows = connection.execute(_LATEST, {"ids": list(address_ids)})
    return {row.address_id: (row.id, row.taken_at) for row in rows}


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
