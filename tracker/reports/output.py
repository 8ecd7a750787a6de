"""Rows to text: the one place that decides how an amount or a time is written.

JSON carries amounts as decimal strings (a JSON number would be read as a float by most
consumers) and times as ISO-8601 UTC; CSV carries the same texts; the table is for people.
Text from outside (labels, token names, server messages) is neutralised for its sink: no control
character reaches a terminal, no CSV cell starts a spreadsheet formula.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, TextIO

from tabulate import tabulate

from tracker.sanitize import csv_cell, printable
from tracker.times import iso

# "change" is an amount that the table shows with its sign (+1.500), so gains stand out.
Kind = Literal["text", "amount", "change", "mojos", "time", "count"]
FORMATS = ("table", "csv", "json")


@dataclass(frozen=True)
class Column:
    key: str
    kind: Kind = "text"
    header: str | None = None

    @property
    def title(self) -> str:
        return self.header or self.key


def short_address(address: str) -> str:
    """xch1a6cd55…59k0j8: enough to recognise an address without its 62 characters."""
    return address if len(address) <= 20 else f"{address[:10]}…{address[-6:]}"


def _plain(value: object, kind: Kind) -> object:
    """The JSON value of a cell."""
    if value is None:
        return None
    if kind == "time" and isinstance(value, datetime):
        return iso(value)
    if kind in ("amount", "change", "mojos"):
        if not isinstance(value, int | Decimal) or isinstance(value, bool):
            raise TypeError(f"amount of type {type(value).__name__}")
        # "f": str(Decimal) would write small amounts as 3E-12.
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    return value


def render(rows: Iterable[object], columns: Sequence[Column], fmt: str, out: TextIO) -> int:
    """Write ``rows`` (objects with an attribute per column) in ``fmt``; returns the row count.

    Every format but the table writes each row as it arrives, so an iterator of any length
    streams through in constant memory.
    """
    if fmt == "json":
        return _json(rows, columns, out)
    if fmt == "csv":
        return _csv(rows, columns, out)
    if fmt == "table":
        return _table(rows, columns, out)
    raise ValueError(f"unknown format {fmt!r}")


def _json(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    count = 0
    out.write("[")
    for row in rows:
        record = {c.key: _plain(getattr(row, c.key), c.kind) for c in columns}
        out.write(("," if count else "") + "\n  " + json.dumps(record, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def csv_line(cells: Sequence[object]) -> str:
    """One CSV line (RFC 4180): a field with a comma, a quote, a carriage return or a newline
    is quoted, its quotes doubled; None is empty. The database-built export writes the same."""
    fields = []
    for cell in cells:
        field = "" if cell is None else str(cell)
        if any(mark in field for mark in _CSV_SPECIAL):
            field = '"' + field.replace('"', '""') + '"'
        fields.append(field)
    return ",".join(fields) + "\n"


_CSV_SPECIAL = (",", '"', "\n", "\r")


def _csv(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    out.write(csv_line([c.key for c in columns]))
    count = 0
    for row in rows:
        cells = [_plain(getattr(row, c.key), c.kind) for c in columns]
        out.write(
            csv_line(
                [
                    csv_cell(cell) if isinstance(cell, str) and c.kind == "text" else cell
                    for c, cell in zip(columns, cells, strict=True)
                ]
            )
        )
        count += 1
    return count


def _table(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    cells = []
    for row in rows:
        line = []
        for column in columns:
            value = getattr(row, column.key)
            if value is None:
                line.append("-")
            elif column.kind == "time" and isinstance(value, datetime):
                line.append(iso(value))
            elif column.kind == "amount" and isinstance(value, Decimal):
                line.append(f"{value:,f}")
            elif column.kind == "change" and isinstance(value, Decimal):
                line.append(f"{value:+,f}" if value else f"{value:,f}")
            else:
                line.append(printable(str(value)))
        cells.append(line)
    if not cells:
        return 0
    align = ["left" if c.kind in ("text", "time") else "right" for c in columns]
    out.write(
        tabulate(
            cells,
            headers=[c.title for c in columns],
            disable_numparse=True,
            colalign=align,
            tablefmt="simple",
        )
        + "\n"
    )
    return len(cells)
