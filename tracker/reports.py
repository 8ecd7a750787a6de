"""Read-side queries: latest balances, balance history and the balance-change report.

Everything here reads; nothing writes. Amounts leave as exact ``Decimal`` token units next to
their integer mojos, so every output format can show them without rounding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, aliased

from tracker.models import XCH_ASSET_ID, Address, Asset, Delta, Snapshot, SnapshotBalance


class ReportError(Exception):
    """A report that cannot be made as asked (unknown address or asset); one line."""


def units(mojos: int, decimals: int) -> Decimal:
    """Exact token units with every decimal shown: 1500 CAT mojos -> Decimal('1.500')."""
    return Decimal(mojos).scaleb(-decimals)


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


@dataclass(frozen=True)
class ReportRow:
    address: str
    label: str | None
    asset_id: str
    symbol: str | None
    start_at: datetime
    end_at: datetime
    start_balance: Decimal
    end_balance: Decimal
    change: Decimal
    changes: int
    start_balance_mojos: int
    end_balance_mojos: int
    change_mojos: int


def latest_balances(engine: Engine, address: str | None = None) -> list[BalanceRow]:
    """Each address's most recent successful snapshot, one row per asset held then."""
    later = aliased(Snapshot)
    newest = (
        ~select(later.id)
        .where(
            later.address_id == Snapshot.address_id,
            or_(
                later.taken_at > Snapshot.taken_at,
                and_(later.taken_at == Snapshot.taken_at, later.id > Snapshot.id),
            ),
        )
        .exists()
    )
    query = (
        select(
            Address.address,
            Address.label,
            Asset.asset_id,
            Asset.symbol,
            Asset.name,
            Asset.decimals,
            Snapshot.taken_at,
            SnapshotBalance.balance_mojos,
        )
        .select_from(Snapshot)
        .join(Address, Address.id == Snapshot.address_id)
        .join(SnapshotBalance, SnapshotBalance.snapshot_id == Snapshot.id)
        .join(Asset, Asset.id == SnapshotBalance.asset_id)
        .where(newest)
    )
    with engine.connect() as connection:
        if address is not None:
            query = query.where(Snapshot.address_id == _address_id(connection, address))
        rows = connection.execute(query.order_by(Address.address, *_asset_order())).all()
    return [_balance_row(row) for row in rows]


def history(engine: Engine, address: str, asset: str | None = None) -> list[BalanceRow]:
    """The balance of every asset at every snapshot of ``address``, oldest first.

    Once an asset has appeared it stays in the series with 0 while it is not held, so a series
    never just stops: the drop to zero is visible.
    """
    with engine.connect() as connection:
        address_id = _address_id(connection, address)
        only = resolve_asset(connection, asset) if asset is not None else None
        query = (
            select(Address.address, Address.label, Snapshot.id, Snapshot.taken_at)
            .join(Address, Address.id == Snapshot.address_id)
            .where(Snapshot.address_id == address_id)
            .order_by(Snapshot.taken_at, Snapshot.id)
        )
        snapshots = connection.execute(query).all()
        balances_query = (
            select(
                SnapshotBalance.snapshot_id, SnapshotBalance.asset_id, SnapshotBalance.balance_mojos
            )
            .join(Snapshot, Snapshot.id == SnapshotBalance.snapshot_id)
            .where(Snapshot.address_id == address_id)
        )
        if only is not None:
            balances_query = balances_query.where(SnapshotBalance.asset_id == only.id)
        by_snapshot: dict[int, dict[int, int]] = defaultdict(dict)
        for snapshot_id, asset_pk, mojos in connection.execute(balances_query):
            by_snapshot[snapshot_id][asset_pk] = mojos
        assets = _assets(connection, {pk for held in by_snapshot.values() for pk in held})
    rows: list[BalanceRow] = []
    order = sorted(assets.values(), key=_asset_sort_key)
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
                    snapshot.address,
                    snapshot.label,
                    ref.asset_id,
                    ref.symbol,
                    ref.name,
                    snapshot.taken_at,
                    mojos,
                    units(mojos, ref.decimals),
                )
            )
    return rows


def change_report(
    engine: Engine,
    since: datetime | None = None,
    until: datetime | None = None,
    address: str | None = None,
) -> list[ReportRow]:
    """Per address and asset: balance at the start and end of the window, and what changed.

    The start is the last snapshot at or before ``since`` (or, when history begins inside the
    window, the first snapshot in it); the end is the last snapshot at or before ``until``.
    ``change`` is end minus start, which equals the sum of the deltas counted in ``changes``.
    """
    if since is not None and until is not None and until < since:
        raise ReportError("--until is before --since")
    rows: list[ReportRow] = []
    with engine.connect() as connection:
        addresses = connection.execute(
            select(Address.id, Address.address, Address.label).order_by(Address.address)
        ).all()
        if address is not None:
            wanted = _address_id(connection, address)
            addresses = [row for row in addresses if row.id == wanted]
        for row in addresses:
            rows.extend(_report_address(connection, row.id, row.address, row.label, since, until))
    return rows


def _report_address(
    connection: Connection,
    address_id: int,
    address: str,
    label: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ReportRow]:
    end = _snapshot_at(connection, address_id, until)
    if end is None:
        return []
    start = _snapshot_at(connection, address_id, since) if since is not None else None
    if start is None:
        first = select(Snapshot.id, Snapshot.taken_at).where(Snapshot.address_id == address_id)
        if since is not None:
            first = first.where(Snapshot.taken_at >= since)
        start = connection.execute(first.order_by(Snapshot.taken_at, Snapshot.id).limit(1)).first()
        if start is None or start.taken_at > end.taken_at:
            return []
    start_balances = _balances(connection, start.id)
    end_balances = _balances(connection, end.id)
    counts: dict[int, int] = {
        asset: count
        for asset, count in connection.execute(
            select(Delta.asset_id, func.count())
            .join(Snapshot, Snapshot.id == Delta.snapshot_id)
            .where(
                Snapshot.address_id == address_id,
                Snapshot.taken_at > start.taken_at,
                Snapshot.taken_at <= end.taken_at,
            )
            .group_by(Delta.asset_id)
        )
    }
    assets = _assets(connection, set(start_balances) | set(end_balances) | set(counts))
    result = []
    for ref in sorted(assets.values(), key=_asset_sort_key):
        before = start_balances.get(ref.id, 0)
        after = end_balances.get(ref.id, 0)
        result.append(
            ReportRow(
                address=address,
                label=label,
                asset_id=ref.asset_id,
                symbol=ref.symbol,
                start_at=start.taken_at,
                end_at=end.taken_at,
                start_balance=units(before, ref.decimals),
                end_balance=units(after, ref.decimals),
                change=units(after - before, ref.decimals),
                changes=counts.get(ref.id, 0),
                start_balance_mojos=before,
                end_balance_mojos=after,
                change_mojos=after - before,
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


def _asset_order() -> tuple[ColumnElement[Any] | InstrumentedAttribute[str], ...]:
    # XCH first, then CATs by symbol, then by asset id for a stable order.
    return (Asset.asset_id != XCH_ASSET_ID, func.coalesce(Asset.symbol, ""), Asset.asset_id)


def _asset_sort_key(ref: AssetRef) -> tuple[bool, str, str]:
    return (ref.asset_id != XCH_ASSET_ID, ref.symbol or "", ref.asset_id)


def _balance_row(row: Sequence[object]) -> BalanceRow:
    address, label, asset_id, symbol, name, decimals, taken_at, mojos = row
    assert isinstance(mojos, int)
    assert isinstance(decimals, int)
    return BalanceRow(
        address,  # type: ignore[arg-type]
        label,  # type: ignore[arg-type]
        asset_id,  # type: ignore[arg-type]
        symbol,  # type: ignore[arg-type]
        name,  # type: ignore[arg-type]
        taken_at,  # type: ignore[arg-type]
        mojos,
        units(mojos, decimals),
    )


def _address_id(connection: Connection, address: str) -> int:
    needle = address.strip()
    rows = connection.execute(
        select(Address.id).where(or_(Address.address == needle.lower(), Address.label == needle))
    ).all()
    if len(rows) == 1:
        return int(rows[0].id)
    if not rows:
        raise ReportError(f"unknown address {address!r}: not in the database (polled yet?)")
    raise ReportError(f"label {address!r} names several addresses: give the address instead")


def _snapshot_at(connection: Connection, address_id: int, moment: datetime | None):  # type: ignore[no-untyped-def]
    query = select(Snapshot.id, Snapshot.taken_at).where(Snapshot.address_id == address_id)
    if moment is not None:
        query = query.where(Snapshot.taken_at <= moment)
    return connection.execute(
        query.order_by(Snapshot.taken_at.desc(), Snapshot.id.desc()).limit(1)
    ).first()


def _balances(connection: Connection, snapshot_id: int) -> dict[int, int]:
    rows = connection.execute(
        select(SnapshotBalance.asset_id, SnapshotBalance.balance_mojos).where(
            SnapshotBalance.snapshot_id == snapshot_id
        )
    )
    return {row.asset_id: row.balance_mojos for row in rows}


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
