"""One daemon per database: the lock ``tracker run`` holds for its whole life.

Two daemons polling the same database would write every snapshot twice. Each one is correct on
its own, so nothing else would catch it; the lock makes the second daemon stop at start (or wait,
with ``--wait``) and name the first, so the operator sees the mistake at once.

- PostgreSQL: a session-level advisory lock on a dedicated connection, outside the pool used for
  writes, so a checked-in connection can never take the lock with it. Its ``application_name``
  names the process, which lets the second daemon say who holds the lock. The key includes the
  schema, because several trackers may share one database in different schemas.
- SQLite: an exclusive ``flock`` on ``<database file>.lock``, which holds who took it as JSON.
  An in-memory database belongs to one process and needs no lock.

A session lock dies with its connection, and a PostgreSQL restart kills every connection, so the
daemon calls :meth:`DaemonLock.ensure` before each poll: it takes the lock again when it was lost,
and says "skip this poll" when another daemon got it first. ``tracker poll`` takes no lock (its
writes are safe next to a daemon's).

Several daemons sharing the work on PostgreSQL (``[workers] mode = "shared"``, see
:mod:`tracker.leases`) take the same lock in *shared* mode: they coexist with each other, but a
single-mode daemon and shared workers exclude each other, so the two kinds are never mixed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tracker.clock import Cancelled, Clock
from tracker.db import describe, mask, normalize_url

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""How often ``--wait`` tries again: cheap for the database, quick enough to take over."""

LOCK_NAME = "tracker daemon"
RELEASE_TIMEOUT_SECONDS = 2.0
# PostgreSQL truncates application_name to NAMEDATALEN - 1 bytes.
_APPLICATION_NAME_MAX = 63
_APPLICATION_NAME = re.compile(r"tracker run pid=(\d+) host=(\S*)")


class LockError(Exception):
    """The lock could not be tried at all (database unreachable, lock file not writable)."""


class LockHeld(LockError):
    """Another daemon holds the lock; the message is one line that names it."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another tracker is already running on this database ({holder})")
        self.holder = holder


def lock_key(schema: str) -> int:
    """The advisory lock key: fixed for tracker, distinct per schema, a signed 64-bit integer."""
    digest = hashlib.sha256(f"{LOCK_NAME}\0{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe_process(pid: object, host: object, since: str | None) -> str:
    return f"pid {pid} on host {host}" + (f" since {since}" if since else "")


class _Backend(Protocol):
    def try_acquire(self) -> str | None:
        """Take the lock if free: None when taken, else who holds it. Raises LockError."""
        ...

    def held(self) -> bool:
        """Whether the lock taken before is still ours (cheap; never raises)."""
        ...

    def release(self) -> None:
        """Give the lock up (idempotent; never raises)."""
        ...

    @property
    def backend_pid(self) -> int | None: ...


class DaemonLock:
    """The daemon lock of the database at ``url``; the CLI's only view of locking.

    :param clock: ``acquire(wait=True)`` sleeps on it, so stopping the clock (SIGTERM) ends a
        wait at once.
    :param retry_seconds: how often a waiting ``acquire`` tries again.
    :param shared: take the PostgreSQL lock in shared mode (workers sharing the address list);
        ignored elsewhere, since only PostgreSQL can have several daemons.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Clock,
        retry_seconds: float = RETRY_SECONDS,
        shared: bool = False,
    ) -> None:
        self._clock = clock
        self._retry = retry_seconds
        self._backend = _backend_for(normalize_url(url), clock, shared)
        # ensure() runs on the scheduler's thread, acquire()/release() on the main thread.
        self._mutex = threading.Lock()
        self._wanted = False
        self._lost = False

    def acquire(self, *, wait: bool = False) -> bool:
        """Take the lock: True once held.

        Without ``wait``, raises :class:`LockHeld` when another daemon holds it. With ``wait``,
        logs one line naming the holder and tries again every ``retry_seconds``; returns False
        if the clock is stopped meanwhile (the process was told to stop while waiting).
        Raises :class:`LockError` when the lock cannot be tried (only without ``wait``: a
        waiting daemon outlives a database restart).
        """
        with self._mutex:
            if self._wanted and self._backend.held():
                return True
        waiting_for: str | None = None
        problem: str | None = None
        while True:
            with self._mutex:
                try:
                    holder = self._backend.try_acquire()
                except LockError as exc:
                    if not wait:
                        raise
                    if str(exc) != problem:
                        problem = str(exc)
                        log.warning("cannot try the daemon lock (retrying): %s", problem)
                else:
                    if holder is None:
                        self._wanted, self._lost = True, False
                        if waiting_for is not None or problem is not None:
                            log.info("daemon lock acquired")
                        return True
                    if not wait:
                        raise LockHeld(holder)
                    if waiting_for is None:
                        log.info("waiting for the daemon lock held by %s", holder)
                    waiting_for, problem = holder, None
            try:
                self._clock.sleep(self._retry)
            except Cancelled:
                return False

    def check(self) -> bool:
        """Whether the lock is held now (False after a database restart took it away)."""
        with self._mutex:
            return self._wanted and self._backend.held()

    def ensure(self) -> bool:
        """Called before each poll: True if this daemon may poll, taking a lost lock back.

        False (with an error line saying why) when the lock was never taken or released, when
        another daemon took it while it was lost, or when the database cannot be reached to take
        it back: the poll is skipped then, so there are never two pollers.
        """
        with self._mutex:
            if not self._wanted:
                log.error("poll skipped: the daemon lock is not held")
                return False
            if self._backend.held():
                return True
            if not self._lost:
                log.warning("the daemon lock was lost; taking it again")
                self._lost = True
            try:
                holder = self._backend.try_acquire()
            except LockError as exc:
                log.error("poll skipped: cannot take the daemon lock again: %s", exc)
                return False
            if holder is not None:
                log.error(
                    "poll skipped: another tracker took the daemon lock meanwhile (%s)", holder
                )
                return False
            log.info("daemon lock taken again")
            self._lost = False
            return True

    def release(self) -> None:
        """Give the lock up; safe to call twice, and never blocks shutdown for long."""
        # A poll abandoned on shutdown may still be inside ensure(); the OS frees the lock when
        # the process exits, so giving up here beats hanging.
        if not self._mutex.acquire(timeout=RELEASE_TIMEOUT_SECONDS):
            log.debug("daemon lock busy; the process exit releases it")
            return
        try:
            self._wanted = False
            self._backend.release()
        finally:
            self._mutex.release()

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend holding the lock (for diagnostics and tests), else None."""
        return self._backend.backend_pid

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _backend_for(url: URL, clock: Clock, shared: bool = False) -> _Backend:
    backend = url.get_backend_name()
    if backend == "postgresql":
        return _PostgresLock(url, shared=shared)
    if backend == "sqlite":
        path = _sqlite_file(url)
        return _NoLock() if path is None else _FileLock(path, clock)
    log.warning(
        "no daemon lock for %s databases: make sure only one `tracker run` uses it", backend
    )
    return _NoLock()


def _sqlite_file(url: URL) -> Path | None:
    """The database file, or None for an in-memory database."""
    database = url.database or ""
    if database.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if url.query.get("mode") == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(database).resolve()


class _NoLock:
    """An in-memory SQLite database cannot be shared between processes: nothing to lock."""

    backend_pid = None

    def try_acquire(self) -> str | None:
        return None

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


class _FileLock:
    """``flock`` on ``<database>.lock``: released by the OS however the process ends.

    The file is never deleted (deleting a lock file lets two processes lock two different files);
    it is emptied on release. ``held()`` notices when someone deleted or replaced it anyway.
    """

    backend_pid = None

    def __init__(self, database: Path, clock: Clock) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._clock = clock
        self._fd: int | None = None

    def try_acquire(self) -> str | None:
        self.release()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            return holder
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot lock {self.path}: {exc.strerror}") from None
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": _iso(self._clock.now()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode() + b"\n", 0)
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot write the lock file {self.path}: {exc.strerror}") from None
        self._fd = fd
        return None

    def _read_holder(self, fd: int) -> str:
        # The holder writes its identity just after locking: an empty or partial file only
        # means we looked in between.
        for _ in range(20):
            try:
                info = json.loads(os.pread(fd, 4096, 0))
                return _describe_process(info["pid"], info["host"], info.get("started_at"))
            except (OSError, ValueError, TypeError, KeyError):
                time.sleep(0.05)
        return f"another process holds {self.path}"

    def held(self) -> bool:
        if self._fd is None:
            return False
        try:
            ours, current = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


class _PostgresLock:
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
        if "connect_timeout" not in url.query:
            self._connect_args["connect_timeout"] = 10
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
            self._engine = create_engine(
                self._url,
                poolclass=NullPool,
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
        row = connection.execute(
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
        if row is None:
            return None
        backend_pid, application_name, client, started, mode = row
        since = _iso(started) if started is not None else None
        match = _APPLICATION_NAME.fullmatch(application_name or "")
        if match:
            shared = ", a shared-mode worker" if mode == "ShareLock" else ""
            return _describe_process(match[1], match[2], since) + shared
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
