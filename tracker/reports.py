"""Read-side queries: balances (latest or at a date), history, change reports, poll status.

Everything here reads; nothing writes. Amounts leave as exact ``Decimal`` token units next to
their integer mojos, so every output format can show them without rounding. Reports are built
from one snapshot's balances plus the deltas after it, found through indexes, so their cost
follows the number of changes in the window, not the number of snapshots ever taken.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import MAX_PREC, Context, Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, or_, select

from tracker.models import (
    XCH_ASSET_ID,
    Address,
    Asset,
    Delta,
    PollAttempt,
    Snapshot,
    SnapshotBalance,
)

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


class ReportError(Exception):
    """A report that cannot be made as asked (unknown address or asset); one line."""


class AddressNeeded(ReportError):
    """A query about one address was not told which, and the database holds several."""


_EXACT = Context(prec=MAX_PREC)


def units(mojos: int, decimals: int) -> Decimal:
    """Exact token units with every decimal shown: 1500 CAT mojos -> Decimal('1.500').

    ``scaleb`` rounds to its context's precision (28 digits by default, which a portfolio total
    can exceed), so it gets one that never rounds.
    """
    return Decimal(mojos).scaleb(-decimals, _EXACT)


@dataclass(frozen=True)
class Selection:
    """Which addresses and asset a command is about; empty means all."""

    address: str | None = None
    label: str | None = None
    asset: str | None = None


@dataclass(frozen=True)
class AssetRef:
    id: int
    asset_id: str
    symbol: str | None
    name: str | None
    decimals: int


@dataclass(frozen=True)
class BalanceRow:
    address: str
    label: str | None
    asset_id: str
    symbol: str | None
    name: str | None
    taken_at: datetime
    balance_mojos: int
    balance: Decimal


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


@dataclass(frozen=True)
class StatusRow:
    address: str
    label: str | None
    last_success: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    consecutive_failures: int
    snapshots: int


@dataclass(frozen=True)
class AddressRef:
    id: int
    address: str
    label: str | None


@dataclass(frozen=True)
class _Snap:
    id: int
    taken_at: datetime


def balances(
    engine: Engine, selection: Selection = Selection(), at: datetime | None = None
) -> list[BalanceRow]:
    """Each address's balances at its last snapshot at or before ``at`` (default: the latest)."""
    with engine.connect() as connection:
        addresses = resolve_addresses(connection, selection)
        only = _asset(connection, selection)
        found = _snapshots_at(connection, addresses, at)
        snaps = {found[address.id].id: address for address in addresses if address.id in found}
        if not snaps:
            return []
        taken = {snap.id: snap.taken_at for snap in found.values()}
        held = _balances_of(connection, list(snaps), only)
        assets = _assets(connection, {pk for mojos in held.values() for pk in mojos})
    result = []
    for snapshot_id, mojos_by_asset in held.items():
        who = snaps[snapshot_id]
        for pk, mojos in mojos_by_asset.items():
            ref = assets[pk]
            result.append(
                BalanceRow(
                    who.address,
                    who.label,
                    ref.asset_id,
                    ref.symbol,
                    ref.name,
                    taken[snapshot_id],
                    mojos,
                    units(mojos, ref.decimals),
                )
            )
    return sorted(result, key=lambda r: (r.address, _asset_key(r.asset_id, r.symbol)))


def history(engine: Engine, address: str, asset: str | None = None) -> list[BalanceRow]:
    """The balance of every asset at every snapshot of ``address``, oldest first.

    Once an asset has appeared it stays in the series with 0 while it is not held, so a series
    never just stops: the drop to zero is visible.
    """
    with engine.connect() as connection:
        (who,) = resolve_addresses(connection, Selection(address=address))
        only = resolve_asset(connection, asset) if asset is not None else None
        snapshots = connection.execute(
            select(Snapshot.id, Snapshot.taken_at)
            .where(Snapshot.address_id == who.id)
            .order_by(Snapshot.taken_at, Snapshot.id)
        ).all()
        balances_query = (
            select(
                SnapshotBalance.snapshot_id,
                SnapshotBalance.asset_id,
                SnapshotBalance.balance_mojos,
            )
            .join(Snapshot, Snapshot.id == SnapshotBalance.snapshot_id)
            .where(Snapshot.address_id == who.id)
        )
        if only is not None:
            balances_query = balances_query.where(SnapshotBalance.asset_id == only.id)
        by_snapshot: dict[int, dict[int, int]] = defaultdict(dict)
        for snapshot_id, asset_pk, mojos in connection.execute(balances_query):
            by_snapshot[snapshot_id][asset_pk] = mojos
        assets = _assets(connection, {pk for held in by_snapshot.values() for pk in held})
    rows: list[BalanceRow] = []
    order = sorted(assets.values(), key=lambda a: _asset_key(a.asset_id, a.symbol))
    seen: set[int] = set()
    for snapshot in snapshots:
        held = by_snapshot.get(snapshot.id, {})
        seen.update(held)
        for ref in order:
            if ref.id not in seen:
                continue
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
    polls is a handful of points per asset, not 100,000. The window starts at ``since`` with
    the balance of the last snapshot at or before it (or at the first snapshot, when history
    starts later) and ends at the last snapshot at or before ``until``. Without ``address``,
    the database's only address; with several, :class:`AddressNeeded`. No snapshot inside the
    window gives a series without assets.
    """
    if since is not None and until is not None and until < since:
        raise ReportError("--until is before --since")
    with engine.connect() as connection:
        who = _one_address(connection, address)
        only = resolve_asset(connection, asset) if asset is not None else None
        empty = Series(who.address, who.label, since, until, [])
        end = _snapshots_at(connection, [who], until).get(who.id)
        first = _first_snapshots(connection, [who], since).get(who.id)
        if end is None or first is None or first.taken_at > end.taken_at:
            return empty
        at_since = _snapshots_at(connection, [who], since) if since is not None else {}
        start = at_since.get(who.id, first)
        held = _balances_of(connection, [start.id], only)[start.id]
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
        assets = _assets(connection, set(held) | {row.asset_id for row in changes})
    begin = max(since, start.taken_at) if since is not None else start.taken_at
    steps = {pk: [(begin, mojos)] for pk, mojos in held.items()}
    for taken_at, pk, mojos in changes:
        steps.setdefault(pk, [(begin, 0)]).append((taken_at, mojos))
    result = []
    for pk in sorted(steps, key=lambda pk: _asset_key(assets[pk].asset_id, assets[pk].symbol)):
        points = steps[pk]
        if points[-1][0] < end.taken_at:
            points.append((end.taken_at, points[-1][1]))
        ref = assets[pk]
        exact = [(when, units(mojos, ref.decimals)) for when, mojos in points]
        result.append(AssetSeries(ref.asset_id, ref.symbol, ref.name, exact))
    return replace(empty, assets=result)


def change_report(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    selection: Selection = Selection(),
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
    if since is not None and until is not None and until < since:
        raise ReportError("--until is before --since")
    rows: list[ReportRow] = []
    with engine.connect() as connection:
        only = _asset(connection, selection)
        addresses = resolve_addresses(connection, selection)
        windows = _windows(connection, addresses, since, until)
        starts = _balances_of(connection, [start.id for start, _ in windows.values()], only)
        changes = _changes_in(connection, windows, only, period)
        assets = _assets(
            connection,
            {pk for held in starts.values() for pk in held}
            | {pk for found in changes.values() for _, pk, _, _ in found},
        )
    for address in addresses:
        if address.id not in windows:
            continue
        start, end = windows[address.id]
        if period is None:
            buckets: list[tuple[str | None, datetime, datetime]] = [
                (None, start.taken_at, end.taken_at)
            ]
        else:
            # Periods cover what is known: from the window's start, or the first snapshot when
            # the history begins later, to the window's end (or the last snapshot).
            first = max(since, start.taken_at) if since is not None else start.taken_at
            buckets = _buckets(first, until or end.taken_at, period)
        held = starts.get(start.id, {})
        rows.extend(_bucket_rows(address, buckets, held, changes.get(address.id, []), assets))
    if total:
        rows = _totals(rows)
    return rows


def status(engine: Engine, selection: Selection = Selection()) -> list[StatusRow]:
    """Each address's poll health: last success, last error, failures since the last success."""
    result = []
    with engine.connect() as connection:
        for address in resolve_addresses(connection, selection):
            last_ok = connection.execute(
                select(PollAttempt.finished_at)
                .where(PollAttempt.address_id == address.id, PollAttempt.ok)
                .order_by(PollAttempt.started_at.desc())
                .limit(1)
            ).scalar()
            last = connection.execute(
                select(PollAttempt.finished_at)
                .where(PollAttempt.address_id == address.id)
                .order_by(PollAttempt.started_at.desc())
                .limit(1)
            ).scalar()
            failures = select(PollAttempt.error, PollAttempt.finished_at).where(
                PollAttempt.address_id == address.id, ~PollAttempt.ok
            )
            if last_ok is not None:
                failures = failures.where(PollAttempt.finished_at > last_ok)
            last_error = connection.execute(
                failures.order_by(PollAttempt.started_at.desc()).limit(1)
            ).first()
            consecutive = connection.execute(
                select(func.count()).select_from(failures.subquery())
            ).scalar_one()
            snapshots = connection.execute(
                select(func.count()).select_from(Snapshot).where(Snapshot.address_id == address.id)
            ).scalar_one()
            result.append(
                StatusRow(
                    address.address,
                    address.label,
                    last_ok,
                    last,
                    last_error.error if last_error is not None else None,
                    consecutive,
                    snapshots,
                )
            )
    return result


def resolve_asset(connection: Connection, text: str) -> AssetRef:
    """An asset named by its asset id, its token id (tkn1…), ``xch`` or a unique symbol."""
    needle = text.strip().lower().removeprefix("0x")
    rows = connection.execute(
        select(Asset.id, Asset.asset_id, Asset.symbol, Asset.name, Asset.decimals).where(
            or_(
                Asset.asset_id == needle,
                Asset.token_id == needle,
                func.lower(Asset.symbol) == needle,
            )
        )
    ).all()
    exact = [row for row in rows if needle in (row.asset_id, text.strip().lower())]
    if len(exact) == 1 or len(rows) == 1:
        row = exact[0] if len(exact) == 1 else rows[0]
        return AssetRef(row.id, row.asset_id, row.symbol, row.name, row.decimals)
    if not rows:
        raise ReportError(f"unknown asset {text!r}: give an asset id, a token id, a symbol or xch")
    raise ReportError(f"asset symbol {text!r} is ambiguous: give the asset id instead")


def period_start(moment: datetime, period: Period) -> datetime:
    """The UTC start of the day, ISO week (Monday) or month that contains ``moment``."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: datetime, period: Period) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    return (start + timedelta(days=32)).replace(day=1)


def period_name(start: datetime, period: Period) -> str:
    if period == "day":
        return start.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


def _windows(
    connection: Connection,
    addresses: Sequence[AddressRef],
    since: datetime | None,
    until: datetime | None,
) -> dict[int, tuple[_Snap, _Snap]]:
    """Each address's start and end snapshot for a window (none: no snapshot inside it).

    The start is the last snapshot at or before ``since``, else the first after it (history
    begins inside the window); the end is the last snapshot at or before ``until``.
    """
    ends = _snapshots_at(connection, addresses, until)
    inside = [address for address in addresses if address.id in ends]
    starts = _snapshots_at(connection, inside, since) if since is not None else {}
    later = [address for address in inside if address.id not in starts]
    starts.update(_first_snapshots(connection, later, since))
    return {
        address.id: (starts[address.id], ends[address.id])
        for address in inside
        if address.id in starts and starts[address.id].taken_at <= ends[address.id].taken_at
    }


def _balances_of(
    connection: Connection, snapshot_ids: Sequence[int], only: AssetRef | None
) -> dict[int, dict[int, int]]:
    """The balances of some snapshots: snapshot id -> asset pk -> mojos."""
    held: dict[int, dict[int, int]] = defaultdict(dict)
    if not snapshot_ids:
        return held
    query = select(
        SnapshotBalance.snapshot_id, SnapshotBalance.asset_id, SnapshotBalance.balance_mojos
    ).where(SnapshotBalance.snapshot_id.in_(snapshot_ids))
    if only is not None:
        query = query.where(SnapshotBalance.asset_id == only.id)
    for snapshot_id, asset, mojos in connection.execute(query):
        held[snapshot_id][asset] = mojos
    return held


def _changes_in(
    connection: Connection,
    windows: dict[int, tuple[_Snap, _Snap]],
    only: AssetRef | None,
    period: Period | None,
) -> dict[int, list[tuple[datetime | None, int, int, int]]]:
    """Per address, its deltas after its start snapshot up to its end one, summed by asset and
    period (the period's start, or None without periods): (period, asset, sum, count).

    The database sums them: one range scan of the deltas' ``(address_id, taken_at)`` index per
    address, and rows out in proportion to assets x periods rather than to changes. So the cost
    follows the changes in the window, whatever the number of snapshots.
    """
    key = _period_start_sql(connection, period) if period is not None else None
    starts: dict[object, datetime] = {}  # the same few periods come back for every address
    found: dict[int, list[tuple[datetime | None, int, int, int]]] = {}
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
            (_period_key(row[3], starts) if key is not None else None, row[0], int(row[1]), row[2])
            for row in rows
        ]
    return found


def _period_start_sql(connection: Connection, period: Period) -> ColumnElement[Any]:
    """SQL for the UTC start of the day, ISO week (Monday) or month of a delta's time."""
    if connection.dialect.name == "postgresql":
        return func.date_trunc(period, func.timezone("UTC", Delta.taken_at))
    # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS...'. 'weekday 0' moves on to the coming
    # Sunday (or stays on one), and six days back from it is that ISO week's Monday.
    if period == "day":
        return func.date(Delta.taken_at)
    if period == "week":
        return func.date(Delta.taken_at, "weekday 0", "-6 days")
    return func.strftime("%Y-%m-01", Delta.taken_at)


def _period_key(value: datetime | str, known: dict[object, datetime]) -> datetime:
    """A period start as the database gave it (PostgreSQL: naive UTC; SQLite: text), in UTC."""
    moment = known.get(value)
    if moment is None:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        moment = known[value] = parsed.replace(tzinfo=UTC)
    return moment


def _buckets(
    first: datetime, last: datetime, period: Period
) -> list[tuple[str | None, datetime, datetime]]:
    buckets: list[tuple[str | None, datetime, datetime]] = []
    begin = period_start(first, period)
    while begin <= last:
        end = next_period(begin, period)
        buckets.append((period_name(begin, period), begin, end))
        begin = end
    return buckets


def _bucket_rows(
    address: AddressRef,
    buckets: Sequence[tuple[str | None, datetime, datetime]],
    balances: dict[int, int],
    changes: Sequence[tuple[datetime | None, int, int, int]],
    assets: dict[int, AssetRef],
) -> list[ReportRow]:
    """Roll the start balances forward through the buckets; an empty bucket is "no change"."""
    single = len(buckets) == 1 and buckets[0][0] is None
    by_period: dict[datetime | None, list[tuple[int, int, int]]] = defaultdict(list)
    running = dict(balances)
    for key, asset, total, count in changes:
        if not single and key is not None and key < buckets[0][1]:
            # Between the start snapshot and the first period: part of the start balance.
            running[asset] = running.get(asset, 0) + total
        else:
            by_period[None if single else key].append((asset, total, count))
    order = sorted(
        set(running) | {asset for _, asset, _, _ in changes},
        key=lambda pk: _asset_key(assets[pk].asset_id, assets[pk].symbol),
    )
    rows: list[ReportRow] = []
    for name, begin, end in buckets:
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


def _totals(rows: Iterable[ReportRow]) -> list[ReportRow]:
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
    return sorted(sums.values(), key=lambda r: (r.period or "", _asset_key(r.asset_id, r.symbol)))


def _asset_key(asset_id: str, symbol: str | None) -> tuple[bool, str, str]:
    # XCH first, then CATs by symbol, then by asset id for a stable order.
    return (asset_id != XCH_ASSET_ID, symbol or "", asset_id)


def resolve_addresses(connection: Connection, selection: Selection) -> list[AddressRef]:
    """The addresses a selection names (all of them when it names none), ordered by address.

    An unknown address or label is a ReportError, so every command words it the same way and
    says it before printing anything.
    """
    query = select(Address.id, Address.address, Address.label).order_by(Address.address)
    if selection.address is not None:
        needle = selection.address.strip()
        query = query.where(or_(Address.address == needle.lower(), Address.label == needle))
    if selection.label is not None:
        query = query.where(Address.label == selection.label)
    rows = [AddressRef(row.id, row.address, row.label) for row in connection.execute(query)]
    if selection.address is not None:
        if not rows:
            raise ReportError(
                f"unknown address {selection.address!r}: not in the database (polled yet?)"
            )
        if len(rows) > 1:
            raise ReportError(
                f"label {selection.address!r} names several addresses: "
                "give the address, or use --label for all of them"
            )
    if selection.label is not None and not rows:
        raise ReportError(f"no address has the label {selection.label!r}")
    return rows


def _one_address(connection: Connection, address: str | None) -> AddressRef:
    if address is not None:
        (who,) = resolve_addresses(connection, Selection(address=address))
        return who
    known = resolve_addresses(connection, Selection())
    if not known:
        raise ReportError("no addresses in the database yet: run `tracker poll`")
    if len(known) > 1:
        raise AddressNeeded(
            f"the database holds {len(known)} addresses: choose one with --address "
            "(an address or its label)"
        )
    return known[0]


def _asset(connection: Connection, selection: Selection) -> AssetRef | None:
    return resolve_asset(connection, selection.asset) if selection.asset is not None else None


def _snapshots_at(
    connection: Connection, addresses: Sequence[AddressRef], moment: datetime | None
) -> dict[int, _Snap]:
    """Each address's last snapshot at or before ``moment`` (the latest without), in one query.

    A correlated subquery per address, each a backwards step of the ``(address_id,
    taken_at)`` index: the cost is one index probe per address, whatever the history's length.
    """
    return _snapshots_by(connection, addresses, moment, last=True)


def _first_snapshots(
    connection: Connection, addresses: Sequence[AddressRef], moment: datetime | None
) -> dict[int, _Snap]:
    """Each address's first snapshot at or after ``moment`` (the very first without)."""
    return _snapshots_by(connection, addresses, moment, last=False)


def _snapshots_by(
    connection: Connection, addresses: Sequence[AddressRef], moment: datetime | None, *, last: bool
) -> dict[int, _Snap]:
    if not addresses:
        return {}
    pick = select(Snapshot.id).where(Snapshot.address_id == Address.id)
    if moment is not None:
        pick = pick.where(Snapshot.taken_at <= moment if last else Snapshot.taken_at >= moment)
    # (address_id, taken_at) is unique, so the time alone orders them: a plain index step.
    order = Snapshot.taken_at.desc() if last else Snapshot.taken_at
    chosen = (
        select(pick.order_by(order).limit(1).correlate(Address).scalar_subquery())
        .select_from(Address)
        .where(Address.id.in_([address.id for address in addresses]))
    )
    rows = connection.execute(
        select(Snapshot.address_id, Snapshot.id, Snapshot.taken_at).where(Snapshot.id.in_(chosen))
    )
    return {row.address_id: _Snap(row.id, row.taken_at) for row in rows}


def _assets(connection: Connection, ids: set[int]) -> dict[int, AssetRef]:
    if not ids:
        return {}
    rows = connection.execute(
        select(Asset.id, Asset.asset_id, Asset.symbol, Asset.name, Asset.decimals).where(
            Asset.id.in_(ids)
        )
    )
    return {
        row.id: AssetRef(row.id, row.asset_id, row.symbol, row.name, row.decimals) for row in rows
    }
