"""Exports: every row of the ``balance_history`` or ``balance_changes`` view, streamed.

An export reads the documented views themselves, so an export and a SQL query of a view agree
row for row, and the columns are defined once (in the migrations' frozen SQL). The database does
the formatting (times as ISO-8601 UTC text, amounts as exact decimal text, CSV's formula guard on
text cells) and Python only moves rows: CSV leaves PostgreSQL through ``COPY ... TO STDOUT`` and
SQLite through its cursor in batches, so an export runs at about the database's own speed and in
constant memory, however long the history is.

The selection (address, label, asset) is resolved before the first row is read, so an unknown
address is an error before anything is written, never a half-written file.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TextIO

from sqlalchemy import Connection, Engine, bindparam, text

from tracker.reports.changes import check_window
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
    with engine.connect() as connection, connection.begin():
        sql, params = _query(connection, columns, changes, fmt, selection, since, until)
        unbounded(connection)  # sorting years of history may take longer than a statement may
        if fmt == "csv" and connection.dialect.name == "postgresql":
            return _copy(connection, sql, params, out)
        return _stream(connection, sql, params, columns, fmt, out)


def _query(
    connection: Connection,
    columns: Sequence[str],
    changes: bool,
    fmt: Format,
    selection: Selection,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """The SELECT over the view, with its filters resolved now (so their errors come first)."""
    dialect = connection.dialect.name
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
    cells = ", ".join(f"{_cell(dialect, column, fmt)} AS {column}" for column in columns)
    view = "balance_changes" if changes else "balance_history"
    sql = f"SELECT {cells} FROM {view} v"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # Asset ids rather than symbols: hex sorts the same under every collation.
    sql += (
        " ORDER BY v.taken_at, v.address,"
        " CASE WHEN v.asset_id = 'xch' THEN 0 ELSE 1 END, v.asset_id"
    )
    return sql, params


def _cell(dialect: str, column: str, fmt: Format) -> str:
    """The SQL for one exported cell, as the text the documentation promises."""
    cell = f"v.{column}"
    if column in _TIMES:
        if dialect == "postgresql":
            return f"""to_char({cell} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
        return f"strftime('%Y-%m-%dT%H:%M:%SZ', {cell})"
    if column in _NUMBERS:
        return f"CAST({cell} AS TEXT)" if fmt != "csv" or column in ("balance", "delta") else cell
    if column in _TEXT and fmt == "csv":
        # The OWASP rule against formula injection: a cell a spreadsheet would run as a
        # formula (=, +, -, @, tab, carriage return first) starts with ' instead.
        tab, cr = ("chr(9)", "chr(13)") if dialect == "postgresql" else ("char(9)", "char(13)")
        first = f"substr({cell}, 1, 1)"
        return (
            f"CASE WHEN {first} IN ('=', '+', '-', '@', {tab}, {cr})"
            f" THEN '''' || {cell} ELSE NULLIF({cell}, '') END"
        )
    return f"NULLIF({cell}, '')" if fmt == "csv" else cell


def _copy(connection: Connection, sql: str, params: dict[str, Any], out: TextIO) -> int:
    """CSV straight from PostgreSQL's COPY: the database's own speed."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    text = codecs.getincrementaldecoder("utf-8")()  # a character may span two chunks
    try:
        statement = f"COPY ({_inline(cursor, sql, params)}) TO STDOUT WITH (FORMAT csv, HEADER)"
        with cursor.copy(statement) as copy:
            for chunk in copy:
                out.write(text.decode(bytes(chunk)))
        out.write(text.decode(b"", final=True))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _inline(cursor: Any, sql: str, params: dict[str, Any]) -> str:
    """COPY takes no parameters: bind them as literals, quoted by the driver."""
    from psycopg import sql as pgsql

    for name in sorted(params, key=len, reverse=True):  # :address_10 before :address_1
        literal = pgsql.Literal(params[name]).as_string(cursor.connection)
        sql = sql.replace(f":{name}", literal)
    return sql


def _stream(
    connection: Connection,
    sql: str,
    params: dict[str, Any],
    columns: Sequence[str],
    fmt: Format,
    out: TextIO,
) -> int:
    """Rows in batches off a (server-side, on PostgreSQL) cursor."""
    streamed = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS)
    statement = text(sql).bindparams(
        *(bindparam(name, type_=UTCDateTime()) for name in ("since", "until") if name in params)
    )
    result = streamed.execute(statement, params)
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for batch in result.partitions(BATCH_ROWS):
            writer.writerows(batch)
            count += len(batch)
        return count
    if fmt == "jsonl":
        for batch in result.partitions(BATCH_ROWS):
            out.write("".join(_json_line(columns, row) for row in batch))
            count += len(batch)
        return count
    # JSON: the array --format json prints, written as it is read.
    out.write("[")
    for batch in result.partitions(BATCH_ROWS):
        out.write(
            "".join(
                ("," if count + n else "") + "\n  " + _json_line(columns, row)[:-1]
                for n, row in enumerate(batch)
            )
        )
        count += len(batch)
    out.write("\n]\n" if count else "]\n")
    return count


def _json_line(columns: Sequence[str], row: Sequence[object]) -> str:
    return json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n"
