"""What every benchmark of ``bench/run`` returns: ratios measured in one run against a bound.

A ratio compares two measurements taken on the same machine in the same run (the tracker
against a baseline, or against itself at another size), so it holds on a noisy machine where
seconds do not.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from tracker.clock import SystemClock
from tracker.config import parse
from tracker.service import assembly
from tracker.service.poller import Poller

ROOT = Path(__file__).resolve().parent.parent
# The fake Spacescan and the address helpers live with the tests.
for _path in (ROOT / "tests", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@dataclass(frozen=True)
class Figure:
    """One line of the table: ``value`` compared with ``bound`` (``at_most`` or at least)."""

    benchmark: str
    database: str  # "sqlite", "postgresql" or "-" when none is involved
    measure: str  # what the ratio is, in words
    value: float
    bound: float
    at_most: bool
    detail: str  # the raw measurements behind the ratio

    @property
    def ok(self) -> bool:
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    @property
    def goal(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.bound:g}"


def progress(text: str) -> None:
    """Progress goes to stderr, so stdout is only the table."""
    print(text, file=sys.stderr, flush=True)


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reason() -> str | None:
    """Why PostgreSQL cannot be benchmarked here, or None when it can."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure: the server is not there for us
        return f"PostgreSQL at 127.0.0.1:5432 not reachable ({type(exc).__name__})"
    finally:
        engine.dispose()
    return None


@contextmanager
def fresh_database(kind: str, directory: Path, name: str = "bench") -> Iterator[str]:
    """The URL of an empty database: a SQLite file in ``directory``, or a new PostgreSQL
    database (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{name}.db'}"
        return
    from support.databases import postgres_database

    with postgres_database() as url:
        yield url


def poller(
    engine: Engine,
    url: str,
    *,
    requests_per_minute: float,
    max_attempts: int,
    timeout_seconds: float,
    concurrency: int | str,
    include_xch: bool = True,
) -> Poller:
    """The daemon's poller, built by the library's own assembly from these settings."""
    settings = parse(
        {
            "database": {"url": engine.url.render_as_string(hide_password=False)},
            "spacescan": {
                "base_url": url,
                "requests_per_minute": float(requests_per_minute),
                "max_attempts": max_attempts,
                "timeout_seconds": float(timeout_seconds),
                "concurrency": concurrency,
                "include_xch": include_xch,
            },
        },
        Path("bench.toml"),
        {},
    )
    return assembly.poller(settings, engine, SystemClock())
