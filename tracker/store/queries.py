"""The queries that both the writer and the readers need, each written once.

- which snapshot of each address is the latest, or the last at or before a moment, or the first
  at or after one: one statement for any number of addresses, a probe of the unique
  ``(address_id, taken_at)`` index per address, whatever the length of the history;
- the balances of given snapshots: one primary-key range per snapshot;
- the deltas that join a snapshot to the one before it (:func:`link`), written by a poll, by a
  snapshot stored out of order, and by pruning, by the same rule (:func:`compute_deltas`).

Statements are built once at import: building a statement costs more CPU than running it, and
a large poll cycle runs them for every batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, select

from tracker.domain import compute_deltas
from tracker.store.models import Address, Asset, Delta, Snapshot, SnapshotBalance


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    id: int
    taken_at: datetime


@dataclass(frozen=True, slots=True)
class AssetRef:
    """An asset row: ``id`` is the table's key, ``asset_id`` the Chia asset id (or ``xch``)."""

    id: int
    asset_id: str
    symbol: str | None
    name: str | None
    decimals: int


def _pick(moment_filter: str | None, last: bool):  # type: ignore[no-untyped-def]
    pick = select(Snapshot.id).where(Snapshot.address_id == Address.id)
    if moment_filter == "at_or_before":
        pick = pick.where(Snapshot.taken_at <= bindparam("moment"))
    elif moment_filter == "at_or_after":
        pick = pick.where(Snapshot.taken_at >= bindparam("moment"))
    elif moment_filter == "before":
        pick = pick.where(Snapshot.taken_at < bindparam("moment"))
    elif moment_filter == "after":
        pick = pick.where(Snapshot.taken_at > bindparam("moment"))
    # (address_id, taken_at) is unique, so the time alone orders them: a plain index step.
    order = Snapshot.taken_at.desc() if last else Snapshot.taken_at
    chosen = (
        select(pick.order_by(order).limit(1).correlate(Address).scalar_subquery())
        .select_from(Address)
        .where(Address.id.in_(bindparam("ids", expanding=True)))
    )
    return select(Snapshot.address_id, Snapshot.id, Snapshot.taken_at).where(
        Snapshot.id.in_(chosen)
    )


_LATEST = _pick(None, last=True)
_FIRST = _pick(None, last=False)
_AT_OR_BEFORE = _pick("at_or_before", last=True)
_AT_OR_AFTER = _pick("at_or_after", last=False)
_BEFORE = _pick("before", last=True)
_AFTER = _pick("after", last=False)
_BALANCES_OF = select(
    SnapshotBalance.snapshot_id, SnapshotBalance.asset_id, SnapshotBalance.balance_mojos
).where(SnapshotBalance.snapshot_id.in_(bindparam("ids", expanding=True)))
_ASSETS = select(Asset.id, Asset.asset_id, Asset.symbol, Asset.name, Asset.decimals).where(
    Asset.id.in_(bindparam("ids", expanding=True))
)
_INSERT_DELTAS = insert(Delta)


def latest(connection: Connection, address_ids: Sequence[int]) -> dict[int, SnapshotRef]:
    """Each address's latest snapshot."""
    return _run(connection, _LATEST, address_ids, None)


def first(connection: Connection, address_ids: Sequence[int]) -> dict[int, SnapshotRef]:
    """Each address's first snapshot (its baseline)."""
    return _run(connection, _FIRST, address_ids, None)


def at_or_before(
    connection: Connection, address_ids: Sequence[int], moment: datetime | None
) -> dict[int, SnapshotRef]:
    """Each address's last snapshot at or before ``moment`` (the latest without one)."""
    if moment is None:
        return latest(connection, address_ids)
    return _run(connection, _AT_OR_BEFORE, address_ids, moment)


def at_or_after(
    connection: Connection, address_ids: Sequence[int], moment: datetime | None
) -> dict[int, SnapshotRef]:
    """Each address's first snapshot at or after ``moment`` (the very first without one)."""
    if moment is None:
        return first(connection, address_ids)
    return _run(connection, _AT_OR_AFTER, address_ids, moment)


def before(connection: Connection, address_id: int, moment: datetime) -> SnapshotRef | None:
    """The address's last snapshot strictly before ``moment``."""
    return _run(connection, _BEFORE, [address_id], moment).get(address_id)


def last_before(
    connection: Connection, address_ids: Sequence[int], moment: datetime
) -> dict[int, SnapshotRef]:
    """Each address's last snapshot strictly before ``moment`` (a period's boundary)."""
    return _run(connection, _BEFORE, address_ids, moment)


def after(connection: Connection, address_id: int, moment: datetime) -> SnapshotRef | None:
    """The address's first snapshot strictly after ``moment``."""
    return _run(connection, _AFTER, [address_id], moment).get(address_id)


def _run(
    connection: Connection, statement: object, ids: Sequence[int], moment: datetime | None
) -> dict[int, SnapshotRef]:
    if not ids:
        return {}
    params: dict[str, object] = {"ids": list(ids)}
    if moment is not None:
        params["moment"] = moment
    rows = connection.execute(statement, params)  # type: ignore[call-overload]
    return {row.address_id: SnapshotRef(row.id, row.taken_at) for row in rows}


def balances_of(
    connection: Connection, snapshot_ids: Iterable[int], asset: int | None = None
) -> dict[int, dict[int, int]]:
    """The balances of some snapshots: snapshot id -> asset key -> mojos (``asset``: only it)."""
    held: dict[int, dict[int, int]] = defaultdict(dict)
    ids = list(snapshot_ids)
    if not ids:
        return held
    for snapshot_id, asset_key, mojos in connection.execute(_BALANCES_OF, {"ids": ids}):
        if asset is None or asset_key == asset:
            held[snapshot_id][asset_key] = mojos
    for snapshot_id in ids:
        held.setdefault(snapshot_id, {})
    return held


def assets(connection: Connection, keys: Iterable[int]) -> dict[int, AssetRef]:
    """Asset rows by key."""
    ids = list(set(keys))
    if not ids:
        return {}
    return {
        row.id: AssetRef(row.id, row.asset_id, row.symbol, row.name, row.decimals)
        for row in connection.execute(_ASSETS, {"ids": ids})
    }


def delta_rows(
    address_id: int,
    previous: SnapshotRef,
    following: SnapshotRef,
    before: dict[int, int],
    after: dict[int, int],
) -> list[dict[str, object]]:
    """The rows of the deltas that take ``previous``'s balances to ``following``'s."""
    return [
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
        for delta in compute_deltas(before, after)
    ]


def insert_deltas(connection: Connection, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        connection.execute(_INSERT_DELTAS, list(rows))


def link(
    connection: Connection, address_id: int, previous: SnapshotRef, following: SnapshotRef
) -> int:
    """Give ``following`` the deltas from ``previous`` (replacing any it had); returns how many.

    Whatever lay between them (a removed snapshot, or none where one is now inserted), the
    deltas of an address and asset still sum to its last balance minus its first.
    """
    connection.execute(delete(Delta).where(Delta.snapshot_id == following.id))
    held = balances_of(connection, [previous.id, following.id])
    rows = delta_rows(address_id, previous, following, held[previous.id], held[following.id])
    insert_deltas(connection, rows)
    return len(rows)
