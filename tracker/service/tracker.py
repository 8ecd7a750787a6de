"""``Tracker``: everything the command line does, as a Python API.

A :class:`Tracker` holds the settings and (once needed) the database engine; each method is one
thing a user can ask for, returns plain values, and raises only
:class:`~tracker.errors.TrackerError` (a database failure becomes one ``StoreError`` line with the
URL masked). The CLI and the web
dashboard are thin layers over it; so can your own scripts be::

    from tracker import Tracker
    with Tracker.open("tracker.toml") as t:
        for row in t.balances():
            print(row.address, row.symbol, row.balance)

Heavy modules (the poller, charts, Alembic) are imported by the methods that need them, so a
read-only command starts quickly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TextIO, TypeVar

from tracker.config_read import Database, config_path, load_database
from tracker.errors import NotFound, StoreError, TrackerError, UsageError
from tracker.redact import Redactor
from tracker.service.valuing import ValueMethods

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tracker.clock import SystemClock
    from tracker.config import Settings
    from tracker.reports.balances import BalanceRow
    from tracker.reports.changes import ReportRow
    from tracker.reports.periods import Period
    from tracker.reports.selection import Selection
    from tracker.reports.series import Series
    from tracker.reports.status import StatusRow
    from tracker.retention.prune import PruneSummary
    from tracker.service.assembly import Outcome
    from tracker.service.poller import PollSummary

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _database(method: Callable[P, R]) -> Callable[P, R]:
    """A database failure inside ``method`` becomes one ``StoreError`` line, URL masked."""

    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from sqlalchemy.exc import SQLAlchemyError

        from tracker.store.engine import database_error

        try:
            return method(*args, **kwargs)
        except SQLAlchemyError as exc:
            tracker: Tracker = args[0]  # type: ignore[assignment]
            raise database_error(tracker.database.url, exc) from None

    return wrapper


class Tracker(ValueMethods):
    """The library's front door: one configuration, one database (values: ``ValueMethods``).

    Made from checked :class:`~tracker.config.Settings`, or (``Tracker.open(..., reading=True)``)
    from the database's location alone: then the rest of the configuration is read and checked
    the first time a method needs it, so read-only use never pays for it.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database: Database | None = None,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if database is None:
            if settings is None:
                raise ValueError("a Tracker needs settings or a database")
            database = settings.location
        self.database = database
        self._settings = settings
        self.redact: Redactor = settings.redactor() if settings else database.redactor()
        self._config_file = config_file or database.path
        self._env = os.environ if env is None else env
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        """The whole configuration, checked (loaded now if only the database was read)."""
        if self._settings is None:
            from tracker.config import load

            self._settings = load(self._config_file, self._env)
            self.redact = self._settings.redactor()
        return self._settings

    @classmethod
    def open(
        cls,
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        reading: bool = False,
    ) -> Tracker:
        """Load and check the configuration (``--config``, ``$TRACKER_CONFIG``, ./tracker.toml);
        with ``reading``, only where the database is (for read-only use)."""
        env = os.environ if env is None else env
        path = config_path(config, env)
        if reading:
            return cls(database=load_database(path, env), config_file=path, env=env)
        from tracker.config import load

        return cls(load(path, env), config_file=path, env=env)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # The database --------------------------------------------------------------------------

    @_database
    def engine(self, *, create: bool = False) -> Engine:
        """The database, checked reachable; with ``create``, made and upgraded if needed.

        Without ``create`` a database that does not exist (or has no tracker schema) is a
        ``NotFound``: reading never creates one.
        """
        from tracker.store import engine as engines
        from tracker.store import migrate

        url = self.database.url
        if self._engine is None:
            if not create:
                _require_sqlite_file(url)
            self._engine = engines.create(url)
        if create:
            if migrate.ensure_current(self._engine):
                log.info("database schema upgraded to %s", migrate.head_revision())
        elif migrate.current_revision(self._engine) is None:
            raise NotFound(
                f"database {self.database.masked_url} has no tracker schema yet "
                "(nothing has been polled into it)"
            )
        return self._engine

    def _reachable(self) -> Engine:
        from tracker.store import engine as engines

        if self._engine is None:
            self._engine = engines.create(self.database.url)
        engines.reachable(self._engine)
        return self._engine

    @_database
    def upgrade(self, revision: str = "head") -> str | None:
        """Create or upgrade the schema; returns the revision the database is at."""
        from tracker.store import migrate

        engine = self._reachable()
        _alembic(lambda: migrate.upgrade(engine, revision))
        return migrate.current_revision(engine)

    @_database
    def downgrade(self, revision: str) -> str | None:
        """Downgrade the schema (``base`` removes every table: the history is lost)."""
        from tracker.store import migrate

        engine = self._reachable()
        _alembic(lambda: migrate.downgrade(engine, revision))
        return migrate.current_revision(engine)

    @_database
    def revisions(self) -> tuple[str | None, str]:
        """The database's schema revision (None: empty) and the newest this tracker knows."""
        from tracker.store import migrate

        return migrate.current_revision(self._reachable()), migrate.head_revision()

    # Reading -------------------------------------------------------------------------------

    @_database
    def balances(
        self, selection: Selection | None = None, at: datetime | None = None
    ) -> list[BalanceRow]:
        """Each address's balances, the latest or at a moment."""
        from tracker.reports.balances import balances
        from tracker.reports.selection import EVERYTHING

        return balances(self.engine(), selection or EVERYTHING, at)

    @_database
    def report(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        selection: Selection | None = None,
        *,
        period: Period | None = None,
        total: bool = False,
    ) -> list[ReportRow]:
        """Balance changes per address and asset (and period) over a window."""
        from tracker.reports.changes import change_report
        from tracker.reports.selection import EVERYTHING

        return change_report(
            self.engine(), since, until, selection or EVERYTHING, period=period, total=total
        )

    @_database
    def history(
        self,
        address: str,
        asset: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[BalanceRow]:
        """The balance time series of one address (or label), over a window."""
        from tracker.reports.balances import history

        return history(self.engine(), address, asset, since, until)

    @_database
    def first_taken(self, selection: Selection | None = None) -> datetime | None:
        """When the selected addresses' history starts (None: nothing stored yet)."""
        from tracker.reports.balances import first_taken
        from tracker.reports.selection import EVERYTHING

        return first_taken(self.engine(), selection or EVERYTHING)

    @_database
    def status(self, selection: Selection | None = None) -> list[StatusRow]:
        """Poll health per address."""
        from tracker.reports.selection import EVERYTHING
        from tracker.reports.status import status

        return status(self.engine(), selection or EVERYTHING)

    @_database
    def series(
        self,
        address: str | None = None,
        asset: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Series:
        """One address's balances over a window, as the points where they changed."""
        from tracker.reports.series import balance_series

        return balance_series(self.engine(), address, asset, since, until)

    @_database
    def export(
        self,
        out: TextIO,
        *,
        changes: bool = False,
        fmt: str = "csv",
        selection: Selection | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Stream every balance (or change) to ``out``; returns the number of rows."""
        from tracker.reports.export import FORMATS, export
        from tracker.reports.selection import EVERYTHING

        if fmt not in FORMATS:
            raise UsageError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
        return export(
            self.engine(),
            out,
            changes=changes,
            fmt=fmt,
            selection=selection or EVERYTHING,
            since=since,
            until=until,
        )

    def chart(self, output: Path, series: Series) -> int:
        """Draw ``series`` to ``output`` (.png, .svg, .pdf); returns how many assets it shows."""
        from tracker.reports.charts import draw

        try:
            return draw(series, output)
        except OSError as exc:
            raise TrackerError(f"{output}: {exc.strerror or exc}") from None

    # Writing -------------------------------------------------------------------------------

    def _require_addresses(self) -> None:
        if not self.settings.addresses:
            raise UsageError(f"{self.settings.path}: no [[addresses]] to poll")

    @_database
    def poll(self, *, clock: SystemClock | None = None) -> PollSummary:
        """Poll every address once (and send its change notifications, waiting for them)."""
        from tracker.clock import SystemClock
        from tracker.service import assembly

        self._require_addresses()
        clock = clock or SystemClock()
        poller = assembly.poller(self.settings, self.engine(create=True), clock)
        hooks = assembly.notifier(self.settings, clock)
        summary = poller.poll(self.settings.watched)
        if hooks is not None:
            # A one-shot run waits for its notifications (bounded by the retry policy).
            hooks.notify(summary)
            notifications = self.settings.notifications
            hooks.stop(
                drain_seconds=notifications.max_attempts * (notifications.timeout_seconds + 8.0)
            )
        return summary

    @_database
    def prune(
        self,
        keep: str | None = None,
        selection: Selection | None = None,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> PruneSummary:
        """Thin out old snapshots by a policy (default: ``[retention] keep``)."""
        from datetime import UTC

        from tracker.retention.policy import EXAMPLE, parse_policy
        from tracker.retention.prune import prune

        text = keep if keep is not None else self.settings.retention.keep
        if text is None:
            raise UsageError(
                f"no retention policy: give one (e.g. {EXAMPLE}) "
                f"or set [retention] keep in {self.settings.path}"
            )
        policy = parse_policy(text)
        return prune(self.engine(), policy, now or datetime.now(UTC), selection, dry_run=dry_run)

    def run(self, *, wait: bool = False, clock: SystemClock | None = None) -> Outcome:
        """The daemon, until SIGINT/SIGTERM (call it from the main thread)."""
        from tracker.clock import SystemClock
        from tracker.service import assembly
        from tracker.store.lock import DaemonLock

        self._require_addresses()
        clock = clock or SystemClock()
        settings = self.settings
        self._database_reachable()
        # Shared-mode workers hold the lock together; a single daemon holds it alone.
        lock = DaemonLock(
            settings.database_url, clock=clock, shared=settings.workers.mode == "shared"
        )
        with assembly.stop_signals(clock):
            try:
                # The lock comes before the migration: a newer tracker started with --wait must
                # not change the schema under a daemon that is still running.
                if not lock.acquire(wait=wait):
                    log.info("stopped while waiting for the daemon lock")
                    return assembly.Outcome(finished=True)
                engine = self.engine(create=True)
                return assembly.run_daemon(settings, engine, clock, lock, self._reload)
            finally:
                lock.release()

    @_database
    def _database_reachable(self) -> None:
        self._reachable()

    def _reload(self) -> tuple[Any, ...]:
        """SIGHUP: the address list from the configuration file as it is now."""
        from tracker.config import load

        settings = load(self._config_file, self._env)
        if settings.database_url != self.database.url:
            log.warning("reload: a new database URL takes effect only after a restart")
        return settings.watched


def _alembic(work: Callable[[], None]) -> None:
    """Alembic's own errors (an unknown revision) as one line."""
    from alembic.util.exc import CommandError

    try:
        work()
    except CommandError as exc:
        raise NotFound(" ".join(str(exc).split())) from None


def _require_sqlite_file(url: str) -> None:
    """A SQLite file that is not there is not created by a read: it is reported."""
    from tracker.store.engine import normalize_url, sqlite_memory

    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or sqlite_memory(parsed):
        return
    database = parsed.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    if not Path(database).exists():
        raise NotFound(f"database {database} does not exist (nothing has been polled into it)")


__all__ = ["StoreError", "Tracker", "TrackerError"]
