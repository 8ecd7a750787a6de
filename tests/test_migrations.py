"""The schema is Alembic's: it must upgrade, downgrade and match the models on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tracker import db
from tracker.models import Base

TABLES = {"addresses", "assets", "snapshots", "snapshot_balances", "deltas", "poll_attempts"}
VIEWS = {"balance_history", "balance_changes"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = db.create(db_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert set(inspect(engine).get_view_names()) == VIEWS

        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        assert inspect(engine).get_view_names() == []

        assert db.ensure_current(engine) is True
        assert db.ensure_current(engine) is False
        assert set(inspect(engine).get_view_names()) == VIEWS
    finally:
        engine.dispose()


def test_models_match_the_migrations(db_url: str) -> None:
    engine = db.create(db_url)
    try:
        db.upgrade(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_a_database_from_a_newer_tracker_is_refused(db_url: str) -> None:
    engine = db.create(db_url)
    try:
        db.upgrade(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(db.DatabaseError, match="revision 9999, newer than this tracker"):
            db.ensure_current(engine)
    finally:
        engine.dispose()
