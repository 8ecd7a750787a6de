"""The soak test: the real ``tracker run`` daemon against the fault-injecting fake Spacescan.

Shared by ``tests/test_soak.py`` (a size that fits CI) and ``bench/soak`` (the full run whose
figures are in the README), so both prove the same things the same way.

How "every good answer is a snapshot exactly once" is made checkable from the database alone:

- Every address walks through numbered *states*. The balances of state ``k`` are a pure function
  of the address and ``k`` (:func:`state_mojos`): exact amounts up to 2**63 - 1 mojos of XCH and
  2**53 + 1 CAT mojos, CATs that appear and disappear, one without a name, and a CAT that moves
  at every step so that no two states of an address look alike.
- The fake serves the current state. Its ``on_good_answer`` hook fires once a good (not faulty,
  not pushed) XCH answer has been completely written to the socket; :class:`World` then moves
  that address to state ``k + 1``. The daemon reads the token list and then XCH for each
  address, so a poll that succeeds has seen state ``k`` in both answers, and a poll that fails
  (any fault, on either request) leaves the address in state ``k``.
- So, read back in ``taken_at`` order, the snapshots of every address must be exactly the states
  ``0, 1, ..., n - 1`` where ``n`` is the number of good XCH answers sent for it: a missing state
  is a good answer lost, a repeated one a duplicate, and any other balance a corrupted amount.

What is true when the daemon dies or its database goes away (and so what is asserted):

- SIGKILL: a good answer may have been sent (and the state advanced) while the killed process
  had not yet committed it. That state is then missing for good: nobody will serve it again,
  because the fake already moved on (the real API would simply answer the current balance to the
  next poll, so in production nothing but that one sample is lost). The states stored are still
  strictly increasing (never a repeat, never a state that was not served), and each missing one
  must have been sent within :data:`KILL_WINDOW` seconds before a kill (measured: < 50 ms).
  Likewise a terminal fault answered just before a kill may have no failed poll attempt, and a
  retried fault may have no attempt if its poll was still retrying when the process died (its
  address has no later attempt before the kill). Nothing else is excused.
- PostgreSQL stopped: a poll whose write fails cannot be in the database, so it must be in the
  log: one ``not stored`` line per good answer lost and one ``could not record`` line per failed
  attempt not written, counted per address, for answers sent around the outage only.
- ``cancelled: stopping`` failed attempts are expected only right after a SIGTERM.

Everything else is checked without excuses: every snapshot has its balances and exactly one ok
poll attempt, every delta is exactly the difference between two consecutive snapshots of its
address, the sum of the deltas of each address and asset equals its last minus its first balance
(to the mojo), every failed poll attempt is explained by a bad answer the fake served within its
time span (a terminal fault of that kind, or ``max_attempts`` retryable ones on one endpoint), and
no terminal fault ever falls inside a successful attempt.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path

from sqlalchemy import select

from tracker.store import engine as engines
from tracker.store.models import Address, Asset, Delta, PollAttempt, Snapshot, SnapshotBalance

from support import make_address as _address
from support.databases import admin_url, postgres_database, probe_postgres
from support.fakeapi import ALL_FAULTS, TOKEN_PATH, XCH_PATH, FakeSpacescan, Served
from support.process import Daemon

# -- what the soak run uses ------------------------------------------------------------------

API_KEY = "soak-key-9c41e07b5d2f4a86"
"""Set as SPACESCAN_API_KEY for the daemon and required by the fake, so grepping for it means
something."""
PG_PASSWORD = "s3cret-pw"
"""Put into the PostgreSQL URL (trust auth ignores it) so the logs can be grepped for it."""

TERMINAL_FAULTS: dict[str, tuple[str, ...]] = {
    "html": ("answered HTML",),
    "status-failed": ("status failed",),
    "wrong-types": ("expected a number",),
    "negative": ("is negative",),
    "missing-list": ("no token list", "no XCH balance"),
}
"""Faults the client must not retry, with the words its one-line error must contain."""
RETRYABLE_FAULTS = (
    "429",
    "429-no-retry-after",
    "500",
    "502",
    "503",
    "reset",
    "timeout",
    "truncated",
)
assert set(TERMINAL_FAULTS) | set(RETRYABLE_FAULTS) == set(ALL_FAULTS)

SLACK = 0.25
"""Seconds of tolerance when placing a request served by the fake inside a poll attempt's span
(both clocks are this machine's wall clock; the slack only covers timestamp granularity)."""
KILL_WINDOW = 2.0
"""A good answer sent this long before a SIGKILL may legitimately never have been committed."""
FIRST_POLL_LIMIT = 60.0
"""A (re)started daemon must send its first request within this many seconds of being spawned
(Python start-up and the schema check included). Measured at about 1 s on an idle 2-core machine
and up to 14 s on a loaded one: the limit catches a daemon that does not resume, not a slow one;
the measured spread is in the run's notes."""
STOP_LIMIT = 30.0
"""Seconds a SIGTERMed daemon may take to exit: its own grace is 4 s; the rest is slack for a
loaded machine, so that only a daemon that hangs fails."""
MAX_MOJOS = 2**63 - 1

# -- the states every address walks through ----------------------------------------------------


def make_address(n: int) -> str:
    return _address(n)


def make_asset(n: int) -> str:
    return f"{n:064x}"


CAT_BIG = make_asset(0xB16)
CAT_STEP = make_asset(0x57E9)
CAT_FLICKER = make_asset(0xF11C)
CAT_ANON = make_asset(0xA707)
CAT_NAMES: dict[str, tuple[str | None, str | None]] = {
    CAT_BIG: ("Spacebucks", "SBX"),
    CAT_STEP: ("Stepper", "STP"),
    CAT_FLICKER: ("Flicker", "FLK"),
    CAT_ANON: (None, None),
}
BIG_CAT_MOJOS = 9_007_199_254_740_993
"""9007199254740.993 tokens: 2**53 + 1 mojos, which a float would round."""
XCH_STEP = 1_000_000_007


def state_mojos(index: int, k: int) -> dict[str, int]:
    """Balances (asset id -> mojos, ``xch`` for XCH) of address number ``index`` in state ``k``.

    XCH stays put every 4th step; the big CAT moves by one mojo every 3rd step; the flicker CAT
    disappears every 3rd state; the anonymous CAT appears at state 2 on every other address; the
    step CAT moves up and down at every step (7k, plus 500 on odd k), so all states differ.
    """
    moved = k - k // 4
    # Address 0 starts at the largest balance the database can hold, and goes down.
    xch = MAX_MOJOS - XCH_STEP * moved if index == 0 else index * 10**12 + 123 + XCH_STEP * moved
    balances = {
        "xch": xch,
        CAT_BIG: BIG_CAT_MOJOS - 1000 * index - k // 3,
        CAT_STEP: 1000 * index + 1 + 7 * k + 500 * (k % 2),
    }
    if k % 3 != 2:
        balances[CAT_FLICKER] = 1001 * (k + 1)
    if index % 2 == 0 and k >= 2:
        balances[CAT_ANON] = k
    return balances


def fake_balances(
    index: int, k: int
) -> tuple[int, dict[str, tuple[Decimal, str | None, str | None]]]:
    """State ``k`` in the form :meth:`FakeSpacescan.set_balances` takes (CATs in whole tokens)."""
    mojos = state_mojos(index, k)
    tokens = {
        asset: (Decimal(amount).scaleb(-3), *CAT_NAMES[asset])
        for asset, amount in mojos.items()
        if asset != "xch"
    }
    return mojos["xch"], tokens


class World:
    """The addresses, their current states, and when each state was served well."""

    def __init__(self, count: int) -> None:
        self.addresses = tuple(make_address(0x50A0 + i) for i in range(count))
        self.labels = {address: f"soak-{i:03d}" for i, address in enumerate(self.addresses)}
        self._index = {address: i for i, address in enumerate(self.addresses)}
        self._lock = threading.Lock()
        self._fake: FakeSpacescan | None = None
        self.served: dict[str, list[float]] = {address: [] for address in self.addresses}
        """Per address, ``time.time()`` at which state k's XCH answer was sent (list index k)."""

    def attach(self, fake: FakeSpacescan) -> None:
        self._fake = fake
        for i, address in enumerate(self.addresses):
            fake.set_balances(address, *fake_balances(i, 0))
        fake.on_good_answer = self.answered

    def answered(self, endpoint: str, address: str) -> None:
        """The fake's ``on_good_answer`` hook: an XCH answer moves the address to its next state."""
        if endpoint != XCH_PATH or address not in self._index:
            return
        with self._lock:
            served = self.served[address]
            served.append(time.time())
            if self._fake is not None:
                state = fake_balances(self._index[address], len(served))
                self._fake.set_balances(address, *state)

    def snapshot_states(self) -> dict[str, list[float]]:
        with self._lock:
            return {address: list(times) for address, times in self.served.items()}

    def index(self, address: str) -> int:
        return self._index[address]


# -- reading the database back -------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptRow:
    id: int
    address: str
    started_at: float
    finished_at: float
    ok: bool
    error: str | None
    snapshot_id: int | None


@dataclass
class History:
    """Every row of the tables that hold history, as plain values (times as epoch seconds)."""

    addresses: dict[int, str]
    assets: dict[int, str]
    snapshots: list[tuple[int, int, float]]
    """(id, address_id, taken_at)"""
    balances: list[tuple[int, int, int]]
    """(snapshot_id, asset_id, balance_mojos)"""
    deltas: list[tuple[int, int, int, int, int, int]]
    """(snapshot_id, asset_id, previous_snapshot_id, previous_balance, balance, delta)"""
    attempts: list[AttemptRow]


def read_history(url: str) -> History:
    engine = engines.create(url)
    try:
        with engine.connect() as connection:
            addresses = {
                row.id: row.address
                for row in connection.execute(select(Address.id, Address.address))
            }
            assets = {
                row.id: row.asset_id for row in connection.execute(select(Asset.id, Asset.asset_id))
            }
            snapshots = [
                (row.id, row.address_id, row.taken_at.timestamp())
                for row in connection.execute(
                    select(Snapshot.id, Snapshot.address_id, Snapshot.taken_at)
                )
            ]
            balances = [
                (row.snapshot_id, row.asset_id, row.balance_mojos)
                for row in connection.execute(
                    select(
                        SnapshotBalance.snapshot_id,
                        SnapshotBalance.asset_id,
                        SnapshotBalance.balance_mojos,
                    )
                )
            ]
            deltas = [
                tuple(row)
                for row in connection.execute(
                    select(
                        Delta.snapshot_id,
                        Delta.asset_id,
                        Delta.previous_snapshot_id,
                        Delta.previous_balance_mojos,
                        Delta.balance_mojos,
                        Delta.delta_mojos,
                    )
                )
            ]
            attempts = [
                AttemptRow(
                    row.id,
                    addresses.get(row.address_id, f"<address id {row.address_id}>"),
                    row.started_at.timestamp(),
                    row.finished_at.timestamp(),
                    bool(row.ok),
                    row.error,
                    row.snapshot_id,
                )
                for row in connection.execute(select(PollAttempt))
            ]
    finally:
        engine.dispose()
    return History(addresses, assets, snapshots, balances, deltas, attempts)  # type: ignore[arg-type]


# -- the checks ------------------------------------------------------------------------------------


Excuse = Callable[[str, float], "str | None"]
"""(address, wall time) -> why an event at that time needs no database row, or None."""


@dataclass
class Excuses:
    """What a phase knows about the daemon's life that can legitimately leave rows missing."""

    stop_times: list[float] = field(default_factory=list)
    """When SIGTERM was sent: ``cancelled: stopping`` attempts are expected right after."""
    lost: Excuse | None = None
    """A good XCH answer sent whose snapshot is missing."""
    unrecorded: Excuse | None = None
    """A terminal fault answered with no failed poll attempt around it."""
    failure: Callable[[AttemptRow], str | None] | None = None
    """A failed poll attempt that no bad answer explains (for example ``not stored``)."""
    cut_off: list[tuple[float, float, float]] = field(default_factory=list)
    """(start, end, cut) of polls cut off at ``cut`` (a SIGKILL, or the database going away) and
    whose requests may go on until ``end``. A retried fault between ``start`` and ``end`` may
    belong to such a poll, which left no row, but only if its address has no poll attempt that
    started after the fault and before ``cut`` (polls of one address never overlap, so such an
    attempt means the faulty poll had finished before the cut)."""


@dataclass
class Verdict:
    attempts: int = 0
    ok: int = 0
    failed: int = 0
    snapshots: int = 0
    good_answers: int = 0
    duplicates: int = 0
    drift_mojos: int = 0
    lost: Counter[str] = field(default_factory=Counter)
    lost_at: list[float] = field(default_factory=list)
    """When each excused lost answer was sent."""
    unrecorded: Counter[str] = field(default_factory=Counter)
    failure_causes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _endpoint_of(path: str) -> tuple[str, str] | None:
    for prefix, name in ((TOKEN_PATH, "token-balance"), (XCH_PATH, "xch-balance")):
        if path.startswith(prefix):
            return name, path[len(prefix) :]
    return None


def check_history(
    history: History,
    world: World,
    requests: Sequence[Served],
    *,
    max_attempts: int,
    excuses: Excuses | None = None,
) -> Verdict:
    """Every check of the module docstring; problems are collected, not raised."""
    excuses = excuses or Excuses()
    verdict = Verdict()
    problem = verdict.problems.append
    served_states = world.snapshot_states()
    snapshots = {sid: (address_id, taken_at) for sid, address_id, taken_at in history.snapshots}
    verdict.snapshots = len(snapshots)
    verdict.good_answers = sum(len(times) for times in served_states.values())

    # The fake's own log must agree with the hook: one good XCH answer sent per state served.
    good_xch: Counter[str] = Counter()
    for served in requests:
        place = _endpoint_of(served.path)
        if place and place[0] == "xch-balance" and served.fault is None and served.status == 200:
            good_xch[place[1]] += served.sent is not None
    for address in world.addresses:
        if good_xch[address] != len(served_states[address]):
            problem(
                f"{address}: the fake sent {good_xch[address]} good XCH answers but the hook "
                f"saw {len(served_states[address])}"
            )

    # Structure: nothing half-written, nothing orphaned, nothing twice.
    unknown = set(history.addresses) - {
        i for i, a in history.addresses.items() if a in world.labels
    }
    if unknown:
        problem(f"addresses that were never configured: {sorted(unknown)}")
    pairs = Counter((address_id, taken_at) for address_id, taken_at in snapshots.values())
    for pair, count in pairs.items():
        if count > 1:
            verdict.duplicates += count - 1
            problem(f"{count} snapshots of address id {pair[0]} at the same time {pair[1]}")
    balances: dict[int, dict[str, int]] = defaultdict(dict)
    for sid, asset_pk, mojos in history.balances:
        if sid not in snapshots:
            problem(f"balance row without its snapshot (snapshot id {sid})")
            continue
        asset = history.assets.get(asset_pk)
        if asset is None:
            problem(f"balance row of snapshot {sid} names a missing asset id {asset_pk}")
            continue
        balances[sid][asset] = mojos
    for sid in snapshots:
        if not balances.get(sid):
            problem(f"snapshot {sid} has no balance rows (half-written)")
    deltas: dict[int, set[tuple[str, int, int, int, int]]] = defaultdict(set)
    for sid, asset_pk, previous_sid, previous, mojos, delta in history.deltas:
        if sid not in snapshots or previous_sid not in snapshots:
            problem(f"delta without its snapshot (snapshot {sid}, previous {previous_sid})")
            continue
        deltas[sid].add((history.assets.get(asset_pk, "?"), previous_sid, previous, mojos, delta))

    verdict.attempts = len(history.attempts)
    by_snapshot: Counter[int] = Counter()
    for attempt in history.attempts:
        if attempt.ok:
            verdict.ok += 1
            if attempt.snapshot_id is None or attempt.snapshot_id not in snapshots:
                problem(f"ok poll attempt {attempt.id} without its snapshot")
                continue
            by_snapshot[attempt.snapshot_id] += 1
            address_id, taken_at = snapshots[attempt.snapshot_id]
            if history.addresses.get(address_id) != attempt.address:
                problem(f"poll attempt {attempt.id} points to another address's snapshot")
            if attempt.finished_at != taken_at:
                problem(f"poll attempt {attempt.id} finished at another time than its snapshot")
        else:
            verdict.failed += 1
            if attempt.snapshot_id is not None:
                problem(f"failed poll attempt {attempt.id} has a snapshot")
            error = attempt.error or ""
            if not error.strip() or "\n" in error or "Traceback" in error:
                problem(f"failed poll attempt {attempt.id}: error is not one line: {error!r}")
        if attempt.finished_at < attempt.started_at:
            problem(f"poll attempt {attempt.id} finished before it started")
    for sid in snapshots:
        if by_snapshot[sid] != 1:
            problem(f"snapshot {sid} has {by_snapshot[sid]} ok poll attempts, expected 1")
    if verdict.attempts != verdict.snapshots + verdict.failed:
        problem(
            f"{verdict.attempts} poll attempts != {verdict.snapshots} snapshots + "
            f"{verdict.failed} failed"
        )

    # Per address: the snapshots are the states served, in order, each exactly once.
    per_address: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for sid, (address_id, taken_at) in snapshots.items():
        per_address[history.addresses.get(address_id, "?")].append((taken_at, sid))
    for address in world.addresses:
        times = served_states[address]
        index = world.index(address)
        lookup = {tuple(sorted(state_mojos(index, k).items())): k for k in range(len(times) + 2)}
        ordered = [sid for _, sid in sorted(per_address.get(address, []))]
        previous_k = -1
        first: dict[str, int] | None = None
        previous: dict[str, int] | None = None
        previous_sid = 0
        sums: Counter[str] = Counter()
        stored_states = []
        for position, sid in enumerate(ordered):
            current = balances.get(sid, {})
            k = lookup.get(tuple(sorted(current.items())))
            if k is None:
                problem(f"{address}: snapshot {sid} matches no state served: {current}")
            elif k >= len(times):
                problem(f"{address}: snapshot {sid} is state {k}, which was never served well")
            elif k <= previous_k:
                verdict.duplicates += k == previous_k
                problem(f"{address}: snapshot {sid} is state {k} again after state {previous_k}")
            else:
                stored_states.append(k)
                previous_k = k
            expected: set[tuple[str, int, int, int, int]] = set()
            if previous is not None:
                for asset in sorted(set(previous) | set(current)):
                    before, after = previous.get(asset, 0), current.get(asset, 0)
                    if before != after:
                        expected.add((asset, previous_sid, before, after, after - before))
            if deltas.get(sid, set()) != expected:
                problem(
                    f"{address}: deltas of snapshot {sid} (#{position}) are "
                    f"{sorted(deltas.get(sid, set()))}, expected {sorted(expected)}"
                )
            for asset, _, _, _, delta in deltas.get(sid, set()):
                sums[asset] += delta
            first = current if first is None else first
            previous, previous_sid = current, sid
        if first is not None and previous is not None:
            for asset in set(first) | set(previous) | set(sums):
                drift = sums[asset] - (previous.get(asset, 0) - first.get(asset, 0))
                if drift:
                    verdict.drift_mojos += abs(drift)
                    problem(f"{address} {asset}: deltas sum to {sums[asset]}, drift {drift}")
        for k in sorted(set(range(len(times))) - set(stored_states)):
            reason = excuses.lost(address, times[k]) if excuses.lost else None
            if reason is None:
                problem(f"{address}: good answer for state {k} (sent at {times[k]:.3f}) is lost")
            else:
                verdict.lost[reason] += 1
                verdict.lost_at.append(times[k])

    _check_failures(history.attempts, requests, world, max_attempts, excuses, verdict)
    return verdict


def _check_failures(
    attempts: Sequence[AttemptRow],
    requests: Sequence[Served],
    world: World,
    max_attempts: int,
    excuses: Excuses,
    verdict: Verdict,
) -> None:
    """Bad answers <-> failed poll attempts, matched by address and time."""
    problem = verdict.problems.append
    by_address: dict[str, list[AttemptRow]] = defaultdict(list)
    for attempt in attempts:
        by_address[attempt.address].append(attempt)
    starts: dict[str, list[float]] = {}
    for address, rows in by_address.items():
        rows.sort(key=lambda row: row.started_at)
        starts[address] = [row.started_at for row in rows]

    def containing(address: str, at: float) -> AttemptRow | None:
        rows = by_address.get(address, [])
        i = bisect.bisect_right(starts.get(address, []), at + SLACK)
        for row in rows[max(0, i - 2) : i]:
            if row.started_at - SLACK <= at <= row.finished_at + SLACK:
                return row
        return None

    terminal: dict[int, list[tuple[str, str]]] = defaultdict(list)
    retryable: dict[tuple[int, str], int] = Counter()
    for served in requests:
        place = _endpoint_of(served.path)
        if place is None or served.fault is None or place[1] not in world.labels:
            continue
        endpoint, address = place
        attempt = containing(address, served.wall)
        if served.fault in TERMINAL_FAULTS:
            if attempt is None:
                reason = excuses.unrecorded(address, served.wall) if excuses.unrecorded else None
                if reason is None:
                    problem(
                        f"{address}: {served.fault} answer at {served.wall:.3f} on {endpoint} "
                        "has no failed poll attempt"
                    )
                else:
                    verdict.unrecorded[reason] += 1
            elif attempt.ok:
                problem(
                    f"{address}: a bad answer ({served.fault} on {endpoint}) was stored as "
                    f"a snapshot (poll attempt {attempt.id})"
                )
            else:
                terminal[attempt.id].append((served.fault, endpoint))
        elif attempt is not None:
            retryable[(attempt.id, endpoint)] += 1
        elif not any(
            start <= served.wall <= end
            and not any(served.wall < a.started_at <= cut for a in by_address.get(address, []))
            for start, end, cut in excuses.cut_off
        ):
            problem(
                f"{address}: {served.fault} answer at {served.wall:.3f} on {endpoint} "
                "falls in no poll attempt"
            )

    for attempt in attempts:
        if attempt.ok:
            continue
        error = attempt.error or ""
        faults = terminal.get(attempt.id, [])
        if len(faults) > 1:
            problem(f"poll attempt {attempt.id} spans {len(faults)} terminal faults: {faults}")
        if faults:
            fault, endpoint = faults[0]
            words = TERMINAL_FAULTS[fault]
            if not error.startswith(f"{endpoint}: ") or not any(w in error for w in words):
                problem(f"poll attempt {attempt.id}: {fault} on {endpoint} reported as {error!r}")
            verdict.failure_causes[fault] += 1
            continue
        exhausted = re.fullmatch(r"(token-balance|xch-balance): .* \(after (\d+) attempts\)", error)
        if exhausted and int(exhausted[2]) == max_attempts:
            if retryable[(attempt.id, exhausted[1])] < max_attempts:
                problem(
                    f"poll attempt {attempt.id} says {error!r} but only "
                    f"{retryable[(attempt.id, exhausted[1])]} retryable faults were served"
                )
            verdict.failure_causes["retries exhausted"] += 1
            continue
        if error == "cancelled: stopping" and any(
            stop - SLACK <= attempt.finished_at <= stop + STOP_LIMIT for stop in excuses.stop_times
        ):
            verdict.failure_causes["cancelled at stop"] += 1
            continue
        reason = excuses.failure(attempt) if excuses.failure else None
        if reason is not None:
            verdict.failure_causes[reason] += 1
            continue
        problem(f"poll attempt {attempt.id} of {attempt.address} failed unexplained: {error!r}")


# -- running the daemon ----------------------------------------------------------------------------


class SoakError(Exception):
    """The soak run itself could not go on (the daemon died, a wait timed out)."""


_ADDRESS = re.compile(r"\bxch1[02-9ac-hj-np-z]{58}\b")
_OUTAGE_LINE = re.compile(
    r"database unavailable|: not stored: |could not record the failed poll|poll skipped"
)
_POLL_LINE = re.compile(r"poll finished: (\d+) of (\d+) addresses ok, (\d+) failed")


def _more_polls(daemon: DaemonProcess, than: int, since: int = 0) -> bool:
    return len(daemon.polls(since)) > than


class DaemonProcess(Daemon):
    """A soak daemon: its output in the phase's log, the API key in its environment."""

    requests_before = 0

    def __init__(self, config: Path, log_path: Path, *, verbose: bool = False) -> None:
        super().__init__(config, log=log_path, env={"SPACESCAN_API_KEY": API_KEY}, verbose=verbose)

    def wait_for(self, what: str, done: Callable[[], object], timeout: float = 60.0) -> None:
        try:
            super().wait_for(what, done, timeout)
        except AssertionError as exc:
            raise SoakError(str(exc).splitlines()[0]) from None


# -- databases ----------------------------------------------------------------------------------


def pg_password() -> str:
    """The password in the soak's PostgreSQL URL: the admin URL's own, or :data:`PG_PASSWORD`."""
    return admin_url().password or PG_PASSWORD  # type: ignore[return-value]


@contextlib.contextmanager
def database(backend: str, workdir: Path, name: str) -> Iterator[str]:
    """The URL of an empty database: a SQLite file, or a fresh PostgreSQL database (dropped
    after) reached through a URL that carries a password (trust auth ignores it)."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'{name}.db'}"
        return
    with postgres_database() as url:
        yield (
            engines.make_url(url).set(password=pg_password()).render_as_string(hide_password=False)
        )
        wait_for_postgres(60)  # the outage phase stops the server: it must be back to drop


def pg_cluster(action: str) -> None:
    """Stop or start the local PostgreSQL cluster (needs root; Debian's pg_ctlcluster)."""
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions:
        raise SoakError("no PostgreSQL cluster in /etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def wait_for_postgres(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (reason := probe_postgres()) is not None:
        if time.monotonic() > deadline:
            raise SoakError(reason)
        time.sleep(0.2)


# -- phases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSettings:
    addresses: int = 50
    polls: int = 1000
    """Address-polls the steady phase runs at least."""
    fault_rate: float = 0.2
    seed: int = 20261124
    interval_seconds: int = 1
    requests_per_minute: int = 6000
    timeout_seconds: float = 1.0
    timeout_delay: float = 1.5
    max_attempts: int = 3
    concurrency: int = 8
    warmup_polls: int = 3
    """RSS is measured after this many poll cycles, then at the end."""
    rss_growth: float = 0.10
    kills: int = 5
    kill_delay: tuple[float, float] = (0.3, 6.0)
    """Seconds after the first request of a daemon before it is killed (seeded, uniform)."""
    down_time: tuple[float, float] = (0.0, 2.5)
    """Seconds the daemon stays dead after a kill (seeded, uniform)."""
    outage_seconds: float = 10.0
    verbose_daemon: bool = False
    """Run every daemon with ``-v`` (debug logs)."""
    verbose_kill_phase: bool = True
    """Run the kill phase's daemons with ``-v``, so the secrets scan also covers debug logs
    (HTTP requests, retries, exception details)."""


@dataclass
class PhaseResult:
    name: str
    backend: str
    verdict: Verdict
    faults: Counter[str]
    requests: int
    over_budget: int
    seconds: float
    restarts: int = 0
    rss_warm_kib: int | None = None
    rss_end_kib: int | None = None
    first_poll_delays: list[float] = field(default_factory=list)
    outage_failures: int = 0
    forbidden: int = 0
    """Requests the fake refused with 403 (no or wrong API key): must be 0."""
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    """Everything the phase printed or stored as text, for the secrets scan."""
    history: History | None = None
    config: Path | None = None

    @property
    def all_problems(self) -> list[str]:
        forbidden = [f"{self.forbidden} requests without the API key"] if self.forbidden else []
        return self.problems + forbidden + self.verdict.problems


class Phase:
    """One fake server, one world, one database, one log: the setting of one phase."""

    def __init__(
        self, name: str, backend: str, settings: SoakSettings, workdir: Path, db_url: str
    ) -> None:
        self.name, self.backend, self.settings = name, backend, settings
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.log_path = self.workdir / "daemon.log"
        self.world = World(settings.addresses)
        self.fake = FakeSpacescan(
            api_key=API_KEY,
            fault_rate=settings.fault_rate,
            seed=settings.seed,
            max_requests_per_minute=settings.requests_per_minute,
            timeout_delay=settings.timeout_delay,
        )
        self.world.attach(self.fake)
        self.fake.start()
        self.config = self.workdir / "tracker.toml"
        self.config.write_text(self._config_text())
        self.started = time.monotonic()
        self.daemons: list[DaemonProcess] = []

    def _config_text(self) -> str:
        s = self.settings
        lines = [
            "[database]",
            f'url = "{self.db_url}"',
            "[spacescan]",
            f'base_url = "{self.fake.url}"',
            f"requests_per_minute = {s.requests_per_minute}",
            f"timeout_seconds = {s.timeout_seconds}",
            f"max_attempts = {s.max_attempts}",
            f"concurrency = {s.concurrency}",
            "[schedule]",
            f"interval_seconds = {s.interval_seconds}",
        ]
        for address in self.world.addresses:
            lines += [
                "[[addresses]]",
                f'address = "{address}"',
                f'label = "{self.world.labels[address]}"',
            ]
        return "\n".join(lines) + "\n"

    def spawn(self, *, verbose: bool | None = None) -> DaemonProcess:
        requests_before = len(self.fake.requests)
        daemon = DaemonProcess(
            self.config,
            self.log_path,
            verbose=self.settings.verbose_daemon if verbose is None else verbose,
        )
        daemon.requests_before = requests_before
        self.daemons.append(daemon)
        return daemon

    def first_request_after(self, daemon: DaemonProcess, timeout: float = 60.0) -> float:
        """When the fake got the first request sent by ``daemon`` (spawned after the previous
        daemon was dead, so every later request is its own)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [s.wall for s in self.fake.requests[daemon.requests_before :]]
            if later:
                return min(later)
            if not daemon.alive():
                raise SoakError(f"the daemon exited ({daemon.process.returncode})")
            time.sleep(0.02)
        raise SoakError(f"no request within {timeout:.0f} s of starting the daemon")

    def result(self, excuses: Excuses) -> PhaseResult:
        """Stop the fake, read the database back and check everything."""
        for daemon in self.daemons:
            daemon.close()
        self.fake.stop()
        requests = list(self.fake.requests)
        history = read_history(self.db_url)
        verdict = check_history(
            history,
            self.world,
            requests,
            max_attempts=self.settings.max_attempts,
            excuses=excuses,
        )
        faults = Counter(s.fault for s in requests if s.fault is not None)
        log_text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        errors = "\n".join(a.error or "" for a in history.attempts)
        urls = "\n".join(f"{s.path}?{s.query}" for s in requests)
        return PhaseResult(
            self.name,
            self.backend,
            verdict,
            faults,
            len(requests),
            self.fake.over_budget(),
            time.monotonic() - self.started,
            texts={
                f"{self.name}: daemon log": log_text,
                f"{self.name}: poll attempt errors": errors,
                f"{self.name}: request URLs": urls,
            },
            history=history,
            forbidden=sum(1 for s in requests if s.status == 403),
            config=self.config,
        )

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        self.fake.stop()


def _stop(daemon: DaemonProcess, result_problems: list[str]) -> float:
    """SIGTERM the daemon and check it stops in time with status 0; returns when it was sent."""
    if not daemon.alive():
        result_problems.append(f"the daemon had exited ({daemon.process.returncode})")
        return time.time()
    status, at, took = daemon.terminate()
    if status != 0:
        result_problems.append(f"the daemon exited with status {status} on SIGTERM")
    if took > STOP_LIMIT:
        result_problems.append(f"the daemon took {took:.1f} s to stop")
    return at


def run_steady(
    backend: str, settings: SoakSettings, workdir: Path, say: Callable[[str], None] = print
) -> PhaseResult:
    """Phase 1: at least ``polls`` address-polls with faults; no excuse for anything."""
    name = f"steady-{backend}"
    with database(backend, workdir, name) as url:
        phase = Phase(name, backend, settings, workdir, url)
        problems: list[str] = []
        try:
            daemon = phase.spawn()
            cycles = math.ceil(settings.polls / settings.addresses)
            say(f"[{name}] daemon pid {daemon.pid}: {cycles} poll cycles of {settings.addresses}")
            daemon.wait_for(
                f"{settings.warmup_polls} polls",
                lambda: len(daemon.polls()) >= settings.warmup_polls,
                timeout=120 * settings.warmup_polls,
            )
            rss_warm = daemon.rss_kib()
            reported = settings.warmup_polls
            while len(daemon.polls()) < cycles:
                daemon.wait_for("a poll", partial(_more_polls, daemon, reported), timeout=180)
                reported = len(daemon.polls())
                if reported % 5 == 0 or reported == cycles:
                    ok = sum(p[0] for p in daemon.polls())
                    say(f"[{name}] {reported}/{cycles} polls, {ok} address-polls ok")
            rss_end = daemon.rss_kib()
            stop_at = _stop(daemon, problems)
            result = phase.result(Excuses(stop_times=[stop_at]))
        finally:
            phase.close()
    result.rss_warm_kib, result.rss_end_kib = rss_warm, rss_end
    if rss_end > rss_warm * (1 + settings.rss_growth):
        problems.append(
            f"RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB "
            f"(more than {settings.rss_growth:.0%})"
        )
    completed = result.verdict.attempts - result.verdict.failure_causes["cancelled at stop"]
    if completed < settings.polls:
        problems.append(f"only {completed} address-polls completed, wanted {settings.polls}")
    result.problems += problems
    return result


def run_kills(
    backend: str, settings: SoakSettings, workdir: Path, say: Callable[[str], None] = print
) -> PhaseResult:
    """Phase 3: SIGKILL at seeded random moments during polls, restart each time."""
    name = f"kill-{backend}"
    rng = random.Random(settings.seed)
    kills: list[float] = []
    spawns: list[float] = []
    delays: list[float] = []
    problems: list[str] = []
    with database(backend, workdir, name) as url:
        phase = Phase(name, backend, settings, workdir, url)
        try:
            for n in range(settings.kills + 1):
                daemon = phase.spawn(verbose=settings.verbose_kill_phase or None)
                spawns.append(daemon.spawned)
                first = phase.first_request_after(daemon)
                delays.append(first - daemon.spawned)
                if n == settings.kills:
                    daemon.wait_for("a complete poll", partial(_more_polls, daemon, 0), 300)
                    stop_at = _stop(daemon, problems)
                    break
                time.sleep(rng.uniform(*settings.kill_delay))
                if not daemon.alive():
                    raise SoakError(f"the daemon exited ({daemon.process.returncode})")
                kills.append(daemon.sigkill())
                down = rng.uniform(*settings.down_time)
                say(
                    f"[{name}] kill {n + 1}/{settings.kills} at +{kills[-1] - daemon.spawned:.1f} s"
                    f" (first request {delays[-1]:.2f} s after spawn); down {down:.1f} s"
                )
                time.sleep(down)

            def near_kill(address: str, at: float) -> str | None:
                if any(kill - KILL_WINDOW <= at <= kill + SLACK for kill in kills):
                    return "sent just before a SIGKILL"
                return None

            result = phase.result(
                Excuses(
                    stop_times=[stop_at],
                    lost=near_kill,
                    unrecorded=near_kill,
                    cut_off=[
                        (spawn, kill, kill) for spawn, kill in zip(spawns, kills, strict=False)
                    ],
                )
            )
        finally:
            phase.close()
    # No poll attempt can start while no daemon runs; a missed interval shows as a gap.
    assert result.history is not None
    starts = [a.started_at for a in result.history.attempts]
    for kill, spawn in zip(kills, spawns[1:], strict=True):
        inside = [a for a in starts if kill + SLACK < a < spawn - SLACK]
        if inside:
            problems.append(f"{len(inside)} poll attempts started while no daemon was running")
    gaps = []
    for kill, spawn in zip(kills, spawns[1:], strict=True):
        before = [a for a in starts if a <= kill]
        after = [a for a in starts if a >= spawn]
        if before and after:
            gaps.append(min(after) - max(before))
    if gaps:
        result.notes.append(
            f"{name}: poll attempts show the missed time: gaps of {min(gaps):.1f}-{max(gaps):.1f} s"
            " across the kills"
        )
    late = [d for d in delays if d > FIRST_POLL_LIMIT]
    if late:
        problems.append(f"restarted daemons took {late} s to send their first request")
    result.notes.append(
        f"{name}: first request {min(delays):.2f}-{max(delays):.2f} s after each (re)start"
        + (
            "; daemons ran with -v (debug logs in the secrets scan)"
            if settings.verbose_kill_phase
            else ""
        )
    )
    if result.verdict.lost_at:
        before_kill = [
            min(kill - at for kill in kills if kill + SLACK >= at) for at in result.verdict.lost_at
        ]
        count = len(before_kill)
        result.notes.append(
            f"{name}: {count} good answer{'s' if count != 1 else ''} sent at most "
            f"{max(before_kill) * 1000:.0f} ms before a SIGKILL {'were' if count != 1 else 'was'}"
            " never committed (the fake had already moved on)"
        )
    result.restarts = len(kills)
    result.first_poll_delays = delays
    result.problems += problems
    return result


def run_outage(
    settings: SoakSettings, workdir: Path, say: Callable[[str], None] = print
) -> PhaseResult:
    """Phase 2: PostgreSQL stopped for ``outage_seconds`` and started while the daemon runs."""
    name = "outage-postgresql"
    problems: list[str] = []
    with database("postgresql", workdir, name) as url:
        phase = Phase(name, "postgresql", settings, workdir, url)
        try:
            daemon = phase.spawn()
            daemon.wait_for("2 polls", partial(_more_polls, daemon, 1), 300)
            # Polls run back to back: a few seconds into the next one, writes are under way.
            time.sleep(random.Random(settings.seed).uniform(1.0, 3.0))
            down_from = time.time()
            say(f"[{name}] stopping PostgreSQL")
            try:
                pg_cluster("stop")
                deadline = time.monotonic() + settings.outage_seconds
                while time.monotonic() < deadline:
                    if not daemon.alive():
                        problems.append("the daemon exited while PostgreSQL was down")
                        break
                    time.sleep(0.1)
            finally:
                say(f"[{name}] starting PostgreSQL")
                restarting = time.time()
                pg_cluster("start")
                wait_for_postgres(60)
            up_at = time.time()
            say(f"[{name}] PostgreSQL down for {up_at - down_from:.1f} s")
            mark = len(daemon.output())
            daemon.wait_for(
                "2 polls after PostgreSQL returned", partial(_more_polls, daemon, 1, mark), 300
            )
            stop_at = _stop(daemon, problems)
            log = daemon.output()
            not_stored: Counter[str] = Counter()
            unrecorded: Counter[str] = Counter()
            for line in log.splitlines():
                found = _ADDRESS.search(line)
                address = found[0] if found else ""
                if ": not stored: " in line:
                    not_stored[address] += 1
                elif "could not record the failed poll" in line:
                    unrecorded[address] += 1

            def in_outage(counter: Counter[str], why: str) -> Excuse:
                def excuse(address: str, at: float) -> str | None:
                    if down_from - KILL_WINDOW <= at <= up_at + SLACK and counter[address] > 0:
                        counter[address] -= 1
                        return why
                    return None

                return excuse

            def not_stored_row(attempt: AttemptRow) -> str | None:
                error = attempt.error or ""
                during = down_from - KILL_WINDOW <= attempt.finished_at <= up_at + SLACK
                return (
                    "not stored during the outage"
                    if during and error.startswith("not stored: ")
                    else None
                )

            result = phase.result(
                Excuses(
                    stop_times=[stop_at],
                    lost=in_outage(not_stored, "logged as not stored during the outage"),
                    unrecorded=in_outage(unrecorded, "logged as not recorded during the outage"),
                    failure=not_stored_row,
                    # Before the server is started again, only the poll that was under way
                    # when it stopped can send requests (the next polls cannot even start).
                    cut_off=[(daemon.spawned, restarting, down_from)],
                )
            )
        finally:
            phase.close()
    outage_lines = [line for line in log.splitlines() if _OUTAGE_LINE.search(line)]
    result.outage_failures = len(outage_lines)
    if not outage_lines:
        problems.append("no failed poll was logged during the outage")
    assert result.history is not None
    after = [a for a in result.history.attempts if a.started_at > up_at]
    missing = set(phase.world.addresses) - {a.address for a in after}
    if missing or not any(a.ok for a in after):
        problems.append(
            f"polling did not resume after PostgreSQL returned: {len(missing)} addresses not "
            f"polled, {sum(a.ok for a in after)} ok"
        )
    result.notes.append(
        f"{name}: resumed on its own: {sum(a.ok for a in after)} ok address-polls after "
        "PostgreSQL returned"
    )
    result.restarts = 1
    result.notes.append(
        f"{name}: PostgreSQL stopped {down_from - daemon.spawned:.0f} s after the daemon started, "
        f"down {up_at - down_from:.1f} s; {len(outage_lines)} failures logged "
        f"({result.verdict.lost.total()} good answers logged as not stored, "
        f"{result.verdict.unrecorded.total()} failed polls logged as not recorded)"
    )
    result.problems += problems
    return result


# -- the whole run, the secrets scan and the table -------------------------------------------------


PHASES = (
    "steady-sqlite",
    "steady-postgresql",
    "outage-postgresql",
    "kill-sqlite",
    "kill-postgresql",
)


def run_all(
    settings: SoakSettings,
    workdir: Path,
    names: Sequence[str] = PHASES,
    *,
    parallel: bool = False,
    say: Callable[[str], None] = print,
) -> list[PhaseResult]:
    """Run the phases named (in :data:`PHASES` order). With ``parallel``, every phase but the
    outage runs at once (each has its own fake, database and daemon); the outage stops the
    shared PostgreSQL server, so it always runs alone, after the others."""
    unknown = set(names) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases: {sorted(unknown)}")
    jobs: dict[str, Callable[[], PhaseResult]] = {}
    for name in PHASES:
        if name in names and name != "outage-postgresql":
            phase, backend = name.split("-")
            run = run_steady if phase == "steady" else run_kills
            jobs[name] = partial(run, backend, settings, workdir, say)
    results: dict[str, PhaseResult] = {}
    if parallel and len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="soak") as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            results = {name: future.result() for name, future in futures.items()}
    else:
        results = {name: job() for name, job in jobs.items()}
    if "outage-postgresql" in names:
        results["outage-postgresql"] = run_outage(settings, workdir, say)
    return [results[name] for name in PHASES if name in results]


def secrets() -> dict[str, str]:
    return {"API key": API_KEY, "database password": pg_password()}


def find_secrets(texts: dict[str, str]) -> list[str]:
    """Where each secret appears (``"<text name>: <secret name> xN"``); empty when nowhere."""
    found = []
    for where, body in texts.items():
        for what, secret in secrets().items():
            if secret and secret in body:
                found.append(f"{where}: {what} x{body.count(secret)}")
    return found


def repr_texts(config: Path) -> dict[str, str]:
    """The reprs and strs of what the daemon builds from a soak config (with the key set)."""
    from tracker.clock import SystemClock
    from tracker.config import load
    from tracker.service import assembly
    from tracker.sources.budget import RateBudget

    settings = load(config, env={"SPACESCAN_API_KEY": API_KEY})
    clock = SystemClock()
    source = assembly.source(settings, clock, RateBudget(60, clock))
    return {
        "repr(SpacescanSection)": repr(settings.spacescan),
        "repr(SpacescanSource)": repr(source),
        "repr(Settings)": repr(settings),
        "masked database URL": settings.masked_database_url,
    }


def _kib(value: int | None) -> str:
    return f"{value / 1024:.1f}" if value is not None else "–"


def render(results: Sequence[PhaseResult], leaks: int) -> str:
    """The markdown tables of the README's Reliability section."""
    head = (
        "| phase | database | address-polls | ok | failed | cancelled by SIGTERM "
        "| faults injected | snapshots stored | good answers lost¹ | duplicates | mojos of drift "
        "| restarts survived | RSS MiB warm-up → end | over budget | time |"
    )
    lines = [head, "|---|---|" + "---:|" * 11 + "---|---:|"]
    total = Verdict()
    restarts = faults = over = 0
    for r in results:
        v = r.verdict
        rss = f"{_kib(r.rss_warm_kib)} → {_kib(r.rss_end_kib)}" if r.rss_warm_kib else "–"
        name = r.name.rsplit("-", 1)[0]
        cancelled = v.failure_causes["cancelled at stop"]
        lines.append(
            f"| {name} | {r.backend} | {v.attempts:,} | {v.ok:,} | {v.failed - cancelled:,} "
            f"| {cancelled} | {r.faults.total():,} | {v.snapshots:,} | {v.lost.total()} "
            f"| {v.duplicates} "
            f"| {v.drift_mojos} | {r.restarts} | {rss} | {r.over_budget} | {r.seconds:.0f} s |"
        )
        total.attempts += v.attempts
        total.ok += v.ok
        total.failed += v.failed - cancelled
        total.failure_causes["cancelled at stop"] += cancelled
        total.snapshots += v.snapshots
        total.duplicates += v.duplicates
        total.drift_mojos += v.drift_mojos
        total.lost.update(v.lost)
        restarts += r.restarts
        faults += r.faults.total()
        over += r.over_budget
    lines.append(
        f"| **total** | | **{total.attempts:,}** | {total.ok:,} | {total.failed:,} "
        f"| {total.failure_causes['cancelled at stop']} | {faults:,} "
        f"| {total.snapshots:,} | {total.lost.total()} | **{total.duplicates}** "
        f"| **{total.drift_mojos}** | **{restarts}** | | {over} | |"
    )
    kinds = [*TERMINAL_FAULTS, *RETRYABLE_FAULTS]
    fault_lines = [
        "| fault injected | retried | " + " | ".join(r.name for r in results) + " | total |",
        "|---|---|" + "---:|" * (len(results) + 1),
    ]
    for kind in kinds:
        counts = [r.faults[kind] for r in results]
        fault_lines.append(
            f"| {kind} | {'yes' if kind in RETRYABLE_FAULTS else 'no'} | "
            + " | ".join(str(c) for c in counts)
            + f" | {sum(counts)} |"
        )
    fault_lines.append(
        "| **all** | | " + " | ".join(str(r.faults.total()) for r in results) + f" | {faults} |"
    )
    causes: Counter[str] = Counter()
    for r in results:
        causes.update(r.verdict.failure_causes)
    return "\n".join(
        [
            *lines,
            "",
            "¹ Good answers the fake sent that are not in the database. None may be in a steady "
            "phase. In a kill phase, each must have been sent less than 2 s before a SIGKILL (the "
            "process died before its commit); in the outage, each must be logged as `not stored`.",
            "",
            f"Secrets leaked (API key, database password) in everything the run printed, logged "
            f"or stored: **{leaks}**.",
            "",
            *fault_lines,
            "",
            "Failed poll attempts by cause: "
            + ", ".join(f"{cause} {n}" for cause, n in causes.most_common())
            + ".",
        ]
    )
