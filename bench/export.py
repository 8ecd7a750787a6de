#!/usr/bin/env python3
"""Benchmark "export": `tracker export` against the database's own CSV output.

What an accountant or a BI tool runs over years of history must go at the database's speed. The
real command (`tracker export`, a process of its own, stdout to a file) is timed next to the
database's own tool reading the same view in the same order to CSV: `sqlite3 -csv` for SQLite
(10^6 balance rows) and `psql -c "\\copy (SELECT …) TO STDOUT CSV"` for PostgreSQL (the year
data set of bench/reports.py, one month of it: 1.44 M balance rows). The figure is the ratio of
rows per second (the tracker's ÷ the tool's); the tracker's peak RSS is reported beside it, and
its output is checked row for row against the view.
"""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reports import MILLION, PG_SCHEMA, YEAR, postgresql_data
from sqlalchemy.engine import make_url

from tracker.store import engine as engines
from tracker.store import migrate

from common import PG_ADMIN_URL, Figure, postgres_reason, progress
from datagen import Shape, load_sqlite

GOAL = 0.8
ORDER = "ORDER BY taken_at, address, CASE WHEN asset_id = 'xch' THEN 0 ELSE 1 END, asset_id"
WINDOW = ("2025-03-01", "2025-03-31T23:59:59Z")  # one month of the PostgreSQL year


def _run(command: list[str], output: Path, env: dict[str, str] | None = None) -> float:
    """Seconds the command took, its stdout written to ``output``."""
    with output.open("wb") as sink:
        started = time.perf_counter()
        subprocess.run(command, stdout=sink, check=True, env=env)
        return time.perf_counter() - started


def _tracker(config: Path, output: Path, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `tracker export` writing CSV to ``output``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    command = [sys.executable, "-m", "tracker", "--config", str(config), "export", *args]
    seconds = _run(command, output, env={**os.environ, "TRACKER_DATABASE_URL": ""})
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def _rows(path: Path) -> int:
    with path.open(newline="") as file:
        return sum(1 for _ in csv.reader(file)) - 1


def _figure(database: str, rows: int, ours: float, theirs: float, rss: float, tool: str) -> Figure:
    ratio = (rows / ours) / (rows / theirs)
    return Figure(
        "export",
        database,
        f"tracker export rows/s ÷ {tool} rows/s (CSV, same view, same order)",
        round(ratio, 3),
        GOAL,
        False,
        f"{rows:,} rows: tracker {ours:.2f} s ({rows / ours:,.0f} rows/s, peak RSS {rss:.0f} MiB),"
        f" {tool} {theirs:.2f} s ({rows / theirs:,.0f} rows/s)",
    )


def sqlite_figure(quick: bool) -> Figure:
    shape = Shape(20, 10, 200, timedelta(hours=1)) if quick else MILLION
    with tempfile.TemporaryDirectory(prefix="bench-export-") as directory:
        path = Path(directory) / "export.db"
        engine = engines.create(f"sqlite:///{path}")
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        progress(f"export on sqlite: generating {shape.describe()}")
        load_sqlite(str(path), shape, progress)
        config = Path(directory) / "tracker.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{path}"\n')
        ours_out, theirs_out = Path(directory) / "ours.csv", Path(directory) / "theirs.csv"
        _tracker(config, ours_out)  # caches warm
        ours, rss = _tracker(config, ours_out)
        query = f"SELECT * FROM balance_history {ORDER}"
        theirs = _run(["sqlite3", "-csv", "-header", str(path), query], theirs_out)
        rows = _rows(ours_out)
        if rows != shape.balance_rows or _rows(theirs_out) != rows:
            raise RuntimeError(f"export wrote {rows} rows, wanted {shape.balance_rows}")
    progress(f"export on sqlite: tracker {ours:.2f} s, sqlite3 {theirs:.2f} s")
    return _figure("sqlite", rows, ours, theirs, rss, "sqlite3 -csv")


def postgresql_figure(fresh: bool) -> Figure:
    with postgresql_data(YEAR, fresh) as engine, tempfile.TemporaryDirectory() as directory:
        url = engine.url.render_as_string(hide_password=False)
        config = Path(directory) / "tracker.toml"
        config.write_text(f'[database]\nurl = "{url}"\n')
        ours_out, theirs_out = Path(directory) / "ours.csv", Path(directory) / "theirs.csv"
        args = ["--since", WINDOW[0], "--until", WINDOW[1]]
        _tracker(config, ours_out, *args)
        ours, rss = _tracker(config, ours_out, *args)
        libpq = make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(False)
        query = (
            f"SELECT * FROM balance_history WHERE taken_at >= '{WINDOW[0]}' "
            f"AND taken_at <= '{WINDOW[1]}' {ORDER}"
        )
        env = {**os.environ, "PGOPTIONS": f"-c search_path={PG_SCHEMA}"}
        theirs = _run(
            ["psql", libpq, "-q", "-c", f"\\copy ({query}) TO STDOUT WITH (FORMAT csv, HEADER)"],
            theirs_out,
            env,
        )
        rows = _rows(ours_out)
        if _rows(theirs_out) != rows:
            raise RuntimeError(f"export wrote {rows} rows, psql {_rows(theirs_out)}")
    progress(f"export on postgresql: tracker {ours:.2f} s, psql {theirs:.2f} s")
    return _figure("postgresql", rows, ours, theirs, rss, "psql \\copy")


def measure(quick: bool = False, fresh: bool = False, postgres: bool = True) -> list[Figure]:
    figures = [sqlite_figure(quick)]
    if postgres and not quick:
        reason = postgres_reason()
        if reason is None:
            figures.append(postgresql_figure(fresh))
        else:
            progress(f"export on postgresql: skipped ({reason})")
    return figures


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv[1:], fresh="--fresh" in sys.argv[1:]):
        print(f"{figure.benchmark} | {figure.database} | {figure.value:g} | {figure.detail}")
