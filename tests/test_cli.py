"""The reading commands' output, as a user (or a spreadsheet, or jq) would consume it."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tracker.cli import cli
from tracker.domain import Asset, Observation, WatchedAddress
from tracker.store import migrate
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN = make_address(1)
SBX = make_asset(0x5B)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def config(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main")], T0)
    infos = {
        "xch": Asset("xch", "Chia", "XCH"),
        SBX: Asset(SBX, "Spacebucks", "SBX"),
    }
    for hours, balances in [
        (0, {"xch": 10**12, SBX: 9007199254740993}),
        (1, {"xch": 10**12, SBX: 9007199254740493}),
        (2, {"xch": 3, SBX: 9007199254740493}),
    ]:
        at = T0 + timedelta(hours=hours)
        store.record_one(Observation(MAIN, at, at, balances, infos))
    path = tmp_path / "tracker.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n[[addresses]]\naddress = "{MAIN}"\nlabel = "main"\n'
    )
    return path


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


def test_balances_json_keeps_amounts_exact(config: Path) -> None:
    code, out, _ = invoke(config, "balances", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert rows == [
        {
            "address": MAIN,
            "label": "main",
            "asset_id": "xch",
            "symbol": "XCH",
            "balance": "0.000000000003",
            "balance_mojos": "3",
            "taken_at": "2026-03-01T14:00:00Z",
        },
        {
            "address": MAIN,
            "label": "main",
            "asset_id": SBX,
            "symbol": "SBX",
            "balance": "9007199254740.493",
            "balance_mojos": "9007199254740493",
            "taken_at": "2026-03-01T14:00:00Z",
        },
    ]


def test_report_csv(config: Path) -> None:
    code, out, _ = invoke(config, "report", "--format", "csv", "--since", "2026-03-01T12:30:00Z")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_asset = {row["asset_id"]: row for row in rows}
    assert by_asset[SBX]["start_balance"] == "9007199254740.993"
    assert by_asset[SBX]["end_balance"] == "9007199254740.493"
    assert by_asset[SBX]["change"] == "-0.500"
    assert by_asset[SBX]["changes"] == "1"
    assert by_asset["xch"]["change"] == "-0.999999999997"
    assert by_asset["xch"]["start_at"] == "2026-03-01T12:00:00Z"
    assert by_asset["xch"]["end_at"] == "2026-03-01T14:00:00Z"


def test_report_table_is_readable(config: Path) -> None:
    code, out, _ = invoke(config, "report")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["address", "asset", "start", "end", "change", "changes"]
    assert "9,007,199,254,740.493" in out
    assert "-0.5 " in out  # token units, trailing zeros trimmed
    assert lines[2].startswith("main ")  # the label, not the address
    assert all(len(line) <= 100 for line in lines)


def test_tables_fit_100_columns_and_wide_shows_everything(config: Path) -> None:
    for command in (["balances"], ["report"], ["status"], ["history", "main"]):
        code, out, _ = invoke(config, *command)
        assert code == 0
        assert all(len(line) <= 100 for line in out.splitlines()), (command, out)
        assert MAIN not in out  # addresses are shortened or named by label
        assert "balance_mojos" not in out
    code, out, _ = invoke(config, "balances", "--wide")
    assert MAIN in out
    assert SBX in out
    assert "balance_mojos" in out
    assert "9007199254740493" in out
    # CSV and JSON keep every column, exact.
    code, out, _ = invoke(config, "balances", "--format", "csv")
    assert out.splitlines()[0] == "address,label,asset_id,symbol,balance,balance_mojos,taken_at"


def test_a_long_error_is_cut_to_fit(engine: Engine, config: Path) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main")], T0)
    store.record_failure(MAIN, T0 + timedelta(hours=3), T0 + timedelta(hours=3), "x" * 300)
    code, out, _ = invoke(config, "status")
    assert code == 0
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "xxx…" in out
    assert "x" * 300 in invoke(config, "status", "--format", "json")[1]


def test_messages_say_what_is_true(config: Path) -> None:
    code, out, err = invoke(config, "balances", "--at", "2026-01-01")
    assert (code, out) == (1, "")
    assert err == (
        "tracker: error: no balances at 2026-01-01T00:00:00Z: "
        "the history starts 2026-03-01T12:00:00Z\n"
    )
    code, out, err = invoke(config, "report", "--since", "2099-01-01")
    assert code == 2
    assert "in the future" in err
    code, out, err = invoke(config, "history", "main", "--since", "2026-03-01T13:00:00Z")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[2:]] == [
        "2026-03-01T13:00:00Z",
        "2026-03-01T13:00:00Z",
        "2026-03-01T14:00:00Z",
        "2026-03-01T14:00:00Z",
    ]


def test_usage_errors_are_one_line_with_a_hint(config: Path) -> None:
    result = CliRunner().invoke(cli, ["balances", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr == (
        "tracker: error: balances: no such option --config (--config is a global option: put "
        "it before the command, tracker --config ... balances)\n"
    )
    code, _, err = invoke(config, "report", "--period", "year")
    assert code == 2
    assert err.startswith("tracker: error: report: Invalid value for '--period'")
    assert err.count("\n") == 1


def test_history_by_label_and_symbol(config: Path) -> None:
    code, out, _ = invoke(config, "history", "main", "--asset", "sbx", "--format", "json")
    assert code == 0
    assert [(r["taken_at"], r["balance"]) for r in json.loads(out)] == [
        ("2026-03-01T12:00:00Z", "9007199254740.993"),
        ("2026-03-01T13:00:00Z", "9007199254740.493"),
        ("2026-03-01T14:00:00Z", "9007199254740.493"),
    ]


def test_unknown_address_is_exit_1_one_line(config: Path) -> None:
    code, out, err = invoke(config, "history", make_address(77))
    assert code == 1
    assert out == ""
    assert err.startswith("tracker: error: unknown address")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--since", "yesterday"],
        ["report", "--format", "xml"],
        ["nonsense"],
    ],
)
def test_bad_usage_is_exit_2(config: Path, args: list[str]) -> None:
    code, _, err = invoke(config, *args)
    assert code == 2
    assert "Traceback" not in err


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    code, _, err = invoke(tmp_path / "nowhere.toml", "balances")
    assert code == 2
    assert "nowhere.toml: config file not found" in err


def test_reading_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "missing.db"}"\n')
    code, _, err = invoke(path, "balances")
    assert code == 1
    assert "missing.db does not exist" in err
    assert not (tmp_path / "missing.db").exists()


def test_reading_an_empty_database_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "empty.db"}"\n')
    code, _, err = invoke(path, "balances")
    assert code == 1
    assert "no tracker schema yet" in err


def test_db_commands(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n')
    assert invoke(path, "db", "current")[1].splitlines()[0] == "database: empty"
    code, out, _ = invoke(path, "db", "upgrade")
    assert (code, out) == (0, f"database at revision {migrate.head_revision()}\n")
    code, _, err = invoke(path, "db", "upgrade", "--revision", "nope")
    assert code == 1
    assert err.startswith("tracker: error: ")
    assert "nope" in err
    assert err.count("\n") == 1
    code, out, err = invoke(path, "db", "downgrade", "base")
    assert (code, out) == (2, "")  # no terminal to ask on, and no --yes
    assert "refusing without a terminal to ask on (give --yes)" in err
    assert (
        invoke(path, "db", "current")[1].splitlines()[0] == f"database: {migrate.head_revision()}"
    )
    assert invoke(path, "db", "downgrade", "0001", "--yes")[1] == "database at revision 0001\n"
    assert invoke(path, "db", "downgrade", "base", "-y")[1] == "database at revision base\n"


def test_balances_at_and_report_periods(config: Path) -> None:
    code, out, _ = invoke(
        config, "balances", "--at", "2026-03-01T13:30:00Z", "--asset", "SBX", "--format", "json"
    )
    assert code == 0
    assert [(r["balance"], r["taken_at"]) for r in json.loads(out)] == [
        ("9007199254740.493", "2026-03-01T13:00:00Z")
    ]
    code, out, _ = invoke(config, "report", "--period", "day", "--total", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["period"], r["asset_id"], r["change"], r["address"]) for r in rows] == [
        ("2026-03-01", "xch", "-0.999999999997", ""),
        ("2026-03-01", SBX, "-0.500", ""),
    ]


def test_status_and_label_filter(config: Path) -> None:
    code, out, _ = invoke(config, "status", "--label", "main", "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["address"], row["snapshots"], row["consecutive_failures"]) == (MAIN, 3, 0)
    assert row["last_success"] == "2026-03-01T14:00:00Z"
    code, _, err = invoke(config, "status", "--label", "nobody")
    assert code == 1
    assert "no address has the label 'nobody'" in err
