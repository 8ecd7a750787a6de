"""One poll cycle: fetch every address concurrently, store the outcomes as they arrive.

Fetching happens on a small thread pool: the rate budget sets the pace, unless the pool is
smaller than requests per second times the API's answer time. Writing happens on the calling
thread only, so SQLite never sees two writers from this process and a snapshot is never written
by a thread that is being torn down. What arrived while the last write ran is written next, in
one transaction: when storing cannot keep up with fetching, the batches grow and the commits
(a flush to disk each) stay few.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from tracker.addresses import token_id
from tracker.clock import Cancelled, Clock
from tracker.config import WatchedAddress
from tracker.db import describe
from tracker.deltas import AssetDelta
from tracker.models import XCH_ASSET_ID
from tracker.snapshots import AssetInfo, Observation, SnapshotStore, StoredSnapshot, StoreError
from tracker.spacescan import CAT_DECIMALS, XCH_DECIMALS, SpacescanClient, SpacescanError

log = logging.getLogger(__name__)

XCH_INFO = AssetInfo(XCH_ASSET_ID, None, "Chia", "XCH", XCH_DECIMALS)
CANCELLED = "cancelled: stopping"
"""The error of a fetch cut short by a stop: not the address's fault (shared mode re-polls it)."""


@dataclass(frozen=True)
class AddressResult:
    address: str
    label: str | None
    ok: bool
    error: str | None = None
    changes: int = 0
    baseline: bool = False
    stored: bool = True
    # What a successful poll stored, for those downstream of the poll (metrics, webhooks).
    observation: Observation | None = None
    deltas: tuple[AssetDelta[str], ...] = ()
    symbols: Mapping[str, str | None] = field(default_factory=dict)


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
class _Fetched:
    entry: WatchedAddress
    started_at: datetime
    finished_at: datetime
    observation: Observation | None
    error: str | None


class Poller:
    def __init__(
        self,
        client: SpacescanClient,
        store: SnapshotStore,
        clock: Clock,
        *,
        include_xch: bool = True,
        concurrency: int = 4,
    ) -> None:
        self._client = client
        self._store = store
        self._clock = clock
        self._include_xch = include_xch
        self._concurrency = concurrency

    def poll(self, addresses: Sequence[WatchedAddress]) -> PollSummary:
        """Poll each address once. Failures are recorded per address, never raised."""
        started = self._clock.monotonic()
        self._store.sync_addresses(addresses, self._clock.now())
        results = []
        workers = max(1, min(self._concurrency, len(addresses)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            order: dict[Future[_Fetched], int] = {
                pool.submit(self._fetch, entry): n for n, entry in enumerate(addresses)
            }
            pending = set(order)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                ready = sorted(done, key=order.__getitem__)
                results.extend(self._store_all([future.result() for future in ready]))
        return PollSummary(tuple(results), self._clock.monotonic() - started)

    def _fetch(self, entry: WatchedAddress) -> _Fetched:
        started_at = self._clock.now()
        try:
            balances = self._client.balances(entry.address, include_xch=self._include_xch)
        except SpacescanError as exc:
            return _Fetched(entry, started_at, self._clock.now(), None, str(exc))
        except Cancelled:
            return _Fetched(entry, started_at, self._clock.now(), None, CANCELLED)
        except Exception as exc:  # a bug must cost one address one poll, not the daemon
            log.debug("unexpected error polling %s", entry.address, exc_info=True)
            error = f"internal error: {type(exc).__name__}: {exc}"
            return _Fetched(entry, started_at, self._clock.now(), None, error)
        taken_at = self._clock.now()
        amounts = {token.asset_id: token.mojos for token in balances.tokens}
        assets = {
            token.asset_id: AssetInfo(
                token.asset_id, token_id(token.asset_id), token.name, token.symbol, CAT_DECIMALS
            )
            for token in balances.tokens
        }
        if balances.xch_mojos is not None:
            amounts[XCH_ASSET_ID] = balances.xch_mojos
            assets[XCH_ASSET_ID] = XCH_INFO
        observation = Observation(entry.address, started_at, taken_at, amounts, assets)
        return _Fetched(entry, started_at, taken_at, observation, None)

    def _store_all(self, fetched: Sequence[_Fetched]) -> list[AddressResult]:
        """Store what arrived together: the good polls in one batch, the failures each alone."""
        outcomes = iter(
            self._store.record_many([i.observation for i in fetched if i.observation is not None])
        )
        return [
            self._stored(item, next(outcomes))
            if item.observation is not None
            else self._failed(item)
            for item in fetched
        ]

    def _failed(self, fetched: _Fetched) -> AddressResult:
        entry = fetched.entry
        error = fetched.error or "unknown error"
        log.warning("%s%s: poll failed: %s", entry.address, _label(entry), error)
        try:
            self._store.record_failure(
                entry.address, fetched.started_at, fetched.finished_at, error
            )
        except SQLAlchemyError as exc:
            log.error("%s: could not record the failed poll: %s", entry.address, describe(exc))
            return AddressResult(entry.address, entry.label, False, error, stored=False)
        return AddressResult(entry.address, entry.label, False, error)

    def _stored(
        self, fetched: _Fetched, outcome: StoredSnapshot | StoreError | SQLAlchemyError
    ) -> AddressResult:
        entry = fetched.entry
        stored = outcome
        if not isinstance(stored, StoredSnapshot):
            error = f"not stored: {describe(stored)}"
            log.error("%s%s: %s", entry.address, _label(entry), error)
            try:  # the database may be down: then nothing can record it, the log line must do
                self._store.record_failure(
                    entry.address, fetched.started_at, fetched.finished_at, error
                )
            except SQLAlchemyError:
                return AddressResult(entry.address, entry.label, False, error, stored=False)
            return AddressResult(entry.address, entry.label, False, error)
        for delta in stored.deltas:
            log.info(
                "%s%s: %s changed by %+d mojos (%d -> %d)",
                entry.address,
                _label(entry),
                delta.asset,
                delta.delta_mojos,
                delta.previous_mojos,
                delta.mojos,
            )
        return AddressResult(
            entry.address,
            entry.label,
            True,
            changes=len(stored.deltas),
            baseline=stored.baseline,
            observation=fetched.observation,
            deltas=tuple(stored.deltas),
            symbols=stored.symbols,
        )


def _label(entry: WatchedAddress) -> str:
    return f" ({entry.label})" if entry.label else ""
