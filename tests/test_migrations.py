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


def test_upgrading_copies_each_deltas_address_and_time_from_its_snapshot(db_url: str) -> None:
    """0003 fills the new delta columns of an existing history; the view reads as before."""
    from datetime import UTC, datetime, timedelta

    from conftest import make_address
    from sqlalchemy import text

    from tracker.config import WatchedAddress
    from tracker.snapshots import AssetInfo, Observation, SnapshotStore

    engine = db.create(db_url)
    try:
        db.upgrade(engine)
        store = SnapshotStore(engine)
        who = [make_address(1), make_address(2)]
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store.sync_addresses([WatchedAddress(a, None) for a in who], t0)
        info = {"xch": AssetInfo("xch", None, "Chia", "XCH", 12)}
        for n in range(3):
            for k, address in enumerate(who):
                at = t0 + timedelta(hours=n, seconds=k)
                store.record_success(Observation(address, at, at, {"xch": 10 * n + k}, info))
        view = (
            "SELECT address, taken_at, previous_taken_at, delta FROM balance_changes ORDER BY 1, 2"
        )
        with engine.connect() as connection:
            before = connection.execute(text(view)).all()
        db.downgrade(engine, "0002")
        db.upgrade(engine)
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
