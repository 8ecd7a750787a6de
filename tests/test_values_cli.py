"""`--value`, `chart --value` and `prices backfill` as a user sees them, on both databases."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from sqlalchemy import Engine, text

from tracker.cli import cli
from tracker.domain import Asset, Observation, WatchedAddress
from tracker.store.writer import SnapshotStore

from support.fakeapi import FakeSpacescan, Response
from support.priced import COLD, MAIN, SBX, build
from support.process import write_config


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config(engine: Engine, db_url: str, tmp_path: Path) -> Path:
    build(engine)
    return write_config(
        tmp_path / "tracker.toml",
        db_url=db_url,
        addresses=[(MAIN, "main"), (COLD, "cold")],
        sections={"prices": {"currency": "USD", "max_age_seconds": 30 * 86_400}},
    )


def test_balances_value_json_is_exact(config: Path) -> None:
    code, out, _ = invoke(config, "balances", "--value", "--address", "main", "--format", "json")
    assert code == 0
    xch, sbx = json.loads(out)
    assert {k: xch[k] for k in ("currency", "price_xch", "value_xch", "price", "value")} == {
        "currency": "USD",
        "price_xch": "1",
        "value_xch": "7.000000000000",
        "price": "32",
        "value": "224.000000000000",
    }
    assert (sbx["price_xch"], sbx["value_xch"], sbx["price"], sbx["value"]) == (
        "0.02",
        "0.03000",
        "0.64",
        "0.96000",
    )
    assert (sbx["taken_at"], sbx["priced_at"]) == ("2026-03-06T10:00:00Z", "2026-03-05T09:30:00Z")


def test_balances_value_table_rounds_for_reading(config: Path) -> None:
    code, out, _ = invoke(config, "balances", "--value", "--address", "main")
    assert code == 0
    header, _, xch, sbx = out.splitlines()
    assert header.split("  ")[0] == "address"
    assert [h.strip() for h in header.split("  ") if h.strip()][2:] == [
        "balance",
        "price XCH",
        "value XCH",
        "currency",
        "price",
        "value",
    ]
    assert xch.split()[2:] == ["7", "1.000000", "7.000000", "USD", "32.00", "224.00"]
    assert sbx.split()[2:] == ["1.5", "0.020000", "0.030000", "USD", "0.64", "0.96"]
    code, out, _ = invoke(config, "balances", "--value", "--address", "main", "--wide")
    header, _, xch, _ = out.splitlines()
    assert header.split()[4:10] == ["balance", "currency", "price", "XCH", "value", "XCH"]
    assert xch.split()[4:10] == ["7", "USD", "1.000000", "7.000000", "32.00", "224.00"]


def test_balances_total_is_the_portfolio(config: Path) -> None:
    code, out, _ = invoke(config, "balances", "--value", "--total", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["asset_id"], r["symbol"], r["value"], r["unpriced"]) for r in rows] == [
        ("xch", "XCH", "2744.000000000000", "0"),
        (SBX, "SBX", "0.96000", "0"),
        ("", "total", "2744.960000000000", "0"),
    ]
    code, out, _ = invoke(config, "balances", "--total", "--format", "json")
    assert code == 0
    assert [(r["asset_id"], r["balance"]) for r in json.loads(out)] == [
        ("xch", "97.000000000000"),
        (SBX, "1.500"),
    ]


def test_report_value_by_month_with_the_portfolio(config: Path) -> None:
    code, out, _ = invoke(
        config, "report", "--value", "--period", "month", "--total", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:10] == [
        "address", "label", "asset_id", "symbol", "period", "start_balance", "end_balance",
        "change", "changes", "currency",
    ]  # fmt: skip
    march = {r["symbol"]: r for r in rows if r["period"] == "2026-03"}
    assert (march["total"]["value_change"], march["total"]["unpriced"]) == ("-7.250000000000", "0")
    xch = march["XCH"]
    assert (xch["start_value"], xch["end_value"], xch["flows"], xch["market"]) == (
        "2752.000000000000",
        "2744.000000000000",
        "-440.000000000000",
        "432.000000000000",
    )
    code, out, _ = invoke(config, "report", "--value", "--address", "main")
    assert code == 0
    assert "value change" in out.splitlines()[0]
    assert "+24.00" in out.splitlines()[2]


def test_value_needs_valuation_on(config: Path) -> None:
    config.write_text(config.read_text().replace('currency = "USD"', 'currency = "none"'))
    for command in (["balances"], ["report"], ["chart", "-o", str(config.parent / "v.png")]):
        code, _, err = invoke(config, *command, "--value")
        assert code == 2
        assert err.startswith('tracker: error: valuation is off ([prices] currency = "none"')
        assert err.count("\n") == 1


def test_chart_value_draws_the_portfolio(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "portfolio.png"
    code, _, err = invoke(config, "chart", "--value", "-o", str(target))
    assert (code, err) == (0, "")
    image = imread(target)
    assert image.shape[0] > 400
    assert image.shape[1] > 800
    svg = tmp_path / "main.svg"
    assert invoke(config, "chart", "--value", "--label", "main", "-o", str(svg))[0] == 0
    assert "Portfolio value · label main (1 address)" in svg.read_text()
    code, _, err = invoke(config, "chart", "--label", "main", "-o", str(svg))
    assert code == 2
    assert "--label needs --value" in err


# -- prices backfill -------------------------------------------------------------------------------

T0 = datetime(2025, 6, 1, 10, 15, tzinfo=UTC)


@pytest.fixture
def unpriced(engine: Engine) -> Engine:
    """MAIN polled every 20 minutes for 3 hours, before prices were recorded."""
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main")], T0)
    for n in range(10):
        when = T0 + timedelta(minutes=20 * n)
        store.record_one(
            Observation(MAIN, when, when, {"xch": (n + 1) * 10**12}, {"xch": Asset("xch")})
        )
    return engine


def backfill_config(tmp_path: Path, db_url: str, api: FakeSpacescan) -> Path:
    return write_config(
        tmp_path / "tracker.toml", db_url=db_url, api_url=api.url, addresses=[(MAIN, "main")]
    )


def test_backfill_fetches_each_hour_once(unpriced: Engine, db_url: str, tmp_path: Path) -> None:
    with FakeSpacescan() as api:
        for hour, price in [(10, "20.5"), (11, "21"), (12, "22.25"), (13, "23")]:
            api.set_xch_price(price, period=int(T0.replace(hour=hour, minute=0).timestamp()))
        config = backfill_config(tmp_path, db_url, api)
        code, out, err = invoke(config, "prices", "backfill")
        assert code == 0, err
        assert out == (
            "prices backfill: 4 hours needed an XCH price; 4 recorded, "
            "0 not available at Spacescan, 0 failed\n"
        )
        periods = sorted(int(r.query.split("period=")[1]) for r in api.requests)
        assert periods == [int(T0.replace(hour=h, minute=0).timestamp()) for h in (10, 11, 12, 13)]
        code, out, _ = invoke(config, "prices", "backfill")
        assert out.startswith("prices backfill: 0 hours needed")
        assert len(api.requests) == 4
    code, out, _ = invoke(config, "balances", "--value", "--format", "json")
    (row,) = json.loads(out)
    assert (row["price"], row["value"], row["priced_at"]) == (
        "23",
        "230.000000000000",
        "2025-06-01T13:00:00Z",
    )
    with unpriced.connect() as connection:
        sources = connection.execute(text("SELECT DISTINCT source FROM prices")).scalars().all()
    assert sources == ["spacescan-history"]


def test_backfill_since_and_unavailable_hours(
    unpriced: Engine, db_url: str, tmp_path: Path
) -> None:
    with FakeSpacescan() as api:
        api.set_xch_price("21", period=int(T0.replace(hour=11, minute=0).timestamp()))
        config = backfill_config(tmp_path, db_url, api)
        code, out, _ = invoke(config, "prices", "backfill", "--since", "2025-06-01T11:30:00Z")
        assert code == 0
        # Only the snapshots from 11:35 on count: hours 11, 12 and 13 (the fake answers the
        # latest price set at or before each).
        assert "3 hours needed an XCH price; 3 recorded" in out


def test_backfill_failures_keep_what_was_fetched(
    unpriced: Engine, db_url: str, tmp_path: Path
) -> None:
    with FakeSpacescan() as api:
        api.set_xch_price("20", period=int(T0.replace(hour=10, minute=0).timestamp()))
        api.push("/stats/price", Response(503), Response(503))  # the first hour, both attempts
        config = backfill_config(tmp_path, db_url, api)
        code, out, err = invoke(config, "prices", "backfill")
        assert code == 1
        assert "3 recorded, 0 not available at Spacescan, 1 failed" in out
        assert "2025-06-01 10:00Z: stats-price: HTTP 503" in err
        code, out, _ = invoke(config, "prices", "backfill")
        assert code == 0
        assert "1 hour needed an XCH price; 1 recorded" in out


def test_help_says_what_is_not_available(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["prices", "backfill", "--help"])
    assert result.exit_code == 0
    assert "CAT prices in XCH are not" in result.output
    for command in (["balances"], ["report"], ["chart"]):
        assert "--value" in CliRunner().invoke(cli, [*command, "--help"]).output
