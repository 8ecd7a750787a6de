"""Engines: one place that knows how to open either database, with bounds on every wait.

A database that accepts a connection and then never answers must not hang a command or a daemon:
PostgreSQL connections get a connect timeout, TCP keepalives and a user timeout (so a partition is
noticed within seconds), and a statement timeout; SQLite waits a few seconds for another writer's
lock, and the writer's retry policy (on the injected clock, which a stop cancels) does the rest.
Every database failure becomes one :class:`~tracker.errors.StoreError` line through
:func:`database_error`, with the URL masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from tracker.errors import StoreError
from tracker.redact import mask_url

SQLITE_BUSY_SECONDS = 5.0
"""How long SQLite itself waits for another writer's lock (a stop cannot interrupt it)."""
CONNECT_TIMEOUT_SECONDS = 10
STATEMENT_TIMEOUT_SECONDS = 60
# A peer that stops answering mid-query is noticed within about keepalive idle + interval x count.
_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}


def describe(exc: BaseException) -> str:
    """One line for a database error: the driver's message, without the SQL and parameters."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    return " ".join(text.split())[:300] or type(exc).__name__


def database_error(url: str | URL, exc: BaseException) -> StoreError:
    """The one way a database failure is worded: ``database <masked url>: <reason>``."""
    return StoreError(f"database {mask(url)}: {describe(exc)}")


def normalize_url(url: str | URL) -> URL:
    """Parse a URL; plain ``postgresql://`` means psycopg 3, the driver tracker installs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreError("not a valid SQLAlchemy database URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask(url: str | URL) -> str:
    """The URL as it may appear in logs and errors: no password, wherever it is written."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return mask_url(text)


def is_sqlite(url: str | URL) -> bool:
    return normalize_url(url).get_backend_name() == "sqlite"


def sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def create(
    url: str | URL,
    *,
    sqlite_busy_seconds: float = SQLITE_BUSY_SECONDS,
    statement_timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS,
    **kwargs: Any,
) -> Engine:
    """An engine with the per-database settings tracker relies on."""
    parsed = normalize_url(url)
    extra: dict[str, Any] = kwargs.pop("connect_args", {})
    if parsed.get_backend_name() == "sqlite":
        timeout = float(parsed.query.get("timeout", sqlite_busy_seconds))  # type: ignore[arg-type]
        parsed = parsed.difference_update_query(["timeout"])
        engine = create_engine(parsed, connect_args={"timeout": timeout, **extra}, **kwargs)
        _configure_sqlite(engine, memory=sqlite_memory(parsed))
        return engine
    connect_args: dict[str, Any] = {
        key: value for key, value in _KEEPALIVE.items() if key not in parsed.query
    }
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    connect_args.update(extra)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    milliseconds = int(statement_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _timeouts(dbapi_connection: Any, _record: Any) -> None:
        # A statement that waits this long (a lock held by another writer, a stalled server)
        # fails with a message instead of hanging the command.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {milliseconds}")
        dbapi_connection.commit()

    return engine


def _configure_sqlite(engine: Engine, *, memory: bool) -> None:
    # pysqlite's own transaction handling starts transactions late and cannot take the write lock
    # up front; tracker emits BEGIN itself (the recipe in SQLAlchemy's SQLite dialect docs) so a
    # snapshot writer can ask for BEGIN IMMEDIATE and never fail half-way on a lock upgrade.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start (SQLite) and commits or rolls back."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            yield connection


def unbounded(connection: Connection) -> None:
    """Lift the statement timeout for the rest of this transaction (migrations, exports)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked": another process holds the write lock."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text


def reachable(engine: Engine) -> None:
    """Connect once, so that an unreachable database fails here in one line, not later."""
    with engine.connect():
        pass


__all__ = [
    "SQLAlchemyError",
    "create",
    "database_error",
    "describe",
    "is_locked",
    "mask",
    "normalize_url",
    "reachable",
    "unbounded",
    "write_transaction",
]
