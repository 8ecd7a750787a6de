"""Rows to text: the one place that decides how an amount or a time is written.

JSON carries amounts as decimal strings (a JSON number would be read as a float by most
consumers) and times as ISO-8601 UTC; CSV carries the same texts; the table is for people.
Text from outside (labels, token names, server messages) is neutralised for its sink: no control
character reaches a terminal, no CSV cell starts a spreadsheet formula.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, TextIO

from tabulate import tabulate

from tracker.sanitize import csv_cell, printable
from tracker.times import iso
from tracker.valuation import FIAT_PLACES, XCH_PLACES, rounded

# "change" is an amount that the table shows with its sign (+1.500), so gains stand out.
# "xch" and "fiat" are prices and values, which the table rounds (6 and 2 decimals) for reading
# only; "fiat_change" is a fiat value with its sign.
Kind = Literal["text", "amount", "change", "mojos", "time", "count", "xch", "fiat", "fiat_change"]
_ROUNDED = {"xch": XCH_PLACES, "fiat": FIAT_PLACES, "fiat_change": FIAT_PLACES}
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
    if kind in ("amount", "change", "mojos", *_ROUNDED):
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


def _csv(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    count = 0
    for row in rows:
        cells = [_plain(getattr(row, c.key), c.kind) for c in columns]
        writer.writerow(
            [
                ""
                if cell is None
                else csv_cell(cell)
                if isinstance(cell, str) and c.kind == "text"
                else cell
                for c, cell in zip(columns, cells, strict=True)
            ]
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
            elif column.kind in _ROUNDED and isinstance(value, Decimal):
                shown = rounded(value, _ROUNDED[column.kind])
                shown = shown if shown else abs(shown)  # never "-0.00"
                signed = column.kind == "fiat_change" and shown
                line.append(f"{shown:+,f}" if signed else f"{shown:,f}")
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
