"""``tracker prices``: the prices behind values (see the README's "Values")."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from tracker.cli.app import App, Moment, cli


@cli.group("prices")
def prices_group() -> None:
    """Prices: what values are computed with."""


@prices_group.command("backfill")
@click.option(
    "--since",
    type=Moment(),
    help="Only snapshots taken at or after this time (ISO-8601 or an age, e.g. 90d).",
)
@click.pass_obj
def prices_backfill(app: App, since: datetime | None) -> None:
    """Fetch the XCH price for history that has none: one request per UTC hour.

    For every UTC hour with a snapshot that no XCH price values (none at or before it within
    [prices] max_age_seconds), the price at the hour's start is fetched from Spacescan
    (/stats/price?period=...) and recorded as observed then. Requests share
    spacescan.requests_per_minute (at the free host's 3 a minute, a year of hours takes about
    two days: use --since, or an API key). Each price is stored as it arrives: Ctrl-C keeps
    them, and running it again asks only for what is still missing. CAT prices in XCH are not
    available for past times; those stay unpriced unless a price within max_age_seconds exists.
    Exit status 1 when a request failed (what was fetched is kept).

    \b
    Example:
      tracker prices backfill --since 2026-01-01
    """
    from tracker.clock import SystemClock
    from tracker.service.assembly import stop_signals

    app.setup_logging()
    clock = SystemClock()
    with stop_signals(clock):
        summary = app.tracker.backfill_prices(
            since, clock=clock, progress=lambda line: click.echo(line, err=True)
        )
    click.echo(summary.line())
    if summary.failed:
        sys.exit(1)
