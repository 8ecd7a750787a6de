"""Rows to text: the one place that decides how an amount or a time is written.

JSON carries amounts as decimal strings (a JSON number would be read as a float by most
consumers) and times as ISO-8601 UTC; CSV carries the same texts; the table is for people.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, TextIO

from tabulate import tabulate

# "change" is an amount that the table shows with its sign (+1.500), so gains stand out.
Kind = Literal["text", "amount", "change", "mojos", "time", "count"]
FORMATS = ("table", "csv", "json")
# Formats written row by row as rows arrive, for exports too large to hold: no closing bracket
# to wait for, no column widths to measure first.
STREAM_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Column:
    key: str
    kind: Kind = "text"
    header: str | None = None

    @property
    def title(self) -> str:
        return self.header or self.key


def iso(moment: datetime, timespec: str = "auto") -> str:
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


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
    if fmt == "jsonl":
        return _jsonl(rows, columns, out)
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


def _jsonl(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    """JSON Lines: one object per line with the same cells as JSON, so jq can read a stream."""
    count = 0
    for row in rows:
        record = {c.key: _plain(getattr(row, c.key), c.kind) for c in columns}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _csv(rows: Iterable[object], columns: Sequence[Column], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    count = 0
    for row in rows:
        cells = [_plain(getattr(row, c.key), c.kind) for c in columns]
        writer.writerow(["" if cell is None else cell for cell in cells])
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
                line.append(iso(value, "seconds"))
            elif column.kind == "amount" and isinstance(value, Decimal):
                line.append(f"{value:,f}")
            elif column.kind == "change" and isinstance(value, Decimal):
                line.append(f"{value:+,f}" if value else f"{value:,f}")
            else:
                line.append(str(value))
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
