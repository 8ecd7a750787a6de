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
    """A column: the row attribute it shows (``key``) and how to write its values.

    Two keys are made for people and exist only in tables: ``who`` (the label, else the
    address shortened) and ``asset`` (the symbol, else the asset id shortened). ``clip`` marks
    a column that may be cut to make a table fit its width.
    """

    key: str
    kind: Kind = "text"
    header: str | None = None
    clip: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key


TABLE_WIDTH = 100
"""What a table fits in when the terminal's width is not known."""


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


def render(
    rows: Iterable[object],
    columns: Sequence[Column],
    fmt: str,
    out: TextIO,
    *,
    width: int | None = None,
) -> int:
    """Write ``rows`` (objects with an attribute per column) in ``fmt``; returns the row count.

    Every format but the table writes each row as it arrives, so an iterator of any length
    streams through in constant memory. A table fits ``width`` columns (default 100).
    """
    if fmt == "json":
        return _json(rows, columns, out)
    if fmt == "csv":
        return _csv(rows, columns, out)
    if fmt == "table":
        return _table(rows, columns, out, width)
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


def _table(
    rows: Iterable[object], columns: Sequence[Column], out: TextIO, width: int | None
) -> int:
    from tabulate import tabulate  # only tables need it: a CSV or JSON command does not wait

    cells = [[_shown(row, column) for column in columns] for row in rows]
    if not cells:
        return 0
    _fit(cells, columns, width or TABLE_WIDTH)
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


def _shown(row: object, column: Column) -> str:
    """A table cell, as a person reads it: amounts trimmed, outside text made harmless."""
    if column.key == "who":
        label, address = getattr(row, "label", None), getattr(row, "address", None)
        value: object = label or (short_address(address) if address else "all")
    elif column.key == "asset":
        symbol, asset_id = getattr(row, "symbol", None), str(getattr(row, "asset_id", ""))
        value = symbol or (asset_id if len(asset_id) <= 12 else f"{asset_id[:6]}…{asset_id[-4:]}")
    else:
        value = getattr(row, column.key)
    if value is None:
        return "-"
    if column.kind == "time" and isinstance(value, datetime):
        return iso(value)
    if column.kind in ("amount", "change") and isinstance(value, Decimal):
        trimmed = value.normalize() if value else Decimal(0)
        text = f"{trimmed:,f}"
        return f"+{text}" if column.kind == "change" and value > 0 else text
    if column.kind == "count" and isinstance(value, int):
        return f"{value:,}"
    if column.kind in _ROUNDED and isinstance(value, Decimal):
        shown = rounded(value, _ROUNDED[column.kind])
        shown = shown if shown else abs(shown)  # never "-0.00"
        signed = column.kind == "fiat_change" and shown
        return f"{shown:+,f}" if signed else f"{shown:,f}"
    return printable(str(value))


def _fit(cells: list[list[str]], columns: Sequence[Column], width: int) -> None:
    """Cut the clippable columns, longest first, until the table fits ``width``."""
    # tabulate makes every column at least two wider than its header.
    widths = [
        max(len(column.title) + 2, *(len(line[n]) for line in cells))
        for n, column in enumerate(columns)
    ]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    clippable = [n for n, column in enumerate(columns) if column.clip]
    while excess > 0 and clippable:
        n = max(clippable, key=widths.__getitem__)
        floor = max(len(columns[n].title) + 2, 8)
        if widths[n] <= floor:
            clippable.remove(n)
            continue
        target = max(floor, widths[n] - excess)
        excess -= widths[n] - target
        widths[n] = target
        for line in cells:
            if len(line[n]) > target:
                line[n] = line[n][: target - 1] + "…"
