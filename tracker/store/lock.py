"""One daemon per database: the lock ``tracker run`` holds for its whole life.

Two daemons polling the same database would write every snapshot twice. Each one is correct on
its own, so nothing else would catch it; the lock makes the second daemon stop at start (or wait,
with ``--wait``) and name the first, so the operator sees the mistake at once.

- PostgreSQL: a session-level advisory lock on a dedicated connection, outside the pool used for
  writes, so a checked-in connection can never take the lock with it. Its ``application_name``
  names the process, which lets the second daemon say who holds the lock. The key includes the
  schema, because several trackers may share one database in different schemas.
- SQLite: an exclusive ``flock`` on the database file itself, so the lock follows the file (a
  hard link is the same file), and ``<database file>.lock`` says who took it, as JSON. An
  in-memory database belongs to one process and needs no lock.

A session lock dies with its connection, and a PostgreSQL restart kills every connection, so the
daemon calls :meth:`DaemonLock.ensure` before each poll: it takes the lock again when it was lost,
and says "skip this poll" when another daemon got it first. ``tracker poll`` takes no lock (its
writes are safe next to a daemon's).

Several daemons sharing the work on PostgreSQL (``[workers] mode = "shared"``, see
:mod:`tracker.service.shared`) take the same lock in *shared* mode: they coexist with each other,
but a single-mode daemon and shared workers exclude each other, so the two kinds never mix.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol

from sqlalchemy.engine import URL

from tracker.clock import Cancelled, Clock
from tracker.errors import Conflict, StoreError
from tracker.retry import RetryPolicy
from tracker.store.engine import normalize_url

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""How often ``--wait`` tries again: cheap for the database, quick enough to take over."""

RELEASE_TIMEOUT_SECONDS = 2.0


class LockError(StoreError):
    """The lock could not be tried at all (database unreachable, lock file not writable)."""


class LockHeld(Conflict):
    """Another daemon holds the lock; the message is one line that names it."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another tracker is already running on this database ({holder})")
        self.holder = holder


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_process(pid: object, host: object, since: str | None) -> str:
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
        # --wait: try again every retry_seconds until the lock is free or the clock stops.
        self._waiting = RetryPolicy(max_attempts=None, base_seconds=retry_seconds, multiplier=1.0)
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
        seen: dict[str, str | None] = {"holder": None, "problem": None}

        def attempt(_number: int) -> bool:
            with self._mutex:
                holder = self._backend.try_acquire()
                if holder is None:
                    self._wanted, self._lost = True, False
                    return True
            raise LockHeld(holder)

        def waiting(_number: int, exc: Exception, _wait: float) -> None:
            if isinstance(exc, LockHeld):
                if seen["holder"] is None:
                    log.info("waiting for the daemon lock held by %s", exc.holder)
                seen["holder"], seen["problem"] = exc.holder, None
            elif str(exc) != seen["problem"]:
                seen["problem"] = str(exc)
                log.warning("cannot try the daemon lock (retrying): %s", exc)

        policy = self._waiting if wait else RetryPolicy(max_attempts=1)
        try:
            policy.run(
                attempt,
                self._clock,
                retryable=lambda exc: isinstance(exc, LockHeld | LockError),
                on_retry=waiting,
            )
        except Cancelled:
            return False
        if seen["holder"] is not None or seen["problem"] is not None:
            log.info("daemon lock acquired")
        return True

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
        from tracker.store.advisory import PostgresLock

        return PostgresLock(url, shared=shared)
    if backend == "sqlite":
        from tracker.store.filelock import FileLock, sqlite_file

        path = sqlite_file(url)
        return _NoLock() if path is None else FileLock(path, clock)
    log.warning(
        "no daemon lock for %s databases: make sure only one `tracker run` uses it", backend
    )
    return _NoLock()


class _NoLock:
    """An in-memory SQLite database cannot be shared between processes: nothing to lock."""

    backend_pid = None

    def try_acquire(self) -> str | None:
        return None

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass
