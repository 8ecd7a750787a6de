"""Retention: thin out old snapshots by a policy, while every remaining delta stays exact.

A poll every five minutes stores 105,000 snapshots per address a year, nearly all of them
copies of the one before. Old history rarely needs that resolution, but it must stay right: a
report over any window whose ends are kept snapshots must give the same balances and change
after pruning as before. So pruning never edits a kept snapshot's balances. Removing the
snapshots strictly between two kept snapshots P and N replaces N's deltas by the deltas between
P and N (the same :func:`compute_deltas` rule the writer uses), which keeps the chain: every
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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, insert, select
from sqlalchemy import update as sql_update

from tracker.db import write_transaction
from tracker.deltas import compute_deltas
from tracker.models import Address, Base, Delta, PollAttempt, Snapshot, SnapshotBalance
from tracker.reports import Selection, resolve_addresses

Tier = Literal["all", "hourly", "daily", "weekly", "monthly"]
TIERS: tuple[Tier, ...] = ("all", "hourly", "daily", "weekly", "monthly")

EXAMPLE = "all:7d,hourly:90d,daily:forever"
# Small enough that a writer waiting for its turn (SQLite's busy timeout is 30 s) never gives up.
BATCH_SIZE = 500
REPLANS = 3
# A century is far enough back for any balance history, and keeps date arithmetic in range.
MAX_AGE = timedelta(days=36_500)

_AGE = re.compile(r"([1-9][0-9]*)([hdw])")
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


class PolicyError(ValueError):
    """A retention policy that does not parse; ``str()`` is one line naming the bad part."""


class RetentionError(Exception):
    """Pruning could not finish; one line."""


@dataclass(frozen=True)
class Rule:
    """One tier: keep snapshots at this resolution until they are ``age`` old (None: forever)."""

    tier: Tier
    age: timedelta | None

    def __str__(self) -> str:
        return f"{self.tier}:{_age_text(self.age)}"


@dataclass(frozen=True)
class Policy:
    """Tiers from the youngest snapshots to the oldest; see :func:`parse_policy`."""

    rules: tuple[Rule, ...]

    def __str__(self) -> str:
        return ",".join(str(rule) for rule in self.rules)


def parse_policy(text: str) -> Policy:
    """``all:7d,hourly:90d,daily:forever``: comma-separated ``tier:age`` pairs.

    Tiers go from finer to coarser (all, hourly, daily, weekly, monthly), each at most once,
    and each reaches further back than the one before; ages are ``Nh``, ``Nd``, ``Nw`` or
    ``forever`` (only for the last tier). Anything else is a :class:`PolicyError`.
    """
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise PolicyError(f"empty retention policy: give tier:age pairs, e.g. {EXAMPLE}")
    rules: list[Rule] = []
    before = ""  # the previous part, as written
    for part in parts:
        tier_text, colon, age_text = (piece.strip() for piece in part.partition(":"))
        if not colon:
            raise PolicyError(f"{part!r}: expected tier:age, e.g. hourly:90d")
        tier = tier_text.lower()
        if tier not in TIERS:
            raise PolicyError(
                f"{part!r}: unknown tier {tier_text!r} (all, hourly, daily, weekly or monthly)"
            )
        age = _parse_age(part, age_text.lower())
        if rules:
            last = rules[-1]
            if last.age is None:
                raise PolicyError(f"{part!r}: comes after {before!r}, which already keeps forever")
            if TIERS.index(tier) <= TIERS.index(last.tier):
                raise PolicyError(
                    f"{part!r}: tiers go from finer to coarser "
                    "(all, hourly, daily, weekly, monthly), each once"
                )
            if age is not None and age <= last.age:
                raise PolicyError(f"{part!r}: must reach further back than {before!r}")
        rules.append(Rule(tier, age))
        before = part
    return Policy(tuple(rules))


def _parse_age(part: str, text: str) -> timedelta | None:
    if text == "forever":
        return None
    match = _AGE.fullmatch(text)
    if match is None:
        raise PolicyError(
            f"{part!r}: the age must be hours, days or weeks (36h, 90d, 52w) or forever"
        )
    hours = int(match[1]) * _UNIT_HOURS[match[2]]
    if hours > MAX_AGE / timedelta(hours=1):
        raise PolicyError(f"{part!r}: the age is too long (at most {MAX_AGE.days}d, or forever)")
    return timedelta(hours=hours)


def _age_text(age: timedelta | None) -> str:
    if age is None:
        return "forever"
    hours = int(age.total_seconds()) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def bucket(tier: Tier, moment: datetime) -> tuple[int, ...]:
    """The UTC hour, day, week or month of ``moment``, as a key (``all``: the moment itself).

    A week is cut at a month's end (a week across two months is two buckets), so that keeping
    the last snapshot of each week also keeps the last one of each month: reports by month stay
    exact in a weekly tier too.
    """
    t = moment.astimezone(UTC)
    if tier == "hourly":
        return (t.year, t.month, t.day, t.hour)
    if tier == "daily":
        return (t.year, t.month, t.day)
    if tier == "weekly":
        return (t.toordinal() - t.weekday(), t.year, t.month)
    if tier == "monthly":
        return (t.year, t.month)
    return (t.toordinal(), t.hour, t.minute, t.second, t.microsecond)


def keep_flags(times: Sequence[datetime], policy: Policy, now: datetime) -> list[bool]:
    """Which of one address's snapshots (taken at ``times``, oldest first) the policy keeps.

    A snapshot ``now - taken_at`` old falls in the first tier whose age is longer than that.
    ``all`` keeps every snapshot; the other tiers keep the last snapshot of each UTC hour,
    day, week or month (counting only that tier's snapshots); older than the last tier's age
    is removed. The first (baseline) and the latest snapshot are always kept.
    """
    limits = [now - rule.age if rule.age is not None else None for rule in policy.rules]
    flags = [False] * len(times)
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for index in range(len(times) - 1, -1, -1):
        moment = times[index]
        tier = next((i for i, limit in enumerate(limits) if limit is None or moment > limit), None)
        if tier is None:
            continue  # older than the last tier
        if policy.rules[tier].tier == "all":
            flags[index] = True
            continue
        key = (tier, bucket(policy.rules[tier].tier, moment))
        if key not in seen:  # the last snapshot of its bucket, as we walk backwards
            seen.add(key)
            flags[index] = True
    if flags:
        flags[0] = flags[-1] = True
    return flags


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
        addresses = resolve_addresses(connection, selection or Selection())
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
class _Snap:
    id: int
    taken_at: datetime


@dataclass(frozen=True)
class _Merge:
    """Remove ``removed`` (consecutive) and give ``next`` its deltas against ``previous``.

    ``final`` is False when ``next`` is itself to be removed by a later merge: a long run is
    split so that no transaction grows without bound, and each step is consistent on its own.
    """

    previous: _Snap
    removed: tuple[_Snap, ...]
    next: _Snap
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
            .order_by(Snapshot.taken_at, Snapshot.id)
        ).all()
    snaps = [_Snap(row.id, row.taken_at) for row in rows]
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


def _plan(snaps: Sequence[_Snap], flags: Sequence[bool], limit: int | None) -> list[_Merge]:
    merges: list[_Merge] = []
    if not snaps:
        return merges
    previous, run = snaps[0], list[_Snap]()
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
            .order_by(Snapshot.taken_at, Snapshot.id)
        ).scalars()
        if list(ids) != [previous.id, *(snap.id for snap in merge.removed), following.id]:
            raise _Changed
    removed = select(Snapshot.id).where(
        in_address, after_previous, Snapshot.taken_at < following.taken_at
    )
    through_next = select(Snapshot.id).where(
        in_address, after_previous, Snapshot.taken_at <= following.taken_at
    )
    balances: dict[int, dict[int, int]] = {previous.id: {}, following.id: {}}
    for snapshot_id, asset_id, mojos in connection.execute(
        select(
            SnapshotBalance.snapshot_id, SnapshotBalance.asset_id, SnapshotBalance.balance_mojos
        ).where(SnapshotBalance.snapshot_id.in_([previous.id, following.id]))
    ):
        balances[snapshot_id][asset_id] = mojos
    fresh = compute_deltas(balances[previous.id], balances[following.id])

    # Deltas first: those of the removed snapshots and the next one's (the only deltas that
    # point to a removed snapshot), so that nothing refers to the snapshots removed below.
    dropped = _remove(connection, Delta, Delta.snapshot_id.in_(through_next), write)
    if write:
        if fresh:
            connection.execute(
                insert(Delta),
                [
                    {
                        "snapshot_id": following.id,
                        "asset_id": delta.asset,
                        "previous_snapshot_id": previous.id,
                        "address_id": address_id,
                        "taken_at": following.taken_at,
                        "previous_balance_mojos": delta.previous_mojos,
                        "balance_mojos": delta.mojos,
                        "delta_mojos": delta.delta_mojos,
                    }
                    for delta in fresh
                ],
            )
        # The attempts stay, as the record of every poll; they just no longer name a snapshot.
        connection.execute(
            sql_update(PollAttempt)
            .where(PollAttempt.snapshot_id.in_(removed))
            .values(snapshot_id=None)
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
    counts.deltas += dropped - len(fresh)
    counts.merged += merge.final


def _remove(
    connection: Connection, model: type[Base], where: ColumnElement[bool], write: bool
) -> int:
    """DELETE and say how many rows went, or (dry run) only count them."""
    if write:
        return connection.execute(delete(model).where(where)).rowcount
    count: int = connection.execute(
        select(func.count()).select_from(model).where(where)
    ).scalar_one()
    return count


def _s(count: int) -> str:
    return "" if count == 1 else "s"
