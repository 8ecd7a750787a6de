"""The ``tracker`` command: parses arguments, calls the library, prints; nothing more.

Every error a user can cause or meet (bad config, unreachable database, unknown address) ends as
one line on stderr and an exit status; tracebacks are only for bugs, and only with ``-v``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, wraps
from typing import Any, ClassVar, TypeVar

import click
import requests
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tracker import __version__, db, reports
from tracker.clock import SystemClock
from tracker.config import ConfigError, Settings, config_path, load
from tracker.output import FORMATS, Column, render
from tracker.poller import Poller
from tracker.ratelimit import RateBudget, RetryPolicy
from tracker.scheduler import Daemon
from tracker.snapshots import SnapshotStore
from tracker.spacescan import SpacescanClient

log = logging.getLogger("tracker")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """A runtime failure (exit 1): database unreachable, unknown address, failed polls."""

    exit_code = EXIT_FAILED

    def show(self, file: Any = None) -> None:
        click.echo(f"tracker: error: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """A bad configuration or invocation (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class App:
    """What every command shares: where the config is, and what was loaded from it."""

    config: str | None
    verbose: bool
    _engine: Engine | None = field(default=None, init=False)

    @cached_property
    def settings(self) -> Settings:
        try:
            return load(config_path(self.config, os.environ))
        except ConfigError as exc:
            raise UsageFailure(str(exc)) from None

    def engine(self, *, migrate: bool = False, require_schema: bool = True) -> Engine:
        """The database, checked reachable and (with ``migrate``) upgraded to the newest schema."""
        if self._engine is None:
            url = self.settings.database_url
            try:
                engine = db.create(url)
                if migrate:
                    if db.ensure_current(engine):
                        log.info("database schema upgraded to %s", db.head_revision())
                elif require_schema and db.current_revision(engine) is None:
                    raise Failure(
                        f"database {db.mask(url)} has no tracker schema yet: "
                        "run `tracker db upgrade` or `tracker poll`"
                    )
            except (SQLAlchemyError, db.DatabaseError) as exc:
                raise Failure(self.redact(f"database {db.mask(url)}: {db.describe(exc)}")) from None
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def secrets(self) -> list[str]:
        """What must never be printed: the API key and the database password."""
        try:
            settings = self.settings
        except UsageFailure:
            return []
        # A very short password would mask every occurrence of its letters in every message;
        # URLs are masked anyway (db.mask), so only real secrets go through text replacement.
        candidates = (settings.spacescan.api_key, db.password(settings.database_url))
        return [secret for secret in candidates if secret and len(secret) >= 4]

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text


def handle_database_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = click.get_current_context().find_object(App)
        try:
            return func(*args, **kwargs)
        except (reports.ReportError, AlembicError) as exc:
            raise Failure(" ".join(str(exc).split())) from None
        except (SQLAlchemyError, db.DatabaseError) as exc:
            url = db.mask(app.settings.database_url) if app else "?"
            message = f"database {url}: {db.describe(exc)}"
            raise Failure(app.redact(message) if app else message) from None

    return wrapper  # type: ignore[return-value]


class Moment(click.ParamType):  # type: ignore[type-arg]
    """An ISO-8601 date or time (UTC unless it says otherwise), or an age such as 7d or 12h."""

    name = "TIME"
    _AGE = re.compile(r"(\d+)([smhdw])")
    _UNITS: ClassVar[dict[str, str]] = {
        "s": "seconds",
        "m": "minutes",
        "h": "hours",
        "d": "days",
        "w": "weeks",
    }

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        age = self._AGE.fullmatch(text)
        if age:
            return datetime.now(UTC) - timedelta(**{self._UNITS[age[2]]: int(age[1])})
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an ISO-8601 time (2026-12-31T23:59:59Z) or an age (7d)")
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format; JSON and CSV keep amounts exact as decimal strings.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="PATH",
    help="Config file (default: $TRACKER_CONFIG, else ./tracker.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(__version__, prog_name="tracker")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Track Chia (XCH and CAT) balances from Spacescan into SQLite or PostgreSQL.

    Exit status: 0 success, 1 failure (a poll failed, the database is unreachable),
    2 bad configuration or usage.
    """
    app = App(config, verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _setup_logging(app: App) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    handler.addFilter(Redact(app.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if app.verbose else logging.INFO)
    if not app.verbose:
        for noisy in ("apscheduler", "urllib3", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class Redact(logging.Filter):
    """Last line of defence: a secret that reaches a log record anyway is replaced by ***."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _poller(app: App, clock: SystemClock) -> tuple[Poller, SnapshotStore]:
    settings = app.settings
    if not settings.addresses:
        raise UsageFailure(f"{settings.path}: no [[addresses]] to poll")
    engine = app.engine(migrate=True)
    spacescan = settings.spacescan
    session = requests.Session()
    client = SpacescanClient(
        spacescan.base_url,
        session=session,
        budget=RateBudget(spacescan.requests_per_minute, clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=spacescan.max_attempts),
        api_key=spacescan.api_key,
        timeout_seconds=spacescan.timeout_seconds,
    )
    store = SnapshotStore(engine)
    poller = Poller(
        client,
        store,
        clock,
        include_xch=spacescan.include_xch,
        concurrency=spacescan.concurrency,
    )
    return poller, store


@cli.command()
@click.pass_obj
def run(app: App) -> None:
    """Run the daemon: poll every address now, then every interval, until stopped.

    SIGINT or SIGTERM stop it within seconds (exit 0); a poll in progress is finished or
    abandoned, never half-written.

    \b
    Example:
      tracker --config config.example.toml run
    """
    _setup_logging(app)
    settings = app.settings
    clock = SystemClock()
    poller, store = _poller(app, clock)
    spacescan = settings.spacescan
    requests_per_poll = len(settings.addresses) * (2 if spacescan.include_xch else 1)
    minimum = requests_per_poll * 60 / spacescan.requests_per_minute
    log.info(
        "tracker %s: %d address%s every %d s from %s into %s (%g requests/min)",
        __version__,
        len(settings.addresses),
        "" if len(settings.addresses) == 1 else "es",
        settings.interval_seconds,
        spacescan.base_url,
        db.mask(settings.database_url),
        spacescan.requests_per_minute,
    )
    if minimum > settings.interval_seconds:
        log.warning(
            "a poll needs at least %.0f s at %g requests/min, more than the %d s interval: "
            "polls will run back to back (raise requests_per_minute or the interval)",
            minimum,
            spacescan.requests_per_minute,
            settings.interval_seconds,
        )
    daemon = Daemon(poller, settings.addresses, settings.interval_seconds, clock)
    if not daemon.run():
        # Only a request stuck on the network is left; no write is in progress once the
        # store is frozen, so leaving without joining that thread loses nothing.
        store.freeze()
        logging.shutdown()
        os._exit(EXIT_OK)
    log.info("stopped")


@cli.command()
@click.pass_obj
def poll(app: App) -> None:
    """Poll every address once and exit: 0 if all succeeded, 1 if any failed.

    \b
    Example:
      tracker poll
    """
    _setup_logging(app)
    poller, _ = _poller(app, SystemClock())
    try:
        summary = poller.poll(app.settings.addresses)
    except SQLAlchemyError as exc:
        raise Failure(
            app.redact(f"database {db.mask(app.settings.database_url)}: {db.describe(exc)}")
        ) from None
    log.info(summary.line())
    if summary.failed:
        stored = " (the others were stored)" if summary.ok else ""
        raise Failure(f"{summary.failed} of {len(summary.results)} addresses failed{stored}")


BALANCE_COLUMNS = (
    Column("address"),
    Column("label"),
    Column("asset_id"),
    Column("symbol"),
    Column("balance", "amount"),
    Column("balance_mojos", "mojos"),
    Column("taken_at", "time"),
)


def selection_options(*, asset: bool) -> Callable[[F], F]:
    """--address / --label (and --asset): the same words for the same filter on every command."""

    def decorate(func: F) -> F:
        if asset:
            func = click.option(
                "--asset", metavar="ID", help="Only this asset: asset id, tkn1… id, symbol or xch."
            )(func)
        func = click.option("--label", metavar="LABEL", help="Only the addresses with this label.")(
            func
        )
        return click.option(
            "--address", metavar="ADDRESS", help="Only this address (or its unique label)."
        )(func)

    return decorate


@cli.command()
@selection_options(asset=True)
@click.option(
    "--at",
    type=Moment(),
    help="Balances at this moment (from the last snapshot at or before it), e.g. for taxes.",
)
@format_option
@click.pass_obj
@handle_database_errors
def balances(
    app: App,
    address: str | None,
    label: str | None,
    asset: str | None,
    at: datetime | None,
    fmt: str,
) -> None:
    """The balance of each address and asset: the latest, or --at a moment.

    taken_at says when the snapshot behind each row was taken.

    \b
    Example:
      tracker balances --at 2026-12-31T23:59:59Z --format csv
    """
    selection = reports.Selection(address=address, label=label, asset=asset)
    rows = reports.balances(app.engine(), selection, at)
    _print(rows, BALANCE_COLUMNS, fmt, "no snapshots (yet, or before --at): run `tracker poll`")


REPORT_COLUMNS = (
    Column("address"),
    Column("label"),
    Column("asset_id"),
    Column("symbol"),
    Column("start_balance", "amount"),
    Column("end_balance", "amount"),
    Column("change", "change"),
    Column("changes", "count"),
    Column("start_at", "time"),
    Column("end_at", "time"),
)


@cli.command()
@click.option("--since", type=Moment(), help="Window start: ISO-8601 time or age (7d, 12h).")
@click.option("--until", type=Moment(), help="Window end: ISO-8601 time or age.")
@click.option(
    "--period",
    type=click.Choice(reports.PERIODS),
    help="One row per UTC day, ISO week or month; periods without a change are included.",
)
@click.option("--total", is_flag=True, help="Sum the addresses per asset: the portfolio.")
@selection_options(asset=True)
@format_option
@click.pass_obj
@handle_database_errors
def report(
    app: App,
    since: datetime | None,
    until: datetime | None,
    period: reports.Period | None,
    total: bool,
    address: str | None,
    label: str | None,
    asset: str | None,
    fmt: str,
) -> None:
    """Balance changes per address and asset over a window (default: all history).

    start_balance is the balance at the last snapshot at or before --since (or the first
    snapshot when history starts later), end_balance at the last one at or before --until;
    change = end_balance - start_balance, and changes counts the recorded balance changes.
    With --period, start_at/end_at are the period's bounds.

    \b
    Examples:
      tracker report --since 2026-01-01 --until 2026-12-31T23:59:59Z --format csv
      tracker report --period month --total --asset xch
    """
    selection = reports.Selection(address=address, label=label, asset=asset)
    rows = reports.change_report(app.engine(), since, until, selection, period=period, total=total)
    columns: tuple[Column, ...] = REPORT_COLUMNS
    if period is not None:
        columns = (*REPORT_COLUMNS[:4], Column("period"), *REPORT_COLUMNS[4:])
    _print(rows, columns, fmt, "no snapshots in this window")


STATUS_COLUMNS = (
    Column("address"),
    Column("label"),
    Column("last_success", "time"),
    Column("last_attempt", "time"),
    Column("consecutive_failures", "count"),
    Column("snapshots", "count"),
    Column("last_error"),
)


@cli.command()
@selection_options(asset=False)
@format_option
@click.pass_obj
@handle_database_errors
def status(app: App, address: str | None, label: str | None, fmt: str) -> None:
    """Poll health per address: last success, last error, failures since the last success.

    \b
    Example:
      tracker status
    """
    rows = reports.status(app.engine(), reports.Selection(address=address, label=label))
    _print(rows, STATUS_COLUMNS, fmt, "no addresses in the database yet")


HISTORY_COLUMNS = (
    Column("taken_at", "time"),
    Column("address"),
    Column("label"),
    Column("asset_id"),
    Column("symbol"),
    Column("balance", "amount"),
    Column("balance_mojos", "mojos"),
)


@cli.command()
@click.argument("address")
@click.option("--asset", metavar="ID", help="Only this asset: asset id, token id, symbol or xch.")
@format_option
@click.pass_obj
@handle_database_errors
def history(app: App, address: str, asset: str | None, fmt: str) -> None:
    """The balance time series of ADDRESS (an address or a label), oldest first.

    \b
    Example:
      tracker history example --asset xch --format csv
    """
    rows = reports.history(app.engine(), address, asset)
    _print(rows, HISTORY_COLUMNS, fmt, "no snapshots of this address yet")


@cli.group("db")
def db_group() -> None:
    """Database schema commands (the schema is owned by Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
@handle_database_errors
def db_upgrade(app: App, revision: str) -> None:
    """Create or upgrade the schema. `run` and `poll` do this on their own.

    \b
    Example:
      tracker db upgrade
    """
    engine = app.engine(require_schema=False)
    db.upgrade(engine, revision)
    click.echo(f"database at revision {db.current_revision(engine)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.pass_obj
@handle_database_errors
def db_downgrade(app: App, revision: str) -> None:
    """Downgrade the schema to REVISION (`base` removes every table: history is lost).

    \b
    Example:
      tracker db downgrade base
    """
    engine = app.engine(require_schema=False)
    db.downgrade(engine, revision)
    click.echo(f"database at revision {db.current_revision(engine) or 'base'}")


@db_group.command("current")
@click.pass_obj
@handle_database_errors
def db_current(app: App) -> None:
    """Show the schema revision of the database and the newest this tracker knows."""
    engine = app.engine(require_schema=False)
    click.echo(f"database: {db.current_revision(engine) or 'empty'}")
    click.echo(f"newest:   {db.head_revision()}")


def _print(rows: Sequence[object], columns: Sequence[Column], fmt: str, empty: str) -> None:
    count = render(rows, columns, fmt, sys.stdout)
    if not count and fmt == "table":
        click.echo(empty, err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; ``SystemExit`` carries the exit status."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="tracker")
    except KeyboardInterrupt:
        click.echo("tracker: interrupted", err=True)
        sys.exit(130)
