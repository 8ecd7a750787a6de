"""The ``tracker`` command: parses arguments, calls the library, prints; nothing more.

Every error a user can cause or meet (bad config, unreachable database, unknown address) ends as
one line on stderr and an exit status; tracebacks are only for bugs, and only with ``-v``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, wraps
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, TypeVar

import click
import requests
from alembic.util.exc import CommandError as AlembicError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tracker import __version__, db, export, reports, retention
from tracker.clock import SystemClock
from tracker.config import ConfigError, Settings, WatchedAddress, config_path, load
from tracker.leases import Leases
from tracker.lock import DaemonLock, LockError, LockHeld
from tracker.metrics import Metrics, MetricsServer
from tracker.notify import WebhookNotifier
from tracker.output import FORMATS, STREAM_FORMATS, Column, render
from tracker.poller import Poller, PollSummary
from tracker.ratelimit import RateBudget, RetryPolicy
from tracker.scheduler import Daemon, Job
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
        url = self.settings.database_url
        try:
            if self._engine is None:
                self._engine = db.create(url)
            if migrate:
                if db.ensure_current(self._engine):
                    log.info("database schema upgraded to %s", db.head_revision())
            elif require_schema and db.current_revision(self._engine) is None:
                raise Failure(
                    f"database {db.mask(url)} has no tracker schema yet: "
                    "run `tracker db upgrade` or `tracker poll`"
                )
            elif not require_schema:
                with self._engine.connect():
                    pass  # reachable: fail here, in one line, rather than later
        except (SQLAlchemyError, db.DatabaseError) as exc:
            raise Failure(self.redact(f"database {db.mask(url)}: {db.describe(exc)}")) from None
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
        for noisy in ("urllib3", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # A poll longer than the interval makes APScheduler warn at every skipped run; the
        # start-up line already says polls will run back to back, once.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)


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


def _poller(
    app: App,
    engine: Engine,
    clock: SystemClock,
    on_response: Callable[[str, str], None] | None = None,
    budget: RateBudget | None = None,
) -> tuple[Poller, SnapshotStore]:
    settings = app.settings
    spacescan = settings.spacescan
    session = requests.Session()
    client = SpacescanClient(
        spacescan.base_url,
        session=session,
        budget=budget or RateBudget(spacescan.requests_per_minute, clock),
        clock=clock,
        retry=RetryPolicy(max_attempts=spacescan.max_attempts),
        api_key=spacescan.api_key,
        timeout_seconds=spacescan.timeout_seconds,
        on_response=on_response,
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
    never half-written.

    \b
    Example:
      tracker --config config.example.toml run
    """
    _setup_logging(app)
    settings = app.settings
    _require_addresses(settings)
    clock = SystemClock()
    engine = app.engine(require_schema=False)
    # Shared-mode workers hold the lock together; a single daemon holds it alone.
    lock = DaemonLock(settings.database_url, clock=clock, shared=settings.workers.mode == "shared")

    def stop(signum: int, _frame: FrameType | None) -> None:
        # Until Daemon.run installs its own handlers: ends a --wait at once, and a signal that
        # lands between taking the lock and starting the scheduler still stops the daemon
        # (Daemon.run returns at once on a stopped clock).
        log.info("received %s", signal.Signals(signum).name)
        clock.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The lock comes before the migration: a newer tracker started with --wait must not
        # change the schema under a daemon that is still running.
        if _take_lock(lock, wait):
            app.engine(migrate=True)
            _run_daemon(app, engine, clock, lock)
        else:
            log.info("stopped while waiting for the daemon lock")
    finally:
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _require_addresses(settings: Settings) -> None:
    if not settings.addresses:
        raise UsageFailure(f"{settings.path}: no [[addresses]] to poll")


def _take_lock(lock: DaemonLock, wait: bool) -> bool:
    """The daemon lock, or why not as one line: False when stopped while waiting."""
    try:
        return lock.acquire(wait=wait)
    except LockHeld as exc:
        raise UsageFailure(f"{exc}; stop it or use --wait") from None
    except LockError as exc:
        raise Failure(str(exc)) from None


def _run_daemon(app: App, engine: Engine, clock: SystemClock, lock: DaemonLock) -> None:
    settings = app.settings
    spacescan = settings.spacescan
    metrics = server = None
    if settings.metrics.port is not None:
        metrics = Metrics(settings.stale_after_seconds)
        try:
            server = MetricsServer(metrics, settings.metrics.host, settings.metrics.port).start()
        except OSError as exc:
            where = f"{settings.metrics.host}:{settings.metrics.port}"
            raise UsageFailure(
                f"{settings.path}: metrics.port: cannot listen on {where}: {exc.strerror}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, server.port)
    budget = RateBudget(spacescan.requests_per_minute, clock)
    poller, store = _poller(
        app, engine, clock, metrics.observe_request if metrics is not None else None, budget
    )
    leases = _leases(app, engine, store, clock, budget)
    notifier = _notifier(app, clock, metrics)
    after_poll = _after_poll(metrics, notifier, leases)
    daemon = Daemon(
        poller,
        settings.addresses,
        settings.interval_seconds if leases is None else leases.tick_seconds,
        clock,
        before_poll=lock.ensure,
        on_poll=after_poll,
        reload=lambda: _reload_addresses(app),
        select=None if leases is None else leases.select,
        jobs=_retention_jobs(app, engine, clock),
    )
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
    finished = daemon.run()
    if leases is not None and finished:
        leases.stop()
    if notifier is not None:
        notifier.stop(drain_seconds=2.0)
    if server is not None:
        server.stop()
    if not finished:
        # Only a request stuck on the network is left; no write is in progress once the
        # store is frozen, so leaving without joining that thread loses nothing. The lock
        # (and the leases) go only after the freeze: never two writers. (The OS would free
        # the lock anyway; leases expire.)
        store.freeze()
        if leases is not None:
            leases.stop()
        lock.release()
        logging.shutdown()
        os._exit(EXIT_OK)
    log.info("stopped")


RETENTION_EVERY_SECONDS = 86_400


def _retention_jobs(app: App, engine: Engine, clock: SystemClock) -> list[Job]:
    """With ``[retention] keep``: prune once a day, first a day after start, between polls."""
    policy = app.settings.retention_policy
    if policy is None:
        return []

    def prune_once() -> None:
        # A stop between two of its transactions ends it early; what was done stays consistent.
        summary = retention.prune(engine, policy, clock.now(), should_stop=lambda: clock.stopped)
        log.info("retention %s: %s", policy, summary.line())

    log.info("retention %s: pruning once a day", policy)
    return [Job("retention", RETENTION_EVERY_SECONDS, prune_once)]


def _notifier(app: App, clock: SystemClock, metrics: Metrics | None) -> WebhookNotifier | None:
    settings = app.settings.notifications
    if settings.webhook_url is None:
        return None
    notifier = WebhookNotifier(
        settings.webhook_url,
        session=requests.Session(),
        clock=clock,
        timeout_seconds=settings.timeout_seconds,
        max_attempts=settings.max_attempts,
        on_failure=metrics.webhook_failures.inc if metrics is not None else None,
    )
    log.info("change notifications to %s", notifier.target)
    return notifier.start()


def _leases(
    app: App, engine: Engine, store: SnapshotStore, clock: SystemClock, budget: RateBudget
) -> Leases | None:
    """Shared mode: join the workers of this database (the budget is split unless `each`)."""
    settings = app.settings
    if settings.workers.mode != "shared":
        return None
    leases = Leases(
        engine,
        store,
        clock,
        interval_seconds=settings.interval_seconds,
        budget=budget if settings.workers.budget == "split" else None,
        requests_per_minute=settings.spacescan.requests_per_minute,
    )
    try:
        return leases.start()
    except SQLAlchemyError as exc:
        url = db.mask(settings.database_url)
        raise Failure(app.redact(f"database {url}: {db.describe(exc)}")) from None


def _after_poll(
    metrics: Metrics | None, notifier: WebhookNotifier | None, leases: Leases | None = None
) -> Callable[[PollSummary], None]:
    def after(summary: PollSummary) -> None:
        if leases is not None:  # first: the other workers wait for these leases
            leases.done(summary)
        if metrics is not None:
            metrics.observe_poll(summary)
        if notifier is not None:
            notifier.notify(summary)

    return after


def _reload_addresses(app: App) -> tuple[WatchedAddress, ...]:
    """SIGHUP: the address list from the config file as it is now, checked like at start."""
    settings = load(config_path(app.config, os.environ))
    if settings.database_url != app.settings.database_url:
        log.warning("reload: a new database URL takes effect only after a restart")
    return settings.addresses


@cli.command()
@click.pass_obj
def poll(app: App) -> None:
    """Poll every address once and exit: 0 if all succeeded, 1 if any failed.

    \b
    Example:
      tracker poll
    """
    _setup_logging(app)
    _require_addresses(app.settings)
    clock = SystemClock()
    poller, _ = _poller(app, app.engine(migrate=True), clock)
    notifier = _notifier(app, clock, None)
    try:
        summary = poller.poll(app.settings.addresses)
    except SQLAlchemyError as exc:
        raise Failure(
            app.redact(f"database {db.mask(app.settings.database_url)}: {db.describe(exc)}")
        ) from None
    log.info(summary.line())
    if notifier is not None:
        # A one-shot run waits for its notifications (bounded by the retry policy).
        notifier.notify(summary)
        hooks = app.settings.notifications
        notifier.stop(drain_seconds=hooks.max_attempts * (hooks.timeout_seconds + 8.0))
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


@cli.command()
@click.option(
    "--keep",
    metavar="POLICY",
    help=f"Retention policy, e.g. {retention.EXAMPLE} (default: [retention] keep).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@selection_options(asset=False)
@click.pass_obj
@handle_database_errors
def prune(
    app: App, keep: str | None, dry_run: bool, address: str | None, label: str | None
) -> None:
    """Thin out old snapshots by a retention policy; every remaining delta stays exact.

    POLICY is comma-separated tier:age pairs, finer tiers first. Snapshots younger than the
    all age are all kept; in an hourly, daily, weekly or monthly tier, the last snapshot of
    each UTC hour, day, week or month; older than the last age, none (unless it is forever).
    The first and the latest snapshot of each address are always kept. The deltas between
    kept snapshots are merged, so reports between kept snapshots do not change. Safe while
    the daemon runs.

    \b
    Examples:
      tracker prune --keep all:7d,hourly:90d,daily:forever --dry-run
      tracker prune
    """
    text = keep if keep is not None else app.settings.retention.keep
    if text is None:
        raise UsageFailure(
            f"no retention policy: give --keep POLICY (e.g. {retention.EXAMPLE}) "
            f"or set [retention] keep in {app.settings.path}"
        )
    try:
        policy = retention.parse_policy(text)
    except retention.PolicyError as exc:
        raise UsageFailure(f"--keep: {exc}") from None
    selection = reports.Selection(address=address, label=label)
    try:
        summary = retention.prune(
            app.engine(), policy, datetime.now(UTC), selection, dry_run=dry_run
        )
    except retention.RetentionError as exc:
        raise Failure(str(exc)) from None
    click.echo(summary.line())


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


@cli.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(STREAM_FORMATS),
    default="csv",
    show_default=True,
    help="CSV, or JSON Lines (one object per line); amounts stay exact decimal strings.",
)
@click.option(
    "--changes", is_flag=True, help="Every balance change (delta) instead of every balance."
)
@click.option("--since", type=Moment(), help="Only snapshots taken at or after this time (or age).")
@click.option("--until", type=Moment(), help="Only snapshots taken at or before this time.")
@selection_options(asset=True)
@click.pass_obj
@handle_database_errors
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
    selection = reports.Selection(address=address, label=label, asset=asset)
    engine = app.engine()
    rows = (
        export.changes(engine, selection, since, until)
        if changes
        else export.balances(engine, selection, since, until)
    )
    columns = export.CHANGE_COLUMNS if changes else export.BALANCE_COLUMNS
    # Closed however the writing ends, so the cursor and its connection go back at once. A
    # reader that stops early (`| head`) is click's business: it exits 1 quietly.
    with closing(rows):
        render(rows, columns, fmt, sys.stdout)
        sys.stdout.flush()


@cli.command()
@click.option(
    "--address",
    metavar="ADDRESS",
    help="The address to draw (or its unique label); needed when the database holds several.",
)
@click.option("--asset", metavar="ID", help="Only this asset: asset id, tkn1… id, symbol or xch.")
@click.option("--since", type=Moment(), help="Chart start: ISO-8601 time or age (90d).")
@click.option("--until", type=Moment(), help="Chart end: ISO-8601 time or age.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write; its suffix picks the format: .png, .svg or .pdf.",
)
@click.pass_obj
@handle_database_errors
def chart(
    app: App,
    address: str | None,
    asset: str | None,
    since: datetime | None,
    until: datetime | None,
    output: Path,
) -> None:
    """Draw the balance of one address over time: one panel per asset.

    Each asset has its own panel in its own token units, on a shared UTC time axis; the line
    steps at the snapshots where the balance changed. Without --address the database must
    hold a single address (one chart is one address; `report --total` sums them).

    \b
    Examples:
      tracker chart -o balances.png
      tracker chart --address main --asset xch --since 90d -o xch.svg
    """
    # Imported here: matplotlib takes a noticeable moment to load and only this command needs it.
    from tracker import charts

    try:
        charts.chart_format(output)
        series = reports.balance_series(app.engine(), address, asset, since, until)
    except (charts.ChartError, reports.AddressNeeded) as exc:
        raise UsageFailure(str(exc)) from None
    if not series.assets:
        what = f"no {asset} balance" if asset else "no snapshots"
        window = " in this window" if since or until else ""
        raise Failure(f"{what} of {charts.title(series)}{window}: nothing to draw")
    try:
        shown = charts.draw(series, output)
    except OSError as exc:
        raise Failure(f"{output}: {exc.strerror or exc}") from None
    if shown < len(series.assets):
        click.echo(
            f"tracker: drew {shown} of {len(series.assets)} assets (XCH first, then by symbol); "
            "draw the others with --asset",
            err=True,
        )


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
