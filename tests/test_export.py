"""`tracker export`: the views' rows, exact, filtered, ordered, streamed in constant memory."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, insert, text

from tracker.cli import cli
from tracker.domain import Asset, Observation, WatchedAddress, token_id
from tracker.reports.export import export
from tracker.reports.output import csv_line
from tracker.sanitize import csv_cell
from tracker.store import engine as engines
from tracker.store import migrate
from tracker.store.models import Address, Snapshot, SnapshotBalance
from tracker.store.models import Asset as AssetRow
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN, COLD = make_address(1), make_address(2)
SBX, AAA = make_asset(0x5B), make_asset(0xAA)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def config(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    """MAIN: XCH, a 2^53+1-mojo SBX, and AAA that comes and goes; COLD: XCH from h1."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")], T0)
    infos = {
        "xch": Asset("xch", "Chia", "XCH"),
        SBX: Asset(SBX, "Spacebucks", "SBX"),
        # Its symbol sorts before XCH and SBX: the order must still be XCH, then asset id.
        AAA: Asset(AAA, None, "AAA"),
    }
    for address, hours, balances in [
        (MAIN, 0, {"xch": 10**12, SBX: 9007199254740993}),
        (MAIN, 1, {"xch": 3, SBX: 9007199254740993, AAA: 1}),
        (COLD, 1, {"xch": 7 * 10**12}),
        (MAIN, 2, {"xch": 3, SBX: 9007199254740493}),
        (COLD, 3, {"xch": 6 * 10**12}),
    ]:
        store.record_one(Observation(address, at(hours), at(hours), balances, infos))
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    return path


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "export", *args])
    return result.exit_code, result.stdout, result.stderr


def exported(config: Path, *args: str) -> list[dict[str, str]]:
    code, out, err = invoke(config, *args)
    assert (code, err) == (0, "")
    return list(csv.DictReader(io.StringIO(out)))


def view(engine: Engine, name: str) -> list[dict[str, str]]:
    """A view's rows as the export writes them: times ISO-8601 Z, numbers as exact text."""
    with engine.connect() as connection:
        result = connection.execute(text(f"SELECT * FROM {name}"))
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        for key, value in row.items():
            if key.endswith("taken_at"):
                # PostgreSQL gives a timestamptz; SQLite its UTC text without an offset.
                moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                row[key] = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
            elif isinstance(value, Decimal):
                row[key] = format(value, "f")
            else:
                row[key] = "" if value is None else str(value)
    return rows


def test_balances_are_the_view_row_for_row(config: Path, engine: Engine) -> None:
    rows = exported(config)
    assert list(rows[0]) == [
        "address", "label", "asset_id", "token_id", "symbol", "name",
        "taken_at", "balance_mojos", "balance",
    ]  # fmt: skip
    assert len(rows) == 9
    assert sorted(rows, key=lambda r: sorted(r.items())) == sorted(
        view(engine, "balance_history"), key=lambda r: sorted(r.items())
    )
    # Exact to the last digit, where a float would have rounded.
    sbx = [r for r in rows if r["asset_id"] == SBX]
    assert [(r["balance_mojos"], r["balance"]) for r in sbx] == [
        ("9007199254740993", "9007199254740.993"),
        ("9007199254740993", "9007199254740.993"),
        ("9007199254740493", "9007199254740.493"),
    ]
    assert sbx[0]["token_id"] == token_id(SBX)
    assert sbx[0]["name"] == "Spacebucks"
    tiny = next(r for r in rows if r["balance_mojos"] == "3")
    assert tiny["balance"] == "0.000000000003"


def test_changes_are_the_view_row_for_row(config: Path, engine: Engine) -> None:
    rows = exported(config, "--changes")
    assert list(rows[0]) == [
        "address", "label", "asset_id", "symbol", "taken_at", "previous_taken_at",
        "previous_balance_mojos", "balance_mojos", "delta_mojos", "delta",
    ]  # fmt: skip
    assert sorted(rows, key=lambda r: sorted(r.items())) == sorted(
        view(engine, "balance_changes"), key=lambda r: sorted(r.items())
    )
    assert [
        (r["address"], r["asset_id"], r["taken_at"], r["previous_taken_at"], r["delta"])
        for r in rows
    ] == [
        (MAIN, "xch", "2026-03-01T13:00:00Z", "2026-03-01T12:00:00Z", "-0.999999999997"),
        (MAIN, AAA, "2026-03-01T13:00:00Z", "2026-03-01T12:00:00Z", "0.001"),
        (MAIN, SBX, "2026-03-01T14:00:00Z", "2026-03-01T13:00:00Z", "-0.500"),
        (MAIN, AAA, "2026-03-01T14:00:00Z", "2026-03-01T13:00:00Z", "-0.001"),
        (COLD, "xch", "2026-03-01T15:00:00Z", "2026-03-01T13:00:00Z", "-1.000000000000"),
    ]


def test_order_is_time_then_address_then_asset(config: Path) -> None:
    rows = exported(config)
    keys = [(r["taken_at"], r["address"], r["asset_id"]) for r in rows]
    # XCH first, then CATs by asset id: SBX (0…5b) before AAA (0…aa), whatever the symbols say.
    assert COLD < MAIN  # so the address order is not the order of the snapshots' ids
    assert keys[:6] == [
        ("2026-03-01T12:00:00Z", MAIN, "xch"),
        ("2026-03-01T12:00:00Z", MAIN, SBX),
        ("2026-03-01T13:00:00Z", COLD, "xch"),
        ("2026-03-01T13:00:00Z", MAIN, "xch"),
        ("2026-03-01T13:00:00Z", MAIN, SBX),
        ("2026-03-01T13:00:00Z", MAIN, AAA),
    ]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1], k[2] != "xch", k[2]))


def test_filters(config: Path) -> None:
    assert {r["address"] for r in exported(config, "--address", "cold")} == {COLD}
    assert {r["address"] for r in exported(config, "--label", "main")} == {MAIN}
    only = exported(config, "--asset", "sbx", "--changes")
    assert [(r["asset_id"], r["delta_mojos"]) for r in only] == [(SBX, "-500")]
    # --since and --until are both inclusive.
    window = exported(config, "--since", "2026-03-01T13:00:00Z", "--until", "2026-03-01T14:00Z")
    assert {r["taken_at"] for r in window} == {"2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"}
    assert len(window) == 6
    assert exported(config, "--since", "2027-01-01") == []


def test_jsonl_is_one_object_per_line_with_exact_strings(config: Path) -> None:
    code, out, _ = invoke(config, "--format", "jsonl", "--address", MAIN, "--asset", SBX)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first == {
        "address": MAIN,
        "label": "main",
        "asset_id": SBX,
        "token_id": token_id(SBX),
        "symbol": "SBX",
        "name": "Spacebucks",
        "taken_at": "2026-03-01T12:00:00Z",
        "balance_mojos": "9007199254740993",
        "balance": "9007199254740.993",
    }
    out = invoke(config, "--changes", "--format", "jsonl")[1]
    changes = [json.loads(line) for line in out.splitlines()]  # every line parses on its own
    assert [c["delta"] for c in changes if c["asset_id"] == SBX] == ["-0.500"]


def test_a_bad_selection_writes_nothing(config: Path) -> None:
    for args in (["--address", make_address(77)], ["--asset", "nope"], ["--label", "nobody"]):
        code, out, err = invoke(config, *args)
        assert (code, out) == (1, "")
        assert err.startswith("tracker: error: ")
        assert err.count("\n") == 1
    code, out, err = invoke(config, "--since", "2026-03-02", "--until", "2026-03-01")
    assert (code, out) == (1, "")
    assert "--until is before --since" in err


def test_json_is_one_array_of_the_same_objects(config: Path) -> None:
    code, out, _ = invoke(config, "--format", "json", "--asset", "xch")
    lines = invoke(config, "--format", "jsonl", "--asset", "xch")[1].splitlines()
    assert code == 0
    assert json.loads(out) == [json.loads(line) for line in lines]
    assert invoke(config, "--format", "json", "--since", "2030-01-01")[1] == "[]\n"


def test_csv_cells_never_start_a_formula(engine: Engine, tmp_path: Path, db_url: str) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, '=HYPERLINK("http://x")')], T0)
    evil = Asset(SBX, "+cmd|' /C calc'!A0", "@SUM(1)")
    store.record_one(Observation(MAIN, T0, T0, {SBX: 5, "xch": 0}, {SBX: evil}))
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    rows = exported(path)
    sbx = next(r for r in rows if r["asset_id"] == SBX)
    assert sbx["label"] == '\'=HYPERLINK("http://x")'
    assert (sbx["name"], sbx["symbol"]) == ("'+cmd|' /C calc'!A0", "'@SUM(1)")
    xch = next(r for r in rows if r["asset_id"] == "xch")
    assert xch["balance"] == "0.000000000000"  # numbers are not text: never escaped
    jsonl = invoke(path, "--format", "jsonl")[1]
    assert json.loads(jsonl.splitlines()[1])["label"] == '=HYPERLINK("http://x")'  # JSON is data


@pytest.mark.postgres
def test_postgres_streams_jsonl_through_a_server_side_cursor_and_csv_through_copy(
    pg_url: str,
) -> None:
    engine = engines.create(pg_url)
    try:
        fill(engine, snapshots=30, assets=5)
        cursors: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def spy(*args: Any) -> None:
            cursors.append(type(args[1]).__name__)

        out = io.StringIO()
        assert export(engine, out, fmt="jsonl") == 150
        assert cursors[-1] == "ServerCursor"
        jsonl = [json.loads(line) for line in out.getvalue().splitlines()]
        out = io.StringIO()
        assert export(engine, out, fmt="csv") == 150
        assert [dict(row) for row in csv.DictReader(io.StringIO(out.getvalue()))] == [
            {key: "" if value is None else value for key, value in row.items()} for row in jsonl
        ]
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


def fill(engine: Engine, *, snapshots: int, assets: int) -> int:
    """``snapshots`` x ``assets`` balances of one address, inserted in bulk; the sum of mojos."""
    address = make_address(5)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    ids = [make_asset(n) if n else "xch" for n in range(assets)]
    balances = [
        {"snapshot_id": s + 1, "asset_id": a + 1, "balance_mojos": 10**15 + s * assets + a}
        for s in range(snapshots)
        for a in range(assets)
    ]
    with engine.begin() as connection:
        connection.execute(
            insert(Address).values(id=1, address=address, label="big", added_at=start)
        )
        connection.execute(
            insert(AssetRow),
            [
                {"id": n + 1, "asset_id": asset, "symbol": f"T{n}", "decimals": 3}
                for n, asset in enumerate(ids)
            ],
        )
        connection.execute(
            insert(Snapshot),
            [
                {"id": s + 1, "address_id": 1, "taken_at": start + timedelta(minutes=5 * s)}
                for s in range(snapshots)
            ],
        )
        connection.execute(insert(SnapshotBalance), balances)
    return sum(row["balance_mojos"] for row in balances)


class Tally(io.TextIOBase):
    """A sink that reads the CSV it is given line by line and keeps only totals."""

    def __init__(self) -> None:
        self.lines = 0
        self.mojos = 0
        self._rest = ""

    def write(self, text: str) -> int:
        *complete, self._rest = (self._rest + text).split("\n")
        for line in complete:
            if self.lines:
                self.mojos += int(line.split(",")[7])
            self.lines += 1
        return len(text)


def test_a_large_export_runs_in_constant_memory(tmp_path: Path) -> None:
    engine = engines.create(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        migrate.upgrade(engine)
        snapshots, assets = 20_000, 10
        total = fill(engine, snapshots=snapshots, assets=assets)

        # What holding the rows would cost, measured on a sample of 2,000.
        tracemalloc.start()
        with engine.connect() as connection:
            sample = connection.execute(text("SELECT * FROM balance_history LIMIT 2000")).all()
        held = tracemalloc.get_traced_memory()[0] * (snapshots * assets) // len(sample)
        tracemalloc.stop()
        del sample

        sink = Tally()
        tracemalloc.start()
        count = export(engine, sink)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        engine.dispose()
    assert count == sink.lines - 1 == snapshots * assets
    assert sink.mojos == total  # every row, exact
    assert held > 50 * 2**20, held  # the 200,000 rows would take over 50 MB...
    assert peak < 10 * 2**20, peak  # ...the stream stays far below (a few MB)


def test_a_reader_that_stops_early_ends_the_export_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pipe.db'}"
    engine = engines.create(url)
    try:
        migrate.upgrade(engine)
        fill(engine, snapshots=2000, assets=5)  # ~1 MB of CSV: far more than a pipe holds
    finally:
        engine.dispose()
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    with subprocess.Popen(
        [sys.executable, "-m", "tracker", "--config", str(path), "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().startswith(b"address,label,")
        process.stdout.close()  # like `| head -1`
        err = process.stderr.read().decode()
        code = process.wait(timeout=30)
    assert (code, err) == (1, "")  # click's rule for a closed stdout: status 1, no traceback


TRICKY = [
    "plain",
    "comma, inside",
    'a "quoted" word',
    "line\nbreak",
    "carriage\rreturn",
    "  spaces around  ",
    "ünïcödé ✓ 币",
    "-minus first",
    "",
]


def test_csv_text_is_the_same_from_the_database_and_round_trips(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """The database writes the CSV lines: byte for byte what ``--format csv`` writes, and what
    a CSV reader reads back as the values themselves."""
    store = SnapshotStore(engine)
    addresses = [make_address(40 + n) for n in range(len(TRICKY))]
    store.sync_addresses(
        [WatchedAddress(a, label) for a, label in zip(addresses, TRICKY, strict=True)], T0
    )
    for n, (address, tricky) in enumerate(zip(addresses, TRICKY, strict=True)):
        asset = make_asset(0x100 + n)
        names = {asset: Asset(asset, tricky or None, tricky or None)}
        store.record_one(Observation(address, at(n), at(n), {asset: 1000 + n}, names))
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    code, out, err = invoke(path)
    assert (code, err) == (0, "")
    rows = [json.loads(line) for line in invoke(path, "--format", "jsonl")[1].splitlines()]
    guarded = [
        {k: csv_cell(v) if k in ("label", "symbol", "name") and v else v for k, v in row.items()}
        for row in rows
    ]
    assert out == csv_line(list(rows[0])) + "".join(csv_line(list(r.values())) for r in guarded)
    read_back = list(csv.DictReader(io.StringIO(out, newline="")))
    assert read_back == [{k: "" if v is None else v for k, v in r.items()} for r in guarded]
