"""Test databases: a migrated template made once per session, cloned per test.

An Alembic upgrade per test costs far more than the test itself, so each backend gets one
migrated template per session: a SQLite file, copied per test, and a PostgreSQL database,
cloned per test with ``CREATE DATABASE … TEMPLATE`` (a file copy on the server) and dropped
after. PostgreSQL tests run against the server at ``TRACKER_TEST_POSTGRES_URL`` (default: the
local one); when it does not answer they skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from tracker.store import engine as engines
from tracker.store import migrate

PG_ADMIN_URL = os.environ.get(
    "TRACKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_state: dict[str, str | None] = {}


def admin_url() -> URL:
    return engines.normalize_url(PG_ADMIN_URL)


def probe_postgres() -> str | None:
    """None when the test server answers now, else why not."""
    engine = create_engine(admin_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return f"PostgreSQL at {engines.mask(PG_ADMIN_URL)} unreachable: {engines.describe(exc)}"
    finally:
        engine.dispose()


def postgres_unavailable() -> str | None:
    """None when the test server answers, else why not (asked once per session)."""
    if "reason" not in _state:
        _state["reason"] = probe_postgres()
    return _state["reason"]


def require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires PostgreSQL: {reason}")
    pytest.skip(reason)


def _admin_do(*statements: str) -> None:
    engine = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server, as a user would write it."""
    return admin_url().set(database=name).render_as_string(hide_password=False)


@contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database (a clone of ``template``, or empty), dropped afterwards."""
    require_postgres()
    name = f"t_{uuid.uuid4().hex[:16]}"
    source = f' TEMPLATE "{template}"' if template else " TEMPLATE template0"
    _admin_do(f'CREATE DATABASE "{name}"{source}')
    try:
        yield database_url(name)
    finally:
        _admin_do(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Templates:
    """The session's migrated templates, made when first asked for, and seeded copies of them
    (a history several tests read), each built once per session and copied per test."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._sqlite: Path | None = None
        self._postgres: str | None = None
        self._seeded: dict[tuple[str, str], str] = {}

    def sqlite(self, target: Path) -> str:
        """A migrated SQLite database at ``target`` (a copy of the template)."""
        if self._sqlite is None:
            path = self._workdir / "template.db"
            engine = engines.create(f"sqlite:///{path}")
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
            self._sqlite = path
        shutil.copyfile(self._sqlite, target)
        return f"sqlite:///{target}"

    def postgres(self) -> str:
        """The name of the migrated PostgreSQL template database."""
        if self._postgres is None:
            require_postgres()
            name = f"tracker_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _admin_do(f'CREATE DATABASE "{name}" TEMPLATE template0')
            engine = engines.create(database_url(name))
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
            self._postgres = name
        return self._postgres

    @contextmanager
    def seeded(
        self, backend: str, key: str, build: Callable[[Engine], None], workdir: Path
    ) -> Iterator[str]:
        """A copy of the migrated database after ``build`` ran on it once (per session)."""
        made = self._seeded.get((backend, key))
        if made is None:
            made = self._seed(backend, key, build)
            self._seeded[(backend, key)] = made
        if backend == "sqlite":
            target = workdir / f"{key}.db"
            shutil.copyfile(made, target)
            yield f"sqlite:///{target}"
            return
        with postgres_database(made) as url:
            yield url

    def _seed(self, backend: str, key: str, build: Callable[[Engine], None]) -> str:
        if backend == "sqlite":
            path = self._workdir / f"seed-{key}.db"
            url = self.sqlite(path)
        else:
            name = f"{self.postgres()}_{key.replace('-', '_')}"[:63]
            _admin_do(f'CREATE DATABASE "{name}" TEMPLATE "{self.postgres()}"')
            url = database_url(name)
        engine = engines.create(url)
        try:
            build(engine)
        finally:
            engine.dispose()  # a template must have no connections
        return str(path) if backend == "sqlite" else name

    def close(self) -> None:
        for (backend, _), made in self._seeded.items():
            if backend == "postgresql":
                _admin_do(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')
        if self._postgres is not None:
            _admin_do(f'DROP DATABASE IF EXISTS "{self._postgres}" WITH (FORCE)')


def query(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    """Rows of one SQL query against the database at ``url``, as plain tuples."""
    engine = engines.create(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()
