"""Retention: thin out old snapshots by a policy, while every remaining delta stays exact.

A poll every five minutes stores 105,000 snapshots per address a year, nearly all of them
copies of the one before. Old history rarely needs that resolution, but it must stay right: a
report over any window whose ends are kept snapshots must give the same balances and change
after pruning as before. So pruning never edits a kept snapshot's balances. Removing the
snapshots strictly between two kept snapshots P and N replaces N's deltas by the deltas between
P and N (the writer's own rule, :func:`tracker.store.queries.link`), which keeps the chain: every
delta points to the kept snapshot before it, and summing the deltas still gives last minus
first.

The work is done per address, oldest first, in transactions of at most ``batch_size`` removed
snapshots, each all or nothing, so an interruption leaves a shorter but consistent history and
the next run carries on. Each transaction takes the same per-address turn as the snapshot writer
(a row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) and checks that the history it planned
from is still there, so it is safe while a daemon or another prune writes. The latest snapshot
of an address, which the writer compares the next poll with, is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select
from sqlalchemy import update as sql_update

from tracker.errors import StoreError
from tracker.reports.selection import EVERYTHING, Selection, resolve_addresses
from tracker.retention.policy import Policy, keep_flags
from tracker.store import queries
from tracker.store.engine import write_transaction
from tracker.store.models import Address, Base, Delta, PollAttempt, Snapshot, SnapshotBalance

# Small enough that a writer waiting for its turn never waits long.
BATCH_SIZE = 500
REPLANS = 3


class RetentionError(StoreError):
    """Pruning could not finish; one line."""


@dataclass(frozen=True)
class PruneSummary:
    """What a prune removed (or, in a dry run, would remove); ``deltas`` is the net decrease."""

    dry_run: bool
    addresses: int
    kept: int
    snapshots: int
    balances: int
    deltas: int
    merged: int
    stopped: bool = False

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = (
            f"{verb} {self.snapshots} snapshot{_s(self.snapshots)}, "
            f"{self.balances} balance row{_s(self.balances)} and "
            f"{self.deltas} delta{_s(self.deltas)} "
            f"from {self.addresses} address{'' if self.addresses == 1 else 'es'}; "
            f"{self.kept} snapshot{_s(self.kept)} kept, {self.merged} of them with merged deltas"
        )
        if self.dry_run:
            text += " (dry run: nothing was changed)"
        if self.stopped:
            text += " (stopped early; the next run carries on)"
        return text


def prune(
    engine: Engine,
    policy: Policy,
    now: datetime,
    selection: Selection | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> PruneSummary:
    """Apply ``policy`` to the selected addresses' snapshots, as of ``now``.

    With ``dry_run`` only counts. ``should_stop`` is asked between transactions (the daemon
    passes its stop signal), and a prune that stops early has still left a consistent history.
    """
    with engine.connect() as connection:
        addresses = resolve_addresses(connection, selection or EVERYTHING)
    total = _Counts()
    kept = done = 0
    stopped = False
    for address in addresses:
        done += 1
        for attempt in range(1, REPLANS + 1):
            try:
                planned, stopped = _prune_address(
                    engine, address.id, policy, now, total, dry_run, batch_size, should_stop
                )
            except _Changed:
                if attempt == REPLANS:
                    raise RetentionError(
                        f"the history of {address.address} kept changing while it was pruned "
                        "(another prune?); run it again"
                    ) from None
                continue
            kept += planned
            break
        if stopped:
            break
    return PruneSummary(
        dry_run=dry_run,
        addresses=done,
        kept=kept,
        snapshots=total.snapshots,
        balances=total.balances,
        deltas=total.deltas,
        merged=total.merged,
        stopped=stopped,
    )


@dataclass(frozen=True)
class _Merge:
    """Remove ``removed`` (consecutive) and give ``next`` its deltas against ``previous``.

    ``final`` is False when ``next`` is itself to be removed by a later merge: a long run is
    split so that no transaction grows without bound, and each step is consistent on its own.
    """

    previous: queries.SnapshotRef
    removed: tuple[queries.SnapshotRef, ...]
    next: queries.SnapshotRef
    final: bool


@dataclass
class _Counts:
    snapshots: int = 0
    balances: int = 0
    deltas: int = 0
    merged: int = 0

    def add(self, other: _Counts) -> None:
        self.snapshots += other.snapshots
        self.balances += other.balances
        self.deltas += other.deltas
        self.merged += other.merged


class _Changed(Exception):
    """The history is no longer the one the plan was made from; plan again."""


def _prune_address(
    engine: Engine,
    address_id: int,
    policy: Policy,
    now: datetime,
    counts: _Counts,
    dry_run: bool,
    batch_size: int,
    should_stop: Callable[[], bool],
) -> tuple[int, bool]:
    """Prune one address, adding what was committed to ``counts``.

    Returns how many snapshots the policy keeps, and True when ``should_stop`` said stop
    before the address was done.
    """
    with engine.connect() as connection:
        rows = connection.execute(
            select(Snapshot.id, Snapshot.taken_at)
            .where(Snapshot.address_id == address_id)
            .order_by(Snapshot.taken_at)
        ).all()
    snaps = [queries.SnapshotRef(row.id, row.taken_at) for row in rows]
    flags = keep_flags([snap.taken_at for snap in snaps], policy, now)
    # A dry run writes nothing, so it needs no bounded transactions: unsplit runs count right.
    merges = _plan(snaps, flags, None if dry_run else batch_size)
    if dry_run:
        step = _Counts()
        with engine.connect() as connection:
            for merge in merges:
                _merge(connection, address_id, merge, step, write=False)
        counts.add(step)  # only once complete: a re-plan must not count twice
        return sum(flags), False
    for batch in _batches(merges, batch_size):
        if should_stop():
            return sum(flags), True
        with write_transaction(engine) as connection:
            # The writer's turn for this address (see snapshots.py): on PostgreSQL this row
            # lock, on SQLite the BEGIN IMMEDIATE of write_transaction.
            connection.execute(select(Address.id).where(Address.id == address_id).with_for_update())
            step = _Counts()
            for merge in batch:
                _merge(connection, address_id, merge, step, write=True)
        counts.add(step)  # only once committed
    return sum(flags), False


def _plan(
    snaps: Sequence[queries.SnapshotRef], flags: Sequence[bool], limit: int | None
) -> list[_Merge]:
    merges: list[_Merge] = []
    if not snaps:
        return merges
    previous, run = snaps[0], list[queries.SnapshotRef]()
    for snap, keep in zip(snaps[1:], flags[1:], strict=True):
        if keep:
            if run:
                merges.append(_Merge(previous, tuple(run), snap, final=True))
                run = []
            previous = snap
            continue
        if limit is not None and len(run) >= limit:
            merges.append(_Merge(previous, tuple(run), snap, final=False))
            run = []
        run.append(snap)
    assert not run, "the latest snapshot is always kept"
    return merges


def _batches(merges: Sequence[_Merge], limit: int) -> list[list[_Merge]]:
    batches: list[list[_Merge]] = []
    size = limit
    for merge in merges:
        if size + len(merge.removed) > limit:
            batches.append([])
            size = 0
        batches[-1].append(merge)
        size += len(merge.removed)
    return batches


def _merge(
    connection: Connection, address_id: int, merge: _Merge, counts: _Counts, *, write: bool
) -> None:
    previous, following = merge.previous, merge.next
    in_address = Snapshot.address_id == address_id
    after_previous = Snapshot.taken_at > previous.taken_at
    if write:
        ids = connection.execute(
            select(Snapshot.id)
            .where(in_address, Snapshot.taken_at >= previous.taken_at)
            .where(Snapshot.taken_at <= following.taken_at)
            .order_by(Snapshot.taken_at)
        ).scalars()
        if list(ids) != [previous.id, *(snap.id for snap in merge.removed), following.id]:
            raise _Changed
    removed = select(Snapshot.id).where(
        in_address, after_previous, Snapshot.taken_at < following.taken_at
    )
    through_next = select(Snapshot.id).where(
        in_address, after_previous, Snapshot.taken_at <= following.taken_at
    )
    dropped = _count(connection, Delta, Delta.snapshot_id.in_(through_next))
    if write:
        # The next snapshot's deltas first: they are the only ones that point to a removed
        # snapshot (besides the removed snapshots' own, which go with them).
        fresh = queries.link(connection, address_id, previous, following)
        connection.execute(delete(Delta).where(Delta.snapshot_id.in_(removed)))
        # The attempts stay, as the record of every poll; they just no longer name a snapshot.
        connection.execute(
            sql_update(PollAttempt)
            .where(PollAttempt.snapshot_id.in_(removed))
            .values(snapshot_id=None)
        )
    else:
        held = queries.balances_of(connection, [previous.id, following.id])
        fresh = len(
            queries.delta_rows(
                address_id, previous, following, held[previous.id], held[following.id]
            )
        )
    counts.balances += _remove(
        connection, SnapshotBalance, SnapshotBalance.snapshot_id.in_(removed), write
    )
    gone = _remove(
        connection,
        Snapshot,
        in_address & after_previous & (Snapshot.taken_at < following.taken_at),
        write,
    )
    if gone != len(merge.removed):
        raise _Changed
    counts.snapshots += gone
    counts.deltas += dropped - fresh
    counts.merged += merge.final


def _count(connection: Connection, model: type[Base], where: ColumnElement[bool]) -> int:
    count: int = connection.execute(
        select(func.count()).select_from(model).where(where)
    ).scalar_one()
    return count


def _remove(
    connection: Connection, model: type[Base], where: ColumnElement[bool], write: bool
) -> int:
    """DELETE and say how many rows went, or (dry run) only count them."""
    if write:
        return connection.execute(delete(model).where(where)).rowcount
    return _count(connection, model, where)


def _s(count: int) -> str:
    return "" if count == 1 else "s"
