"""Synthetic balance history, written straight into a migrated tracker database, fast.

The rows are exactly those ``SnapshotStore`` would have written for the same polls: one snapshot
per address and poll (ids interleaved across addresses, as a daemon polling them together
allocates them), its balance rows, one delta per changed asset pointing at the address's previous
snapshot (the first snapshot is a baseline, without deltas), and one successful poll attempt. So
``report``, ``balances --at``, the views and the store's own lookups see a real history.

Prices are those a daemon valuing every poll would record: XCH in USD and each CAT in XCH at
each poll's first snapshot (``price_rows``).

Balances change in one poll of ``change_every`` per address (offset by address, so every hour
some address changes). A change moves XCH and one CAT (rotating through the CATs), each by a
deterministic pseudo-random amount that keeps every balance positive.

PostgreSQL is loaded with ``COPY`` (foreign-key triggers off for the load: the rows are
consistent by construction) and then ``VACUUM ANALYZE``d; SQLite with ``executemany`` in one
transaction. Both go into a schema that Alembic's migrations created, so indexes and views are
the real ones.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tracker.domain import encode_bech32m as bech32m_encode
from tracker.domain import token_id

XCH_PK = 1
START = datetime(2025, 1, 1, tzinfo=UTC)
XCH_BASE = 1_000 * 10**12  # 1,000 XCH
CAT_BASE = 10_000 * 1_000  # 10,000 tokens
ADDRESS_SPREAD = timedelta(milliseconds=10)  # addresses of one poll are taken 10 ms apart
POLL_SECONDS = timedelta(milliseconds=200)  # a poll attempt starts this long before its snapshot


def address_text(n: int) -> str:
    """The ``n``-th bench address (the same as ``tests/conftest.make_address``)."""
    return bech32m_encode("xch", n.to_bytes(32, "big"))


def asset_hex(n: int) -> str:
    """The ``n``-th bench CAT (the same as ``tests/conftest.make_asset``)."""
    return f"{n:064x}"


@dataclass(frozen=True)
class Shape:
    """How much history: ``addresses`` x ``assets`` (XCH + CATs) x ``snapshots`` polls."""

    addresses: int
    assets: int
    snapshots: int
    interval: timedelta
    change_every: int = 20
    start: datetime = START

    @property
    def balance_rows(self) -> int:
        return self.addresses * self.assets * self.snapshots

    @property
    def end(self) -> datetime:
        """When the last poll was taken (plus the spread of the addresses)."""
        return self.taken_at(self.snapshots - 1, self.addresses - 1)

    def taken_at(self, poll: int, address: int) -> datetime:
        return self.start + poll * self.interval + address * ADDRESS_SPREAD

    def changes(self, poll: int, address: int) -> bool:
        return poll > 0 and (poll + address) % self.change_every == 0

    def describe(self) -> str:
        return (
            f"{self.addresses} addresses x {self.assets} assets x {self.snapshots} polls "
            f"every {self.interval.total_seconds() / 3600:g} h = {self.balance_rows:,} balance rows"
        )

    def key(self) -> str:
        """Identifies the data set, to tell whether a kept one can be reused."""
        fields = asdict(self)
        fields["interval"] = self.interval.total_seconds()
        fields["start"] = self.start.isoformat()
        return ",".join(f"{k}={v}" for k, v in sorted(fields.items()))


def xch_step(change: int, address: int) -> int:
    """XCH change of the ``change``-th change of ``address``: about ±0.5 XCH."""
    return ((change * 7919 + address * 31) % 1000 - 450) * 10**9


def cat_step(change: int, address: int) -> int:
    """CAT change (in CAT mojos): about ±1 token."""
    return ((change * 104729 + address * 17) % 2000 - 950) * 1000


def changed_cat(shape: Shape, change: int, address: int) -> int:
    """Primary key (2..assets) of the CAT that moves at this change."""
    return 2 + (change + address) % (shape.assets - 1)


def initial(shape: Shape, address: int) -> list[int]:
    """Balances (index = asset pk - 1) at the first poll."""
    return [XCH_BASE + address * 10**12] + [
        CAT_BASE + (address * 101 + pk) * 1000 for pk in range(2, shape.assets + 1)
    ]


def snapshot_id(shape: Shape, poll: int, address: int) -> int:
    return poll * shape.addresses + address + 1


def address_rows(shape: Shape) -> list[tuple[int, str, str, datetime]]:
    return [
        (n, address_text(n), f"bench-{n}", shape.start - timedelta(days=1))
        for n in range(1, shape.addresses + 1)
    ]


def asset_rows(shape: Shape) -> list[tuple[int, str, str | None, str, str, int]]:
    rows: list[tuple[int, str, str | None, str, str, int]] = [
        (XCH_PK, "xch", None, "Chia", "XCH", 12)
    ]
    for pk in range(2, shape.assets + 1):
        hexid = asset_hex(pk)
        rows.append((pk, hexid, token_id(hexid), f"Token {pk}", f"T{pk:02d}", 3))
    return rows


def walk(shape: Shape) -> Iterator[tuple[int, int, list[int], list[tuple[int, int, int]]]]:
    """Every poll in id order: (poll, address index, balances, changes as (pk, before, after))."""
    state = [initial(shape, a) for a in range(shape.addresses)]
    count = [0] * shape.addresses
    for poll in range(shape.snapshots):
        for a in range(shape.addresses):
            balances = state[a]
            moved: list[tuple[int, int, int]] = []
            if shape.changes(poll, a):
                count[a] += 1
                change = count[a]
                cat = changed_cat(shape, change, a)
                for pk, step in ((XCH_PK, xch_step(change, a)), (cat, cat_step(change, a))):
                    before = balances[pk - 1]
                    balances[pk - 1] = before + step
                    moved.append((pk, before, before + step))
            yield poll, a, balances, moved


def price_rows(shape: Shape) -> Iterator[tuple[int, int, str, str, datetime]]:
    """The prices a daemon valuing every poll records (``[prices] interval_seconds`` = the poll
    interval): at each poll's first snapshot, XCH in USD and each CAT in XCH, as
    (id, asset pk, quote, price, observed_at). Deterministic, a few digits like real quotes."""
    number = 0
    for poll in range(shape.snapshots):
        at = shape.taken_at(poll, 0)
        number += 1
        yield number, XCH_PK, "USD", f"{20 + (poll * 37 % 1500) / 100:g}", at
        for pk in range(2, shape.assets + 1):
            number += 1
            yield number, pk, "xch", f"{(pk * 131 + poll * 7) % 997 / 100_000 + 0.0001:.6g}", at


def final_balances(shape: Shape) -> list[list[int]]:
    """Each address's balances at its last poll (what a fake API should serve next)."""
    last: list[list[int]] = []
    for poll, _, balances, _ in walk(shape):
        if poll == shape.snapshots - 1:
            last.append(list(balances))
    return last


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f+00")


class _Writer:
    """Buffers COPY text and hands it to psycopg in ~1 MB pieces."""

    def __init__(self, copy: Any) -> None:
        self._copy = copy
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._copy.write("".join(self._parts))
            self._parts, self._size = [], 0


def load_postgresql(
    dbapi: Any, shape: Shape, progress: Callable[[str], None] = lambda _line: None
) -> None:
    """COPY the whole history into the (migrated, empty) schema of a psycopg connection."""
    started = time.monotonic()
    cursor = dbapi.cursor()
    cursor.execute("SET statement_timeout = 0")  # a bulk load: tracker's own limit is for users
    cursor.execute("SET session_replication_role = replica")  # no FK triggers: rows are consistent
    cursor.execute("SET statement_timeout = 0")  # a COPY of millions of rows on a busy machine
    with cursor.copy("COPY addresses (id, address, label, added_at) FROM STDIN") as copy:
        for n, text, label, added in address_rows(shape):
            copy.write_row((n, text, label, added))
    with cursor.copy(
        "COPY assets (id, asset_id, token_id, name, symbol, decimals) FROM STDIN"
    ) as copy:
        for row in asset_rows(shape):
            copy.write_row(row)

    total = shape.snapshots * shape.addresses
    with cursor.copy(
        "COPY snapshot_balances (snapshot_id, asset_id, balance_mojos) FROM STDIN"
    ) as c:
        writer = _Writer(c)
        templates = [""] * shape.addresses
        for poll, a, balances, moved in walk(shape):
            if moved or poll == 0:
                templates[a] = "".join(
                    f"\x00\t{pk}\t{mojos}\n" for pk, mojos in enumerate(balances, start=1)
                )
            writer.write(templates[a].replace("\x00", str(snapshot_id(shape, poll, a))))
            if a == 0 and poll % 1000 == 0 and poll:
                done = poll * shape.addresses
                progress(
                    f"  snapshot_balances: {done * shape.assets:,} of {shape.balance_rows:,} rows "
                    f"({100 * done / total:.0f} %, {time.monotonic() - started:.0f} s)"
                )
        writer.flush()
    progress(
        f"  snapshot_balances: {shape.balance_rows:,} rows ({time.monotonic() - started:.0f} s)"
    )

    with (
        cursor.copy("COPY snapshots (id, address_id, taken_at) FROM STDIN") as snaps_copy,
    ):
        writer = _Writer(snaps_copy)
        for poll in range(shape.snapshots):
            for a in range(shape.addresses):
                sid = snapshot_id(shape, poll, a)
                writer.write(f"{sid}\t{a + 1}\t{_pg_time(shape.taken_at(poll, a))}\n")
        writer.flush()
    with cursor.copy(
        "COPY poll_attempts (id, address_id, started_at, finished_at, ok, error, snapshot_id) "
        "FROM STDIN"
    ) as attempts_copy:
        writer = _Writer(attempts_copy)
        for poll in range(shape.snapshots):
            for a in range(shape.addresses):
                sid = snapshot_id(shape, poll, a)
                taken = shape.taken_at(poll, a)
                writer.write(
                    f"{sid}\t{a + 1}\t{_pg_time(taken - POLL_SECONDS)}\t{_pg_time(taken)}"
                    f"\tt\t\\N\t{sid}\n"
                )
        writer.flush()
    with cursor.copy(
        "COPY deltas (snapshot_id, asset_id, previous_snapshot_id, address_id, taken_at, "
        "previous_balance_mojos, balance_mojos, delta_mojos) FROM STDIN"
    ) as deltas_copy:
        writer = _Writer(deltas_copy)
        for poll, a, _, moved in walk(shape):
            if moved:
                sid = snapshot_id(shape, poll, a)
                previous = snapshot_id(shape, poll - 1, a)
                taken = _pg_time(shape.taken_at(poll, a))
                for pk, before, after in sorted(moved):
                    writer.write(
                        f"{sid}\t{pk}\t{previous}\t{a + 1}\t{taken}"
                        f"\t{before}\t{after}\t{after - before}\n"
                    )
        writer.flush()
    with cursor.copy(
        "COPY prices (id, asset_id, quote, price, observed_at, source) FROM STDIN"
    ) as prices_copy:
        writer = _Writer(prices_copy)
        for number, pk, quote, price, at in price_rows(shape):
            writer.write(f"{number}\t{pk}\t{quote}\t{price}\t{_pg_time(at)}\tbench\n")
        writer.flush()
    cursor.execute("SET session_replication_role = DEFAULT")
    for table in ("addresses", "assets", "snapshots", "poll_attempts", "prices"):
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    dbapi.commit()
    progress(f"  copied every table ({time.monotonic() - started:.0f} s); VACUUM ANALYZE")
    dbapi.autocommit = True
    for table in (
        "addresses",
        "assets",
        "snapshots",
        "snapshot_balances",
        "deltas",
        "poll_attempts",
        "prices",
    ):
        cursor.execute(f"VACUUM ANALYZE {table}")
    dbapi.autocommit = False
    progress(f"  loaded in {time.monotonic() - started:.0f} s")


# -- SQLite ----------------------------------------------------------------------------------


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(
    path: str, shape: Shape, progress: Callable[[str], None] = lambda _line: None
) -> None:
    """Insert the whole history into the (migrated, empty) SQLite database at ``path``."""
    started = time.monotonic()
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO addresses (id, address, label, added_at) VALUES (?, ?, ?, ?)",
            [
                (n, text, label, _sqlite_time(added))
                for n, text, label, added in address_rows(shape)
            ],
        )
        connection.executemany(
            "INSERT INTO assets (id, asset_id, token_id, name, symbol, decimals) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            asset_rows(shape),
        )
        connection.executemany(
            "INSERT INTO snapshots (id, address_id, taken_at) VALUES (?, ?, ?)",
            (
                (snapshot_id(shape, poll, a), a + 1, _sqlite_time(shape.taken_at(poll, a)))
                for poll in range(shape.snapshots)
                for a in range(shape.addresses)
            ),
        )
        connection.executemany(
            "INSERT INTO snapshot_balances (snapshot_id, asset_id, balance_mojos) VALUES (?, ?, ?)",
            (
                (snapshot_id(shape, poll, a), pk, mojos)
                for poll, a, balances, _ in walk(shape)
                for pk, mojos in enumerate(balances, start=1)
            ),
        )
        connection.executemany(
            "INSERT INTO deltas (snapshot_id, asset_id, previous_snapshot_id, address_id, "
            "taken_at, previous_balance_mojos, balance_mojos, delta_mojos) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    snapshot_id(shape, poll, a),
                    pk,
                    snapshot_id(shape, poll - 1, a),
                    a + 1,
                    _sqlite_time(shape.taken_at(poll, a)),
                    before,
                    after,
                    after - before,
                )
                for poll, a, _, moved in walk(shape)
                for pk, before, after in sorted(moved)
            ),
        )
        connection.executemany(
            "INSERT INTO poll_attempts (id, address_id, started_at, finished_at, ok, error, "
            "snapshot_id) VALUES (?, ?, ?, ?, 1, NULL, ?)",
            (
                (
                    snapshot_id(shape, poll, a),
                    a + 1,
                    _sqlite_time(shape.taken_at(poll, a) - POLL_SECONDS),
                    _sqlite_time(shape.taken_at(poll, a)),
                    snapshot_id(shape, poll, a),
                )
                for poll in range(shape.snapshots)
                for a in range(shape.addresses)
            ),
        )
        connection.executemany(
            "INSERT INTO prices (id, asset_id, quote, price, observed_at, source) "
            "VALUES (?, ?, ?, ?, ?, 'bench')",
            (
                (number, pk, quote, price, _sqlite_time(at))
                for number, pk, quote, price, at in price_rows(shape)
            ),
        )
        connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        connection.close()
    progress(f"  loaded in {time.monotonic() - started:.0f} s")
