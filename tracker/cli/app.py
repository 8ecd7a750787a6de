"""The command group and what its commands share: errors, options, the tracker, printing.

Every error a user can cause or meet (bad config, unreachable database, unknown address, a bad
option) ends as one line on stderr, ``tracker: error: …``, and an exit status; tracebacks are only
for bugs, and only with ``-v``. Commands import what they need when they run, so
``tracker --help`` does not wait for the database layer.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tracker import __version__
from tracker.errors import TrackerError, UsageError

if TYPE_CHECKING:
    from tracker.reports.output import Column
    from tracker.service.tracker import Tracker

log = logging.getLogger("tracker")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
GLOBAL_OPTIONS = ("--config", "-v", "--verbose")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"tracker: error: {message}", err=True)
    sys.exit(code)


class TrackerGroup(click.Group):
    """Click, with every error as one line and the library's errors mapped to exit statuses."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        argv = list(args) if args is not None else sys.argv[1:]
        extra.pop("standalone_mode", None)
        try:
            return super().main(args=argv, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("tracker: interrupted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            fail(_usage_message(exc, argv), exc.exit_code)
        except TrackerError as exc:
            fail(_redacted(str(exc)), exc.exit_code)
        except BrokenPipeError:
            # A reader that stopped early (`| head`): quietly, and without Python's complaint.
            _drop_stdout()
            sys.exit(EXIT_FAILED)
        except OSError as exc:
            _drop_stdout()  # what is still buffered could not be written either
            fail(f"cannot write the output: {exc.strerror or exc}")
        except KeyboardInterrupt:
            click.echo("tracker: interrupted", err=True)
            sys.exit(130)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the exit's final flush has nothing to fail on."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _usage_message(exc: click.ClickException, argv: Sequence[str]) -> str:
    message = " ".join(exc.format_message().split())
    command = ""
    if isinstance(exc, click.UsageError) and exc.ctx is not None and exc.ctx.command_path:
        command = exc.ctx.command_path.partition(" ")[2]  # without the program's name
    if isinstance(exc, click.NoSuchOption):
        message = f"no such option {exc.option_name}"
        if exc.option_name in GLOBAL_OPTIONS:
            message += (
                f" ({exc.option_name} is a global option: put it before the command, "
                f"tracker {exc.option_name} ... {command or 'COMMAND'})"
            )
    return f"{command}: {message}" if command else message


_REDACT: list[Callable[[str], str]] = []


def _redacted(text: str) -> str:
    for redact in _REDACT:
        text = redact(text)
    return text


class Moment(click.ParamType):  # type: ignore[type-arg]
    """An ISO-8601 date or time (UTC unless it says otherwise), or an age such as 7d or 12h."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        from tracker.times import parse_moment

        if isinstance(value, datetime):
            return value
        try:
            return parse_moment(str(value), datetime.now(UTC))
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def format_option(func: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(("table", "csv", "json")),
        default="table",
        show_default=True,
        help="Output format; JSON and CSV keep amounts exact as decimal strings.",
    )(func)


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


def check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until < since:
        fail("--until is before --since")


class App:
    """What every command shares: where the config is, and (once loaded) the tracker."""

    def __init__(self, config: str | None, verbose: bool) -> None:
        self.config = config
        self.verbose = verbose
        self._tracker: Tracker | None = None

    @property
    def tracker(self) -> Tracker:
        """The tracker, its whole configuration checked (commands that poll or write)."""
        tracker = self._open(reading=False)
        tracker.settings  # noqa: B018  (checks the whole file now, before anything runs)
        _REDACT.append(tracker.redact)
        return tracker

    @property
    def reader(self) -> Tracker:
        """The tracker for a read-only command: only ``[database]`` is read and checked."""
        return self._open(reading=True)

    def _open(self, *, reading: bool) -> Tracker:
        if self._tracker is None:
            from tracker.service.tracker import Tracker

            self._tracker = Tracker.open(self.config, reading=reading)
            _REDACT.append(lambda text: self._tracker.redact(text) if self._tracker else text)
        return self._tracker

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()

    def setup_logging(self) -> None:
        from tracker.logs import setup

        setup(verbose=self.verbose, redact=self.tracker.redact)


@click.group(cls=TrackerGroup, context_settings={"help_option_names": ["-h", "--help"]})
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

    Global options (--config, -v) go before the command.
    Exit status: 0 success, 1 failure (a poll failed, the database is unreachable,
    nothing found), 2 bad configuration or usage.
    """
    _REDACT.clear()
    app = App(config, verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


def yes_option(func: F) -> F:
    return click.option(
        "--yes", "-y", is_flag=True, help="Do it without asking (needed without a terminal)."
    )(func)


def confirm(question: str, yes: bool) -> None:
    """Ask before something that loses history; without a terminal, only ``--yes`` does it."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question}: refusing without a terminal to ask on (give --yes)", EXIT_USAGE)
    if not click.confirm(f"{question}?", default=False, err=True):
        fail("nothing was changed", EXIT_USAGE)


def wide_option(func: F) -> F:
    return click.option(
        "--wide", is_flag=True, help="Tables: every column, full addresses and asset ids."
    )(func)


def print_rows(
    rows: Sequence[object],
    full: Sequence[Column],
    compact: Sequence[Column],
    fmt: str,
    *,
    wide: bool = False,
) -> int:
    """Rows in ``fmt``: CSV and JSON (and a --wide table) with every column, exact; a table
    for people with the ``compact`` columns, fitted to the terminal (or 100 columns)."""
    import shutil

    from tracker.reports.output import TABLE_WIDTH, render

    table = fmt == "table" and not wide
    width = None
    if fmt == "table":
        width = 10**6 if wide else TABLE_WIDTH
        if sys.stdout.isatty() and not wide:
            width = shutil.get_terminal_size((TABLE_WIDTH, 24)).columns
    count = render(rows, compact if table else full, fmt, sys.stdout, width=width)
    sys.stdout.flush()
    return count


TITLES = {
    "who": "address",
    "consecutive_failures": "failures",
    "start_balance": "start",
    "end_balance": "end",
    "last_success": "last success",
    "last_attempt": "last attempt",
    "last_error": "last error",
    "price_xch": "price XCH",
    "value_xch": "value XCH",
    "start_value": "start value",
    "end_value": "end value",
    "value_change": "value change",
}
"""Shorter headers for tables (CSV and JSON keep the keys)."""


def columns(*specs: tuple[str, str] | tuple[str, str, bool]) -> tuple[Column, ...]:
    """Columns from (key, kind[, clip]) triples."""
    from tracker.reports.output import Column

    return tuple(
        Column(spec[0], spec[1], TITLES.get(spec[0]), len(spec) > 2 and bool(spec[-1]))  # type: ignore[arg-type]
        for spec in specs
    )
