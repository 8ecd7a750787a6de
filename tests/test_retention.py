"""Retention: the policy grammar, which snapshots it keeps, and that pruning keeps history exact.

The main scenario builds a month of real snapshots (through the snapshot store, so the deltas
are the writer's own), prunes it, and checks what a user relies on: the kept set is what the
policy says, every delta still links consecutive kept snapshots, the deltas sum to last minus
first, reports between kept snapshots and balances at kept snapshots are unchanged, every poll
attempt is still there, a dry run changes nothing and a second prune removes nothing.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text

from tracker.cli import cli
from tracker.clock import SystemClock
from tracker.config import load
from tracker.domain import Asset, Observation, WatchedAddress, compute_deltas
from tracker.errors import ConfigError, TrackerError
from tracker.reports.balances import balances
from tracker.reports.changes import ReportRow, change_report
from tracker.reports.selection import Selection
from tracker.retention import policy as retention_policy
from tracker.retention.policy import Policy, PolicyError, Rule, keep_flags, parse_policy
from tracker.retention.prune import PruneSummary, RetentionError, prune
from tracker.service.assembly import _retention_jobs
from tracker.service.daemon import Daemon, Job
from tracker.service.poller import PollSummary
from tracker.store import engine as engines
from tracker.store.models import Address, Delta, PollAttempt, Snapshot, SnapshotBalance
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

ALICE, BOB = make_address(31), make_address(32)
CAT_A, CAT_B = make_asset(0xA), make_asset(0xB)
INFOS = {
    "xch": Asset("xch", "Chia", "XCH"),
    CAT_A: Asset(CAT_A, "Alpha", "AAA"),
    CAT_B: Asset(CAT_B, "Beta", "BBB"),
}
XCH = 10**12


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the policy grammar ------------------------------------------------------------------------


def test_policies_parse_and_print_back() -> None:
    policy = parse_policy("all:7d,hourly:90d,daily:forever")
    assert policy == Policy(
        (
            Rule("all", timedelta(days=7)),
            Rule("hourly", timedelta(days=90)),
            Rule("daily", None),
        )
    )
    assert str(policy) == "all:7d,hourly:90d,daily:forever"
    assert (
        str(parse_policy(" ALL:36h , weekly:2w,monthly:520w "))
        == "all:36h,weekly:14d,monthly:3640d"
    )
    assert str(parse_policy("daily:48h")) == "daily:2d"
    assert parse_policy("all:forever").rules == (Rule("all", None),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty retention policy"),
        (" , ", "empty retention policy"),
        ("all", "'all': expected tier:age"),
        ("all:7d,,daily:forever", "'': expected tier:age"),
        ("yearly:5w", "'yearly:5w': unknown tier 'yearly'"),
        ("all:7d,hourly:90x", "'hourly:90x': the age must be hours, days or weeks"),
        ("all:0d", "'all:0d': the age must be"),
        ("all:-1d", "'all:-1d': the age must be"),
        ("all:1.5d", "'all:1.5d': the age must be"),
        ("all:99999999999999999999w", "the age is too long"),
        ("daily:forever,weekly:30d", "'weekly:30d': comes after 'daily:forever'"),
        ("daily:7d,hourly:30d", "'hourly:30d': tiers go from finer to coarser"),
        ("daily:7d,daily:30d", "'daily:30d': tiers go from finer to coarser"),
        ("all:7d,hourly:7d", "'hourly:7d': must reach further back than 'all:7d'"),
        ("all:2w,hourly:10d", "'hourly:10d': must reach further back than 'all:2w'"),
    ],
)
def test_bad_policies_are_one_line_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- which snapshots a policy keeps (pure) -----------------------------------------------------


def test_tiers_keep_the_last_snapshot_of_each_hour_and_day() -> None:
    now = utc("2026-05-10T12:00")
    times = [
        utc("2026-04-01T00:00"),  # first: always kept, although beyond the last tier
        utc("2026-04-02T00:00"),  # beyond daily:30d: removed
        utc("2026-04-20T08:00"),  # daily tier: the last of 04-20 is kept
        utc("2026-04-20T23:59"),
        utc("2026-05-08T10:05"),  # hourly tier: last of 10:xx kept
        utc("2026-05-08T10:55"),
        utc("2026-05-08T11:00"),
        utc("2026-05-09T12:00"),  # exactly 1 day old: no longer "younger than 1d"
        utc("2026-05-09T12:01"),  # all tier: everything
        utc("2026-05-09T12:02"),
    ]
    flags = keep_flags(times, parse_policy("all:1d,hourly:7d,daily:30d"), now)
    assert [t for t, keep in zip(times, flags, strict=True) if keep] == [
        utc("2026-04-01T00:00"),
        utc("2026-04-20T23:59"),
        utc("2026-05-08T10:55"),
        utc("2026-05-08T11:00"),
        utc("2026-05-09T12:00"),
        utc("2026-05-09T12:01"),
        utc("2026-05-09T12:02"),
    ]


def test_the_latest_snapshot_is_kept_even_when_older_than_every_tier() -> None:
    times = [utc("2020-01-01"), utc("2020-01-02"), utc("2020-01-03")]
    assert keep_flags(times, parse_policy("all:1d"), utc("2026-01-01")) == [True, False, True]
    assert keep_flags(times[:1], parse_policy("all:1d"), utc("2026-01-01")) == [True]
    assert keep_flags([], parse_policy("all:1d"), utc("2026-01-01")) == []


def test_a_week_across_two_months_keeps_each_months_end() -> None:
    # Mon 2026-01-26 .. Sun 2026-02-01: the last of January must stay for monthly reports.
    times = [utc("2026-01-01"), utc("2026-01-27"), utc("2026-01-31T20:00"), utc("2026-02-01")]
    times.append(utc("2026-06-01"))
    flags = keep_flags(times, parse_policy("weekly:forever"), utc("2026-06-02"))
    assert flags == [True, False, True, True, True]


def test_an_age_at_a_tier_boundary_belongs_to_the_older_tier() -> None:
    now = utc("2026-03-01T00:00")
    times = [utc("2026-01-01"), utc("2026-02-22T00:00"), utc("2026-02-22T00:01"), now]
    # 2026-02-22T00:00 is exactly 7d old: not younger than 7d, so beyond all:7d (removed).
    assert keep_flags(times, parse_policy("all:7d"), now) == [True, False, True, True]


policies = st.builds(
    lambda tiers, hours, forever: Policy(
        tuple(
            Rule(tier, None if forever and i == len(tiers) - 1 else timedelta(hours=h))
            for i, (tier, h) in enumerate(zip(tiers, hours, strict=False))
        )
    ),
    st.lists(st.sampled_from(retention_policy.TIERS), min_size=1, max_size=5, unique=True).map(
        lambda tiers: sorted(tiers, key=retention_policy.TIERS.index)
    ),
    st.lists(st.integers(1, 24 * 400), min_size=5, max_size=5, unique=True).map(sorted),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    gaps=st.lists(st.integers(1, 5 * 86400), min_size=1, max_size=60),
    ahead=st.integers(-86400, 500 * 86400),
)
def test_keep_flags_properties(policy: Policy, gaps: list[int], ahead: int) -> None:
    assert parse_policy(str(policy)) == policy
    times = list(
        itertools.accumulate((timedelta(seconds=g) for g in gaps), initial=utc("2025-01-01"))
    )
    now = times[-1] + timedelta(seconds=ahead)
    flags = keep_flags(times, policy, now)
    assert flags[0]
    assert flags[-1]
    kept = [t for t, keep in zip(times, flags, strict=True) if keep]
    # Pruning what was kept keeps it all: a second prune at the same moment removes nothing.
    assert all(keep_flags(kept, policy, now))
    first = policy.rules[0]
    for moment, keep in zip(times, flags, strict=True):
        if first.tier == "all" and (first.age is None or now - moment < first.age):
            assert keep
        last = policy.rules[-1].age
        if last is not None and now - moment >= last and moment not in (times[0], times[-1]):
            assert not keep


# --- a month of history, pruned ----------------------------------------------------------------

T0 = utc("2026-01-24T00:00")
NOW = utc("2026-02-23T12:00")
POLICY = "all:2d,hourly:7d,daily:21d,weekly:forever"
EVERY = timedelta(minutes=40)


def build_history(engine: Engine) -> SnapshotStore:
    """ALICE and BOB every 40 minutes for 30 days, balances moving, a failed poll now and then.

    CAT_A appears, leaves and comes back; CAT_B changes rarely; XCH often. BOB polls 7 minutes
    after ALICE. About 1,080 snapshots per address.
    """
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ALICE, "alice"), WatchedAddress(BOB, "bob")], T0)
    rng = random.Random(20260124)
    held = {ALICE: {"xch": 5 * XCH, CAT_B: 1000}, BOB: {"xch": 7 * XCH}}
    step = 0
    while (when := T0 + step * EVERY) < NOW - timedelta(minutes=30):
        ready = []
        for address, offset in ((ALICE, 0), (BOB, 7)):
            taken = when + timedelta(minutes=offset)
            if step % 97 == 13:
                store.record_failure(address, taken, taken, "HTTP 503 (after 4 attempts)")
                continue
            balances = held[address]
            if rng.random() < 0.3:
                balances["xch"] = max(0, balances["xch"] + rng.randrange(-XCH, XCH))
            if rng.random() < 0.05:
                balances[CAT_B] = rng.randrange(0, 5000)
            day = (taken - T0).days
            if day in (3, 12, 22, 29) and CAT_A not in balances:
                balances[CAT_A] = rng.randrange(1, 10**6)
            elif day in (8, 17, 25) and CAT_A in balances:
                del balances[CAT_A]
            observed = {asset: mojos for asset, mojos in balances.items() if mojos}
            ready.append(Observation(address, taken, taken, observed, INFOS))
        store.record(ready)  # as a poll hands them over: together
        step += 1
    return store


def snapshots_of(engine: Engine, address: str) -> list[tuple[int, datetime]]:
    with engine.connect() as connection:
        return [
            (row.id, row.taken_at)
            for row in connection.execute(
                select(Snapshot.id, Snapshot.taken_at)
                .join(Address, Address.id == Snapshot.address_id)
                .where(Address.address == address)
                .order_by(Snapshot.taken_at)
            )
        ]


def check_chain(engine: Engine, address: str) -> None:
    """Every delta links a snapshot to the one just before it, and is exactly their difference."""
    snaps = snapshots_of(engine, address)
    ids = [sid for sid, _ in snaps]
    balances: dict[int, dict[int, int]] = defaultdict(dict)
    deltas: dict[int, dict[int, tuple[int, int, int, int]]] = defaultdict(dict)
    with engine.connect() as connection:
        for sid, asset, mojos in connection.execute(
            select(
                SnapshotBalance.snapshot_id, SnapshotBalance.asset_id, SnapshotBalance.balance_mojos
            ).where(SnapshotBalance.snapshot_id.in_(ids))
        ):
            balances[sid][asset] = mojos
        for row in connection.execute(select(Delta).where(Delta.snapshot_id.in_(ids))):
            deltas[row.snapshot_id][row.asset_id] = (
                row.previous_snapshot_id,
                row.previous_balance_mojos,
                row.balance_mojos,
                row.delta_mojos,
            )
    assert not deltas.get(ids[0]), "the baseline has no deltas"
    sums: dict[int, int] = defaultdict(int)
    for previous, current in itertools.pairwise(ids):
        want = {
            d.asset: (previous, d.previous_mojos, d.mojos, d.delta_mojos)
            for d in compute_deltas(balances[previous], balances[current])
        }
        assert deltas.get(current, {}) == want
        for asset, (_, _, _, delta) in want.items():
            sums[asset] += delta
    first, last = balances[ids[0]], balances[ids[-1]]
    for asset in set(first) | set(last) | set(sums):
        assert sums[asset] == last.get(asset, 0) - first.get(asset, 0)


def check_no_orphans(engine: Engine) -> None:
    with engine.connect() as connection:
        for query in (
            "SELECT count(*) FROM deltas d LEFT JOIN snapshots p ON p.id = d.previous_snapshot_id"
            " WHERE p.id IS NULL",
            "SELECT count(*) FROM deltas d JOIN snapshots s ON s.id = d.snapshot_id"
            " JOIN snapshots p ON p.id = d.previous_snapshot_id"
            " WHERE p.address_id <> s.address_id OR p.taken_at >= s.taken_at",
            "SELECT count(*) FROM snapshot_balances b LEFT JOIN snapshots s"
            " ON s.id = b.snapshot_id WHERE s.id IS NULL",
            "SELECT count(*) FROM poll_attempts a LEFT JOIN snapshots s ON s.id = a.snapshot_id"
            " WHERE a.snapshot_id IS NOT NULL AND s.id IS NULL",
        ):
            assert connection.execute(text(query)).scalar_one() == 0, query


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("addresses", "assets", "snapshots", "snapshot_balances", "deltas", "poll_attempts")
    with engine.connect() as connection:
        return {
            table: sorted(
                (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))),
                key=repr,
            )
            for table in tables
        }


def expected_kept(times: list[datetime]) -> list[datetime]:
    """POLICY, written out independently of keep_flags."""
    chosen: dict[tuple[object, ...], datetime] = {}
    kept = {times[0], times[-1]}
    for moment in times:
        age = NOW - moment
        if age < timedelta(days=2):
            kept.add(moment)
            continue
        if age < timedelta(days=7):
            key: tuple[object, ...] = ("hour", moment.replace(minute=0, second=0))
        elif age < timedelta(days=21):
            key = ("day", moment.date())
        else:
            monday = moment.date() - timedelta(days=moment.weekday())
            key = ("week", monday, moment.month)
        chosen[key] = max(chosen.get(key, moment), moment)
    return sorted(kept | set(chosen.values()))


def essence(rows: list[ReportRow]) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    """A report's balances and change; rows that show nothing (0 → 0) are left out.

    ``changes`` counts the stored deltas, which pruning merges, so it is compared separately.
    """
    return {
        (r.address, r.asset_id, r.period, r.start_at, r.end_at): (
            r.start_balance_mojos,
            r.end_balance_mojos,
            r.change_mojos,
        )
        for r in rows
        if r.start_balance_mojos or r.end_balance_mojos or r.change_mojos
    }


def test_a_month_pruned_stays_exact(engine: Engine) -> None:
    build_history(engine)
    policy = parse_policy(POLICY)
    before = {address: snapshots_of(engine, address) for address in (ALICE, BOB)}
    for address in (ALICE, BOB):
        check_chain(engine, address)
    with engine.connect() as connection:
        attempts = connection.execute(select(func.count()).select_from(PollAttempt)).scalar_one()

    # Windows whose ends are kept snapshots, in every tier, and the reports over them.
    kept_times = {a: expected_kept([t for _, t in before[a]]) for a in (ALICE, BOB)}
    sample = [kept_times[ALICE][i] for i in range(0, len(kept_times[ALICE]), 23)]
    windows: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    windows += [(a, b) for a, b in itertools.combinations(sample, 2)][::3]
    windows += [(None, sample[len(sample) // 2]), (sample[2], None)]
    alice = Selection(address=ALICE)
    reports_before = [change_report(engine, s, u, alice) for s, u in windows]
    recent = NOW - timedelta(days=2) + timedelta(minutes=1)
    recent_before = change_report(engine, since=recent)
    by_period = {p: change_report(engine, period=p) for p in ("week", "month")}
    # The daily tier starts at 2026-02-02T12:00; the last snapshots at or before this are the
    # last of 2026-02-02, kept. (Not 02-03T00:00: ALICE has a snapshot at exactly midnight,
    # which belongs to 02-03 and is not its last, so a window starting there is not covered.)
    days_since = utc("2026-02-02T23:59:59")
    daily_before = change_report(engine, since=days_since, period="day")
    total_before = change_report(engine, since=days_since, period="day", total=True)
    balances_before = {t: balances(engine, alice, at=t) for t in sample}

    # A dry run counts and changes nothing.
    untouched = dump(engine)
    dry = prune(engine, policy, NOW, dry_run=True)
    assert dump(engine) == untouched
    assert dry.dry_run
    assert dry.line().startswith("would remove ")

    summary = prune(engine, policy, NOW, batch_size=50)
    assert summary.line().startswith(f"removed {summary.snapshots} snapshots, ")
    assert (dry.snapshots, dry.balances, dry.deltas, dry.merged, dry.kept) == (
        summary.snapshots,
        summary.balances,
        summary.deltas,
        summary.merged,
        summary.kept,
    )
    assert summary.addresses == 2
    assert not summary.stopped

    # The kept set is exactly the policy's, with the first and latest of each address.
    for address in (ALICE, BOB):
        after = snapshots_of(engine, address)
        assert [t for _, t in after] == kept_times[address]
        assert after[0] == before[address][0]
        assert after[-1] == before[address][-1]
        check_chain(engine, address)
    check_no_orphans(engine)
    removed = sum(len(before[a]) for a in before) - sum(len(kept_times[a]) for a in before)
    assert summary.snapshots == removed
    assert summary.kept == sum(len(kept_times[a]) for a in before)
    assert removed > 1500  # most of the month is gone

    # Every poll attempt is still there; those of removed snapshots no longer name one.
    with engine.connect() as connection:
        rows = connection.execute(select(PollAttempt.ok, PollAttempt.snapshot_id)).all()
    assert len(rows) == attempts
    assert sum(1 for ok, sid in rows if ok and sid is not None) == summary.kept
    assert sum(1 for ok, _ in rows if ok) == sum(len(before[a]) for a in before)

    # Reports between kept snapshots, and balances at them, are unchanged.
    for (since, until), old in zip(windows, reports_before, strict=True):
        new = change_report(engine, since, until, alice)
        assert essence(new) == essence(old), (since, until)
        assert sum(r.changes for r in new) <= sum(r.changes for r in old)
    assert change_report(engine, since=recent) == recent_before  # even `changes`
    for period, old in by_period.items():
        assert essence(change_report(engine, period=period)) == essence(old), period
    assert essence(change_report(engine, since=days_since, period="day")) == essence(daily_before)
    assert essence(change_report(engine, since=days_since, period="day", total=True)) == essence(
        total_before
    )
    for moment, old_balances in balances_before.items():
        assert balances(engine, alice, at=moment) == old_balances
    # The view users sum over still adds up to last minus first.
    with engine.connect() as connection:
        sums = dict(
            connection.execute(
                text(
                    "SELECT address || ':' || asset_id, sum(delta_mojos) FROM balance_changes"
                    " GROUP BY address, asset_id"
                )
            ).all()
        )
    whole = change_report(engine)
    assert {f"{r.address}:{r.asset_id}": r.change_mojos for r in whole if r.changes} == sums

    # Idempotent: the same policy at the same moment removes nothing more.
    pruned = dump(engine)
    again = prune(engine, policy, NOW)
    assert (again.snapshots, again.balances, again.deltas, again.merged) == (0, 0, 0, 0)
    assert dump(engine) == pruned

    # Later, with more history gone to coarser tiers, the chain still holds.
    later = prune(engine, policy, NOW + timedelta(days=10), batch_size=7)
    assert later.snapshots > 0
    for address in (ALICE, BOB):
        check_chain(engine, address)
    check_no_orphans(engine)


def test_selection_and_stop(engine: Engine) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ALICE, "alice"), WatchedAddress(BOB, "bob")], T0)
    for hour in range(48):
        for n, address in enumerate((ALICE, BOB)):
            when = T0 + timedelta(hours=hour, minutes=n)
            balances = {"xch": XCH + hour // 5 + n}
            store.record_one(Observation(address, when, when, balances, INFOS))
    policy = parse_policy("daily:forever")
    only_bob = prune(engine, policy, T0 + timedelta(days=3), Selection(label="bob"))
    assert (only_bob.addresses, only_bob.snapshots, only_bob.kept) == (1, 45, 3)
    assert len(snapshots_of(engine, ALICE)) == 48
    check_chain(engine, BOB)

    stopped = prune(engine, policy, T0 + timedelta(days=3), should_stop=lambda: True)
    assert stopped.stopped
    assert stopped.snapshots == 0
    assert "stopped early" in stopped.line()
    assert len(snapshots_of(engine, ALICE)) == 48

    with pytest.raises(TrackerError, match="unknown address"):
        prune(engine, policy, NOW, Selection(address=make_address(99)))


def test_prune_while_a_writer_appends(engine: Engine) -> None:
    """The daemon keeps writing during a prune: both take turns per address, nothing breaks."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ALICE, None)], T0)
    for minute in range(0, 600, 5):
        when = T0 + timedelta(minutes=minute)
        balances = {"xch": XCH + minute // 15, CAT_A: 1 + minute // 60}
        store.record_one(Observation(ALICE, when, when, balances, INFOS))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(60):
                when = T0 + timedelta(hours=10, minutes=n + 1)
                balances = {"xch": XCH + n % 7}
                store.record_one(Observation(ALICE, when, when, balances, INFOS))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    # The writer's snapshots are all under an hour old: kept, whenever the plan sees them.
    summary = prune(
        engine, parse_policy("all:1h,hourly:forever"), T0 + timedelta(hours=11), batch_size=2
    )
    writer.join()
    assert not errors
    assert summary.snapshots == 120 - 11  # the first, and the last of each of the 10 hours
    assert len(snapshots_of(engine, ALICE)) == 11 + 60
    check_chain(engine, ALICE)
    check_no_orphans(engine)


def test_two_prunes_at_once_leave_a_consistent_history(engine: Engine) -> None:
    """`tracker prune` while the daemon's daily prune runs: each either finishes or says so."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ALICE, None)], T0)
    for minute in range(0, 24 * 60, 10):
        when = T0 + timedelta(minutes=minute)
        store.record_one(Observation(ALICE, when, when, {"xch": XCH + minute // 25}, INFOS))
    policy = parse_policy("hourly:forever")
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(prune(engine, policy, T0 + timedelta(days=2), batch_size=3))
        except RetentionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2
    done = [o for o in outcomes if isinstance(o, PruneSummary)]
    assert done, outcomes
    assert sum(summary.snapshots for summary in done) <= 144 - 25
    assert [t for _, t in snapshots_of(engine, ALICE)] == [T0] + [
        T0 + timedelta(hours=hour, minutes=50) for hour in range(24)
    ]
    check_chain(engine, ALICE)
    check_no_orphans(engine)


_serial = itertools.count(1000)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=policies,
    steps=st.lists(
        st.tuples(
            st.integers(60, 3 * 86400),
            st.fixed_dictionaries(
                {}, optional={"xch": st.integers(0, 3), CAT_A: st.integers(0, 3), CAT_B: st.just(5)}
            ),
        ),
        min_size=1,
        max_size=16,
    ),
    ahead=st.integers(0, 90 * 86400),
    batch_size=st.integers(1, 4),
)
def test_random_histories_stay_exact(
    engine: Engine,
    policy: Policy,
    steps: list[tuple[int, dict[str, int]]],
    ahead: int,
    batch_size: int,
) -> None:
    address = make_address(next(_serial))
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(address, None)], T0)
    when = T0
    for gap, held in steps:
        when += timedelta(seconds=gap)
        observed = {asset: mojos for asset, mojos in held.items() if mojos}
        store.record_one(Observation(address, when, when, observed, INFOS))
    before = snapshots_of(engine, address)
    now = when + timedelta(seconds=ahead)
    summary = prune(engine, policy, now, Selection(address=address), batch_size=batch_size)
    flags = keep_flags([t for _, t in before], policy, now)
    after = snapshots_of(engine, address)
    assert after == [snap for snap, keep in zip(before, flags, strict=True) if keep]
    assert summary.snapshots == len(before) - len(after)
    check_chain(engine, address)
    with engine.connect() as connection:
        attempts = connection.execute(
            select(func.count())
            .select_from(PollAttempt)
            .join(Address, Address.id == PollAttempt.address_id)
            .where(Address.address == address)
        ).scalar_one()
    assert attempts == len(before)


# --- configuration, CLI and the daemon's daily job ---------------------------------------------


def config_file(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "tracker.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n{extra}'
        f'[[addresses]]\naddress = "{ALICE}"\nlabel = "alice"\n'
        f'[[addresses]]\naddress = "{BOB}"\nlabel = "bob"\n'
    )
    return path


def test_retention_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    plain = load(config_file(tmp_path, url), {})
    assert plain.retention.keep is None
    assert plain.retention_policy is None
    good = load(config_file(tmp_path, url, '[retention]\nkeep = "all:7d,daily:forever"\n'), {})
    assert good.retention_policy == parse_policy("all:7d,daily:forever")
    path = config_file(tmp_path, url, '[retention]\nkeep = "all:7d,hourly:90x"\n')
    with pytest.raises(ConfigError) as info:
        load(path, {})
    message = str(info.value)
    assert message.startswith(f"{path}: retention.keep: 'hourly:90x': the age must be")
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"retention\.kept: unknown key"):
        load(config_file(tmp_path, url, '[retention]\nkept = "all:7d"\n'), {})


def write_cli_history(engine: Engine) -> None:
    """Hourly snapshots of both addresses over the last 10 days (the CLI prunes as of now)."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ALICE, "alice"), WatchedAddress(BOB, "bob")], T0)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=10)
    for hour in range(10 * 24):
        store.record(
            [
                Observation(address, when, when, {"xch": hour // 3}, INFOS)
                for n, address in enumerate((ALICE, BOB))
                for when in [start + timedelta(hours=hour, minutes=n)]
            ]
        )


@pytest.fixture
def cli_db_url(seeded: Callable[[str, Callable[[Engine], None]], str]) -> str:
    return seeded("retention-cli", write_cli_history)


@pytest.fixture
def cli_engine(cli_db_url: str) -> Iterator[Engine]:
    engine = engines.create(cli_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def cli_history(cli_db_url: str, tmp_path: Path) -> Path:
    return config_file(tmp_path, cli_db_url)


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_prune(cli_history: Path, cli_engine: Engine) -> None:
    code, out, err = invoke(cli_history, "prune", "--keep", "all:2d,daily:forever", "--dry-run")
    assert (code, err) == (0, "")
    assert out.startswith("would remove ")
    assert out.endswith("(dry run: nothing was changed)\n")
    assert out.count("\n") == 1
    assert len(snapshots_of(cli_engine, ALICE)) == 240

    code, out, err = invoke(
        cli_history, "prune", "--keep", "all:2d,daily:forever", "--label", "bob"
    )
    assert code == 2  # no terminal to ask on, and no --yes
    assert "refusing without a terminal" in err
    assert len(snapshots_of(cli_engine, BOB)) == 240  # nothing changed

    code, out, err = invoke(
        cli_history, "prune", "--keep", "all:2d,daily:forever", "--label", "bob", "--yes"
    )
    assert (code, err) == (0, "")
    assert out.startswith("removed ")
    assert " from 1 address; " in out
    assert len(snapshots_of(cli_engine, ALICE)) == 240
    assert 48 < len(snapshots_of(cli_engine, BOB)) < 70
    check_chain(cli_engine, BOB)

    code, out, _ = invoke(
        cli_history, "prune", "--keep", "all:2d,daily:forever", "--label", "bob", "-y"
    )
    assert (code, out.split(",")[0]) == (0, "removed 0 snapshots")


def test_cli_prune_uses_the_config_policy(
    cli_history: Path, cli_engine: Engine, cli_db_url: str
) -> None:
    config = config_file(cli_history.parent, cli_db_url, '[retention]\nkeep = "daily:forever"\n')
    code, out, _ = invoke(config, "prune", "--address", "alice", "--yes")
    assert code == 0
    assert out.startswith("removed ")
    assert 10 <= len(snapshots_of(cli_engine, ALICE)) <= 12  # the last of each day, and the first
    assert len(snapshots_of(cli_engine, BOB)) == 240


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "tracker: error: no retention policy: give --keep POLICY"),
        (["--keep", "all:7d,hourly:90x"], 2, "tracker: error: --keep: 'hourly:90x': the age"),
        (["--keep", "daily:1d,all:2d"], 2, "tracker: error: --keep: 'all:2d': tiers go from"),
        (["--keep", "all:1d", "--address", make_address(99)], 1, "tracker: error: unknown address"),
        (["--keep", "all:1d", "--label", "nobody"], 1, "tracker: error: no address has the label"),
    ],
)
def test_cli_prune_errors_are_one_line(
    cli_history: Path, cli_engine: Engine, args: list[str], code: int, message: str
) -> None:
    got, out, err = invoke(cli_history, "prune", *args)
    assert got == code
    assert out == ""
    assert err.startswith(message), err
    assert err.count("\n") == 1
    assert len(snapshots_of(cli_engine, ALICE)) == 240


def test_the_daemon_job_prunes_once_a_day(
    cli_history: Path, cli_engine: Engine, cli_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert _retention_jobs(load(cli_history, {}), cli_engine, SystemClock()) == []
    config = config_file(cli_history.parent, cli_db_url, '[retention]\nkeep = "all:1d,daily:9d"\n')
    with caplog.at_level(logging.INFO, logger="tracker"):
        (job,) = _retention_jobs(load(config, {}), cli_engine, SystemClock())
        assert (job.name, job.every_seconds, job.at_start) == ("retention", 86400, False)
        caplog.clear()
        job.run()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("retention all:1d,daily:9d: removed ")
    for address in (ALICE, BOB):
        assert len(snapshots_of(cli_engine, address)) < 60
        check_chain(cli_engine, address)


class _NoPolls:
    phase = "idle"

    def poll(self, addresses: object) -> PollSummary:
        return PollSummary((), 0.0)


def test_a_job_without_at_start_runs_after_its_interval() -> None:
    runs: list[float] = []
    clock = SystemClock()
    daemon: Daemon

    def job() -> None:
        runs.append(1)
        daemon.stop()

    daemon = Daemon(
        _NoPolls(),
        [],
        3600,
        clock,
        jobs=[Job("maintenance", 1, job)],
    )
    stopper = threading.Timer(15.0, daemon.stop)  # a job that never runs fails, not hangs
    stopper.start()
    try:
        assert daemon.run()
    finally:
        stopper.cancel()
    assert runs == [1]
