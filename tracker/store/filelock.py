"""The SQLite daemon lock: ``flock`` on the database file itself (see :mod:`tracker.store.lock`).

Locking the file rather than a name beside it follows the file's identity (its inode): a second
daemon that reaches the same database through a hard link or a symlink finds it locked. (SQLite's
own locks are POSIX locks, which ``flock`` does not touch.) Who holds it is written, as JSON, to
``<database file>.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path

from sqlalchemy.engine import URL

from tracker.clock import Clock
from tracker.store.lock import LockError, describe_process, iso_seconds


def sqlite_file(url: URL) -> Path | None:
    """The database file, or None for an in-memory database."""
    database = url.database or ""
    if database.startswith("file:") and str(url.query.get("uri", "")).lower() in ("true", "1"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if url.query.get("mode") == "memory":
            return None
    if database in ("", ":memory:"):
        return None
    return Path(database).resolve()


class FileLock:
    """``flock`` on the database file itself, with who holds it written to ``<database>.lock``.

    Locking the file rather than a name beside it follows the file's identity (its inode): a
    second daemon that reaches the same database through a hard link or a symlink finds it
    locked. (SQLite's own locks are POSIX locks, which ``flock`` does not touch.) The lock
    descriptor stays open for the life of the lock; the OS releases it however the process ends.
    """

    backend_pid = None

    def __init__(self, database: Path, clock: Clock) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._clock = clock
        self._fd: int | None = None

    def try_acquire(self) -> str | None:
        self.release()
        try:
            fd = os.open(self.database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockError(
                f"cannot open the database file {self.database}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            return holder
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot lock {self.database}: {exc.strerror}") from None
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": iso_seconds(self._clock.now()),
        }
        try:
            _write_file(self.path, json.dumps(me) + "\n")
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot write the lock file {self.path}: {exc.strerror}") from None
        self._fd = fd
        return None

    def _holder(self, fd: int) -> str:
        # The holder writes who it is just after locking: an empty file means we looked in
        # between, or it came through another name (a hard link); then /proc/locks knows.
        try:
            info = json.loads(self.path.read_text())
            return describe_process(info["pid"], info["host"], info.get("started_at"))
        except (OSError, ValueError, TypeError, KeyError):
            pass
        pid = _flock_holder(os.fstat(fd))
        if pid is not None:
            return describe_process(pid, socket.gethostname(), None)
        return f"another process holds a lock on {self.database}"

    def held(self) -> bool:
        if self._fd is None:
            return False
        try:
            ours, current = os.fstat(self._fd), os.stat(self.database)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            _write_file(self.path, "")
        os.close(fd)


def _write_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, content.encode(), 0)
    finally:
        os.close(fd)


def _flock_holder(stat: os.stat_result) -> int | None:
    """The pid holding a flock on this inode, from Linux's /proc/locks (None elsewhere)."""
    wanted = f":{stat.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(wanted):
            device = fields[5].rsplit(":", 1)[0]
            major, _, minor = device.partition(":")
            try:
                if os.makedev(int(major, 16), int(minor, 16)) == stat.st_dev:
                    return int(fields[4])
            except ValueError:
                continue
    return None
