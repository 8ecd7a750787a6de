"""One poll cycle: read every address from a source concurrently, store outcomes as they arrive.

Reading happens on a thread pool, as many reads at once as the budget's pace needs (requests per
second times the answer time, learnt as answers come: :class:`~tracker.sources.budget.Concurrency`),
so the budget, not the pool, sets the pace. Writing happens on the calling
thread only, so SQLite never sees two writers from this process and a snapshot is never written
by a thread that is being torn down. What arrived while the last write ran is written next, in
one transaction: when storing cannot keep up with reading, the batches grow and the commits (a
flush to disk each) stay few.

Every address leaves a record: its snapshot, or a failed poll attempt naming the reason, so a gap
in the history is always visible.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from tracker.clock import Cancelled, Clock
from tracker.domain import CANCELLED, AssetDelta, Observation, WatchedAddress
from tracker.errors import SourceError, StoreError
from tracker.sanitize import printable
from tracker.sources.base import BalanceSource
from tracker.sources.budget import Concurrency
from tracker.store.writer import SnapshotStore, Stored
from tracker.valuation import FIAT_PLACES, XCH_PLACES, Valuation, rounded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddressResult:
    address: str
    label: str | None
    ok: bool
    error: str | None = None
    baseline: bool = False
    recorded: bool = True
    """False when not even the failure could be written (the database is down)."""
    observation: Observation | None = None
    deltas: tuple[AssetDelta[str], ...] = ()
    symbols: dict[str, str | None] = field(default_factory=dict)
    values: dict[str, Valuation] = field(default_factory=dict)
    """What each change (delta) was worth at the snapshot's prices, when the poll was valued."""

    @property
    def changes(self) -> int:
        return len(self.deltas)


@dataclass(frozen=True)
class PollSummary:
    results: tuple[AddressResult, ...]
    seconds: float

    @property
    def ok(self) -> int:
        return sum(result.ok for result in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.ok

    @property
    def changes(self) -> int:
        return sum(result.changes for result in self.results)

    def line(self) -> str:
        return (
            f"poll finished: {self.ok} of {len(self.results)} addresses ok, {self.failed} failed, "
            f"{self.changes} balance change{'s' if self.changes != 1 else ''} "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class _Read:
    entry: WatchedAddress
    started_at: datetime
    finished_at: datetime
    outcome: Observation | str


class Poller:
    """Polls a list of addresses through a source into a store; never raises for one address."""

    def __init__(
        self,
        source: BalanceSource,
        store: SnapshotStore,
        clock: Clock,
        *,
        concurrency: Concurrency | int = 4,
        pricing: Callable[[list[AddressResult]], list[AddressResult]] | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self._clock = clock
        # A number is a fixed limit (tests, benchmarks of a fixed pool); otherwise adaptive.
        self._concurrency = concurrency
        # Fetches the prices a poll needs once its snapshots are stored, and values its changes
        # (service.pricing); never raises.
        self._pricing = pricing
        self._phase_lock = threading.Lock()
        self._phase = "idle"

    @property
    def phase(self) -> str:
        """What the poll in progress is waiting on, for the line a stop logs."""
        with self._phase_lock:
            return self._phase

    def _set_phase(self, text: str) -> None:
        with self._phase_lock:
            self._phase = text

    def poll(self, addresses: Sequence[WatchedAddress]) -> PollSummary:
        """Poll each address once. Failures are recorded per address, never raised.

        Raises ``StoreError`` only when the address list itself cannot be written.
        """
        started = self._clock.monotonic()
        self._set_phase("writing the address list to the database")
        self.store.sync_addresses(addresses, self._clock.now())
        size = max(1, self.source.batch_size)
        batches = [list(addresses[i : i + size]) for i in range(0, len(addresses), size)]
        results: list[AddressResult] = []
        cap = self._concurrency if isinstance(self._concurrency, int) else self._concurrency.cap
        queue = list(enumerate(batches))[::-1]
        with ThreadPoolExecutor(max_workers=max(1, cap), thread_name_prefix="read") as pool:
            running: dict[Future[list[_Read]], int] = {}
            while queue or running:
                while queue and len(running) < self._limit():
                    n, batch = queue.pop()
                    running[pool.submit(self._read, batch)] = n
                left = len(queue) + len(running)
                self._set_phase(f"reading {left} of {len(batches)} from {self.source.name}")
                # Not for ever: the limit may rise while every read in flight is slow.
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                ready = sorted(done, key=running.__getitem__)
                for future in ready:
                    del running[future]
                if ready:
                    self._set_phase("writing to the database")
                    results.extend(self._store_all([read for f in ready for read in f.result()]))
        if self._pricing is not None:
            self._set_phase("fetching prices")
            results = self._pricing(results)
        for result in results:
            _log_changes(result)
        self._set_phase("idle")
        return PollSummary(tuple(results), self._clock.monotonic() - started)

    def _limit(self) -> int:
        limit = self._concurrency
        return limit if isinstance(limit, int) else limit.limit

    def _read(self, batch: list[WatchedAddress]) -> list[_Read]:
        started_at = self._clock.now()
        try:
            outcomes: Sequence[Observation | SourceError | str] = self.source.read(batch)
        except Cancelled:
            outcomes = [CANCELLED] * len(batch)
        except Exception as exc:  # a bug must cost one poll of these addresses, not the daemon
            log.debug("unexpected error reading %d addresses", len(batch), exc_info=True)
            outcomes = [f"internal error: {type(exc).__name__}: {exc}"] * len(batch)
        finished_at = self._clock.now()
        return [
            _Read(
                entry,
                started_at,
                finished_at,
                outcome if isinstance(outcome, Observation | str) else str(outcome),
            )
            for entry, outcome in zip(batch, outcomes, strict=True)
        ]

    def _store_all(self, reads: Sequence[_Read]) -> list[AddressResult]:
        """Store what arrived together: the good polls in one batch, the failures each alone."""
        good = [read.outcome for read in reads if isinstance(read.outcome, Observation)]
        outcomes = iter(self.store.record(good))
        return [
            self._stored(read, next(outcomes))
            if isinstance(read.outcome, Observation)
            else self._failed(read, read.outcome)
            for read in reads
        ]

    def _failed(self, read: _Read, error: str) -> AddressResult:
        entry = read.entry
        log.warning("%s: poll failed: %s", _who(entry), printable(error))
        try:
            self.store.record_failure(entry.address, read.started_at, read.finished_at, error)
        except StoreError as exc:
            log.error("%s: could not record the failed poll: %s", _who(entry), exc)
            return AddressResult(entry.address, entry.label, False, error, recorded=False)
        return AddressResult(entry.address, entry.label, False, error)

    def _stored(self, read: _Read, outcome: Stored | StoreError) -> AddressResult:
        entry = read.entry
        if not isinstance(outcome, Stored):
            error = f"not stored: {outcome}"
            log.error("%s: %s", _who(entry), error)
            try:  # the database may be down: then nothing can record it, the log line must do
                self.store.record_failure(entry.address, read.started_at, read.finished_at, error)
            except StoreError:
                return AddressResult(entry.address, entry.label, False, error, recorded=False)
            return AddressResult(entry.address, entry.label, False, error)
        observation = read.outcome
        assert isinstance(observation, Observation)
        if outcome.recovered:
            log.info("%s: this poll's snapshot was already stored (recognised)", _who(entry))
        elif outcome.out_of_order:
            log.info(
                "%s: stored before a newer snapshot of the same address (polled twice at once, "
                "or the clock went back)",
                _who(entry),
            )
        return AddressResult(
            entry.address,
            entry.label,
            True,
            baseline=outcome.baseline,
            observation=observation,
            deltas=tuple(outcome.deltas),
            symbols=outcome.symbols,
        )


def _log_changes(result: AddressResult) -> None:
    """One line per change, with what it was worth when the poll was valued."""
    if result.observation is None:
        return
    who = result.address + (f" ({printable(result.label)})" if result.label else "")
    for delta in result.deltas:
        symbol = result.symbols.get(delta.asset)
        asset = result.observation.asset(delta.asset)
        log.info(
            "%s: %s %s (%s → %s)%s",
            who,
            printable(symbol or asset.display),
            f"{asset.units(delta.delta_mojos):+,f}",
            f"{asset.units(delta.previous_mojos):,f}",
            f"{asset.units(delta.mojos):,f}",
            worth(result.values.get(delta.asset)),
        )


def worth(value: Valuation | None) -> str:
    """``, worth +0.018000 XCH, +0.56 USD`` (rounded for reading), or nothing when unvalued."""
    if value is None:
        return ""
    if value.value_xch is None:
        return ", unpriced"
    text = f", worth {rounded(value.value_xch, XCH_PLACES):+,f} XCH"
    if value.currency is not None:
        fiat = "unpriced" if value.value is None else f"{rounded(value.value, FIAT_PLACES):+,f}"
        text += f", {fiat} {value.currency}"
    return text


def _who(entry: WatchedAddress) -> str:
    return entry.address + (f" ({printable(entry.label)})" if entry.label else "")
