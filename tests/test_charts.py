"""`tracker chart`: the series behind it, and real charts rendered from a test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from sqlalchemy import Engine

from tracker.cli import cli
from tracker.domain import Asset, Observation, WatchedAddress
from tracker.errors import TrackerError, UsageError
from tracker.reports import charts
from tracker.reports.series import balance_series
from tracker.store.writer import SnapshotStore

from support import make_address, make_asset

MAIN, COLD = make_address(1), make_address(2)
SBX = make_asset(0x5B)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
XCH = 10**12


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
def history(engine: Engine) -> Engine:
    """MAIN: XCH 1 → 3 (day 10) → 2.5 (day 30); SBX 2^53+1 mojos from day 5 to day 20.

    Snapshots every day for 40 days, most without a change. COLD: one snapshot of XCH.
    """
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, "main"), WatchedAddress(COLD, "cold")], T0)
    infos = {
        "xch": Asset("xch", "Chia", "XCH"),
        SBX: Asset(SBX, "Spacebucks", "SBX"),
    }
    for n in range(40):
        balances = {"xch": XCH if n < 10 else 3 * XCH if n < 30 else 25 * XCH // 10}
        if 5 <= n < 20:
            balances[SBX] = 9007199254740993
        store.record_one(Observation(MAIN, day(n), day(n), balances, infos))
    store.record_one(Observation(COLD, day(3), day(3), {"xch": 7 * XCH}, infos))
    return engine


def test_series_holds_only_the_changes_exactly(history: Engine) -> None:
    series = balance_series(history, "main")
    assert (series.address, series.label) == (MAIN, "main")
    xch, sbx = series.assets
    assert (xch.symbol, sbx.symbol) == ("XCH", "SBX")
    assert xch.points == [
        (day(0), Decimal("1.000000000000")),
        (day(10), Decimal("3.000000000000")),
        (day(30), Decimal("2.500000000000")),
        (day(39), Decimal("2.500000000000")),  # held until the last snapshot
    ]
    # An asset that appears starts at 0 at the window's start; one that leaves ends at 0.
    assert sbx.points == [
        (day(0), Decimal(0)),
        (day(5), Decimal("9007199254740.993")),
        (day(20), Decimal("0.000")),
        (day(39), Decimal("0.000")),
    ]


def test_series_window(history: Engine) -> None:
    series = balance_series(history, MAIN, "xch", since=day(12.5), until=day(31.5))
    (xch,) = series.assets
    # Starts at --since with the balance then; ends at the last snapshot before --until.
    assert xch.points == [
        (day(12.5), Decimal("3.000000000000")),
        (day(30), Decimal("2.500000000000")),
        (day(31), Decimal("2.500000000000")),
    ]
    assert (series.since, series.until) == (day(12.5), day(31.5))
    assert balance_series(history, MAIN, since=day(39.5)).assets == []
    early = balance_series(history, MAIN, "sbx", since=day(-10), until=day(6))
    assert early.assets[0].points[0] == (day(0), Decimal(0))  # history starts later


def test_series_needs_an_address_when_there_are_several(history: Engine) -> None:
    with pytest.raises(UsageError, match="holds 2 addresses: choose one"):
        balance_series(history)
    with pytest.raises(TrackerError, match="unknown address"):
        balance_series(history, make_address(99))


@pytest.fixture
def config(history: Engine, db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "tracker.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    return path


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "chart", *args])
    return result.exit_code, result.stdout, result.stderr


def test_png_is_a_real_readable_chart(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "balances.png"
    code, out, err = invoke(config, "--address", "main", "-o", str(path))
    assert (code, out, err) == (0, "", "")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    height, width, _ = pixels.shape
    assert width == charts.WIDTH_INCHES * charts.DPI
    assert 400 < height < width  # two panels
    ink = np.mean(pixels[:, :, :3].min(axis=2) < 0.9)  # share of pixels that are not white
    assert 0.02 < ink < 0.5
    colours = {tuple(p) for p in (pixels[:, :, :3] * 255).round().reshape(-1, 3)[::7]}
    assert (31, 119, 180) in colours  # the XCH line (matplotlib's first colour) is drawn
    assert not list(tmp_path.glob(".*partial"))  # written whole, then renamed


def test_svg_names_the_address_and_the_assets(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "balances.SVG"
    code, _, _ = invoke(config, "--address", MAIN, "-o", str(path))
    assert code == 0
    svg = path.read_text()
    assert svg.startswith("<?xml")
    assert f"main · {charts.short_address(MAIN)}" in svg
    assert "XCH (Chia) · last 2.5" in svg
    assert "SBX (Spacebucks) · last 0" in svg
    assert "time (UTC)" in svg
    assert "8,000,000,000,000" in svg  # y ticks in plain token units, not 1e12 and an offset


def test_asset_and_window_select_what_is_drawn(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "sbx.svg"
    code, _, _ = invoke(
        config, "--address", "main", "--asset", "sbx", "--since", "2026-01-03", "-o", str(path)
    )
    assert code == 0
    svg = path.read_text()
    assert "SBX (Spacebucks)" in svg
    assert "XCH" not in svg


def test_pdf_and_a_single_snapshot(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "cold.pdf"
    assert invoke(config, "--address", "cold", "-o", str(path))[0] == 0
    assert path.read_bytes()[:5] == b"%PDF-"


def test_an_empty_selection_is_one_line_exit_1(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "none.png"
    code, out, err = invoke(config, "--address", "main", "--until", "2025-06-01", "-o", str(path))
    assert (code, out) == (1, "")
    assert err == (
        f"tracker: error: no snapshots of main · {charts.short_address(MAIN)} in this window: "
        "nothing to draw\n"
    )
    assert not path.exists()
    code, _, err = invoke(config, "--address", "cold", "--asset", "sbx", "-o", str(path))
    assert code == 1
    assert "no sbx balance of cold" in err


def test_several_addresses_need_address_exit_2(config: Path, tmp_path: Path) -> None:
    code, _, err = invoke(config, "-o", str(tmp_path / "x.png"))
    assert code == 2
    assert err == (
        "tracker: error: the database holds 2 addresses: choose one with --address "
        "(an address or its label)\n"
    )


@pytest.mark.parametrize("name", ["balances.jpg", "balances"])
def test_unknown_format_is_exit_2_one_line(config: Path, tmp_path: Path, name: str) -> None:
    code, _, err = invoke(config, "--address", "main", "-o", str(tmp_path / name))
    assert code == 2
    assert err.startswith("tracker: error: ")
    assert "name the file .png, .svg or .pdf" in err
    assert err.count("\n") == 1


def test_unwritable_output_and_missing_output(config: Path, tmp_path: Path) -> None:
    code, _, err = invoke(config, "--address", "main", "-o", str(tmp_path / "no" / "x.png"))
    assert code == 1
    assert err == f"tracker: error: {tmp_path / 'no' / 'x.png'}: No such file or directory\n"
    assert invoke(config, "--address", "main")[0] == 2  # -o is required


def test_many_assets_draw_the_first_panels_and_say_so(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    store = SnapshotStore(engine)
    store.sync_addresses([WatchedAddress(MAIN, None)], T0)
    infos = {make_asset(n): Asset(make_asset(n), None, f"T{n:02d}") for n in range(14)}
    for n in range(3):
        balances = {asset: 1000 * (n + 1) + i for i, asset in enumerate(infos)}
        store.record_one(Observation(MAIN, day(n), day(n), balances, infos))
    config = tmp_path / "tracker.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    path = tmp_path / "many.svg"
    code, _, err = invoke(config, "-o", str(path))
    assert code == 0
    assert err == (
        f"tracker: drew {charts.MAX_PANELS} of 14 assets (XCH first, then by symbol); "
        "draw the others with --asset\n"
    )
    svg = path.read_text()
    assert "T11 · last 3.011" in svg
    assert "T12" not in svg
    assert charts.short_address(MAIN) in svg  # no label: the title is the address
