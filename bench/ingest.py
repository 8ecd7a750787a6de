#!/usr/bin/env python3
"""Benchmark "ingest": snapshots written through the snapshot service against plain executemany.

1,000 addresses x 50 assets (XCH and 49 CATs), polled twice: a first poll (baselines) and a
second in which one balance in 20 changed, so deltas are written too. The service writes them as
the poller does, with every check it makes (row lock, previous snapshot, deltas, poll attempt).
The baseline inserts exactly the rows the service stored (snapshots, balances, deltas, poll
attempts, read back from its database) into a second, fresh database of the same kind with one
SQLAlchemy Core ``executemany`` per table in one transaction: the fastest plain way to write
them. Ratio: the service's rows/s ÷ the baseline's rows/s. Goal ≥ 0.5.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import Engine, insert, select

from tracker.domain import Asset, Observation, WatchedAddress
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.models import Address, Delta, PollAttempt, Snapshot, SnapshotBalance
from tracker.store.models import Asset as AssetRow
from tracker.store.writer import SnapshotStore, Stored

from common import Figure, fresh_database, postgres_reason, progress
from datagen import address_text, asset_hex

START = datetime(2026, 1, 1, tzinfo=UTC)
XCH_INFO = Asset("xch", "Chia", "XCH")


def observations(addresses: int, assets: int, poll: int) -> list[Observation]:
    """Poll ``poll`` (0 or 1) of every address; in poll 1 one balance in 20 differs."""
    infos = {"xch": XCH_INFO}
    for n in range(1, assets):
        infos[asset_hex(n)] = Asset(asset_hex(n), f"Token {n}", f"T{n}")
    result = []
    for a in range(addresses):
        when = START + timedelta(minutes=5 * poll, milliseconds=a)
        balances = {}
        for n, asset in enumerate(infos):
            mojos = 10**12 + a * 1_000 + n
            if poll == 1 and (a + n) % 20 == 0:
                mojos += 7
            balances[asset] = mojos
        result.append(Observation(address_text(a + 1), when, when, balances, infos))
    return result


TABLES = (Snapshot, SnapshotBalance, Delta, PollAttempt)


def write_through_service(engine: Engine, polls: list[list[Observation]]) -> float:
    store = SnapshotStore(engine)
    watched = [WatchedAddress(o.address, None) for o in polls[0]]
    store.sync_addresses(watched, START)
    started = time.perf_counter()
    for poll in polls:
        # What the poller hands over when polls arrive faster than they are written.
        outcomes = store.record(poll)
        failed = [o for o in outcomes if not isinstance(o, Stored)]
        if failed:
            raise RuntimeError(f"{len(failed)} snapshots not stored, first: {failed[0]}")
    return time.perf_counter() - started


def copy_rows(source: Engine, target: Engine) -> tuple[int, float]:
    """Insert what ``source`` holds into ``target`` (same schema) by executemany; (rows, s)."""
    with source.connect() as connection:
        setup = {
            model: [dict(row._mapping) for row in connection.execute(select(model))]
            for model in (Address, AssetRow)
        }
        rows = {
            model: [dict(row._mapping) for row in connection.execute(select(model))]
            for model in TABLES
        }
    with target.begin() as connection:
        for model, data in setup.items():
            connection.execute(insert(model), data)
    count = sum(len(data) for data in rows.values())
    started = time.perf_counter()
    with target.begin() as connection:
        for model in TABLES:
            if rows[model]:
                connection.execute(insert(model), rows[model])
    return count, time.perf_counter() - started


def measure(
    quick: bool = False, databases: tuple[str, ...] = ("sqlite", "postgresql")
) -> list[Figure]:
    addresses, assets = (100, 50) if quick else (1_000, 50)
    polls = [observations(addresses, assets, poll) for poll in (0, 1)]
    figures = []
    for kind in databases:
        if kind == "postgresql" and (reason := postgres_reason()) is not None:
            progress(f"ingest on postgresql skipped: {reason}")
            continue
        with (
            tempfile.TemporaryDirectory() as directory,
            fresh_database(kind, Path(directory), "service") as service_url,
            fresh_database(kind, Path(directory), "baseline") as baseline_url,
        ):
            service = engines.create(service_url)
            baseline = engines.create(baseline_url)
            try:
                migrate.upgrade(service)
                migrate.upgrade(baseline)
                progress(f"ingest on {kind}: {addresses} addresses × {assets} assets, 2 polls")
                service_seconds = write_through_service(service, polls)
                rows, baseline_seconds = copy_rows(service, baseline)
            finally:
                service.dispose()
                baseline.dispose()
        service_rate = rows / service_seconds
        baseline_rate = rows / baseline_seconds
        figures.append(
            Figure(
                "ingest",
                kind,
                "snapshot service rows/s ÷ Core executemany rows/s",
                service_rate / baseline_rate,
                0.5,
                at_most=False,
                detail=(
                    f"{rows:,} rows (2 polls of {addresses:,} addresses × {assets} assets, with "
                    f"their deltas and poll attempts): service {service_seconds:.2f} s "
                    f"({service_rate:,.0f} rows/s), executemany {baseline_seconds:.2f} s "
                    f"({baseline_rate:,.0f} rows/s)"
                ),
            )
        )
    return figures


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv):
        print(figure)
