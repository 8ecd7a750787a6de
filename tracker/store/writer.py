"""The snapshot writer: each snapshot, with its balances, deltas and poll attempt, all or nothing.

A snapshot, its balance rows, its deltas and its poll attempt are committed together or not at
all, so a crash or a stop at any moment leaves either the whole snapshot or no trace of it. The
neighbouring snapshots are read inside the same transaction, under the address's turn (a row lock
on PostgreSQL, the write lock on SQLite), which keeps deltas right across restarts and next to
other writers.

Polls that are ready together are committed together: a commit costs a flush to disk, which
would otherwise bound a large poll cycle. A batch that fails is stored again one poll at a time,
and each of those first looks for its own snapshot: when a COMMIT's acknowledgement was lost, the
snapshot is there already, and it is recognised rather than stored twice or reported as failed.

A snapshot older than the address's latest (two polls of one address at once, a clock set back,
a backfill) is inserted where it belongs: it gets the deltas from the snapshot before it, and the
snapshot after it gets its deltas again from the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, bindparam, insert, select
from sqlalchemy.exc import SQLAlchemyError

from tracker.clock import Clock, SystemClock
from tracker.domain import AssetDelta, Observation, WatchedAddress, compute_deltas
from tracker.errors import StoreError, WriteRefused
from tracker.retry import RetryPolicy
from tracker.store import queries
from tracker.store.catalog import CachedAsset, asset_keys, sync_addresses
from tracker.store.engine import database_error, is_locked, write_transaction
from tracker.store.models import Address, Delta, PollAttempt, Snapshot, SnapshotBalance

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 1000
MAX_BATCH = 100
"""Polls per transaction at most: a stop waits for the batch being written (a second or so)."""
LOCKED_RETRY = RetryPolicy(max_attempts=6, base_seconds=0.5, multiplier=2.0, max_seconds=5.0)
"""Another SQLite writer (a backup, a user's script) holds the lock: SQLite waits a few seconds
itself, then these tries, each a wait that a stop cancels."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class Stored:
    """What a stored poll wrote: its snapshot, and the deltas from the snapshot before it."""

    snapshot_id: int
    baseline: bool
    deltas: list[AssetDelta[str]]
    # Symbols of the changed assets, including those that left (absent from the observation).
    symbols: dict[str, str | None] = field(default_factory=dict)
    recovered: bool = False
    """Found already stored: a lost COMMIT acknowledgement, or the same poll stored twice."""
    out_of_order: bool = False
    """Older than the address's latest snapshot, so inserted before it."""


class SnapshotStore:
    """Writes polls to the database; writes from several threads are serialised here."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self._clock = clock or SystemClock()
        self._address_ids: dict[str, int] = {}
        self._assets: dict[str, CachedAsset] = {}
        self._write_lock = threading.Lock()

    def freeze(self, timeout: float) -> bool:
        """Let a write in progress commit (for up to ``timeout`` s), then refuse every later one.

        Called before the process exits without waiting for a poll that hangs; False when a
        write was still running (it is rolled back when the process ends: never half-written).
        """
        return self._write_lock.acquire(timeout=timeout)

    def sync_addresses(self, watched: Sequence[WatchedAddress], now: datetime) -> dict[str, int]:
        """Make every configured address known, with its current label; never delete any."""
        self._address_ids = self._write(lambda connection: sync_addresses(connection, watched, now))
        return dict(self._address_ids)

    def record_one(self, observation: Observation) -> Stored:
        """Store one poll; raises ``StoreError``."""
        (outcome,) = self.record([observation])
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    def record(self, observations: Sequence[Observation]) -> list[Stored | StoreError]:
        """Store several polls, in order, up to ``MAX_BATCH`` per transaction; each outcome is
        what it stored or the error that kept it out. A batch that fails (one refused
        snapshot, an address given twice, a lost connection) is stored again one by one."""
        outcomes: list[Stored | StoreError] = []
        for start in range(0, len(observations), MAX_BATCH):
            batch = observations[start : start + MAX_BATCH]
            if len(batch) > 1:
                try:
                    outcomes.extend(self._record_batch(batch))
                    continue
                except (StoreError, SQLAlchemyError) as exc:
                    log.debug("a batch of %d polls failed (%s); one by one", len(batch), exc)
            outcomes.extend(self._record_alone(observation) for observation in batch)
        return outcomes

    def _record_alone(self, observation: Observation) -> Stored | StoreError:
        try:
            (stored,) = self._record_batch([observation])
            return stored
        except StoreError as exc:
            return exc
        except SQLAlchemyError as exc:
            return database_error(self.engine.url, exc)

    def _record_batch(self, observations: Sequence[Observation]) -> list[Stored]:
        address_ids = [self._address_id(observation.address) for observation in observations]
        if len(set(address_ids)) != len(address_ids):
            raise WriteRefused("an address twice in one batch")  # the caller goes one by one
        stored, fresh = self._write(
            lambda connection: self._store(connection, address_ids, observations)
        )
        self._assets.update(fresh)
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
        """Run ``work`` in one write transaction, again while SQLite says it is locked."""

        def attempt(_number: int) -> _T:
            with write_transaction(self.engine) as connection:
                return work(connection)

        def waiting(number: int, _exc: Exception, wait: float) -> None:
            log.warning(
                "the database is locked by another writer; trying again in %.1f s (%d of %d)",
                wait,
                number + 1,
                LOCKED_RETRY.max_attempts,
            )

        with self._write_lock:
            return LOCKED_RETRY.run(attempt, self._clock, retryable=is_locked, on_retry=waiting)

    def _address_id(self, address: str) -> int:
        try:
            return self._address_ids[address]
        except KeyError:
            raise WriteRefused(f"{address} is not a tracked address (sync it first)") from None

    def _store(
        self, connection: Connection, address_ids: list[int], observations: Sequence[Observation]
    ) -> tuple[list[Stored], dict[str, CachedAsset]]:
        """Write the polls of distinct addresses, a handful of statements for the whole batch.

        Statements per batch rather than per poll: what a poll costs is then mostly its rows,
        which is what a large poll cycle must afford.
        """
        # Two writers of one address (the daemon and a `tracker poll`) take turns here: on
        # PostgreSQL through these row locks (taken in id order, so two batches cannot
        # deadlock), on SQLite through BEGIN IMMEDIATE. So the snapshots read below are the
        # latest committed ones, and deltas chain correctly.
        connection.execute(_LOCK_ADDRESSES, {"ids": address_ids})
        assets, fresh = asset_keys(connection, self._assets, observations)
        latest = queries.latest(connection, address_ids)
        results: dict[int, Stored] = {}
        appended: list[tuple[int, Observation]] = []
        for index, (address_id, observation) in enumerate(
            zip(address_ids, observations, strict=True)
        ):
            previous = latest.get(address_id)
            if previous is None or observation.taken_at > previous.taken_at:
                appended.append((index, observation))
            else:
                results[index] = _insert_between(connection, address_id, observation, assets)
        if appended:
            stored = _append(
                connection,
                [address_ids[index] for index, _ in appended],
                [observation for _, observation in appended],
                latest,
                assets,
            )
            results.update(zip((index for index, _ in appended), stored, strict=True))
        return [results[index] for index in range(len(observations))], fresh


def _append(
    connection: Connection,
    address_ids: list[int],
    observations: list[Observation],
    latest: dict[int, queries.SnapshotRef],
    assets: dict[str, int],
) -> list[Stored]:
    """The usual case: each poll newer than its address's latest snapshot, set-based."""
    current = [
        {assets[asset]: mojos for asset, mojos in observation.balances.items()}
        for observation in observations
    ]
    previous = [latest.get(address_id) for address_id in address_ids]
    held = queries.balances_of(connection, [p.id for p in previous if p is not None])
    snapshot_ids = _insert_snapshots(connection, address_ids, observations, current)
    delta_rows: list[dict[str, object]] = []
    for address_id, snapshot_id, observation, now, before in zip(
        address_ids, snapshot_ids, observations, current, previous, strict=True
    ):
        if before is not None:
            following = queries.SnapshotRef(snapshot_id, observation.taken_at)
            delta_rows += queries.delta_rows(address_id, before, following, held[before.id], now)
    queries.insert_deltas(connection, delta_rows)
    names = _asset_names(
        connection, [*assets.values(), *(pk for balances in held.values() for pk in balances)]
    )
    return [
        _stored(snapshot_id, observation, held[before.id] if before else None, now, names)
        for snapshot_id, observation, now, before in zip(
            snapshot_ids, observations, current, previous, strict=True
        )
    ]


def _insert_snapshots(
    connection: Connection,
    address_ids: list[int],
    observations: list[Observation],
    current: list[dict[int, int]],
) -> list[int]:
    """The snapshots, their balance rows and their (successful) poll attempts."""
    snapshot_ids: list[int] = list(
        connection.execute(
            _INSERT_SNAPSHOTS,
            [
                {"address_id": address_id, "taken_at": observation.taken_at}
                for address_id, observation in zip(address_ids, observations, strict=True)
            ],
        ).scalars()
    )
    balance_rows = [
        {"snapshot_id": snapshot_id, "asset_id": asset, "balance_mojos": mojos}
        for snapshot_id, held in zip(snapshot_ids, current, strict=True)
        for asset, mojos in held.items()
    ]
    if balance_rows:
        connection.execute(_INSERT_BALANCES, balance_rows)
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
            for address_id, snapshot_id, observation in zip(
                address_ids, snapshot_ids, observations, strict=True
            )
        ],
    )
    return snapshot_ids


def _insert_between(
    connection: Connection, address_id: int, observation: Observation, assets: dict[str, int]
) -> Stored:
    """A poll older than the latest snapshot: recognised if already stored, else inserted."""
    current = {assets[asset]: mojos for asset, mojos in observation.balances.items()}
    same = connection.execute(
        select(Snapshot.id).where(
            Snapshot.address_id == address_id, Snapshot.taken_at == observation.taken_at
        )
    ).scalar()
    if same is not None:
        return _recognised(connection, address_id, same, observation, current)
    before = queries.before(connection, address_id, observation.taken_at)
    following = queries.after(connection, address_id, observation.taken_at)
    (snapshot_id,) = _insert_snapshots(connection, [address_id], [observation], [current])
    inserted = queries.SnapshotRef(snapshot_id, observation.taken_at)
    held = queries.balances_of(connection, [before.id] if before else [])
    if before is not None:
        queries.insert_deltas(
            connection,
            queries.delta_rows(address_id, before, inserted, held[before.id], current),
        )
    if following is not None:
        queries.link(connection, address_id, inserted, following)
    names = _asset_names(connection, [*current, *(pk for b in held.values() for pk in b)])
    result = _stored(snapshot_id, observation, held[before.id] if before else None, current, names)
    return Stored(result.snapshot_id, result.baseline, result.deltas, result.symbols, False, True)


def _recognised(
    connection: Connection,
    address_id: int,
    snapshot_id: int,
    observation: Observation,
    current: dict[int, int],
) -> Stored:
    """The snapshot of this very poll is stored already (a lost acknowledgement, a retry)."""
    held = queries.balances_of(connection, [snapshot_id])[snapshot_id]
    if held != current:
        raise WriteRefused(
            f"another snapshot of this address taken at {observation.taken_at.isoformat()} "
            "is already stored, with other balances; this one is dropped"
        )
    rows = connection.execute(
        select(Delta.asset_id, Delta.previous_balance_mojos, Delta.balance_mojos).where(
            Delta.snapshot_id == snapshot_id
        )
    ).all()
    names = _asset_names(connection, [pk for pk, _, _ in rows])
    deltas = [AssetDelta(names[pk][0], before, after) for pk, before, after in rows]
    baseline = queries.before(connection, address_id, observation.taken_at) is None
    left = dict(names.values())
    return Stored(snapshot_id, baseline, deltas, _symbols(observation, deltas, left), True)


def _asset_names(connection: Connection, keys: Iterable[int]) -> dict[int, tuple[str, str | None]]:
    """Asset id and symbol by key (the symbol as stored: for an asset that left)."""
    return {ref.id: (ref.asset_id, ref.symbol) for ref in queries.assets(connection, keys).values()}


def _stored(
    snapshot_id: int,
    observation: Observation,
    before: dict[int, int] | None,
    current: dict[int, int],
    names: dict[int, tuple[str, str | None]],
) -> Stored:
    deltas = [
        AssetDelta(names[delta.asset][0], delta.previous_mojos, delta.mojos)
        for delta in compute_deltas(before, current)
    ]
    left = {asset: symbol for asset, symbol in names.values()}
    return Stored(snapshot_id, before is None, deltas, _symbols(observation, deltas, left))


def _symbols(
    observation: Observation, deltas: list[AssetDelta[str]], left: dict[str, str | None]
) -> dict[str, str | None]:
    """The symbol of each changed asset: from this poll, else (it left) as last known."""
    seen = {asset: info.symbol for asset, info in observation.assets.items()}
    return {delta.asset: seen.get(delta.asset) or left.get(delta.asset) for delta in deltas}


# The write path's statements, built once (see store.queries).
_LOCK_ADDRESSES = (
    select(Address.id)
    .where(Address.id.in_(bindparam("ids", expanding=True)))
    .order_by(Address.id)
    .with_for_update()
)
_INSERT_SNAPSHOTS = insert(Snapshot).returning(Snapshot.id, sort_by_parameter_order=True)
_INSERT_BALANCES = insert(SnapshotBalance)
_INSERT_ATTEMPTS = insert(PollAttempt)
