"""The portfolio's value over time: one stacked band per asset, in the fiat currency.

Unlike the balance chart (a panel per asset, since tokens are not comparable), values share one
unit, so the assets stack: the top edge is the portfolio's value, each band an asset's share. The
largest assets (by their last value) get a band each, the rest one band together. A moment where
an asset is unpriced leaves a gap in its band (drawn as no height), never a value of zero in the
data; the legend says so. Drawn with matplotlib's ``Figure`` (no pyplot), as charts.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from tracker.errors import UsageError
from tracker.reports.charts import DPI, WIDTH_INCHES, _Amount, _save, chart_format
from tracker.reports.output import short_address
from tracker.reports.value_series import AssetValues, ValueSeries
from tracker.valuation import FIAT_PLACES, rounded, total

MAX_BANDS = 10


def draw_values(series: ValueSeries, path: Path) -> int:
    """Write the value chart of ``series`` to ``path``; returns how many assets have a band of
    their own (the others share one)."""
    fmt = chart_format(path)
    if not series.assets or not series.times:
        raise UsageError("nothing to draw: no balances in this window")
    bands = _bands(series.assets)
    figure = Figure(figsize=(WIDTH_INCHES, 6.0), layout="constrained")
    ax = figure.subplots()
    # Floats only for the pixels; a gap (unpriced) has no height.
    heights = [[float(v) if v is not None else 0.0 for v in band.values] for band in bands]
    # matplotlib.dates is not annotated (yet): date2num is a plain conversion to day numbers.
    when = date2num(series.times)  # type: ignore[no-untyped-call]
    ax.stackplot(
        when,
        *heights,
        labels=[_legend(band, series.currency) for band in bands],
        step="post",
        colors=[f"C{n % 10}" for n in range(len(bands))],
        alpha=0.85,
    )
    ax.set_ylabel(f"value ({series.currency})")
    ax.yaxis.set_major_formatter(_Amount())
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", frameon=True, fontsize="small", reverse=True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    locator = AutoDateLocator(tz="UTC")  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz="UTC"))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)")
    if series.since is not None:
        ax.set_xlim(left=date2num(series.since))  # type: ignore[no-untyped-call]
    if series.until is not None:
        ax.set_xlim(right=date2num(series.until))  # type: ignore[no-untyped-call]
    figure.suptitle(_title(series), fontsize="large", fontweight="bold")
    _save(figure, path, fmt)
    return min(len(series.assets), MAX_BANDS)


def _bands(assets: list[AssetValues]) -> list[AssetValues]:
    """The largest assets by their last value, XCH first, then the rest summed as "others"."""
    if len(assets) <= MAX_BANDS:
        return assets
    ranked = sorted(assets, key=lambda a: a.values[-1] or Decimal(0), reverse=True)
    kept, rest = ranked[: MAX_BANDS - 1], ranked[MAX_BANDS - 1 :]
    summed = [
        None
        if any(a.values[n] is None for a in rest)
        else total(v for a in rest if (v := a.values[n]) is not None)
        for n in range(len(rest[0].values))
    ]
    others = AssetValues("others", f"{len(rest)} others", None, summed)
    return [a for a in assets if a in kept] + [others]


def _legend(band: AssetValues, currency: str | None) -> str:
    name = band.symbol or short_address(band.asset_id)
    last = band.values[-1]
    shown = "unpriced" if last is None else f"{rounded(last, FIAT_PLACES):,f} {currency}"
    gaps = " (unpriced at times)" if None in band.values[:-1] else ""
    return f"{name} · {shown}{gaps}"


def _title(series: ValueSeries) -> str:
    last = [a.values[-1] for a in series.assets]
    known = total(v for v in last if v is not None)
    missing = sum(v is None for v in last)
    note = f" ({missing} unpriced)" if missing else ""
    return (
        f"Portfolio value · {series.who} · {rounded(known, FIAT_PLACES):,f} {series.currency}{note}"
    )


__all__ = ["DPI", "MAX_BANDS", "draw_values"]
