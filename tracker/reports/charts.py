"""Balance charts: one address over time, one panel per asset, to PNG, SVG or PDF.

Drawn with matplotlib's object-oriented ``Figure`` and no pyplot: no display, no GUI backend, no
global registry of open figures, so it works on a headless server and leaves nothing behind.

Each asset gets its own panel (sharing the time axis) because tokens are not comparable: XCH and
a CAT on one axis would put one of them flat on the floor, and their units differ anyway.
Balances change only at snapshot times, so the lines are steps that hold each balance until the
next change.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import matplotlib
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from tracker.domain import XCH
from tracker.errors import UsageError
from tracker.reports.output import short_address
from tracker.reports.series import AssetSeries, Series

# The file's suffix decides the format.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# Beyond this, panels get too flat to read; the rest can be drawn one by one with --asset.
MAX_PANELS = 12
WIDTH_INCHES = 10.0
PANEL_INCHES = 2.3
DPI = 110
# Up to this many points a line also marks each snapshot it changed at.
MARKED_POINTS = 60


class ChartError(UsageError):
    """A chart that cannot be drawn as asked; one line."""


def chart_format(path: Path) -> str:
    """``png``, ``svg`` or ``pdf``, from the file name."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise ChartError(
            f"{path}: cannot tell the chart format from {path.suffix or 'no suffix'!r}: "
            "name the file .png, .svg or .pdf"
        ) from None


def title(series: Series) -> str:
    short = short_address(series.address)
    return f"{series.label} · {short}" if series.label else short


def draw(series: Series, path: Path) -> int:
    """Write the chart of ``series`` to ``path``; returns how many assets it shows.

    The file is written next to ``path`` and renamed over it, so a reader (a web server, an
    image viewer) never sees half a chart.
    """
    fmt = chart_format(path)
    if not series.assets:
        raise ChartError("nothing to draw: no balances in this window")
    shown = series.assets[:MAX_PANELS]
    figure = Figure(figsize=(WIDTH_INCHES, 1.2 + PANEL_INCHES * len(shown)), layout="constrained")
    axes = figure.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for index, (ax, asset) in enumerate(zip(axes, shown, strict=True)):
        times = [when for when, _ in asset.points]
        # Floats only for the pixels: the data stays exact Decimal everywhere else, and a
        # float's 15 significant digits are far finer than any axis can show.
        values = [float(balance) for _, balance in asset.points]
        ax.plot(
            times,
            values,
            drawstyle="steps-post",
            color=f"C{index % 10}",
            linewidth=1.8,
            marker="o" if len(times) <= MARKED_POINTS else None,
            markersize=3.5,
            label=_legend(asset),
        )
        ax.set_ylabel(_unit(asset))
        ax.yaxis.set_major_formatter(_Amount())
        ax.grid(True, color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.legend(loc="best", frameon=True, fontsize="small")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    bottom = axes[-1]
    # matplotlib.dates is not annotated (yet); these two are plain constructors.
    locator = AutoDateLocator(tz="UTC")  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_locator(locator)
    concise = ConciseDateFormatter(locator, tz="UTC")  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(concise)
    bottom.set_xlabel("time (UTC)")
    # The window asked for, even where it has no data (that is worth seeing); otherwise
    # matplotlib's margins, so the first and last points are not cut by the frame. A single
    # snapshot gets a day either side rather than matplotlib's four years.
    first = min(asset.points[0][0] for asset in shown)
    last = max(asset.points[-1][0] for asset in shown)
    if first == last:
        bottom.set_xlim(first - timedelta(days=1), last + timedelta(days=1))
    if series.since is not None:
        bottom.set_xlim(left=series.since)
    if series.until is not None:
        bottom.set_xlim(right=series.until)
    figure.suptitle(title(series), fontsize="large", fontweight="bold")
    _save(figure, path, fmt)
    return len(shown)


def _unit(asset: AssetSeries) -> str:
    return asset.symbol or short_address(asset.asset_id)


def _legend(asset: AssetSeries) -> str:
    name = asset.name if asset.name and asset.name != asset.symbol else None
    last = asset.points[-1][1]
    # The legend's number comes from the exact Decimal, trailing zeros dropped: 2.5, not 2.5000…
    text = f"{_unit(asset)} ({name})" if name else _unit(asset)
    if asset.asset_id != XCH and not asset.symbol:
        text = f"CAT {text}"
    return f"{text} · last {_plain(last)}"


def _plain(amount: Decimal) -> str:
    return f"{amount.normalize():,f}" if amount else "0"


class _Amount(ScalarFormatter):
    """Token amounts as people write them: 12,500.5, never 1.25e4 or a "+9.007e12" offset."""

    def __init__(self) -> None:
        super().__init__(useOffset=False)
        self.set_scientific(False)

    def __call__(self, x: float, pos: int | None = None) -> str:
        text = super().__call__(x, pos)
        sign, digits = (text[0], text[1:]) if text[:1] in ("-", "\N{MINUS SIGN}") else ("", text)
        whole, dot, fraction = digits.partition(".")
        return f"{sign}{int(whole):,}{dot}{fraction}" if whole.isdigit() else text


def _save(figure: Figure, path: Path, fmt: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        # SVG keeps its text as text (searchable, selectable, small) instead of glyph outlines.
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            # No creation date in the file: the same history draws the same bytes.
            metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
            figure.savefig(partial, format=fmt, dpi=DPI, facecolor="white", metadata=metadata)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
