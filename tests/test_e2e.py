"""The real `tracker` process against a fake Spacescan on 127.0.0.1, on both databases."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import make_address, make_asset
from support.databases import query
from support.fakeapi import FakeSpacescan, Response
from support.process import Daemon, run_tracker, write_config

ALICE, BOB = make_address(11), make_address(12)
SBX, DBX = make_asset(0x5B), make_asset(0xDB)
API_KEY = "test-key-4f1c9a77e2"


def config_for(tmp_path: Path, api_url: str, db_url: str, **options: Any) -> Path:
    return write_config(
        tmp_path / "tracker.toml",
        db_url=db_url,
        api_url=api_url,
        addresses=[(ALICE, "alice"), BOB],
        **options,
    )


def tracker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_tracker(*args, env={"SPACESCAN_API_KEY": API_KEY, **(env or {})})


@pytest.fixture
def api() -> Iterator[FakeSpacescan]:
    with FakeSpacescan(api_key=API_KEY) as fake:
        fake.set_xch(ALICE, 1_500_000_000_000)
        fake.set_token(ALICE, SBX, "9007199254740.993", name="Spacebucks", symbol="SBX")
        fake.set_xch(BOB, 0)
        fake.set_token(BOB, DBX, "12", name=None, symbol=None)
        yield fake


def test_poll_stores_snapshots_and_deltas(api: FakeSpacescan, db_url: str, tmp_path: Path) -> None:
    config = config_for(tmp_path, api.url, db_url)
    env = {"SPACESCAN_API_KEY": API_KEY}
    first = tracker("--config", str(config), "poll", env=env)
    assert first.returncode == 0, first.stderr
    assert "2 of 2 addresses ok" in first.stderr

    api.set_token(ALICE, SBX, "9007199254740.493", name="Spacebucks", symbol="SBX")
    api.remove_token(BOB, DBX)
    api.set_xch(BOB, 1)
    second = tracker("--config", str(config), "poll", env=env)
    assert second.returncode == 0, second.stderr

    history = query(db_url, "SELECT address, asset_id, balance_mojos FROM balance_history")
    assert len(history) == 4 + 3
    changes = query(
        db_url,
        "SELECT address, label, asset_id, previous_balance_mojos, balance_mojos, delta_mojos"
        " FROM balance_changes ORDER BY address, asset_id",
    )
    assert changes == sorted(
        [
            (ALICE, "alice", SBX, 9007199254740993, 9007199254740493, -500),
            (BOB, None, DBX, 12000, 0, -12000),
            (BOB, None, "xch", 0, 1, 1),
        ]
    )
    attempts = query(db_url, "SELECT ok FROM poll_attempts")
    assert len(attempts) == 4
    assert all(ok for (ok,) in attempts)
    # Every request named the tool and carried the key; the key never reached the output.
    assert all(r.headers["user-agent"].startswith("tracker/") for r in api.requests)
    assert all(r.headers["x-api-key"] == API_KEY for r in api.requests)
    assert API_KEY not in first.stderr + first.stdout + second.stderr + second.stdout

    report = tracker("--config", str(config), "report", "--format", "json", env=env)
    assert report.returncode == 0, report.stderr
    assert '"change": "-0.500"' in report.stdout


def test_a_failing_address_is_recorded_and_the_others_stored(
    api: FakeSpacescan, db_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path, api.url, db_url)
    api.push(f"/token-balance/{BOB}", Response(200, "<html>Cloudflare</html>"))
    result = tracker("--config", str(config), "poll", env={"SPACESCAN_API_KEY": API_KEY})
    assert result.returncode == 1
    assert "1 of 2 addresses failed" in result.stderr
    assert "HTML" in result.stderr
    assert "Traceback" not in result.stderr
    assert query(db_url, "SELECT DISTINCT address FROM balance_history") == [(ALICE,)]
    failed = query(
        db_url,
        "SELECT a.address, p.error FROM poll_attempts p JOIN addresses a ON a.id = p.address_id"
        " WHERE NOT p.ok",
    )
    assert len(failed) == 1
    assert failed[0][0] == BOB
    assert "HTML" in str(failed[0][1])


def test_bad_config_exits_2_before_any_request(api: FakeSpacescan, tmp_path: Path) -> None:
    db_file = tmp_path / "never.db"
    config = config_for(tmp_path, api.url, f"sqlite:///{db_file}")
    config.write_text(config.read_text().replace(BOB, BOB[:-1] + ("q" if BOB[-1] != "q" else "p")))
    result = tracker("--config", str(config), "poll")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(config) in result.stderr
    assert "addresses[1].address" in result.stderr
    assert "checksum" in result.stderr
    assert api.requests == []
    assert not db_file.exists()


def test_unreachable_database_is_one_line(api: FakeSpacescan, tmp_path: Path) -> None:
    config = config_for(tmp_path, api.url, "postgresql://nobody:s3cret@127.0.0.1:1/none")
    result = tracker("--config", str(config), "poll")
    assert result.returncode == 1
    assert result.stderr.startswith("tracker: error: database postgresql://nobody:***@127.0.0.1:1/")
    assert result.stderr.count("\n") == 1
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert api.requests == []


def test_run_polls_at_once_and_stops_cleanly_on_sigterm(
    api: FakeSpacescan, db_url: str, tmp_path: Path
) -> None:
    config = config_for(tmp_path, api.url, db_url, interval=1)
    with Daemon(config, env={"SPACESCAN_API_KEY": API_KEY}) as daemon:
        daemon.wait_for("three polls", lambda: len(daemon.polls()) >= 3)
        api.set_xch(ALICE, 2_000_000_000_000)
        daemon.wait_for("the change", lambda: "XCH +0.5" in daemon.output())
        status, _, stopped_in = daemon.terminate()
        err = daemon.output()
    assert status == 0, err
    assert stopped_in < 10  # the README's promise
    assert "Traceback" not in err
    assert API_KEY not in err
    snapshots = query(db_url, "SELECT count(*) FROM snapshots")[0][0]
    attempts = query(db_url, "SELECT count(*) FROM poll_attempts WHERE ok")[0][0]
    assert snapshots == attempts >= 6
    xch_changes = query(
        db_url,
        f"SELECT delta_mojos FROM balance_changes WHERE address = '{ALICE}' AND asset_id = 'xch'",
    )
    assert xch_changes == [(500_000_000_000,)]
    # No half-written snapshot: every snapshot has its balances.
    empty = query(
        db_url,
        "SELECT count(*) FROM snapshots s WHERE NOT EXISTS"
        " (SELECT 1 FROM snapshot_balances b WHERE b.snapshot_id = s.id)",
    )
    assert empty == [(0,)]


def test_sigterm_during_a_hung_request_stops_within_seconds(
    api: FakeSpacescan, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    config = config_for(tmp_path, api.url, db_url, spacescan={"timeout_seconds": 60})
    api.push(f"/token-balance/{BOB}", Response(200, {"status": "success", "data": []}, delay=60))
    with Daemon(config, env={"SPACESCAN_API_KEY": API_KEY}) as daemon:
        # BOB's token request is the one left hanging; ALICE's snapshot is written meanwhile.
        daemon.wait_for(
            "ALICE's snapshot",
            lambda: db_file_has_a_snapshot(tmp_path / "tracker.db"),
        )
        status, _, stopped_in = daemon.terminate()
        err = daemon.output()
    assert status == 0, err
    assert stopped_in < 10  # the README's promise, whatever the daemon waits on
    assert "abandoned while reading 1 of 2 from spacescan" in err
    assert "Traceback" not in err
    assert query(db_url, "SELECT DISTINCT address FROM balance_history") == [(ALICE,)]
    assert query(db_url, "SELECT count(*) FROM snapshots") == [(1,)]


def db_file_has_a_snapshot(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        return query(f"sqlite:///{path}", "SELECT count(*) FROM snapshots") == [(1,)]
    except Exception:  # the schema is not there yet
        return False
