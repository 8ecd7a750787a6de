"""`--value`, `chart --value` and `prices backfill` as a user sees them, on both databases."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from sqlalchemy import Engine

from tracker.cli import cli

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
    assert header.split()[4:10] == [
        "balance",
        "currency",
        "price_xch",
        "value_xch",
        "price",
        "value",
    ]
    assert xch.split()[4:10] == ["7.000000000000", "USD", "1.000000", "7.000000", "32.00", "224.00"]
    assert sbx.split()[4:10] == ["1.500", "USD", "0.020000", "0.030000", "0.64", "0.96"]


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
    assert "value_change" in out.splitlines()[0]
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
