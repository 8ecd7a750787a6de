"""Shared mode: several ``tracker run`` share one address list on PostgreSQL, through leases.

Time is cut into *rounds* of ``interval_seconds`` on the database clock (round ``k`` starts
``k * interval_seconds`` after the Unix epoch), and each address is polled once per round, by
whichever worker claimed it. Rounds come from the database's ``now()``, so neither the workers'
clocks nor the moments they started matter.

- Every worker looks for work every *tick* (a quarter of the interval, at most 10 s). In the
  first half of a round it claims up to its share, ``ceil(addresses / live workers)``, of the
  addresses not yet claimed in this round; in the second half, up to one share per tick of
  whatever is left: the share of a worker that died or never came. A claim is one ``UPDATE``
  over rows picked with ``FOR UPDATE SKIP LOCKED``, so two workers never claim the same address
  and never wait for each other.
- A worker never claims more than it can poll before the round ends, judging by how long its
  last polls took per address: a poll that spilled into the next round would meet that round's
  claim of the same address. What no worker can take in time is claimed first next round.
- A new worker claims nothing during its first tick, so workers started together (a deploy)
  all count each other before the first round is split.
- A claim is a lease: it names its holder and expires ``lease_seconds`` (three ticks) after its
  holder's last heartbeat. When the poll of an address ends, success or failure, the lease is
  released and the round stays marked as done. A dead worker stops renewing: its leases expire
  and the addresses are claimed again, in the same round or the next.
- The heartbeat (a thread; one row per worker in ``poll_workers``) also counts the live workers,
  which sets each one's share of the list and, with ``budget = "split"``, of
  ``requests_per_minute``.

Leases give at most one poll per address and round, except for a worker killed after storing a
snapshot but before releasing its lease: that address is polled again in the same round (twice
beats never). The snapshot store stays the safety net: it serialises the writers of an address
and puts a snapshot older than the latest where it belongs.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from tracker.clock import Clock
from tracker.domain import CANCELLED, WatchedAddress
from tracker.service.poller import PollSummary
from tracker.sources.budget import RateBudget
from tracker.store.engine import describe
from tracker.store.leases import (
    add,
    claim,
    finish,
    heartbeat,
    leave,
    now_and_others,
    release,
    worker_id,
)
from tracker.store.models import Address
from tracker.store.writer import SnapshotStore

log = logging.getLogger(__name__)

TICKS_PER_ROUND = 4
MAX_TICK_SECONDS = 10.0
LEASE_TICKS = 3
SHARE_FRACTION = 0.5
"""Part of a round during which a worker claims no more than its share."""
STOP_TIMEOUT_SECONDS = 3.0


def tick_seconds(interval_seconds: float) -> float:
    """How often a worker looks for work: often enough to claim its share early in a round."""
    return min(interval_seconds / TICKS_PER_ROUND, MAX_TICK_SECONDS)


class Leases:
    """One worker's side of shared mode: its heartbeat, and the ``select`` hook of the daemon.

    :param budget: with ``requests_per_minute``, the budget to set to ``requests_per_minute /
        live workers`` after each heartbeat (``budget = "split"``); None leaves it alone.
    """

    def __init__(
        self,
        engine: Engine,
        store: SnapshotStore,
        clock: Clock,
        *,
        interval_seconds: float,
        budget: RateBudget | None = None,
        requests_per_minute: float | None = None,
        holder: str | None = None,
    ) -> None:
        self.holder = holder or worker_id()
        self.interval_seconds = float(interval_seconds)
        self.tick_seconds = tick_seconds(self.interval_seconds)
        self.lease_seconds = LEASE_TICKS * self.tick_seconds
        self._engine = engine
        self._store = store
        self._clock = clock
        self._budget = budget
        self._requests_per_minute = requests_per_minute
        self._listed: Sequence[WatchedAddress] | None = None
        self._ids: dict[str, int] = {}
        self._entries: dict[int, WatchedAddress] = {}
        self._round: int | None = None
        self._taken = 0
        # Claimed and not yet reported, and reported but not yet marked (the database failed).
        self._mutex = threading.Lock()
        self._in_flight: set[int] = set()
        self._unfinished: set[int] = set()
        self._live = 0
        self._seconds_per_address: float | None = None
        self._first_claim = float("inf")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat_failing = False

    @property
    def live(self) -> int:
        """Live workers at the last heartbeat, this one included."""
        return self._live

    def start(self) -> Leases:
        """Join the workers (raises ``SQLAlchemyError`` if the database cannot be reached)."""
        self._beat()
        self._first_claim = self._clock.monotonic() + self.tick_seconds
        log.info(
            "shared mode: worker %s polls its share of rounds of %g s (looks for work every %g s)",
            self.holder,
            self.interval_seconds,
            self.tick_seconds,
        )
        self._thread = threading.Thread(target=self._heartbeat, name="leases", daemon=True)
        self._thread.start()
        return self

    def select(self, addresses: Sequence[WatchedAddress]) -> tuple[WatchedAddress, ...]:
        """The daemon's ``select`` hook: claim this worker's part of ``addresses`` for now."""
        self._settle()
        if addresses is not self._listed:
            self._prepare(addresses)
        if not self._ids or self._clock.monotonic() < self._first_claim:
            return ()
        with self._engine.begin() as connection:
            epoch, others = now_and_others(connection, self.holder, self.lease_seconds)
            round_ = int(epoch // self.interval_seconds)
            if round_ != self._round:
                self._round, self._taken = round_, 0
            limit = self._limit(epoch - round_ * self.interval_seconds, int(others) + 1)
            claimed = claim(
                connection,
                self.holder,
                list(self._ids.values()),
                round_,
                limit,
                self.lease_seconds,
            )
        self._taken += len(claimed)
        with self._mutex:
            self._in_flight = set(claimed)
        if claimed:
            log.debug(
                "claimed %d of %d addresses in round %d (%d workers live)",
                len(claimed),
                len(self._ids),
                round_,
                int(others) + 1,
            )
        return tuple(self._entries[address_id] for address_id in claimed)

    def _limit(self, elapsed: float, live: int) -> int:
        """How many addresses to claim now, ``elapsed`` seconds into the round."""
        share = math.ceil(len(self._ids) / live)
        limit = share - self._taken if elapsed < SHARE_FRACTION * self.interval_seconds else share
        if self._seconds_per_address:
            left = self.interval_seconds - elapsed
            limit = min(limit, int(left / self._seconds_per_address))
        return limit

    def done(self, summary: PollSummary) -> None:
        """After a poll: its addresses are done for the round; never raises.

        A fetch cancelled by a stop does not count: that address goes back to the others.
        """
        polled = {
            self._ids[r.address]
            for r in summary.results
            if r.address in self._ids and r.error != CANCELLED
        }
        if summary.results:
            sample = summary.seconds / len(summary.results)
            previous = self._seconds_per_address
            self._seconds_per_address = sample if previous is None else (previous + sample) / 2
        with self._mutex:
            self._unfinished |= self._in_flight & polled
            self._in_flight -= polled
        try:
            self._settle()
        except SQLAlchemyError as exc:
            log.warning(
                "could not release the leases of this poll (retried before the next): %s",
                describe(exc),
            )

    def stop(self) -> None:
        """Leave: stop the heartbeat, give back every lease, delete this worker's row.

        Bounded in time: if the database does not answer, the leases expire on their own.
        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        leaving = threading.Thread(target=self._leave, name="leases-stop", daemon=True)
        leaving.start()
        leaving.join(STOP_TIMEOUT_SECONDS)
        if leaving.is_alive():
            log.warning(
                "the database did not answer; this worker's leases expire within %g s",
                self.lease_seconds,
            )

    def _leave(self) -> None:
        with self._mutex:
            unfinished, self._unfinished, self._in_flight = self._unfinished, set(), set()
        try:
            with self._engine.begin() as connection:
                finish(connection, self.holder, sorted(unfinished))
                release(connection, self.holder)
                leave(connection, self.holder)
        except SQLAlchemyError as exc:
            log.warning(
                "could not leave the workers (this worker's leases expire within %g s): %s",
                self.lease_seconds,
                describe(exc),
            )

    def _settle(self) -> None:
        """Mark reported polls done, and give back claims whose poll never reported (it raised).

        Raises ``SQLAlchemyError``; whatever could not be written is kept for the next try.
        """
        with self._mutex:
            unfinished, in_flight = set(self._unfinished), set(self._in_flight)
        if not unfinished and not in_flight:
            return
        with self._engine.begin() as connection:
            finish(connection, self.holder, sorted(unfinished))
            release(connection, self.holder, sorted(in_flight))
        with self._mutex:
            self._unfinished -= unfinished
            self._in_flight -= in_flight

    def _prepare(self, addresses: Sequence[WatchedAddress]) -> None:
        """A new address list (start or SIGHUP): make sure every address has a lease row."""
        self._store.sync_addresses(addresses, self._clock.now())
        wanted = {entry.address: entry for entry in addresses}
        with self._engine.begin() as connection:
            ids = {
                row.address: row.id
                for row in connection.execute(select(Address.id, Address.address))
                if row.address in wanted
            }
            add(connection, list(ids.values()))
        self._ids = ids
        self._entries = {address_id: wanted[address] for address, address_id in ids.items()}
        self._listed = addresses

    def _beat(self) -> None:
        with self._engine.begin() as connection:
            live = heartbeat(connection, self.holder, self.lease_seconds)
        share = ""
        if self._budget is not None and self._requests_per_minute is not None:
            self._budget.set_requests_per_minute(self._requests_per_minute / live)
            share = f"; this one's budget: {self._requests_per_minute / live:g} requests/min"
        if live != self._live:
            self._live = live
            log.info("%d worker%s share the address list%s", live, "" if live == 1 else "s", share)

    def _heartbeat(self) -> None:
        while not self._stopping.wait(self.tick_seconds):
            try:
                self._beat()
            except Exception as exc:  # the heartbeat must outlive a database outage
                if not self._beat_failing:
                    log.warning(
                        "worker heartbeat failed (this worker's leases expire after %g s "
                        "without one): %s",
                        self.lease_seconds,
                        describe(exc),
                    )
                    log.debug("heartbeat failure", exc_info=True)
                self._beat_failing = True
            else:
                if self._beat_failing:
                    log.info("worker heartbeat back")
                self._beat_failing = False
