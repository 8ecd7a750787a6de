"""The balance-change report: per address and asset (and period), start, end and change.

Built from one snapshot's balances (the window's start) plus the deltas after it, which the
database sums per asset and period through the deltas' ``(address_id, taken_at)`` index, so its
cost follows the number of changes in the window, not the number of snapshots ever taken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select

from tracker.domain import units
from tracker.errors import UsageError
from tracker.reports.periods import Bucket, Period, buckets, period_key, period_start_sql
from tracker.reports.selection import (
    EVERYTHING,
    AddressRef,
    Selection,
    asset_order,
    ids,
    resolve_addresses,
    selected_asset,
)
from tracker.store import queries
from tracker.store.models import Delta
from tracker.store.queries import AssetRef, SnapshotRef

Change = tuple[datetime | None, int, int, int]
"""Deltas of one asset summed over one period: (period start, asset key, sum, count)."""


@dataclass(slots=True)
class ReportRow:
    """One address (or the total, address None) and asset over one window or period.

    Not frozen: a year of monthly rows for 100 addresses is 24,000 of them, and a frozen
    dataclass's ``__init__`` (``object.__setattr__`` per field) is five times slower. Nothing
    changes a row once built (totals are new rows, made with ``replace``).
    """

    address: str | None
    label: str | None
    asset_id: str
    symbol: str | None
    period: str | None
    start_at: datetime
    end_at: datetime
    start_balance: Decimal
    end_balance: Decimal
    change: Decimal
    changes: int
    start_balance_mojos: int
    end_balance_mojos: int
    change_mojos: int


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until < since:
        raise UsageError("the window ends before it starts (until is before since)")


def change_report(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    selection: Selection = EVERYTHING,
    *,
    period: Period | None = None,
    total: bool = False,
) -> list[ReportRow]:
    """Per address and asset (and period): start and end balance, change, number of changes.

    The start is the last snapshot at or before ``since`` (or, when history begins inside the
    window, the first snapshot in it); the end is the last snapshot at or before ``until``.
    ``change`` is end minus start, which equals the sum of the deltas counted in ``changes``.
    With ``period``, the window is cut into UTC days, ISO weeks or months, periods without a
    change included; with ``total``, addresses are summed per asset (the portfolio).
    """
    check_window(since, until)
    rows: list[ReportRow] = []
    with engine.connect() as connection:
        only = selected_asset(connection, selection)
        addresses = resolve_addresses(connection, selection)
        windows = windows_of(connection, addresses, since, until)
        starts = queries.balances_of(
            connection, [start.id for start, _ in windows.values()], only.id if only else None
        )
        changes = _changes_in(connection, windows, only, period)
        assets = queries.assets(
            connection,
            {pk for held in starts.values() for pk in held}
            | {pk for found in changes.values() for _, pk, _, _ in found},
        )
    for address in addresses:
        if address.id not in windows:
            continue
        start, end = windows[address.id]
        cut = cut_of(start, end, since, until, period)
        held = starts.get(start.id, {})
        rows.extend(bucket_rows(address, cut, held, changes.get(address.id, []), assets))
    return totals(rows) if total else rows


def cut_of(
    start: SnapshotRef,
    end: SnapshotRef,
    since: datetime | None,
    until: datetime | None,
    period: Period | None,
) -> list[Bucket]:
    """An address's window, whole or cut into periods.

    Periods cover what is known: from the window's start, or the first snapshot when the
    history begins later, to the window's end (or the last snapshot).
    """
    if period is None:
        return [(None, start.taken_at, end.taken_at)]
    first = max(since, start.taken_at) if since is not None else start.taken_at
    return buckets(first, until or end.taken_at, period)


def windows_of(
    connection: Connection,
    addresses: Sequence[AddressRef],
    since: datetime | None,
    until: datetime | None,
) -> dict[int, tuple[SnapshotRef, SnapshotRef]]:
    """Each address's start and end snapshot for a window (none: no snapshot inside it).

    The start is the last snapshot at or before ``since``, else the first after it (history
    begins inside the window); the end is the last snapshot at or before ``until``.
    """
    ends = queries.at_or_before(connection, ids(addresses), until)
    inside = [address.id for address in addresses if address.id in ends]
    starts = queries.at_or_before(connection, inside, since) if since is not None else {}
    later = [address_id for address_id in inside if address_id not in starts]
    starts.update(queries.at_or_after(connection, later, since))
    return {
        address_id: (starts[address_id], ends[address_id])
        for address_id in inside
        if address_id in starts and starts[address_id].taken_at <= ends[address_id].taken_at
    }


def _changes_in(
    connection: Connection,
    windows: dict[int, tuple[SnapshotRef, SnapshotRef]],
    only: AssetRef | None,
    period: Period | None,
) -> dict[int, list[Change]]:
    """Per address, its deltas after its start snapshot up to its end one, summed by asset and
    period (None without periods).

    The database sums them: one range scan of the deltas' ``(address_id, taken_at)`` index per
    address, and rows out in proportion to assets x periods rather than to changes.
    """
    key = period_start_sql(connection, period) if period is not None else None
    starts: dict[object, datetime] = {}  # the same few periods come back for every address
    found: dict[int, list[Change]] = {}
    by_period = [key] if key is not None else []
    query = select(Delta.asset_id, func.sum(Delta.delta_mojos), func.count(), *by_period).where(
        Delta.address_id == bindparam("address_id"),
        Delta.taken_at > bindparam("after"),
        Delta.taken_at <= bindparam("through"),
    )
    if only is not None:
        query = query.where(Delta.asset_id == only.id)
    query = query.group_by(Delta.asset_id, *by_period)  # built once, run per address
    for address_id, (start, end) in windows.items():
        rows: Sequence[Any] = connection.execute(
            query, {"address_id": address_id, "after": start.taken_at, "through": end.taken_at}
        ).all()
        found[address_id] = [
            (period_key(row[3], starts) if key is not None else None, row[0], int(row[1]), row[2])
            for row in rows
        ]
    return found


def bucket_rows(
    address: AddressRef,
    cut: Sequence[Bucket],
    balances: dict[int, int],
    changes: Sequence[Change],
    assets: dict[int, AssetRef],
) -> list[ReportRow]:
    """Roll the start balances forward through the periods; an empty one is "no change"."""
    single = len(cut) == 1 and cut[0][0] is None
    by_period: dict[datetime | None, list[tuple[int, int, int]]] = defaultdict(list)
    running = dict(balances)
    for key, asset, total, count in changes:
        if not single and key is not None and key < cut[0][1]:
            # Between the start snapshot and the first period: part of the start balance.
            running[asset] = running.get(asset, 0) + total
        else:
            by_period[None if single else key].append((asset, total, count))
    order = sorted(
        set(running) | {asset for _, asset, _, _ in changes},
        key=lambda pk: asset_order(assets[pk].asset_id, assets[pk].symbol),
    )
    rows: list[ReportRow] = []
    for name, begin, end in cut:
        at_start = dict(running)
        counts: dict[int, int] = defaultdict(int)
        for asset, total, count in by_period.get(None if single else begin, ()):
            counts[asset] += count
            running[asset] = running.get(asset, 0) + total
        for asset in order:
            before, after = at_start.get(asset, 0), running.get(asset, 0)
            if not single and not (before or after or counts[asset]):
                continue
            ref = assets[asset]
            start_balance = units(before, ref.decimals)
            end_balance = start_balance if after == before else units(after, ref.decimals)
            rows.append(
                ReportRow(
                    address=address.address,
                    label=address.label,
                    asset_id=ref.asset_id,
                    symbol=ref.symbol,
                    period=name,
                    start_at=begin,
                    end_at=end,
                    start_balance=start_balance,
                    end_balance=end_balance,
                    change=units(after - before, ref.decimals),
                    changes=counts[asset],
                    start_balance_mojos=before,
                    end_balance_mojos=after,
                    change_mojos=after - before,
                )
            )
    return rows


def totals(rows: Iterable[ReportRow]) -> list[ReportRow]:
    """The portfolio: rows of every address summed per asset (and period)."""
    sums: dict[tuple[str | None, str], ReportRow] = {}
    for row in rows:
        key = (row.period, row.asset_id)
        if key not in sums:
            sums[key] = replace(row, address=None, label=None)
            continue
        seen = sums[key]
        sums[key] = replace(
            seen,
            start_at=min(seen.start_at, row.start_at),
            end_at=max(seen.end_at, row.end_at),
            start_balance=seen.start_balance + row.start_balance,
            end_balance=seen.end_balance + row.end_balance,
            change=seen.change + row.change,
            changes=seen.changes + row.changes,
            start_balance_mojos=seen.start_balance_mojos + row.start_balance_mojos,
            end_balance_mojos=seen.end_balance_mojos + row.end_balance_mojos,
            change_mojos=seen.change_mojos + row.change_mojos,
        )
    return sorted(sums.values(), key=lambda r: (r.period or "", asset_order(r.asset_id, r.symbol)))
