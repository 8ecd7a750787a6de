"""Hostile peers, stalls and bad input, each reproduced against a fake of our own on 127.0.0.1.

The secrets, HTTP-bound and parser fuzz checks live in test_redact.py, test_http.py and
test_fuzz.py; this file holds what needs the daemon, the poller or the database: a stalling
address, a database that never answers, another writer holding SQLite's lock at SIGTERM, a
wall-clock jump, two polls of one address at once, hostile text reaching a terminal or a log.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tracker.clock import SystemClock
from tracker.domain import WatchedAddress
from tracker.retry import RetryPolicy
from tracker.service.daemon import Daemon as Scheduler
from tracker.service.daemon import _Cadence
from tracker.service.poller import Poller, PollSummary
from tracker.sources import http
from tracker.sources.budget import RateBudget
from tracker.sources.spacescan import SpacescanSource
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset
from support.clock import FakeClock
from support.databases import query
from support.fakeapi import FakeSpacescan, Response
from support.history import observe
from support.process import Daemon, run_tracker, wait_for, write_config

ALICE, BOB = make_address(21), make_address(22)
API_KEY = "hardening-key-0b7e2c9d41"


@pytest.fixture
def api() -> Iterator[FakeSpacescan]:
    with FakeSpacescan(api_key=API_KEY) as fake:
        fake.set_xch(ALICE, 1_000_000_000_000)
        fake.set_xch(BOB, 2_000_000_000_000)
        yield fake


def test_a_trickling_address_costs_only_its_own_deadline(
    api: FakeSpacescan, engine: Engine
) -> None:
    """One answer at a byte a second used to stall the whole daemon; now it is cut at its
    deadline, recorded as a failed poll, and the other address is stored meanwhile."""
    api.push(f"/token-balance/{BOB}", Response(200, {"status": "success", "data": []}, trickle=1))
    clock = SystemClock()
    source = SpacescanSource(
        api.url,
        session=http.session(),
        budget=RateBudget(6000, clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=1),
        api_key=API_KEY,
        limits=http.Limits(deadline_seconds=2.0, connect_seconds=2.0),
    )
    poller = Poller(source, SnapshotStore(engine, clock), clock, concurrency=2)
    started = time.monotonic()
    summary = poller.poll([WatchedAddress(ALICE, None), WatchedAddress(BOB, None)])
    took = time.monotonic() - started
    by_address = {result.address: result for result in summary.results}
    assert by_address[ALICE].ok
    assert not by_address[BOB].ok
    assert "no complete answer within 2 s" in str(by_address[BOB].error)
    assert took < 30, "the poll waited for the trickle instead of its deadline"


class _Silent:
    """A TCP server that accepts connections and never says a word (a hung database)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("command", [["status"], ["balances"], ["run"]])
def test_a_database_that_never_answers_is_one_line(tmp_path: Path, command: list[str]) -> None:
    silent = _Silent()
    try:
        url = f"postgresql://tracker:s3cret-pw@127.0.0.1:{silent.port}/db?connect_timeout=2"
        config = write_config(tmp_path / "tracker.toml", db_url=url, addresses=[ALICE])
        result = run_tracker("--config", str(config), *command, timeout=60)
    finally:
        silent.close()
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"tracker: error: database postgresql://tracker:***@127.0.0.1:{silent.port}/db"
    )
    assert "s3cret-pw" not in result.stderr


def test_sigterm_while_another_process_holds_the_sqlite_write_lock(
    api: FakeSpacescan, tmp_path: Path
) -> None:
    """A backup or a user's script holding SQLite's write lock delayed a stop by 88 s."""
    db_file = tmp_path / "tracker.db"
    config = write_config(
        tmp_path / "tracker.toml",
        db_url=f"sqlite:///{db_file}",
        api_url=api.url,
        addresses=[ALICE],
        interval=1,
    )
    env = {"SPACESCAN_API_KEY": API_KEY}
    assert run_tracker("--config", str(config), "poll", env=env).returncode == 0
    other = sqlite3.connect(db_file, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        with Daemon(config, env=env) as daemon:
            daemon.wait_for_line("locked by another writer")
            status, _, took = daemon.terminate()
            log = daemon.output()
    finally:
        other.close()
    assert status == 0, log
    assert took < 10, log  # the README's promise, whatever the daemon waits on
    assert "abandoned while writing" in log or "poll cancelled" in log


class _ShiftedClock(SystemClock):
    """The real clock, whose wall time a test can move (monotonic time goes on unchanged)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = timedelta()

    def now(self) -> datetime:
        return super().now() + self.offset


class _Polls:
    phase = "idle"

    def __init__(self) -> None:
        self.count = 0

    def poll(self, addresses: object) -> PollSummary:
        self.count += 1
        return PollSummary((), 0.0)


def test_a_schedule_is_paced_by_the_monotonic_clock_alone() -> None:
    """A clock set back an hour used to stop polling for an hour: the pace ignores it."""
    clock = FakeClock()
    cadence = _Cadence(60, clock, at_start=True)
    assert cadence.due()
    assert not cadence.due()
    clock.jump(-3600)  # the wall clock goes back an hour: nothing changes
    clock.advance(60)
    assert cadence.due()
    clock.jump(+7200)  # forward two hours: no burst of runs either
    assert not cadence.due()
    clock.advance(60 * 5 + 30)  # suspended for five periods: one run, then back on the grid
    assert cadence.due()
    assert not cadence.due()
    assert cadence.wait() == 30


def test_a_wall_clock_jump_is_logged_and_polls_go_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = _ShiftedClock()
    polls = _Polls()
    daemon = Scheduler(polls, [WatchedAddress(ALICE, None)], 1, clock)  # type: ignore[arg-type]
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        wait_for(lambda: polls.count >= 1, "the first poll")
        clock.offset = timedelta(hours=-1)
        wait_for(lambda: "wall clock jumped back by 3600 s" in caplog.text, "the log line")
        after_jump = polls.count
        wait_for(lambda: polls.count >= after_jump + 2, "polls after the jump")
    finally:
        daemon.stop()
        runner.join(30)
    assert not runner.is_alive()


def test_two_polls_of_the_same_addresses_at_once_keep_every_answer(
    api: FakeSpacescan, db_url: str, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "tracker.toml", db_url=db_url, api_url=api.url, addresses=[ALICE, BOB]
    )
    env = {"SPACESCAN_API_KEY": API_KEY}
    command = ["--config", str(config), "poll"]
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_tracker(*command, env=env)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert "not stored" not in "".join(r.stderr for r in results)
    assert query(db_url, "SELECT count(*) FROM snapshots") == [(4,)]
    assert query(db_url, "SELECT count(*) FROM poll_attempts WHERE ok") == [(4,)]
    assert query(db_url, "SELECT count(*) FROM deltas") == [(0,)]  # balances did not change


def test_hostile_text_never_reaches_a_terminal_or_a_log_raw(
    engine: Engine, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cat = make_asset(0xBAD)
    store = SnapshotStore(engine)
    label = "evil\nFAKE 2026-01-01 INFO everything is fine"
    store.sync_addresses([WatchedAddress(ALICE, label)], datetime.now(UTC))
    names = {cat: ("\x1b]0;pwned\x07Name", "\x1b[31mRED\r")}
    store.record_one(observe(ALICE, datetime(2026, 1, 1, tzinfo=UTC), {cat: 1000}, names))
    config = write_config(tmp_path / "tracker.toml", db_url=db_url, addresses=[(ALICE, label)])
    table = run_tracker("--config", str(config), "balances")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout
    assert "\r" not in table.stdout
    assert "\\x1b[31mRED\\x0d" in table.stdout
    assert table.stdout.count("\n") == 3  # header, rule, one row: the label's newline escaped

    from tracker.logs import SafeFormatter

    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "%s: poll failed", (label,), None)
    line = SafeFormatter(lambda text: text, "%(message)s", "%H").format(record)
    assert "\n" not in line
    assert "evil\\x0aFAKE" in line


def test_an_output_that_cannot_be_written_is_one_line(db_url: str, tmp_path: Path) -> None:
    """`tracker balances > /dev/full` used to end in a traceback."""
    config = write_config(tmp_path / "tracker.toml", db_url=db_url, addresses=[ALICE])
    with open("/dev/full", "w") as full:
        for args in (["balances", "--format", "json"], ["export"], ["status", "--format", "csv"]):
            result = subprocess.run(
                [sys.executable, "-m", "tracker", "--config", str(config), *args],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 1, result.stderr
            assert result.stderr == (
                "tracker: error: cannot write the output: No space left on device\n"
            )
