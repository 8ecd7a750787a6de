"""Benchmark "memory": does the daemon's resident memory stay flat over many polls?

A daemon meant to run for months must not grow with the number of polls it has made: any cache,
log buffer or list that keeps something per poll would show here long before it exhausts a
small host. So the real daemon (``tracker --config X run``, a separate process started from the
virtualenv's entry point) polls a fake Spacescan on 127.0.0.1 as fast as its config allows, on a
fresh SQLite file, and its RSS after 10,000 address-polls is compared with its RSS after 100.
Balances change now and then, so deltas and their log lines are written too, not only
identical snapshots. The daemon must then stop on SIGTERM with status 0.

Address-polls are counted by the fake: the XCH answer is the last request of a poll, so the
n-th good XCH answer sent is the end of the n-th address-poll (its storing follows at once).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

# bench/common.py puts tests/ (the fake API) on the path too.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, Figure, progress
from datagen import address_text, asset_hex
from support.fakeapi import XCH_PATH, FakeSpacescan

BENCHMARK = "memory"
RSS_GOAL = 1.1
# The largest budget and the smallest interval the config accepts (tracker/config.py), so the
# polls come as fast as a user could make them come.
REQUESTS_PER_MINUTE = 100_000
INTERVAL_SECONDS = 1
CONCURRENCY = 8


@dataclass(frozen=True)
class Size:
    addresses: int
    polls: int
    """Address-polls after which the final RSS is read."""
    first: int = 100
    """Address-polls after which the first RSS is read."""
    timeout: float = 900.0
    """Seconds the polls may take before the benchmark gives up."""

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """Where RSS is read: the two of the figure, and a few between for the detail."""
        between = (self.polls // 100, self.polls // 10, self.polls // 4, self.polls // 2)
        return tuple(sorted({self.first, *(n for n in between if n > self.first), self.polls}))


FULL = Size(addresses=100, polls=10_000)
QUICK = Size(addresses=20, polls=1_000, timeout=300.0)

CHANGE_XCH_EVERY = 7
"""Every this many address-polls, the polled address gets a new XCH balance."""
CHANGE_CAT_EVERY = 11
"""Every this many address-polls, the polled address gets a new amount of one of three CATs
(a CAT it did not hold yet appears): a bounded set of assets, so nothing grows legitimately."""
CATS = 3


class MemoryBenchError(Exception):
    """The daemon died, stalled, failed polls or did not stop cleanly: no figure is possible."""


def _tracker_command() -> list[str]:
    """The virtualenv's ``tracker`` entry point: the command a user or a service runs."""
    for candidate in (Path(sys.executable).parent / "tracker", ROOT / ".venv" / "bin" / "tracker"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    raise MemoryBenchError(
        f"no tracker entry point beside {sys.executable} or in {ROOT / '.venv'}: run `make install`"
    )


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from ``/proc/PID/status``."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise MemoryBenchError(f"no VmRSS in /proc/{pid}/status")
    return int(match[1])


@dataclass
class _Counter:
    """Counts address-polls as the fake answers them, changes balances, reads RSS on time.

    Runs in the fake's handler threads (``on_good_answer``), so the RSS is read at the exact
    count rather than whenever a watching loop happens to look.
    """

    fake: FakeSpacescan
    checkpoints: Sequence[int]
    pid: int | None = None
    polls: int = 0
    rss: dict[int, int] = field(default_factory=dict)
    at: dict[int, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_good_answer(self, endpoint: str, address: str) -> None:
        if endpoint != XCH_PATH:
            return
        with self._lock:
            self.polls += 1
            n = self.polls
        try:
            if n % CHANGE_XCH_EVERY == 0:
                self.fake.set_xch(address, 10**12 + n * 1_000)
            if n % CHANGE_CAT_EVERY == 0:
                cat = asset_hex(1 + n % CATS)
                self.fake.set_token(address, cat, f"{n}.125", name=f"Cat {cat[-1]}", symbol="CAT")
            if n in self.checkpoints and self.pid is not None:
                self.rss[n] = rss_kib(self.pid)
                self.at[n] = time.monotonic()
                if n == self.checkpoints[-1]:
                    self.done.set()
        except BaseException as exc:  # reported by the waiting thread, not lost in a handler
            self.error = exc
            self.done.set()


def _config(workdir: Path, url: str, addresses: Sequence[str]) -> Path:
    lines = [
        "[database]",
        f'url = "sqlite:///{workdir / "tracker.db"}"',
        "[spacescan]",
        f'base_url = "{url}"',
        f"requests_per_minute = {REQUESTS_PER_MINUTE}",
        "timeout_seconds = 10",
        "max_attempts = 2",
        f"concurrency = {CONCURRENCY}",
        "[schedule]",
        f"interval_seconds = {INTERVAL_SECONDS}",
    ]
    for n, address in enumerate(addresses, 1):
        lines += ["[[addresses]]", f'address = "{address}"', f'label = "bench {n}"']
    path = workdir / "tracker.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _environment() -> dict[str, str]:
    """This environment without anything that would point the daemon elsewhere."""
    unwanted = {"TRACKER_CONFIG", "TRACKER_DATABASE_URL", "SPACESCAN_API_KEY"}
    return {name: value for name, value in os.environ.items() if name not in unwanted}


def _tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait(daemon: subprocess.Popen[bytes], counter: _Counter, size: Size, log: Path) -> None:
    """Until the last checkpoint, reporting progress; raises if the daemon dies or stalls."""
    deadline = time.monotonic() + size.timeout
    reported = 0
    while not counter.done.wait(2.0):
        if daemon.poll() is not None:
            raise MemoryBenchError(
                f"the daemon exited with status {daemon.returncode} after {counter.polls} "
                f"address-polls:\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise MemoryBenchError(
                f"only {counter.polls} of {size.polls} address-polls in {size.timeout:.0f} s"
            )
        if counter.polls >= reported + size.polls // 10:
            reported = counter.polls
            progress(f"[{BENCHMARK}] {reported:,} of {size.polls:,} address-polls")
    if counter.error is not None:
        raise MemoryBenchError(f"counting the polls failed: {counter.error!r}")


def _stop(daemon: subprocess.Popen[bytes], log: Path) -> float:
    """SIGTERM; the daemon must exit with status 0 within 30 s. Returns the seconds it took."""
    sent = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        status = daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        raise MemoryBenchError(
            f"the daemon did not stop within 30 s of SIGTERM:\n{_tail(log)}"
        ) from None
    if status != 0:
        raise MemoryBenchError(f"the daemon exited with status {status} on SIGTERM:\n{_tail(log)}")
    return time.monotonic() - sent


@dataclass(frozen=True)
class _Stored:
    attempts: int
    ok: int
    failed_other: int
    """Failed attempts other than those cut short by the stop."""
    snapshots: int
    deltas: int


def _stored(database: Path) -> _Stored:
    """What the daemon wrote, read from the file after it stopped."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:

        def one(sql: str) -> int:
            value = connection.execute(sql).fetchone()[0]
            return int(value or 0)

        return _Stored(
            attempts=one("SELECT count(*) FROM poll_attempts"),
            ok=one("SELECT count(*) FROM poll_attempts WHERE ok"),
            failed_other=one(
                "SELECT count(*) FROM poll_attempts WHERE NOT ok AND error <> 'cancelled: stopping'"
            ),
            snapshots=one("SELECT count(*) FROM snapshots"),
            deltas=one("SELECT count(*) FROM deltas"),
        )


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def measure(quick: bool = False) -> list[Figure]:
    """Run the daemon to the last checkpoint, stop it, and compare its RSS at both ends."""
    size = QUICK if quick else FULL
    addresses = [address_text(n) for n in range(1, size.addresses + 1)]
    fake = FakeSpacescan(max_requests_per_minute=REQUESTS_PER_MINUTE)
    counter = _Counter(fake, size.checkpoints)
    fake.on_good_answer = counter.on_good_answer
    for n, address in enumerate(addresses, 1):
        fake.set_xch(address, 10**12 * n)
        fake.set_token(address, asset_hex(1), "100.000", name="Cat 1", symbol="CAT")
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, fake:
        workdir = Path(tmp)
        config = _config(workdir, fake.url, addresses)
        log = workdir / "daemon.log"
        started = time.monotonic()
        with log.open("wb") as output:
            daemon = subprocess.Popen(
                [*_tracker_command(), "--config", str(config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_environment(),
                cwd=workdir,
            )
        counter.pid = daemon.pid
        progress(
            f"[{BENCHMARK}] daemon pid {daemon.pid}: {size.addresses} addresses, "
            f"RSS at {', '.join(f'{n:,}' for n in size.checkpoints)} address-polls"
        )
        try:
            _wait(daemon, counter, size, log)
            stop_seconds = _stop(daemon, log)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        seconds = time.monotonic() - started
        cycles = len(re.findall(r"poll finished: ", log.read_text(errors="replace")))
        stored = _stored(workdir / "tracker.db")
        over = fake.over_budget()
    if stored.failed_other:
        raise MemoryBenchError(f"{stored.failed_other} address-polls failed (see the poll log)")
    if stored.ok < size.polls:
        raise MemoryBenchError(f"only {stored.ok} successful address-polls stored")
    if stored.deltas == 0:
        raise MemoryBenchError("no delta was written: the balances did not change")
    first, last = counter.rss[size.first], counter.rss[size.polls]
    ratio = last / first
    series = ", ".join(f"{n:,}: {_mib(kib)}" for n, kib in sorted(counter.rss.items()))
    poll_seconds = counter.at[size.polls] - counter.at[size.first]
    detail = (
        f"RSS MiB after address-polls {series}; {size.addresses} addresses, {cycles} polls, "
        f"{stored.snapshots:,} snapshots ({stored.attempts - stored.ok} polls cancelled at stop), "
        f"{stored.deltas:,} deltas; {size.polls - size.first:,} address-polls in "
        f"{poll_seconds:.0f} s, {seconds:.0f} s in all; SIGTERM: exit 0 in {stop_seconds:.1f} s; "
        f"over budget {over}"
    )
    progress(f"[{BENCHMARK}] {detail}")
    return [
        Figure(
            BENCHMARK,
            "sqlite",
            f"daemon RSS after {size.polls:,} address-polls ÷ after {size.first}",
            round(ratio, 3),
            RSS_GOAL,
            True,
            detail,
        )
    ]


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv[1:]):
        print(
            f"{figure.benchmark} | {figure.database} | {figure.measure} | {figure.value:g} "
            f"| {figure.goal} | {'ok' if figure.ok else 'MISSED'} | {figure.detail}"
        )
