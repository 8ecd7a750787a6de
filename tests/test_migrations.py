"""The schema is Alembic's: it must upgrade, downgrade and match the models on both databases."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tracker.domain import WatchedAddress
from tracker.errors import StoreError
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.models import Base
from tracker.store.writer import SnapshotStore

from support import ROOT, make_address
from support.history import observe

TABLES = {
    "addresses",
    "assets",
    "snapshots",
    "snapshot_balances",
    "deltas",
    "poll_attempts",
    "prices",
    "price_settings",
}
VIEWS = {"balance_history", "balance_changes", "balance_values"}


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    engine = engines.create(empty_db_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert set(inspect(engine).get_view_names()) == VIEWS

        migrate.downgrade(engine, "base")
        assert migrate.current_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        assert inspect(engine).get_view_names() == []

        assert migrate.ensure_current(engine) is True
        assert migrate.ensure_current(engine) is False
        assert set(inspect(engine).get_view_names()) == VIEWS
    finally:
        engine.dispose()


def test_models_match_the_migrations(db_url: str) -> None:
    engine = engines.create(db_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_migrations_import_only_the_frozen_sql() -> None:
    """A migration that ran must mean the same forever: it may not follow the live code."""
    for path in sorted((ROOT / "migrations" / "versions").glob("*.py")):
        imported = {
            node.module or ""
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
        } | {
            alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        ours = {name for name in imported if name.startswith("tracker")}
        assert ours <= {"tracker.store.frozen"}, f"{Path(path).name} imports {ours}"


def test_a_database_from_a_newer_tracker_is_refused(db_url: str) -> None:
    engine = engines.create(db_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(StoreError, match="revision 9999, newer than this tracker"):
            migrate.ensure_current(engine)
    finally:
        engine.dispose()


def test_upgrading_copies_each_deltas_address_and_time_from_its_snapshot(db_url: str) -> None:
    """0003 fills the new delta columns of an existing history; the view reads as before."""
    engine = engines.create(db_url)
    try:
        store = SnapshotStore(engine)
        who = [make_address(1), make_address(2)]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store.sync_addresses([WatchedAddress(a, None) for a in who], t0)
        for n in range(3):
            for k, address in enumerate(who):
                store.record_one(
                    observe(address, t0 + timedelta(hours=n, seconds=k), {"xch": 10 * n + k})
                )
        view = (
            "SELECT address, taken_at, previous_taken_at, delta FROM balance_changes ORDER BY 1, 2"
        )
        with engine.connect() as connection:
            before = connection.execute(text(view)).all()
        migrate.downgrade(engine, "0002")
        migrate.upgrade(engine)
        with engine.connect() as connection:
            assert connection.execute(text(view)).all() == before
            copied = connection.execute(
                text(
                    "SELECT count(*) FROM deltas d JOIN snapshots s ON s.id = d.snapshot_id"
                    " WHERE d.address_id = s.address_id AND d.taken_at = s.taken_at"
                )
            ).scalar()
        assert len(before) == 4
        assert copied == 4
    finally:
        engine.dispose()
