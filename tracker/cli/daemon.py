"""Commands that write: ``run`` (the daemon), ``poll`` (once) and ``prune``."""

from __future__ import annotations

import logging
import os

import click

from tracker.cli.app import EXIT_OK, App, cli, confirm, fail, selection_options, yes_option
from tracker.errors import Conflict

log = logging.getLogger("tracker")


@cli.command()
@click.option(
    "--wait",
    is_flag=True,
    help="If another tracker already runs on this database, wait until it stops and then "
    "take over, instead of exiting with status 2.",
)
@click.pass_obj
def run(app: App, wait: bool) -> None:
    """Run the daemon: poll every address now, then every interval, until stopped.

    Only one daemon runs per database: a second one exits with status 2 naming the first,
    or with --wait takes over when the first stops. With [workers] mode = "shared" on
    PostgreSQL, several daemons share the address list instead (see the README). SIGINT or
    SIGTERM stop it within seconds (exit 0); a poll in progress is finished or abandoned,
    never half-written. SIGHUP reloads the address list.

    \b
    Example:
      tracker --config config.example.toml run
    """
    tracker = app.tracker
    app.setup_logging()
    try:
        outcome = tracker.run(wait=wait)
    except Conflict as exc:
        fail(f"{exc}; stop it or use --wait", exc.exit_code)
    if not outcome.finished:
        # A thread still waits on the network or the database; nothing is half-written, so
        # the process leaves without joining it.
        logging.shutdown()
        os._exit(EXIT_OK)


@cli.command()
@click.pass_obj
def poll(app: App) -> None:
    """Poll every address once and exit: 0 if all succeeded, 1 if any failed.

    \b
    Example:
      tracker poll
    """
    tracker = app.tracker
    app.setup_logging()
    summary = tracker.poll()
    log.info(summary.line())
    if summary.failed:
        stored = " (the others were stored)" if summary.ok else ""
        fail(f"{summary.failed} of {len(summary.results)} addresses failed{stored}")


@cli.command()
@click.option(
    "--keep",
    metavar="POLICY",
    help="Retention policy, e.g. all:7d,hourly:90d,daily:forever (default: [retention] keep).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@selection_options(asset=False)
@yes_option
@click.pass_obj
def prune(
    app: App,
    keep: str | None,
    dry_run: bool,
    address: str | None,
    label: str | None,
    yes: bool,
) -> None:
    """Thin out old snapshots by a retention policy; every remaining delta stays exact.

    POLICY is comma-separated tier:age pairs, finer tiers first. Snapshots younger than the
    all age are all kept; in an hourly, daily, weekly or monthly tier, the last snapshot of
    each UTC hour, day, week or month; older than the last age, none (unless it is forever).
    The first and the latest snapshot of each address are always kept. The deltas between
    kept snapshots are merged, so reports between kept snapshots do not change. Safe while
    the daemon runs. Asks first (without a terminal, only with --yes).

    \b
    Examples:
      tracker prune --keep all:7d,hourly:90d,daily:forever --dry-run
      tracker prune --yes
    """
    from tracker.reports.selection import Selection
    from tracker.retention.policy import EXAMPLE, PolicyError

    settings = app.tracker.settings
    if keep is None and settings.retention.keep is None:
        fail(
            f"no retention policy: give --keep POLICY (e.g. {EXAMPLE}) "
            f"or set [retention] keep in {settings.path}",
            2,
        )
    selection = Selection(address=address, label=label)
    try:
        if not dry_run and not yes:
            # Count first: a bad policy or address is said before asking, and the question
            # says what would go.
            plan = app.tracker.prune(keep, selection, dry_run=True)
            confirm(plan.line().removesuffix(" (dry run: nothing was changed)") + "; go ahead", yes)
        summary = app.tracker.prune(keep, selection, dry_run=dry_run)
    except PolicyError as exc:
        fail(f"--keep: {exc}" if keep is not None else str(exc), exc.exit_code)
    click.echo(summary.line())
