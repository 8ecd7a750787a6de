"""The daemon: APScheduler runs the poll job on an interval until a signal says stop.

Stopping is the delicate part. A stop cancels every wait at once (the shared clock), lets a
write in progress commit, and gives the poll a few seconds to finish; an HTTP request that is
still waiting on the network after that is abandoned rather than waited for, because the
transaction boundary already guarantees that no half-written snapshot can exist.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from tracker.clock import Cancelled, SystemClock
from tracker.config import WatchedAddress
from tracker.db import describe
from tracker.poller import Poller, PollSummary

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0


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

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> bool:
        """Block until stopped; True when the last poll finished, False if it was abandoned."""
        scheduler = BackgroundScheduler(
            timezone="UTC",
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(
            self._poll_once,
            "interval",
            seconds=self._interval,
            next_run_time=self._clock.now(),
            id="poll",
            name="poll every address",
        )
        for job in self._jobs:
            # APScheduler adds a job with next_run_time=None as *paused* (it would never run):
            # without at_start, leave it out so the first run comes one interval after start.
            first = {"next_run_time": self._clock.now()} if job.at_start else {}
            scheduler.add_job(
                self._guarded(job),
                "interval",
                seconds=job.every_seconds,
                id=job.name,
                name=job.name,
                **first,
            )
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        if self._reload is not None:
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_reload)
        # A worker looks for its share more often than a poll lasts: a look that comes while
        # the poll runs is skipped, which is normal and not worth a warning every time.
        quiet = _SkippedWhileBusy() if self._select is not None else None
        if quiet is not None:
            logging.getLogger("apscheduler.scheduler").addFilter(quiet)
        scheduler.start()
        try:
            # A stopped clock also ends the daemon: a signal may have come before run().
            while not self._stop.wait(1.0) and not self._clock.stopped:
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if quiet is not None:
                logging.getLogger("apscheduler.scheduler").removeFilter(quiet)
            log.info("stopping")
            self._clock.stop()
            scheduler.shutdown(wait=False)
        finished = self._idle.wait(STOP_GRACE_SECONDS)
        if not finished:
            log.warning(
                "a poll is still waiting on the network; it is abandoned, nothing was written"
            )
        return finished

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
        except SQLAlchemyError as exc:
            self._failed_polls += 1
            log.error(
                "poll failed (%d in a row): database unavailable: %s",
                self._failed_polls,
                describe(exc),
            )
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


class _SkippedWhileBusy(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances reached"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)
