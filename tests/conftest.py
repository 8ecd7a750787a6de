"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, a fake clock, a fake API."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi import FakeSpacescan
from fakeclock import FakeClock
from sqlalchemy import Engine, create_engine, text
from webhooks import Receiver

from tracker import db
from tracker.addresses import bech32m_encode

PG_ADMIN_URL = os.environ.get(
    "TRACKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_state: dict[str, str | None] = {}


def _postgres_unavailable() -> str | None:
    """None when the test server answers, else why not (checked once per run)."""
    if "reason" not in _pg_state:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            _pg_state["reason"] = None
        except Exception as exc:
            _pg_state["reason"] = f"PostgreSQL at {db.mask(PG_ADMIN_URL)} unreachable: " + (
                db.describe(exc)
            )
        finally:
            engine.dispose()
    return _pg_state["reason"]


def require_postgres() -> None:
    reason = _postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires PostgreSQL: {reason}")
    pytest.skip(reason)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of a fresh, empty PostgreSQL schema, dropped afterwards."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A database migrated to the newest schema by Alembic, as `tracker db upgrade` does."""
    engine = db.create(db_url)
    db.upgrade(engine)
    yield engine
    assert engine.pool.checkedout() == 0, "a connection was leaked"
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_api() -> Iterator[FakeSpacescan]:
    with FakeSpacescan() as server:
        yield server


def make_address(n: int, prefix: str = "xch") -> str:
    """A valid, distinct Chia address for test number ``n``."""
    return bech32m_encode(prefix, n.to_bytes(32, "big"))


def make_asset(n: int) -> str:
    """A distinct 64-hex CAT asset id."""
    return f"{n:064x}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1, answering 200 unless told otherwise."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
