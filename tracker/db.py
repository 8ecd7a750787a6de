"""Engines and schema: one place that knows how to open either database and bring it up to date."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

SQLITE_BUSY_TIMEOUT_SECONDS = 30


class DatabaseError(Exception):
    """The database cannot be used; ``str()`` is one line and never shows a password."""


def describe(exc: BaseException) -> str:
    """One line for a database error: the driver's message, without the SQL and parameters."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    return " ".join(text.split())[:300] or type(exc).__name__


def normalize_url(url: str | URL) -> URL:
    """Parse a URL; plain ``postgresql://`` means psycopg 3, the driver tracker installs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseError("not a valid SQLAlchemy database URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask(url: str | URL) -> str:
    """The URL as it may appear in logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid database URL>"


def password(url: str | URL) -> str | None:
    """The URL's password, so that it can be masked wherever text might contain it."""
    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None


def create(
    url: str | URL, *, sqlite_busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS, **kwargs: Any
) -> Engine:
    """An engine with the per-database settings tracker relies on."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": sqlite_busy_timeout}, **kwargs)
        _configure_sqlite(engine, memory=parsed.database in (None, "", ":memory:"))
        return engine
    return create_engine(parsed, pool_pre_ping=True, **kwargs)


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


def migrations_dir() -> Path:
    """Migrations ship inside the wheel; in a source checkout they sit beside the package."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError("the migrations directory is missing from this installation")


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise DatabaseError("no migrations found in this installation")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        _one_migration_at_a_time(connection)
        command.upgrade(_alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        _one_migration_at_a_time(connection)
        command.downgrade(_alembic_config(connection), revision)


def _one_migration_at_a_time(connection: Connection) -> None:
    """On PostgreSQL, wait for any other tracker migrating this schema, until commit.

    Workers sharing a database start together and would otherwise race to create the same
    tables; after the wait, Alembic reads the version the first one committed and does nothing.
    """
    if connection.dialect.name != "postgresql":
        return  # SQLite has one daemon per database, and serialises writers itself
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar() or ""
    digest = hashlib.sha256(f"tracker migrations\0{schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def ensure_current(engine: Engine) -> bool:
    """Upgrade an empty or older database to the newest schema; True when something was done."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return False
    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise DatabaseError(
            f"the database schema is at revision {current}, newer than this tracker "
            f"(which knows up to {head}); upgrade tracker"
        )
    upgrade(engine)
    return True
