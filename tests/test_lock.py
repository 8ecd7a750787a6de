"""One daemon per database: the daemon lock on both databases, then two real `tracker run`."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tracker.clock import SystemClock
from tracker.store.advisory import lock_key
from tracker.store.lock import DaemonLock, LockHeld

from support import make_address
from support.databases import PG_ADMIN_URL, query
from support.fakeapi import FakeSpacescan
from support.process import Daemon, run_tracker, write_config

FAST = 0.05  # retry interval of a waiting acquire in these tests
ALICE, BOB = make_address(11), make_address(12)
API_KEY = "test-key-4f1c9a77e2"


def me() -> str:
    return f"pid {os.getpid()} on host {socket.gethostname()} since "


def test_second_acquire_names_the_holder(db_url: str) -> None:
    clock = SystemClock()
    with DaemonLock(db_url, clock=clock) as first:
        assert first.check()
        second = DaemonLock(db_url, clock=clock)
        with pytest.raises(LockHeld) as raised:
            second.acquire()
        message = str(raised.value)
        assert message.startswith("another tracker is already running on this database (" + me())
        assert "\n" not in message
        assert message.endswith("Z)")
        assert not second.check()
        second.release()


def test_release_then_acquire(db_url: str) -> None:
    clock = SystemClock()
    first, second = DaemonLock(db_url, clock=clock), DaemonLock(db_url, clock=clock)
    assert first.acquire()
    first.release()
    first.release()  # twice is harmless
    assert not first.check()
    assert second.acquire()
    assert second.ensure()
    second.release()
    assert first.acquire()
    assert first.acquire()  # already held: kept, not taken twice
    first.release()


def test_ensure_refuses_without_the_lock(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    lock = DaemonLock(db_url, clock=SystemClock())
    assert not lock.ensure()
    assert "poll skipped" in caplog.text


def test_wait_takes_over_when_the_holder_releases(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tracker")
    clock = SystemClock()
    first = DaemonLock(db_url, clock=clock)
    second = DaemonLock(db_url, clock=clock, retry_seconds=FAST)
    assert first.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire(wait=True)))
    waiter.start()
    try:
        time.sleep(20 * FAST)
        assert waiter.is_alive(), "the second lock did not wait"
        first.release()
        waiter.join(10)
        assert got == [True]
        assert second.check()
        with pytest.raises(LockHeld):
            first.acquire()
    finally:
        first.release()
        waiter.join(10)
        second.release()
    waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waiting) == 1  # one line, not one per retry
    assert waiting[0].startswith("waiting for the daemon lock held by " + me())


def test_stopping_the_clock_ends_a_wait(db_url: str) -> None:
    clock = SystemClock()
    first = DaemonLock(db_url, clock=clock)
    second = DaemonLock(db_url, clock=clock, retry_seconds=60)
    assert first.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire(wait=True)))
    waiter.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        clock.stop()  # what SIGTERM does during `tracker run --wait`
        waiter.join(30)
        assert got == [False]
        assert time.monotonic() - started < 30, "the 60 s wait was not cut short"
    finally:
        first.release()
        waiter.join(10)
        second.release()


def test_in_memory_sqlite_needs_no_lock() -> None:
    clock = SystemClock()
    with DaemonLock("sqlite://", clock=clock) as first, DaemonLock("sqlite://", clock=clock):
        assert first.ensure()


def test_sqlite_lock_file_holds_the_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    with DaemonLock(url, clock=SystemClock()):
        content = (tmp_path / "tracker.db.lock").read_text()
        assert f'"pid": {os.getpid()}' in content
    assert (tmp_path / "tracker.db.lock").read_text() == ""


def test_sqlite_lock_follows_the_file_not_its_name(tmp_path: Path) -> None:
    """Two names of one file (a hard link) are one database: one daemon."""
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    clock = SystemClock()
    with DaemonLock(url, clock=clock):
        os.link(tmp_path / "tracker.db", tmp_path / "alias.db")
        with pytest.raises(LockHeld) as raised:
            DaemonLock(f"sqlite:///{tmp_path / 'alias.db'}", clock=clock).acquire()
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(raised.value)


def test_sqlite_replaced_database_file_is_locked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    clock = SystemClock()
    database = tmp_path / "tracker.db"
    with DaemonLock(url, clock=clock) as lock:
        database.unlink()  # a restore from backup, say: a new file under the same name
        assert not lock.check()
        assert lock.ensure()
        assert lock.check()
        # Replaced again, and another daemon locks the new file first: no second poller.
        database.unlink()
        with DaemonLock(url, clock=clock):
            assert not lock.ensure()
            assert "another tracker took the daemon lock" in caplog.text
        assert lock.ensure()


# -- PostgreSQL ----------------------------------------------------------------------------------


def terminate_backend(pid: int | None) -> None:
    """Kill a session the way a server restart does, and wait until it is gone."""
    assert pid is not None
    admin = create_engine(PG_ADMIN_URL)
    try:
        # Autocommit: inside one transaction pg_stat_activity is a snapshot, and a backend
        # seen alive once would stay alive in every later look.
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            for _ in range(100):
                alive = connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar()
                if not alive:
                    return
                time.sleep(0.05)
        raise AssertionError(f"backend {pid} did not exit")
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_postgres_lock_names_the_process(pg_url: str) -> None:
    clock = SystemClock()
    with DaemonLock(pg_url, clock=clock) as first:
        names = query(
            PG_ADMIN_URL,
            "SELECT application_name FROM pg_stat_activity WHERE pid = :pid",
            pid=first.backend_pid,
        )
        assert names == [(f"tracker run pid={os.getpid()} host={socket.gethostname()}"[:63],)]
        with pytest.raises(LockHeld, match=me()):
            DaemonLock(pg_url, clock=clock).acquire()


@pytest.mark.postgres
def test_postgres_ensure_takes_a_lost_lock_back(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tracker")
    with DaemonLock(pg_url, clock=SystemClock()) as lock:
        before = lock.backend_pid
        terminate_backend(before)
        assert not lock.check()
        assert lock.ensure()
        assert lock.check()
        assert lock.backend_pid not in (None, before)
        assert "daemon lock was lost" in caplog.text
        assert "daemon lock taken again" in caplog.text


@pytest.mark.postgres
def test_postgres_ensure_refuses_when_another_took_the_lock(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SystemClock()
    with DaemonLock(pg_url, clock=clock) as lock:
        terminate_backend(lock.backend_pid)
        with DaemonLock(pg_url, clock=clock):
            assert not lock.ensure()
            assert not lock.ensure()  # still refused, never two pollers
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 2
            assert errors[0].startswith("poll skipped: another tracker took the daemon lock")
            assert me() in errors[0]
        assert lock.ensure()


@pytest.mark.postgres
def test_postgres_schemas_have_their_own_lock(pg_url: str) -> None:
    assert lock_key("a") != lock_key("b")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        other = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
        clock = SystemClock()
        with DaemonLock(pg_url, clock=clock), DaemonLock(other, clock=clock) as second:
            assert second.check()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- two real daemons ------------------------------------------------------------------------------


def run(config: Path, *args: str) -> Daemon:
    return Daemon(config, args=args, env={"SPACESCAN_API_KEY": API_KEY})


def config_for(tmp_path: Path, api_url: str, db_url: str) -> Path:
    return write_config(
        tmp_path / "tracker.toml",
        db_url=db_url,
        api_url=api_url,
        addresses=[(ALICE, "alice"), BOB],
        interval=1,
    )


@pytest.fixture
def api() -> Iterator[FakeSpacescan]:
    with FakeSpacescan(api_key=API_KEY) as fake:
        fake.set_xch(ALICE, 1_500_000_000_000)
        fake.set_xch(BOB, 0)
        yield fake


def test_second_daemon_exits_2_naming_the_first(
    api: FakeSpacescan, db_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path, api.url, db_url)
    with run(config) as first:
        first.wait_for("a poll", lambda: first.polls())
        second = run_tracker("--config", str(config), "run", env={"SPACESCAN_API_KEY": API_KEY})
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1
        line = second.stderr.strip()
        assert line.startswith(
            "tracker: error: another tracker is already running on this database "
            f"(pid {first.pid} on host {socket.gethostname()} since "
        )
        assert line.endswith("); stop it or use --wait")
        # The first keeps polling.
        seen = len(first.polls())
        first.wait_for("two more polls", lambda: len(first.polls()) >= seen + 2)
        # A waiting daemon stops on SIGTERM, with status 0.
        with run(config, "--wait") as waiting:
            waiting.wait_for_line(f"waiting for the daemon lock held by pid {first.pid} on ")
            status, _, took = waiting.terminate()
            assert status == 0, waiting.output()
            assert took < 10
            assert "poll finished" not in waiting.output()
        status, _, took = first.terminate()
        assert status == 0, first.output()
        assert took < 10
    assert "Traceback" not in first.output() + waiting.output()
    assert "poll skipped" not in first.output()


def test_waiting_daemon_takes_over_when_the_first_stops(
    api: FakeSpacescan, db_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path, api.url, db_url)
    with run(config) as first:
        first.wait_for_line("poll finished")
        with run(config, "--wait") as second:
            second.wait_for_line(f"waiting for the daemon lock held by pid {first.pid} on ")
            polls = len(first.polls())
            first.wait_for("another poll of the first", lambda: len(first.polls()) > polls)
            assert "poll finished" not in second.output()
            status, _, _ = first.terminate()
            assert status == 0, first.output()
            second.wait_for_line("poll finished")
            assert "daemon lock acquired" in second.output()
            status, _, _ = second.terminate()
            assert status == 0, second.output()
    assert "Traceback" not in first.output() + second.output()
    # The second daemon's first poll compared with the first daemon's last: no change found.
    assert query(db_url, "SELECT count(*) FROM deltas") == [(0,)]
