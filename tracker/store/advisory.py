"""The PostgreSQL daemon lock: a session advisory lock (see :mod:`tracker.store.lock`).

The lock lives on a connection of its own, outside the pool used for writes, so a checked-in
connection can never take it along. Its ``application_name`` names the process, which lets a
second daemon say who holds the lock. The key includes the schema: several trackers may share
one database in different schemas.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tracker.store.engine import create, describe, mask
from tracker.store.lock import LockError, describe_process, iso_seconds

log = logging.getLogger(__name__)

LOCK_NAME = "tracker daemon"
RELEASE_TIMEOUT_SECONDS = 2.0
# PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes.
_APPLICATION_NAME_MAX = 63
_APPLICATION_NAME = re.compile(r"tracker run pid=(\d+) host=(\S*)")


def lock_key(schema: str) -> int:
    """The advisory lock key: fixed for tracker, distinct per schema, a signed 64-bit integer."""
    digest = hashlib.sha256(f"{LOCK_NAME}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _holder_row(connection: Connection, key: int) -> Any:
    return connection.execute(
        text(
            "SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, l.mode"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            "  AND l.database = (SELECT oid FROM pg_database"
            "                    WHERE datname = current_database())"
            "  AND l.classid::bigint = :high AND l.objid::bigint = :low AND l.objsubid = 1"
        ),
        # A bigint advisory key is stored as two unsigned 32-bit halves.
        {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
    ).first()


def running_daemon(url: str | URL) -> tuple[int, str] | None:
    """The pid and host of a daemon holding this database's lock (as it named itself)."""
    engine = create(url, poolclass=NullPool, pool_pre_ping=False)
    try:
        with engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar() or ""
            row = _holder_row(connection, lock_key(schema))
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    match = _APPLICATION_NAME.fullmatch((row[1] if row is not None else None) or "")
    return (int(match[1]), match[2]) if match else None


class PostgresLock:
    """``pg_try_advisory_lock`` on a connection of its own, which lives as long as the lock.

    ``shared``: ``pg_try_advisory_lock_shared``, which any number of shared workers hold at once.
    """

    def __init__(self, url: URL, *, shared: bool = False) -> None:
        self._url = url
        self._function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        name = f"tracker run pid={os.getpid()} host={socket.gethostname()}"
        self._connect_args: dict[str, Any] = {
            "application_name": name.encode()[:_APPLICATION_NAME_MAX].decode(errors="ignore")
        }
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._key: int | None = None
        self._pid: int | None = None

    @property
    def backend_pid(self) -> int | None:
        return self._pid

    def try_acquire(self) -> str | None:
        self._drop()
        if self._engine is None:
            # NullPool: the lock connection is never shared, and closing it really closes it.
            self._engine = create(
                self._url,
                poolclass=NullPool,
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
                connect_args=self._connect_args,
            )
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise LockError(f"database {mask(self._url)}: {describe(exc)}") from None
        try:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            key = lock_key(schema or "")
            for _ in range(3):
                got = connection.execute(
                    text(f"SELECT {self._function}(:key)"), {"key": key}
                ).scalar()
                if got:
                    self._connection, self._key = connection, key
                    self._pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                    return None
                holder = self._holder(connection, key)
                if holder is not None:
                    break
            else:
                holder = "a session that could not be identified"
        except SQLAlchemyError as exc:
            self._close(connection)
            raise LockError(f"database {mask(self._url)}: {describe(exc)}") from None
        self._close(connection)
        return holder

    @staticmethod
    def _holder(connection: Connection, key: int) -> str | None:
        """Who holds ``key`` in this database; None if nobody does any more."""
        row = _holder_row(connection, key)
        if row is None:
            return None
        backend_pid, application_name, client, started, mode = row
        since = iso_seconds(started) if started is not None else None
        match = _APPLICATION_NAME.fullmatch(application_name or "")
        if match:
            shared = ", a shared-mode worker" if mode == "ShareLock" else ""
            return describe_process(match[1], match[2], since) + shared
        name = f"{application_name!r}" if application_name else "no application_name"
        origin = f" from {client}" if client else ""
        return f"PostgreSQL session pid {backend_pid} ({name}){origin}" + (
            f" since {since}" if since else ""
        )

    def held(self) -> bool:
        connection, key = self._connection, self._key
        if connection is None or key is None:
            return False
        try:
            row = connection.execute(
                text(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid()"
                    " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
            ).first()
        except SQLAlchemyError as exc:
            log.debug("daemon lock connection: %s", describe(exc))
            self._drop()
            return False
        return row is not None

    def release(self) -> None:
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _drop(self) -> None:
        connection, self._connection, self._key, self._pid = self._connection, None, None, None
        if connection is not None:
            # Closing the session releases its advisory lock; no unlock call to forget.
            self._close(connection)

    @staticmethod
    def _close(connection: Connection) -> None:
        try:
            connection.close()
        except SQLAlchemyError as exc:  # a dead connection: nothing left to release
            log.debug("closing the daemon lock connection: %s", describe(exc))
