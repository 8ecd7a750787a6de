"""Commands that read: balances, report, status, history, export and chart."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from tracker.cli.app import (
    App,
    Moment,
    check_window,
    cli,
    columns,
    fail,
    format_option,
    print_rows,
    selection_options,
    wide_option,
)
from tracker.times import iso

Spec = tuple[str, str] | tuple[str, str, bool]
"""A column: its key, its kind and (optional) whether a table may cut it."""
F = TypeVar("F", bound=Callable[..., Any])

BALANCE = (
    ("address", "text"),
    ("label", "text"),
    ("asset_id", "text"),
    ("symbol", "text"),
    ("balance", "amount"),
    ("balance_mojos", "mojos"),
    ("taken_at", "time"),
)
BALANCE_TABLE = (
    ("who", "text", True),
    ("asset", "text", True),
    ("balance", "amount"),
    ("taken_at", "time"),
)
REPORT = (
    ("address", "text"),
    ("label", "text"),
    ("asset_id", "text"),
    ("symbol", "text"),
    ("start_balance", "amount"),
    ("end_balance", "amount"),
    ("change", "change"),
    ("changes", "count"),
    ("start_at", "time"),
    ("end_at", "time"),
)
REPORT_TABLE = (
    ("who", "text", True),
    ("asset", "text", True),
    ("start_balance", "amount"),
    ("end_balance", "amount"),
    ("change", "change"),
    ("changes", "count"),
)
VALUES = (
    ("currency", "text"),
    ("price_xch", "xch"),
    ("value_xch", "xch"),
    ("price", "fiat"),
    ("value", "fiat"),
)
VALUES_TABLE = (
    ("who", "text", True),
    ("asset", "text", True),
    ("balance", "amount"),
    ("price_xch", "xch"),
    ("value_xch", "xch"),
    ("currency", "text"),
    ("price", "fiat"),
    ("value", "fiat"),
)
REPORT_VALUES = (
    ("currency", "text"),
    ("start_value", "fiat"),
    ("end_value", "fiat"),
    ("value_change", "fiat_change"),
    ("flows", "fiat_change"),
    ("market", "fiat_change"),
)
REPORT_VALUES_TABLE = (
    ("who", "text", True),
    ("asset", "text", True),
    ("change", "change"),
    ("currency", "text"),
    ("end_value", "fiat"),
    ("value_change", "fiat_change"),
    ("flows", "fiat_change"),
    ("market", "fiat_change"),
)
STATUS = (
    ("address", "text"),
    ("label", "text"),
    ("last_success", "time"),
    ("last_attempt", "time"),
    ("consecutive_failures", "count"),
    ("snapshots", "count"),
    ("last_error", "text"),
)
STATUS_TABLE = (
    ("who", "text", True),
    ("last_success", "time"),
    ("consecutive_failures", "count"),
    ("snapshots", "count"),
    ("last_error", "text", True),
)
HISTORY = (
    ("taken_at", "time"),
    ("address", "text"),
    ("label", "text"),
    ("asset_id", "text"),
    ("symbol", "text"),
    ("balance", "amount"),
    ("balance_mojos", "mojos"),
)
HISTORY_TABLE = (("taken_at", "time"), ("asset", "text", True), ("balance", "amount"))


def _selection(address: str | None, label: str | None, asset: str | None = None):  # type: ignore[no-untyped-def]
    from tracker.reports.selection import Selection

    return Selection(address=address, label=label, asset=asset)


def value_option(what: str) -> Callable[[F], F]:
    return click.option("--value", "valued", is_flag=True, help=what)


@cli.command()
@selection_options(asset=True)
@click.option(
    "--at",
    type=Moment(),
    help="Balances at this moment (from the last snapshot at or before it), e.g. for taxes.",
)
@value_option(
    "Add prices and values: price_xch, value_xch, and price and value in [prices] currency."
)
@click.option("--total", is_flag=True, help="Sum the addresses per asset (with --value: and all).")
@format_option
@wide_option
@click.pass_obj
def balances(
    app: App,
    address: str | None,
    label: str | None,
    asset: str | None,
    at: datetime | None,
    valued: bool,
    total: bool,
    fmt: str,
    wide: bool,
) -> None:
    """The balance of each address and asset: the latest, or --at a moment.

    taken_at says when the snapshot behind each row was taken. With --value, each row is valued
    with the latest prices at or before that time (at most [prices] max_age_seconds old; '-' in
    a table, null in JSON, when unpriced); the table rounds XCH to 6 decimals and the currency
    to 2, CSV and JSON are exact. --total sums the addresses per asset (taken_at: the oldest
    snapshot); with --value a last row, symbol "total", is the portfolio, and unpriced counts
    the holdings without a value, left out of the sums.

    \b
    Examples:
      tracker balances --at 2026-12-31T23:59:59Z --format csv
      tracker balances --value --total
    """
    selection = _selection(address, label, asset)
    if valued:
        values = app.reader.values(selection, at, total=total)
        full: list[Spec] = [*BALANCE[:5], *VALUES, BALANCE[6], ("priced_at", "time")]
        table: list[Spec] = list(VALUES_TABLE)
        if total:
            full = [c for c in full if c[0] != "balance_mojos"] + [("unpriced", "count")]
            table = [c for c in table if c[0] != "who"] + [("unpriced", "count")]
        if print_rows(values, columns(*full), columns(*table), fmt, wide=wide):
            return
    else:
        rows = (
            app.reader.balance_totals(selection, at)
            if total
            else app.reader.balances(selection, at)
        )
        table = [c for c in BALANCE_TABLE if c[0] != "who"] if total else list(BALANCE_TABLE)
        if print_rows(rows, columns(*BALANCE), columns(*table), fmt, wide=wide):
            return
    first = app.reader.first_taken(_selection(address, label))
    if first is None:
        click.echo("no snapshots yet: nothing has been polled", err=True)
    elif at is not None and at < first:
        fail(f"no balances at {iso(at)}: the history starts {iso(first)}")
    elif asset is not None:
        click.echo(f"{asset} is not held by any address{f' at {iso(at)}' if at else ''}", err=True)


@cli.command()
@click.option("--since", type=Moment(), help="Window start: ISO-8601 time or age (7d, 12h).")
@click.option("--until", type=Moment(), help="Window end: ISO-8601 time or age.")
@click.option(
    "--period",
    type=click.Choice(("day", "week", "month")),
    help="One row per UTC day, ISO week or month; periods without a change are included.",
)
@click.option("--total", is_flag=True, help="Sum the addresses per asset: the portfolio.")
@value_option("Add values in [prices] currency, and the change split into flows and market.")
@selection_options(asset=True)
@format_option
@wide_option
@click.pass_obj
def report(
    app: App,
    since: datetime | None,
    until: datetime | None,
    period: str | None,
    total: bool,
    valued: bool,
    address: str | None,
    label: str | None,
    asset: str | None,
    fmt: str,
    wide: bool,
) -> None:
    """Balance changes per address and asset over a window (default: all history).

    start_balance is the balance at the last snapshot at or before --since (or the first
    snapshot when history starts later), end_balance at the last one at or before --until;
    change = end_balance - start_balance, and changes counts the recorded balance changes.
    With --period, start_at/end_at are the period's bounds.

    With --value: start_value and end_value are those balances valued at their snapshots'
    prices, value_change = end_value - start_value, flows is the sum of the changes each valued
    at its own snapshot's prices (what came in or went out, at the time), and market =
    value_change - flows (what prices did). '-' (null in JSON) where a price is missing. With
    --total, a row with symbol "total" per period is the portfolio; unpriced counts the rows
    left out of the sums. Tables round to 2 decimals; CSV and JSON are exact.

    \b
    Examples:
      tracker report --since 2026-01-01 --until 2026-12-31T23:59:59Z --format csv
      tracker report --period month --total --asset xch
      tracker report --value --period month --total
    """
    check_window(since, until)
    if since is not None and since > datetime.now(UTC):
        fail(f"--since {iso(since)} is in the future: there is nothing to report yet", 2)
    ask = app.reader.value_report if valued else app.reader.report
    rows: list[Any] = ask(
        since, until, _selection(address, label, asset), period=cast(Any, period), total=total
    )
    by_period: list[Spec] = [("period", "text")] if period else []
    unpriced: list[Spec] = [("unpriced", "count")] if valued and total else []
    full: list[Spec] = [*REPORT[:4], *by_period, *REPORT[4:8]]
    if valued:
        full += [*REPORT_VALUES, *unpriced]
    full += REPORT[8:]
    base = REPORT_VALUES_TABLE if valued else REPORT_TABLE
    table: list[Spec] = [*base[:2], *by_period, *base[2:], *unpriced]
    if total:
        table = [c for c in table if c[0] != "who"]
    if not print_rows(rows, columns(*full), columns(*table), fmt, wide=wide) and fmt == "table":
        click.echo("no snapshots in this window", err=True)


@cli.command()
@selection_options(asset=False)
@format_option
@wide_option
@click.pass_obj
def status(app: App, address: str | None, label: str | None, fmt: str, wide: bool) -> None:
    """Poll health per address: last success, last error, failures since the last success.

    A poll cancelled by a stop (Ctrl-C, SIGTERM) is not counted as a failure.

    \b
    Example:
      tracker status
    """
    rows = app.reader.status(_selection(address, label))
    shown = print_rows(rows, columns(*STATUS), columns(*STATUS_TABLE), fmt, wide=wide)
    if not shown and fmt == "table":
        click.echo("no addresses in the database yet", err=True)


@cli.command()
@click.argument("address")
@click.option("--asset", metavar="ID", help="Only this asset: asset id, token id, symbol or xch.")
@click.option("--since", type=Moment(), help="From this time (or age), included.")
@click.option("--until", type=Moment(), help="To this time, included.")
@format_option
@wide_option
@click.pass_obj
def history(
    app: App,
    address: str,
    asset: str | None,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    wide: bool,
) -> None:
    """The balance time series of ADDRESS (an address or a label), oldest first.

    \b
    Example:
      tracker history example --asset xch --since 30d --format csv
    """
    check_window(since, until)
    rows = app.reader.history(address, asset, since, until)
    shown = print_rows(rows, columns(*HISTORY), columns(*HISTORY_TABLE), fmt, wide=wide)
    if not shown and fmt == "table":
        window = " in this window" if since or until else " yet"
        click.echo(f"no snapshots of this address{window}", err=True)


@cli.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "jsonl", "json")),
    default="csv",
    show_default=True,
    help="CSV, JSON Lines (one object per line) or a JSON array; amounts stay exact decimal "
    "strings.",
)
@click.option(
    "--changes", is_flag=True, help="Every balance change (delta) instead of every balance."
)
@click.option("--since", type=Moment(), help="Only snapshots taken at or after this time (or age).")
@click.option("--until", type=Moment(), help="Only snapshots taken at or before this time.")
@selection_options(asset=True)
@click.pass_obj
def export_command(
    app: App,
    fmt: str,
    changes: bool,
    since: datetime | None,
    until: datetime | None,
    address: str | None,
    label: str | None,
    asset: str | None,
) -> None:
    """Every snapshot balance (or every change), oldest first, streamed to stdout.

    The columns are those of the SQL views balance_history (or, with --changes,
    balance_changes); rows are ordered by taken_at, then address, then asset (XCH first,
    then by asset id). Rows are written as they are read, so memory stays constant however
    long the history is.

    \b
    Examples:
      tracker export --since 2026-01-01 > balances.csv
      tracker export --changes --format jsonl --asset xch | jq -r .delta
    """
    check_window(since, until)
    app.reader.export(
        sys.stdout,
        changes=changes,
        fmt=fmt,
        selection=_selection(address, label, asset),
        since=since,
        until=until,
    )
    sys.stdout.flush()


@cli.command()
@click.option(
    "--address",
    metavar="ADDRESS",
    help="The address to draw (or its unique label); needed when the database holds several.",
)
@click.option("--label", metavar="LABEL", help="With --value: the addresses with this label.")
@click.option("--asset", metavar="ID", help="Only this asset: asset id, tkn1… id, symbol or xch.")
@click.option("--since", type=Moment(), help="Chart start: ISO-8601 time or age (90d).")
@click.option("--until", type=Moment(), help="Chart end: ISO-8601 time or age.")
@value_option("Draw the portfolio's value in [prices] currency: a stacked band per asset.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write; its suffix picks the format: .png, .svg or .pdf.",
)
@click.pass_obj
def chart(
    app: App,
    address: str | None,
    label: str | None,
    asset: str | None,
    since: datetime | None,
    until: datetime | None,
    valued: bool,
    output: Path,
) -> None:
    """Draw the balance of one address over time: one panel per asset.

    Each asset has its own panel in its own token units, on a shared UTC time axis; the line
    steps at the snapshots where the balance changed. Without --address the database must
    hold a single address (one chart is one address; `report --total` sums them).

    With --value: the value of the portfolio over time, in [prices] currency, one stacked band
    per asset, for every address (or --address, or --label). A band is left out where its
    asset is unpriced (never drawn as zero).

    \b
    Examples:
      tracker chart -o balances.png
      tracker chart --address main --asset xch --since 90d -o xch.svg
      tracker chart --value --since 1y -o portfolio.png
    """
    from tracker.reports.charts import chart_format, title
    from tracker.reports.selection import AddressNeeded

    check_window(since, until)
    chart_format(output)
    if valued:
        _value_chart(app, _selection(address, label, asset), since, until, output)
        return
    if label is not None:
        fail("--label needs --value (a balance chart draws one address: use --address)", 2)
    try:
        series = app.reader.series(address, asset, since, until)
    except AddressNeeded as exc:
        fail(
            f"the database holds {exc.count} addresses: choose one with --address "
            "(an address or its label)",
            exc.exit_code,
        )
    if not series.assets:
        what = f"no {asset} balance" if asset else "no snapshots"
        window = " in this window" if since or until else ""
        fail(f"{what} of {title(series)}{window}: nothing to draw")
    shown = app.reader.chart(output, series)
    if shown < len(series.assets):
        click.echo(
            f"tracker: drew {shown} of {len(series.assets)} assets (XCH first, then by symbol); "
            "draw the others with --asset",
            err=True,
        )


def _value_chart(
    app: App, selection: Any, since: datetime | None, until: datetime | None, output: Path
) -> None:
    series = app.tracker.value_series(selection, since, until)
    if not series.assets:
        window = " in this window" if since or until else ""
        fail(f"no snapshots{window}: nothing to draw")
    shown = app.tracker.value_chart(output, series)
    if shown < len(series.assets):
        click.echo(
            f"tracker: drew {shown} of {len(series.assets)} assets, the largest; "
            "the rest are summed in one band",
            err=True,
        )
