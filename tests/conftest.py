"""Shared fixtures: databases on SQLite and PostgreSQL, a fake clock, a fake API, a receiver."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tracker.store import engine as engines

from support.clock import FakeClock
from support.databases import Templates, postgres_database
from support.fakeapi import FakeSpacescan
from support.webhooks import Receiver

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    made = Templates(tmp_path_factory.mktemp("templates"))
    yield made
    made.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, templates: Templates, tmp_path: Path) -> Iterator[str]:
    """A database migrated to the newest schema, on each backend in turn."""
    if backend == "sqlite":
        yield templates.sqlite(tmp_path / "tracker.db")
        return
    with postgres_database(templates.postgres()) as url:
        yield url


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema), on each backend in turn."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracker.db'}"
        return
    with postgres_database() as url:
        yield url


@pytest.fixture
def pg_url(templates: Templates) -> Iterator[str]:
    """A migrated PostgreSQL database (for PostgreSQL-only tests)."""
    with postgres_database(templates.postgres()) as url:
        yield url


@pytest.fixture
def seeded(
    backend: str, templates: Templates, tmp_path: Path
) -> Iterator[Callable[[str, Callable[[Engine], None]], str]]:
    """``seeded(key, build)``: the URL of a database holding what ``build`` wrote, built once
    per session and backend, then copied for each test (a history several tests read)."""
    with ExitStack() as stack:
        yield lambda key, build: stack.enter_context(
            templates.seeded(backend, key, build, tmp_path)
        )


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """The migrated database's engine; no connection may leak."""
    engine = engines.create(db_url)
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
