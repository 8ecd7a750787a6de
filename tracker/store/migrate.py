"""The schema's life: Alembic upgrades and downgrades, and which revision a database is at.

The schema belongs to the migrations in ``migrations/`` (shipped inside the wheel as
``tracker/_migrations``), never to ``create_all``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from tracker.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
from tracker.store.engine import unbounded


def migrations_dir() -> Path:
    """Migrations ship inside the wheel; in a source checkout they sit beside the package."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("the migrations directory is missing from this installation")


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head: str | None = _scripts().get_current_head()
    if head is None:
        raise StoreError("no migrations found in this installation")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision in ``alembic_version`` (None: no schema yet), read without Alembic: a
    read-only command should not pay for importing it."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:
        raise StoreError(f"the database has several schema revisions ({', '.join(rows)})")
    return rows[0] if rows else None


def known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as connection:
        _one_migration_at_a_time(connection)
        command.upgrade(_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        _one_migration_at_a_time(connection)
        command.downgrade(_config(connection), revision)


def _one_migration_at_a_time(connection: Connection) -> None:
    """On PostgreSQL, wait for any other tracker migrating this schema, until commit.

    Workers sharing a database start together and would otherwise race to create the same
    tables; after the wait, Alembic reads the version the first one committed and does nothing.
    A migration of a large history may take long: it runs without the statement timeout.
    """
    if connection.dialect.name != "postgresql":
        return  # SQLite has one daemon per database, and serialises writers itself
    unbounded(connection)
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
    if current is not None and current not in known_revisions():
        raise StoreError(
            f"the database schema is at revision {current}, newer than this tracker "
            f"(which knows up to {head}); upgrade tracker"
        )
    upgrade(engine)
    return True
