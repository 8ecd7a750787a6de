"""Exports: every row of the ``balance_history`` or ``balance_changes`` view, streamed.

An export reads the documented views themselves, so an export and a SQL query of a view agree
row for row, and the columns are defined once (in the migrations' frozen SQL). The database does
the formatting (times as ISO-8601 UTC text, amounts as exact decimal text, CSV's formula guard on
text cells; for CSV, whole lines: :mod:`tracker.reports.export_csv`) and Python only moves text,
so an export runs at about the database's own speed and in constant memory, however long the
history is.

The selection (address, label, asset) is resolved before the first row is read, so an unknown
address is an error before anything is written, never a half-written file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TextIO

from sqlalchemy import Connection, Engine, bindparam, text

from tracker.reports.changes import check_window
from tracker.reports.export_csv import copy_postgresql, lines_sqlite
from tracker.reports.selection import EVERYTHING, Selection, resolve_addresses, selected_asset
from tracker.store.engine import unbounded
from tracker.store.models import UTCDateTime

Format = Literal["csv", "jsonl", "json"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "json")
BATCH_ROWS = 2000

BALANCE_COLUMNS = (
    "address",
    "label",
    "asset_id",
    "token_id",
    "symbol",
    "name",
    "taken_at",
    "balance_mojos",
    "balance",
)
CHANGE_COLUMNS = (
    "address",
    "label",
    "asset_id",
    "symbol",
    "taken_at",
    "previous_taken_at",
    "previous_balance_mojos",
    "balance_mojos",
    "delta_mojos",
    "delta",
)
_TEXT = {"label", "symbol", "name"}  # chosen by users and token issuers: neutralised in CSV
_TIMES = {"taken_at", "previous_taken_at"}
_NUMBERS = {"balance_mojos", "previous_balance_mojos", "delta_mojos", "balance", "delta"}

# Asset ids rather than symbols: hex sorts the same under every collation.
ORDER = "ORDER BY v.taken_at, v.address, CASE WHEN v.asset_id = 'xch' THEN 0 ELSE 1 END, v.asset_id"
_GUARD_PG = "('=', '+', '-', '@', chr(9), chr(13))"


def export(
    engine: Engine,
    out: TextIO,
    *,
    changes: bool = False,
    fmt: Format = "csv",
    selection: Selection = EVERYTHING,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Write every balance (or, with ``changes``, every delta) whose snapshot was taken from
    ``since`` to ``until`` (both included) to ``out``; returns the number of rows.

    Ordered by time, then address, then asset (XCH first, then by asset id).
    """
    check_window(since, until)
    columns = CHANGE_COLUMNS if changes else BALANCE_COLUMNS
    view = "balance_changes" if changes else "balance_history"
    with engine.connect() as connection, connection.begin():
        where, params = _filters(connection, selection, since, until)
        unbounded(connection)  # sorting years of history may take longer than a statement may
        postgresql = connection.dialect.name == "postgresql"
        if fmt == "csv" and postgresql:
            cells = ", ".join(f"{_cell(column, fmt, True)} AS {column}" for column in columns)
            select = f"SELECT {cells} FROM {view} v{where} {ORDER}"
            return copy_postgresql(connection, select, params, out)
        if fmt == "csv":
            return lines_sqlite(connection, where, params, columns, view, ORDER, out)
        cells = ", ".join(_cell(column, fmt, postgresql) for column in columns)
        select = f"SELECT {cells} FROM {view} v{where} {ORDER}"
        return _stream(connection, select, params, columns, fmt, out)


def _filters(
    connection: Connection,
    selection: Selection,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """The WHERE clause and its parameters, resolved now (so their errors come first)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if selection.address is not None or selection.label is not None:
        addresses = [ref.address for ref in resolve_addresses(connection, selection)]
        names = [f"address_{n}" for n in range(len(addresses))]
        params.update(zip(names, addresses, strict=True))
        where.append(f"v.address IN ({', '.join(f':{n}' for n in names)})")
    asset = selected_asset(connection, selection)
    if asset is not None:
        params["asset"] = asset.asset_id
        where.append("v.asset_id = :asset")
    for name, moment, operator in (("since", since, ">="), ("until", until, "<=")):
        if moment is not None:
            params[name] = moment
            where.append(f"v.taken_at {operator} :{name}")
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _cell(column: str, fmt: Format, postgresql: bool) -> str:
    """The SQL for one exported cell (PostgreSQL's COPY, or JSON on either database)."""
    cell = f"v.{column}"
    if column in _TIMES:
        if postgresql:
            return f"""to_char({cell} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
        return f"(substr({cell}, 1, 10) || 'T' || substr({cell}, 12, 8) || 'Z')"
    if column in _NUMBERS:
        return f"CAST({cell} AS TEXT)" if fmt != "csv" or column in ("balance", "delta") else cell
    if column in _TEXT and fmt == "csv":
        # The OWASP rule against formula injection: a cell a spreadsheet would run as a
        # formula (=, +, -, @, tab, carriage return first) starts with ' instead.
        return (
            f"CASE WHEN substr({cell}, 1, 1) IN {_GUARD_PG}"
            f" THEN '''' || {cell} ELSE NULLIF({cell}, '') END"
        )
    return f"NULLIF({cell}, '')" if fmt == "csv" else cell


def _stream(
    connection: Connection,
    sql: str,
    params: dict[str, Any],
    columns: Sequence[str],
    fmt: Format,
    out: TextIO,
) -> int:
    """JSON rows in batches off a (server-side, on PostgreSQL) cursor."""
    streamed = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS)
    statement = text(sql).bindparams(
        *(bindparam(name, type_=UTCDateTime()) for name in ("since", "until") if name in params)
    )
    result = streamed.execute(statement, params)
    count = 0
    if fmt == "jsonl":
        for batch in result.partitions(BATCH_ROWS):
            out.write("".join(_json_line(columns, row) for row in batch))
            count += len(batch)
        return count
    # JSON: the array --format json prints, written as it is read.
    out.write("[")
    for batch in result.partitions(BATCH_ROWS):
        lines = [
            ("," if count + n else "") + "\n  " + _json_line(columns, row)[:-1]
            for n, row in enumerate(batch)
        ]
        out.write("".join(lines))
        count += len(batch)
    out.write("\n]\n" if count else "]\n")
    return count


def _json_line(columns: Sequence[str], row: Sequence[object]) -> str:
    return json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n"
