"""Alembic environment: runs on the connection tracker hands over, or on a URL for manual use."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from tracker.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    if os.environ.get("TRACKER_DATABASE_URL"):
        return os.environ["TRACKER_DATABASE_URL"]
    from tracker.config import config_path, load
    from tracker.errors import ConfigError

    try:
        return load(config_path(None, os.environ)).database_url
    except ConfigError:
        return config.get_main_option("sqlalchemy.url") or "sqlite:///tracker.db"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from tracker.store.engine import normalize_url

    engine = create_engine(normalize_url(_url()), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
