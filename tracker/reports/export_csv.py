"""CSV exports at the database's own speed: the database writes the CSV, Python moves bytes.

Building a Python row object per exported row costs more than the database takes to produce it
(a million rows is millions of objects), so each database formats the CSV itself:

- PostgreSQL runs ``COPY (SELECT …) TO STDOUT WITH (FORMAT csv, HEADER)`` and the rows are read
  with libpq's own copy call (``PQgetCopyData``, through psycopg's ``pgconn``) into large
  buffers: no Python object per row but the bytes themselves;
- SQLite computes each CSV line in SQL (text concatenated, quoted by the CSV rule, a formula
  guard on text cells), and Python joins thousands of lines per write.

The texts are those of Python's csv module as ``--format csv`` writes them: a field is quoted
when it holds a comma, a quote, a carriage return or a newline, quotes are doubled, a missing
value is empty, lines end with ``\\n``.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any, TextIO

from sqlalchemy import Connection, bindparam, text

from tracker.errors import StoreError
from tracker.store.models import UTCDateTime

BUFFER_BYTES = 1 << 20
LINES_PER_FETCH = 5000
_TEXT = {"label", "symbol", "name"}
_OPTIONAL = {"token_id"}
_TIMES = {"taken_at", "previous_taken_at"}


def copy_postgresql(
    connection: Connection, select: str, params: dict[str, Any], out: TextIO
) -> int:
    """Write ``select``'s rows to ``out`` as CSV through COPY; returns the number of rows."""
    driver = connection.connection.driver_connection
    from psycopg import pq
    from psycopg import sql as pgsql

    for name in sorted(params, key=len, reverse=True):  # :address_10 before :address_1
        select = select.replace(f":{name}", pgsql.Literal(params[name]).as_string(driver))
    pgconn = driver.pgconn  # type: ignore[union-attr]
    pgconn.send_query(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)".encode())
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        raise StoreError(f"the export could not start: {_pg_error(pgconn, result)}")
    try:
        _drain(pgconn, _Sink(out))
    except BaseException:
        # A reader that went away, a full disk, Ctrl-C: the COPY is still running on this
        # connection, which can no longer be reset and reused: close it.
        connection.invalidate()
        raise
    rows = 0
    while (done := pgconn.get_result()) is not None:
        if done.status != pq.ExecStatus.COMMAND_OK:
            raise StoreError(f"the export stopped: {_pg_error(pgconn, done)}")
        rows = int((done.command_status or b"COPY 0").split()[-1])
    return rows


def _drain(pgconn: Any, sink: _Sink) -> None:
    buffer = bytearray()
    while True:
        size, data = pgconn.get_copy_data(0)  # blocks for the next row
        if size < 0:
            break
        buffer += data
        if len(buffer) >= BUFFER_BYTES:
            sink.write(buffer)
            buffer.clear()
    sink.write(buffer, final=True)


def _pg_error(pgconn: Any, result: Any) -> str:
    message = result.error_message if result is not None else pgconn.error_message
    return " ".join(bytes(message or b"unknown error").decode(errors="replace").split())


def lines_sqlite(
    connection: Connection,
    where: str,
    params: dict[str, Any],
    columns: Sequence[str],
    view: str,
    order: str,
    out: TextIO,
) -> int:
    """Write the view's rows to ``out`` as CSV lines that SQLite computes; returns the count."""
    line = " || ',' || ".join(_csv_field(column) for column in columns)
    statement = text(f"SELECT {line} FROM {view} v{where} {order}").bindparams(
        *(bindparam(name, type_=UTCDateTime()) for name in ("since", "until") if name in params)
    )
    out.write(",".join(columns) + "\n")
    result = connection.execute(statement, params)
    count = 0
    while batch := result.fetchmany(LINES_PER_FETCH):
        out.write("\n".join([row[0] for row in batch]) + "\n")
        count += len(batch)
    return count


def _csv_field(column: str) -> str:
    """SQL for one CSV field of a line, exactly as Python's csv module would write it."""
    cell = f"v.{column}"
    if column in _TIMES:
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): cut, not parsed (strftime is slow).
        return f"(substr({cell}, 1, 10) || 'T' || substr({cell}, 12, 8) || 'Z')"
    if column in _OPTIONAL:
        return f"ifnull({cell}, '')"
    if column not in _TEXT:
        return cell  # an address, an asset id, a number: never quoted
    # The OWASP formula guard first, then the CSV rule on what is written.
    guarded = (
        f"(CASE WHEN substr({cell}, 1, 1) IN ('=', '+', '-', '@', char(9), char(13))"
        f" THEN '''' || {cell} ELSE {cell} END)"
    )
    needs_quotes = (
        f"instr({cell}, '\"') OR instr({cell}, ',') OR instr({cell}, char(10))"
        f" OR instr({cell}, char(13))"
    )
    return (
        f"(CASE WHEN {cell} IS NULL THEN '' WHEN {needs_quotes}"
        f" THEN '\"' || replace({guarded}, '\"', '\"\"') || '\"' ELSE {guarded} END)"
    )


class _Sink:
    """Bytes to a text stream: straight to its binary buffer when it has one (stdout)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._binary = getattr(out, "buffer", None)
        self._decode = codecs.getincrementaldecoder("utf-8")()
        if self._binary is not None:
            out.flush()  # what was written as text goes first

    def write(self, data: bytes | bytearray, *, final: bool = False) -> None:
        if self._binary is not None:
            self._binary.write(data)
            if final:
                self._binary.flush()
        else:
            self._out.write(self._decode.decode(bytes(data), final=final))
