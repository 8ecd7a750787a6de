"""The daemon: APScheduler runs the poll job on an interval until a signal says stop.

Stopping is the delicate part. A stop cancels every wait at once (the shared clock), lets a
write in progress commit, and gives the poll a few seconds to finish; a request or a database
that is still not answering after that is abandoned rather than waited for, because the
transaction boundary already guarantees that no half-written snapshot can exist.

The schedule keeps its pace when the wall clock jumps (NTP, a suspended VM, an operator):
APScheduler's triggers follow the wall clock, so a clock set back an hour would stop polling for
an hour. The daemon keeps when each job is due on the monotonic clock and hands the job to
APScheduler to run (one at a time, a late run coalesced); a wall-clock jump is logged.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from tracker.clock import Cancelled, Clock, SystemClock
from tracker.domain import WatchedAddress
from tracker.errors import TrackerError
from tracker.service.poller import Poller, PollSummary
from tracker.store.engine import describe

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0
_NEVER = 10**9
"""Seconds: the placeholder interval of a job's own trigger (the daemon paces it)."""
CLOCK_JUMP_SECONDS = 2.0
"""A difference between wall and monotonic time beyond this is a jump, not drift."""


@dataclass(frozen=True)
class Job:
    """Periodic work beside the polls (e.g. retention), run on its own schedule."""

    name: str
    every_seconds: int
    run: Callable[[], None]
    at_start: bool = False


class Daemon:
    """Runs ``poller`` every ``interval_seconds``, the first poll at once, never two at a time.

    With ``select`` (several workers sharing the list), ``interval_seconds`` is how often this
    worker looks for its share, and a look that finds nothing polls nothing and logs nothing.
    """

    def __init__(
        self,
        poller: Poller,
        addresses: Sequence[WatchedAddress],
        interval_seconds: float,
        clock: SystemClock,
        *,
        on_poll: Callable[[PollSummary], None] | None = None,
        before_poll: Callable[[], bool] | None = None,
        reload: Callable[[], Sequence[WatchedAddress]] | None = None,
        select: Callable[[Sequence[WatchedAddress]], Sequence[WatchedAddress]] | None = None,
        jobs: Sequence[Job] = (),
    ) -> None:
        self._poller = poller
        self._addresses = tuple(addresses)
        self._interval = interval_seconds
        self._clock = clock
        self._on_poll = on_poll
        # Asked before each poll whether it may run (the daemon lock); it logs why not.
        self._before_poll = before_poll
        # Called on SIGHUP (before the next poll) for a new address list; it raises on a bad
        # config, and then the old list stays.
        self._reload = reload
        self._reload_requested = threading.Event()
        # Which of the configured addresses this process polls now (all, unless several workers
        # share the list); and other periodic work (maintenance) on the same scheduler.
        self._select = select
        self._jobs = tuple(jobs)
        self._failed_polls = 0
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()

    @property
    def addresses(self) -> tuple[WatchedAddress, ...]:
        """The address list polled now (the configured one, as of the last SIGHUP)."""
        return self._addresses

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> bool:
        """Block until stopped; True when the last poll finished, False if it was abandoned."""
        scheduler = BackgroundScheduler(
            timezone="UTC",
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        # APScheduler runs the jobs (one at a time, a late one coalesced, never queued); when
        # they are due is kept here on the monotonic clock, because its triggers follow the
        # wall clock: a clock set back an hour would stop polling for an hour. Each job's own
        # trigger is a placeholder that never fires; the daemon hands it a run when due.
        cadences = [(_Cadence(self._interval, self._clock, at_start=True), "poll")]
        scheduler.add_job(self._poll_once, "interval", seconds=_NEVER, id="poll", name="poll")
        for job in self._jobs:
            cadences.append((_Cadence(job.every_seconds, self._clock, job.at_start), job.name))
            scheduler.add_job(
                self._guarded(job), "interval", seconds=_NEVER, id=job.name, name=job.name
            )
        previous = self._install_signals()
        # A worker looks for its share more often than a poll lasts: a look that comes while
        # the poll runs is skipped, which is normal and not worth a warning every time.
        quiet = _SkippedWhileBusy()
        logging.getLogger("apscheduler.scheduler").addFilter(quiet)
        scheduler.start(paused=False)
        try:
            self._pace(scheduler, cadences)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logging.getLogger("apscheduler.scheduler").removeFilter(quiet)
            log.info("stopping")
            self._clock.stop()
            scheduler.shutdown(wait=False)
        phase = self._poller.phase
        finished = self._idle.wait(STOP_GRACE_SECONDS)
        if not finished:
            log.warning(
                "the poll in progress is abandoned while %s (nothing half-written is stored)",
                phase,
            )
        return finished

    def _pace(self, scheduler: BackgroundScheduler, cadences: list[tuple[_Cadence, str]]) -> None:
        """Hand each job to the scheduler when due, until stopped; say when the clock jumps."""
        watch = _ClockWatch(self._clock)
        # A stopped clock also ends the daemon: a signal may have come before run().
        while not self._clock.stopped:
            for cadence, job_id in cadences:
                if cadence.due():
                    scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))
            jump = watch.jump()
            if jump is not None:
                seconds = jump.total_seconds()
                log.warning(
                    "the wall clock jumped %s by %.0f s; polls keep their pace",
                    "forward" if seconds > 0 else "back",
                    abs(seconds),
                )
            wait = min([1.0, *(cadence.wait() for cadence, _ in cadences)])
            if self._stop.wait(wait):
                return

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            # Signals reach only the main thread; a library user running the daemon in another
            # thread stops it with stop() instead.
            return {}
        previous: dict[int, Any] = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        if self._reload is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_reload)
        return previous

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self._stop.set()

    def _guarded(self, job: Job) -> Callable[[], None]:
        def run() -> None:
            if self._stop.is_set():
                return
            try:
                job.run()
            except Cancelled:
                pass
            except Exception as exc:  # maintenance must never take the daemon down
                log.error("%s failed: %s: %s", job.name, type(exc).__name__, describe(exc))
                log.debug("%s failure", job.name, exc_info=True)

        return run

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload_requested.set()

    def _apply_reload(self) -> None:
        assert self._reload is not None
        self._reload_requested.clear()
        try:
            addresses = tuple(self._reload())
        except Exception as exc:  # a bad edit must not stop a running daemon
            log.error("reload refused, still polling the old list: %s", exc)
            return
        old, new = set(self._addresses), set(addresses)
        self._addresses = addresses
        log.info(
            "reloaded: %d addresses (%d added, %d removed; their history stays)",
            len(addresses),
            len(new - old),
            len(old - new),
        )

    def _poll_once(self) -> None:
        if self._stop.is_set():
            return
        self._idle.clear()
        try:
            if self._reload_requested.is_set():
                self._apply_reload()
            if self._before_poll is not None and not self._before_poll():
                return
            addresses = self._addresses
            if self._select is not None:
                addresses = tuple(self._select(addresses))
                if not addresses:
                    return
            summary = self._poller.poll(addresses)
        except Cancelled:
            log.info("poll cancelled")
        except (TrackerError, SQLAlchemyError) as exc:
            self._failed_polls += 1
            reason = str(exc) if isinstance(exc, TrackerError) else describe(exc)
            log.error("poll failed (%d in a row): %s", self._failed_polls, reason)
        except Exception as exc:  # the daemon must outlive any single poll
            self._failed_polls += 1
            log.error("poll failed: %s: %s", type(exc).__name__, describe(exc))
            log.debug("poll failure", exc_info=True)
        else:
            if self._failed_polls:
                log.info("polling again after %d failed polls", self._failed_polls)
                self._failed_polls = 0
            log.info(summary.line())
            if self._on_poll is not None:
                try:
                    self._on_poll(summary)
                except Exception as exc:
                    log.error("after the poll: %s: %s", type(exc).__name__, exc)
        finally:
            self._idle.set()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Cadence:
    """When a job is due next, on the monotonic clock: every ``every`` seconds.

    A run that comes late (the machine was suspended, the previous run was long) is one run,
    and the next is due on the original grid: late runs are coalesced, never queued.
    """

    def __init__(self, every: float, clock: Clock, at_start: bool) -> None:
        self.every = float(every)
        self._clock = clock
        self._next = clock.monotonic() + (0.0 if at_start else self.every)

    def due(self) -> bool:
        now = self._clock.monotonic()
        if now < self._next:
            return False
        self._next += (int((now - self._next) // self.every) + 1) * self.every
        return True

    def wait(self) -> float:
        return max(0.0, self._next - self._clock.monotonic())


class _ClockWatch:
    """Notices when the wall clock moves apart from the monotonic clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wall = clock.now()
        self._mono = clock.monotonic()

    def jump(self) -> timedelta | None:
        wall, mono = self._clock.now(), self._clock.monotonic()
        expected = self._wall + timedelta(seconds=mono - self._mono)
        self._wall, self._mono = wall, mono
        jump = wall - expected
        return jump if abs(jump.total_seconds()) > CLOCK_JUMP_SECONDS else None


class _SkippedWhileBusy(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances reached"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)
