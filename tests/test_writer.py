"""The snapshot writer against real databases: what a poll leaves behind, and what it must not."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from tracker.domain import Observation, WatchedAddress
from tracker.errors import StoreError, WriteRefused
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.models import Asset, Delta, PollAttempt, Snapshot, SnapshotBalance
from tracker.store.writer import SnapshotStore, Stored

from support import make_address, make_asset
from support.clock import FakeClock
from support.databases import postgres_database
from support.history import observe as observed
from support.pgproxy import CommitCutter

ADDRESS = make_address(1)
OTHER = make_address(2)
CAT_A, CAT_B = make_asset(0xA), make_asset(0xB)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def observe(
    at: datetime, balances: dict[str, int], address: str = ADDRESS, **names: Any
) -> Observation:
    return observed(
        address,
        at,
        balances,
        {asset: (names.get("name"), names.get("symbol")) for asset in balances if names},
    )


@pytest.fixture
def store(engine: Engine) -> SnapshotStore:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ADDRESS, "main"), WatchedAddress(OTHER, None)], T0)
    return store


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def deltas(engine: Engine) -> list[tuple[str, int, int, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                Asset.asset_id, Delta.previous_balance_mojos, Delta.balance_mojos, Delta.delta_mojos
            )
            .join(Asset, Asset.id == Delta.asset_id)
            .order_by(Asset.asset_id, Delta.taken_at)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def chain(engine: Engine, address: str = ADDRESS) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The address's snapshots (id, xch balance) in time order, and its deltas' links."""
    with engine.connect() as connection:
        snapshots = connection.execute(
            text(
                "SELECT s.id, b.balance_mojos FROM snapshots s"
                " JOIN snapshot_balances b ON b.snapshot_id = s.id"
                " JOIN addresses a ON a.id = s.address_id WHERE a.address = :address"
                " ORDER BY s.taken_at"
            ),
            {"address": address},
        ).all()
        links = connection.execute(
            text(
                "SELECT d.previous_snapshot_id, d.snapshot_id, d.previous_balance_mojos,"
                " d.delta_mojos FROM deltas d JOIN addresses a ON a.id = d.address_id"
                " WHERE a.address = :address"
            ),
            {"address": address},
        ).all()
    return list(snapshots), sorted(tuple(row) for row in links)


def exact_chain(snapshots: list[Any]) -> list[tuple[Any, ...]]:
    """The deltas a history must have: one per change between consecutive snapshots."""
    return sorted(
        (before.id, after.id, before.balance_mojos, after.balance_mojos - before.balance_mojos)
        for before, after in itertools.pairwise(snapshots)
        if after.balance_mojos != before.balance_mojos
    )


def test_first_snapshot_is_a_baseline(store: SnapshotStore, engine: Engine) -> None:
    stored = store.record_one(observe(T0, {"xch": 10**12, CAT_A: 1500}))
    assert stored.baseline
    assert stored.deltas == []
    assert count(engine, Snapshot) == 1
    assert count(engine, SnapshotBalance) == 2
    assert count(engine, Delta) == 0
    with engine.connect() as connection:
        attempt = connection.execute(select(PollAttempt)).one()
    assert attempt.ok
    assert attempt.snapshot_id == stored.snapshot_id
    assert attempt.error is None


def test_deltas_record_changed_appeared_and_disappeared(
    store: SnapshotStore, engine: Engine
) -> None:
    store.record_one(observe(T0, {"xch": 100, CAT_A: 5, CAT_B: 7}))
    stored = store.record_one(
        observe(T0 + timedelta(minutes=5), {"xch": 100, CAT_A: 9, make_asset(0xC): 1})
    )
    assert not stored.baseline
    assert deltas(engine) == sorted(
        [(CAT_A, 5, 9, 4), (CAT_B, 7, 0, -7), (make_asset(0xC), 0, 1, 1)]
    )
    unchanged = store.record_one(
        observe(T0 + timedelta(minutes=10), {"xch": 100, CAT_A: 9, make_asset(0xC): 1})
    )
    assert unchanged.deltas == []
    assert count(engine, Delta) == 3


def test_addresses_have_separate_histories(store: SnapshotStore, engine: Engine) -> None:
    store.record_one(observe(T0, {"xch": 1}))
    other = store.record_one(observe(T0 + timedelta(seconds=1), {"xch": 50}, address=OTHER))
    assert other.baseline
    store.record_one(observe(T0 + timedelta(minutes=5), {"xch": 2}))
    assert deltas(engine) == [("xch", 1, 2, 1)]


def test_a_failed_poll_leaves_an_attempt_and_no_snapshot(
    store: SnapshotStore, engine: Engine
) -> None:
    store.record_one(observe(T0, {"xch": 100}))
    store.record_failure(
        ADDRESS, T0 + timedelta(minutes=5), T0 + timedelta(minutes=5, seconds=3), "HTTP 503"
    )
    assert count(engine, Snapshot) == 1
    store.record_one(observe(T0 + timedelta(minutes=10), {"xch": 150}))
    assert deltas(engine) == [("xch", 100, 150, 50)]
    with engine.connect() as connection:
        attempts = connection.execute(
            select(PollAttempt.ok, PollAttempt.error).order_by(PollAttempt.id)
        ).all()
    assert [tuple(a) for a in attempts] == [(True, None), (False, "HTTP 503"), (True, None)]


def test_snapshot_and_deltas_are_all_or_nothing(store: SnapshotStore, engine: Engine) -> None:
    store.record_one(observe(T0, {"xch": 100, CAT_A: 1}))

    def fail_on_deltas(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO deltas" in statement:
            raise RuntimeError("database died mid-snapshot")

    event.listen(engine, "before_cursor_execute", fail_on_deltas)
    try:
        with pytest.raises(RuntimeError, match="mid-snapshot"):
            store.record_one(observe(T0 + timedelta(minutes=5), {"xch": 200, make_asset(7): 3}))
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_deltas)
    assert (count(engine, Snapshot), count(engine, SnapshotBalance), count(engine, Delta)) == (
        1,
        2,
        0,
    )
    assert count(engine, PollAttempt) == 1
    assert count(engine, Asset) == 2, "the new asset was rolled back with the snapshot"
    # The store is still usable, and the next snapshot is compared with the last stored one.
    store.record_one(observe(T0 + timedelta(minutes=10), {"xch": 300, make_asset(7): 3}))
    assert deltas(engine) == sorted(
        [(CAT_A, 1, 0, -1), (make_asset(7), 0, 3, 3), ("xch", 100, 300, 200)]
    )


def test_an_older_snapshot_is_inserted_where_it_belongs(
    store: SnapshotStore, engine: Engine
) -> None:
    """A clock set back, or two polls at once: the older answer is kept, and the chain too."""
    store.record_one(observe(T0, {"xch": 1}))
    store.record_one(observe(T0 + timedelta(hours=2), {"xch": 3}))
    older = store.record_one(observe(T0 + timedelta(hours=1), {"xch": 2}))
    assert older.out_of_order
    assert [(d.asset, d.previous_mojos, d.mojos) for d in older.deltas] == [("xch", 1, 2)]
    snapshots, links = chain(engine)
    assert [row.balance_mojos for row in snapshots] == [1, 2, 3]
    assert links == exact_chain(snapshots)
    before_all = store.record_one(observe(T0 - timedelta(hours=1), {"xch": 1}))
    assert before_all.baseline
    snapshots, links = chain(engine)
    assert [row.balance_mojos for row in snapshots] == [1, 1, 2, 3]
    assert links == exact_chain(snapshots)


def test_the_same_poll_stored_twice_is_recognised(store: SnapshotStore, engine: Engine) -> None:
    first = store.record_one(observe(T0, {"xch": 1}))
    second = store.record_one(observe(T0 + timedelta(hours=1), {"xch": 5, CAT_A: 2}))
    again = store.record_one(observe(T0 + timedelta(hours=1), {"xch": 5, CAT_A: 2}))
    assert again.recovered
    assert again.snapshot_id == second.snapshot_id
    assert sorted((d.asset, d.delta_mojos) for d in again.deltas) == [(CAT_A, 2), ("xch", 4)]
    assert count(engine, Snapshot) == 2
    assert count(engine, PollAttempt) == 2  # nothing written the second time
    assert first.snapshot_id != second.snapshot_id
    with pytest.raises(WriteRefused, match="other balances"):
        store.record_one(observe(T0 + timedelta(hours=1), {"xch": 6}))


@pytest.mark.postgres
def test_a_lost_commit_acknowledgement_is_recognised(templates: Any) -> None:
    """The server committed, the client never heard: one snapshot, one attempt, its deltas."""
    with postgres_database(templates.postgres()) as url:
        proxy = CommitCutter(url)
        engine = engines.create(proxy.url)
        try:
            store = SnapshotStore(engine)
            store.sync_addresses([WatchedAddress(ADDRESS, None), WatchedAddress(OTHER, None)], T0)
            store.record([observe(T0, {"xch": 1}), observe(T0, {"xch": 9}, address=OTHER)])
            proxy.armed.set()
            later = T0 + timedelta(hours=1)
            outcomes = store.record(
                [observe(later, {"xch": 2}), observe(later, {"xch": 9, CAT_A: 4}, address=OTHER)]
            )
            assert proxy.cut.is_set(), "the proxy did not cut the acknowledgement"
            assert all(isinstance(o, Stored) for o in outcomes), outcomes
            assert [o.recovered for o in outcomes if isinstance(o, Stored)] == [True, True]
            assert [[(d.asset, d.delta_mojos) for d in o.deltas] for o in outcomes] == [  # type: ignore[union-attr]
                [("xch", 1)],
                [(CAT_A, 4)],
            ]
            assert count(engine, Snapshot) == 4
            assert count(engine, PollAttempt) == 4
        finally:
            engine.dispose()
            proxy.close()


def test_asset_names_are_kept_when_the_api_stops_sending_them(
    store: SnapshotStore, engine: Engine
) -> None:
    store.record_one(observe(T0, {CAT_A: 1}, name="Spacebucks", symbol="SBX"))
    store.record_one(observe(T0 + timedelta(minutes=1), {CAT_A: 2}))
    store.record_one(
        observe(T0 + timedelta(minutes=2), {CAT_A: 3}, name="Spacebucks", symbol="SBX2")
    )
    with engine.connect() as connection:
        asset = connection.execute(select(Asset).where(Asset.asset_id == CAT_A)).one()
    assert (asset.name, asset.symbol) == ("Spacebucks", "SBX2")


def test_a_change_names_the_symbol_of_an_asset_that_left(
    store: SnapshotStore, engine: Engine
) -> None:
    store.record_one(observe(T0, {CAT_A: 1}, name="Spacebucks", symbol="SBX"))
    gone = store.record_one(observe(T0 + timedelta(minutes=1), {"xch": 1}))
    assert gone.symbols == {CAT_A: "SBX", "xch": "XCH"}


def test_largest_balances_are_stored_exactly(store: SnapshotStore, engine: Engine) -> None:
    top = 2**63 - 1
    store.record_one(observe(T0, {"xch": top, CAT_A: 9007199254740993}))
    with engine.connect() as connection:
        rows = connection.execute(
            select(Asset.asset_id, SnapshotBalance.balance_mojos).join(
                Asset, Asset.id == SnapshotBalance.asset_id
            )
        )
        stored = {asset: mojos for asset, mojos in rows}
    assert stored == {"xch": top, CAT_A: 9007199254740993}


def test_views_show_exact_token_units(store: SnapshotStore, engine: Engine) -> None:
    store.record_one(observe(T0, {"xch": 1234567891234, CAT_A: 9007199254740993}, symbol="SBX"))
    store.record_one(
        observe(T0 + timedelta(minutes=5), {"xch": 1, CAT_A: 9007199254740493}, symbol="SBX")
    )
    with engine.connect() as connection:
        history = connection.execute(
            text(
                "SELECT address, label, asset_id, symbol, taken_at, balance_mojos, balance"
                " FROM balance_history ORDER BY taken_at, asset_id"
            )
        ).all()
        changes = connection.execute(
            text(
                "SELECT address, label, asset_id, symbol, taken_at, previous_taken_at,"
                " previous_balance_mojos, balance_mojos, delta_mojos, delta"
                " FROM balance_changes ORDER BY asset_id"
            )
        ).all()
    assert [(r.asset_id, r.balance_mojos, f"{Decimal(str(r.balance)):f}") for r in history] == [
        (CAT_A, 9007199254740993, "9007199254740.993"),
        ("xch", 1234567891234, "1.234567891234"),
        (CAT_A, 9007199254740493, "9007199254740.493"),
        ("xch", 1, "0.000000000001"),
    ]
    assert {(r.address, r.label) for r in history} == {(ADDRESS, "main")}
    assert [
        (r.asset_id, r.previous_balance_mojos, r.balance_mojos, r.delta_mojos, str(r.delta))
        for r in changes
    ] == [
        (CAT_A, 9007199254740993, 9007199254740493, -500, "-0.500"),
        ("xch", 1234567891234, 1, -1234567891233, "-1.234567891233"),
    ]
    assert all(str(r.previous_taken_at)[:16] == "2026-11-24 12:00" for r in changes)
    assert all(str(r.taken_at)[:16] == "2026-11-24 12:05" for r in changes)


def test_labels_follow_the_config_and_removed_addresses_keep_history(engine: Engine) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(ADDRESS, "old")], T0)
    store.record_one(observe(T0, {"xch": 1}))
    store.sync_addresses([WatchedAddress(ADDRESS, "new"), WatchedAddress(OTHER, "other")], T0)
    store.sync_addresses([WatchedAddress(OTHER, "other")], T0)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT address, label FROM balance_history")).all()
    assert [tuple(r) for r in rows] == [(ADDRESS, "new")]


def test_two_writers_of_one_address_keep_every_answer_and_the_chain(
    engine: Engine, db_url: str
) -> None:
    """The daemon and a `tracker poll` storing the same address at once: nothing dropped."""
    second_engine = engines.create(db_url)
    stores = [SnapshotStore(engine), SnapshotStore(second_engine)]
    for store in stores:
        store.sync_addresses([WatchedAddress(ADDRESS, None)], T0)
    ticket = itertools.count(1)
    ticket_lock = threading.Lock()
    errors: list[StoreError] = []

    def writer(store: SnapshotStore) -> None:
        for _ in range(15):
            with ticket_lock:
                n = next(ticket)
            try:
                store.record_one(observe(T0 + timedelta(seconds=n), {"xch": n * 1000}))
            except StoreError as exc:
                errors.append(exc)

    try:
        threads = [threading.Thread(target=writer, args=(store,)) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        second_engine.dispose()
    assert errors == []
    snapshots, links = chain(engine)
    assert [row.balance_mojos for row in snapshots] == [n * 1000 for n in range(1, 31)]
    assert links == exact_chain(snapshots)


def test_sqlite_locked_by_another_writer_is_waited_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine = engines.create(url, sqlite_busy_seconds=0.1)
    migrate.upgrade(engine)
    clock = FakeClock()
    store = SnapshotStore(engine, clock)
    store.sync_addresses([WatchedAddress(ADDRESS, None)], T0)
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    waits: list[float] = []

    def release(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            other.execute("COMMIT")

    clock.on_sleep = release
    try:
        store.record_one(observe(T0, {"xch": 1}))
    finally:
        other.close()
    assert len(waits) == 2, "the writer waited on the clock between its tries"
    assert count(engine, Snapshot) == 1
    engine.dispose()


def test_polls_ready_together_are_committed_together(store: SnapshotStore, engine: Engine) -> None:
    commits: list[object] = []
    event.listen(engine, "commit", commits.append)
    outcomes = store.record(
        [observe(T0, {"xch": 5, CAT_A: 1}), observe(T0, {"xch": 7}, address=OTHER)]
    )
    assert len(commits) == 1
    assert [o.baseline for o in outcomes if isinstance(o, Stored)] == [True, True]
    later = T0 + timedelta(minutes=5)
    outcomes = store.record(
        [observe(later, {"xch": 6}), observe(later, {"xch": 7, CAT_B: 2}, address=OTHER)]
    )
    assert [
        sorted((d.asset, d.delta_mojos) for d in o.deltas)
        for o in outcomes
        if isinstance(o, Stored)
    ] == [sorted([(CAT_A, -1), ("xch", 1)]), [(CAT_B, 2)]]
    assert count(engine, Snapshot) == 4
    assert count(engine, PollAttempt) == 4
    # Deltas carry their snapshot's address and time (the index reports read them by).
    with engine.connect() as connection:
        mismatched = connection.execute(
            select(func.count())
            .select_from(Delta)
            .join(Snapshot, Snapshot.id == Delta.snapshot_id)
            .where(
                (Delta.address_id != Snapshot.address_id) | (Delta.taken_at != Snapshot.taken_at)
            )
        ).scalar_one()
    assert count(engine, Delta) == 3
    assert mismatched == 0


def test_a_refused_poll_in_a_batch_costs_the_others_nothing(
    store: SnapshotStore, engine: Engine
) -> None:
    store.record_one(observe(T0, {"xch": 1}))
    outcomes = store.record(
        [observe(T0, {"xch": 2}), observe(T0, {"xch": 3}, address=OTHER)]  # same instant, other
    )
    assert isinstance(outcomes[0], WriteRefused)
    assert "already stored" in str(outcomes[0])
    assert isinstance(outcomes[1], Stored)
    assert outcomes[1].baseline
    assert count(engine, Snapshot) == 2
    assert deltas(engine) == []
