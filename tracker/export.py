"""Exports: every snapshot balance, or every delta, streamed from the database as it is read.

A history can hold millions of rows, so nothing here builds a list: the query runs with
``stream_results`` (a server-side cursor on PostgreSQL; SQLite steps its cursor lazily) and
``yield_per``, and each row leaves as soon as it is read. The columns are those of the
``balance_history`` and ``balance_changes`` views, with the same exact amounts, so an export and
a SQL query of a view agree row for row.

The selection (address, label, asset) is resolved before the first row is read, so an unknown
address is an error before anything is written, never a half-written file.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Engine, Select, case, select
from sqlalchemy.orm import aliased

from tracker.models import XCH_ASSET_ID, Address, Asset, Delta, Snapshot, SnapshotBalance
from tracker.output import Column
from tracker.reports import ReportError, Selection, resolve_addresses, resolve_asset, units

# Rows fetched from the cursor at a time: big enough to amortise the round trips, small enough
# that the buffer stays a few hundred kilobytes whatever the export's size.
BATCH_ROWS = 1000

_R = TypeVar("_R")
_EVERYTHING = Selection()
# Any row shape: the two exports share the filters and the streaming, not their columns.
_Query: TypeAlias = "Select[*tuple[Any, ...]]"


@dataclass(frozen=True, slots=True)
class BalanceExportRow:
    """One asset of one snapshot: a row of the ``balance_history`` view."""

    address: str
    label: str | None
    asset_id: str
    token_id: str | None
    symbol: str | None
    name: str | None
    taken_at: datetime
    balance_mojos: int
    balance: Decimal


@dataclass(frozen=True, slots=True)
class ChangeExportRow:
    """One delta: a row of the ``balance_changes`` view."""

    address: str
    label: str | None
    asset_id: str
    symbol: str | None
    taken_at: datetime
    previous_taken_at: datetime
    previous_balance_mojos: int
    balance_mojos: int
    delta_mojos: int
    delta: Decimal


BALANCE_COLUMNS = (
    Column("address"),
    Column("label"),
    Column("asset_id"),
    Column("token_id"),
    Column("symbol"),
    Column("name"),
    Column("taken_at", "time"),
    Column("balance_mojos", "mojos"),
    Column("balance", "amount"),
)

CHANGE_COLUMNS = (
    Column("address"),
    Column("label"),
    Column("asset_id"),
    Column("symbol"),
    Column("taken_at", "time"),
    Column("previous_taken_at", "time"),
    Column("previous_balance_mojos", "mojos"),
    Column("balance_mojos", "mojos"),
    Column("delta_mojos", "mojos"),
    Column("delta", "change"),
)


def balances(
    engine: Engine,
    selection: Selection = _EVERYTHING,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Generator[BalanceExportRow, None, None]:
    """Every balance of every snapshot taken from ``since`` to ``until`` (both included).

    Ordered by time, then address, then asset (XCH first, then by asset id). Nothing is read
    until the first row is asked for; the connection is returned when the iterator ends or is
    closed.
    """
    query = (
        select(
            Address.address,
            Address.label,
            Asset.asset_id,
            Asset.token_id,
            Asset.symbol,
            Asset.name,
            Snapshot.taken_at,
            SnapshotBalance.balance_mojos,
            Asset.decimals,
        )
        .select_from(SnapshotBalance)
        .join(Snapshot, Snapshot.id == SnapshotBalance.snapshot_id)
        .join(Address, Address.id == Snapshot.address_id)
        .join(Asset, Asset.id == SnapshotBalance.asset_id)
    )
    query = _narrow(engine, query, selection, since, until, SnapshotBalance.asset_id)
    return _stream(engine, query, BalanceExportRow)


def changes(
    engine: Engine,
    selection: Selection = _EVERYTHING,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Generator[ChangeExportRow, None, None]:
    """Every delta whose snapshot was taken from ``since`` to ``until`` (both included).

    Ordered like :func:`balances`; ``taken_at`` is the snapshot with the new balance.
    """
    previous = aliased(Snapshot)
    query = (
        select(
            Address.address,
            Address.label,
            Asset.asset_id,
            Asset.symbol,
            Snapshot.taken_at,
            previous.taken_at.label("previous_taken_at"),
            Delta.previous_balance_mojos,
            Delta.balance_mojos,
            Delta.delta_mojos,
            Asset.decimals,
        )
        .select_from(Delta)
        .join(Snapshot, Snapshot.id == Delta.snapshot_id)
        .join(previous, previous.id == Delta.previous_snapshot_id)
        .join(Address, Address.id == Snapshot.address_id)
        .join(Asset, Asset.id == Delta.asset_id)
    )
    query = _narrow(engine, query, selection, since, until, Delta.asset_id)
    return _stream(engine, query, ChangeExportRow)


def _narrow(
    engine: Engine,
    query: _Query,
    selection: Selection,
    since: datetime | None,
    until: datetime | None,
    asset_column: Any,
) -> _Query:
    """The filters and the order; resolves the selection now, so its errors come first."""
    if since is not None and until is not None and until < since:
        raise ReportError("--until is before --since")
    with engine.connect() as connection:
        if selection.address is not None or selection.label is not None:
            ids = [ref.id for ref in resolve_addresses(connection, selection)]
            query = query.where(Snapshot.address_id.in_(ids))
        if selection.asset is not None:
            query = query.where(asset_column == resolve_asset(connection, selection.asset).id)
    if since is not None:
        query = query.where(Snapshot.taken_at >= since)
    if until is not None:
        query = query.where(Snapshot.taken_at <= until)
    # Asset ids rather than symbols: hex sorts the same under every collation, so both
    # databases give the same order.
    xch_first = case((Asset.asset_id == XCH_ASSET_ID, 0), else_=1)
    return query.order_by(Snapshot.taken_at, Address.address, xch_first, Asset.asset_id)


def _stream(engine: Engine, query: _Query, make: Callable[..., _R]) -> Generator[_R, None, None]:
    """The rows as they come off the cursor; the connection lives as long as the iteration.

    Each query selects ``make``'s fields in order, minus the last, then the asset's decimals:
    the last field is the amount in token units, made from the mojos just before it. (Rows are
    unpacked by position: access by name took longer than reading the rows from SQLite.)
    """
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(
            query
        )
        for *cells, decimals in result:
            yield make(*cells, units(cells[-1], decimals))
