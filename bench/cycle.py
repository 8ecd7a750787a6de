"""Benchmark "poll cycle": does one poll of many addresses run as fast as its limits allow?

A poll cycle has two hard limits: the rate budget (requests ÷ budget per second) and the fetch
pool (requests * latency ÷ pool size, each worker waiting on one request at a time). Everything
else (HTTP handling, parsing, storing every snapshot on the polling thread, the budget's own
pacing) should hide behind whichever of the two is larger. The ratio of the measured cycle to
that bound therefore shows overhead that a user would pay on every poll, independent of how fast
this machine is.

The tracker's own pieces are wired as ``tracker.cli._poller`` wires them (SpacescanClient with a
requests session, a RateBudget, SnapshotStore on a freshly migrated SQLite file, Poller with the
configured concurrency), against the fake Spacescan on 127.0.0.1 with a fixed latency, run in a
process of its own as the real API is on another machine. The fake also counts requests beyond
the budget in any 60 s, which must be none.

The fake must answer without Nagle's algorithm (``disable_nagle_algorithm`` in tests/fakeapi.py):
otherwise each answer on a kept-alive connection waits ~40 ms for the client's delayed ACK of
its headers, a cost of the fake that no real gateway adds, and this ratio reads ~1.9.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

# bench/common.py puts tests/ (the fake API) on the path too.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tracker.config import SpacescanSection
from tracker.domain import WatchedAddress
from tracker.service.poller import PollSummary
from tracker.store import engine as engines
from tracker.store import migrate

from common import Figure, progress
from common import poller as bench_poller
from datagen import address_text, asset_hex
from support.fakeapi import FakeSpacescan

BENCHMARK = "poll cycle"
LATENCY_SECONDS = 0.05
REQUESTS_PER_MINUTE = 6000
ADDRESSES = 200
QUICK_ADDRESSES = 20
MEASURED_CYCLES = 3
QUICK_MEASURED_CYCLES = 1
RATIO_GOAL = 1.10
CATS_PER_ADDRESS = 2
CHANGE_EVERY = 10
"""One address in this many gets new balances before each cycle, so deltas are written too."""


class CycleError(Exception):
    """A cycle did not do what the benchmark relies on (a failed address, a missing request)."""


Balances = list[tuple[str, int, dict[str, tuple[str, str | None, str | None]]]]


def _balances(addresses: Sequence[str], cycle: int) -> Balances:
    """Balances for ``cycle``: every address has XCH and a few CATs; some change each cycle.

    Identical answers every cycle would only measure snapshots without deltas; a real poll
    usually sees a few changes, which cost a delta row and a log line each.
    """
    return [
        (
            address,
            10**12 * (index + 1) + cycle * 1_000,
            {
                asset_hex(cat + 1): (
                    f"{100 + index}.{(cycle + cat) % 1000:03d}",
                    f"Token {cat + 1}",
                    f"TK{cat + 1}",
                )
                for cat in range(CATS_PER_ADDRESS)
            },
        )
        for index, address in enumerate(addresses)
        if cycle == 0 or index % CHANGE_EVERY == cycle % CHANGE_EVERY
    ]


def _serve(conn: Connection, latency: float, budget: int) -> None:
    """The fake's process: start it, then answer the bench's calls until told to stop."""
    with FakeSpacescan(latency=latency, max_requests_per_minute=budget) as fake:
        conn.send(fake.url)
        while True:
            call, argument = conn.recv()
            if call == "set":
                for address, xch, tokens in argument:
                    fake.set_balances(address, xch, tokens)
                conn.send(None)
            elif call == "served":
                conn.send(len(fake.requests))
            elif call == "over_budget":
                conn.send(fake.over_budget())
            else:
                conn.send(None)
                return


class RemoteFake:
    """The fake Spacescan in a process of its own.

    The real API runs on another machine: its HTTP work must not take the interpreter from the
    poller's threads, as a fake in the same process would (about 0.6 ms per answer).
    """

    def __init__(self, latency: float, budget: int) -> None:
        self._conn, child = multiprocessing.Pipe()  # forked before any thread of ours starts
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(child, latency, budget), daemon=True
        )
        self._process.start()
        self.url: str = self._call_reply()

    def _call(self, call: str, argument: object = None) -> object:
        self._conn.send((call, argument))
        return self._call_reply()

    def _call_reply(self) -> Any:
        if not self._conn.poll(30):
            raise CycleError("the fake API process does not answer")
        return self._conn.recv()

    def set_balances(self, balances: Balances) -> None:
        self._call("set", balances)

    def served(self) -> int:
        return int(cast(int, self._call("served")))

    def over_budget(self) -> int:
        return int(cast(int, self._call("over_budget")))

    def __enter__(self) -> RemoteFake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._call("stop")
        finally:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()


def _check(summary: PollSummary, addresses: int, cycle: int) -> None:
    if summary.ok != addresses or len(summary.results) != addresses:
        failed = [r for r in summary.results if not r.ok][:3]
        reasons = "; ".join(f"{r.address}: {r.error}" for r in failed)
        raise CycleError(
            f"cycle {cycle}: {summary.ok} of {len(summary.results)} addresses ok, "
            f"wanted {addresses} ({reasons})"
        )


def measure(quick: bool = False) -> list[Figure]:
    """One warm-up cycle, then the measured cycles; the worst measured one is the figure."""
    count = QUICK_ADDRESSES if quick else ADDRESSES
    cycles = QUICK_MEASURED_CYCLES if quick else MEASURED_CYCLES
    addresses = [address_text(n) for n in range(1, count + 1)]
    watched = [WatchedAddress(address, f"bench {n}") for n, address in enumerate(addresses, 1)]
    defaults = SpacescanSection.model_validate({})  # what a config that sets neither gets
    pool = defaults.concurrency
    wanted = count * (2 if defaults.include_xch else 1)
    fake = RemoteFake(LATENCY_SECONDS, REQUESTS_PER_MINUTE)
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as workdir, fake:
        engine = engines.create(f"sqlite:///{Path(workdir) / 'tracker.db'}")
        migrate.upgrade(engine)
        poller = bench_poller(  # with the config's defaults but for the budget
            engine,
            fake.url,
            requests_per_minute=REQUESTS_PER_MINUTE,
            max_attempts=defaults.max_attempts,
            timeout_seconds=defaults.timeout_seconds,
            concurrency=defaults.concurrency,
            include_xch=defaults.include_xch,
        )
        try:
            times: list[float] = []
            counts: list[int] = []
            changes: list[int] = []
            for cycle in range(cycles + 1):
                fake.set_balances(_balances(addresses, cycle))
                before = fake.served()
                started = time.perf_counter()
                summary = poller.poll(watched)
                seconds = time.perf_counter() - started
                served = fake.served() - before
                _check(summary, count, cycle)
                if served != wanted:
                    raise CycleError(f"cycle {cycle}: {served} requests, wanted {wanted}")
                name = "warm-up" if cycle == 0 else f"cycle {cycle}"
                progress(
                    f"[{BENCHMARK}] {name}: {count} addresses, {served} requests in "
                    f"{seconds:.2f} s, {summary.changes} balance changes"
                )
                if cycle > 0:
                    times.append(seconds)
                    counts.append(served)
                    changes.append(summary.changes)
            over = fake.over_budget()
            total = fake.served()
        finally:
            engine.dispose()
    worst = max(range(cycles), key=lambda i: times[i])
    requests_ = counts[worst]
    budget_bound = requests_ / (REQUESTS_PER_MINUTE / 60)
    pool_bound = requests_ * LATENCY_SECONDS / pool
    bound = max(budget_bound, pool_bound)
    ratio = times[worst] / bound
    shown = ", ".join(f"{t:.2f}" for t in times)
    detail = (
        f"{count} addresses, {requests_} requests/cycle, latency {LATENCY_SECONDS * 1000:g} ms, "
        f"pool {pool}, budget {REQUESTS_PER_MINUTE}/min; cycles {shown} s "
        f"(worst {times[worst]:.2f} s); bound max(budget {budget_bound:.2f} s, "
        f"pool {pool_bound:.2f} s); worst = {times[worst] * pool / requests_ * 1000:.1f} ms per "
        f"request per worker; {sum(changes)} balance changes stored"
    )
    return [
        Figure(
            BENCHMARK,
            "sqlite",
            "worst cycle time ÷ max(budget time, latency x requests ÷ pool)",
            round(ratio, 3),
            RATIO_GOAL,
            True,
            detail,
        ),
        Figure(
            BENCHMARK,
            "sqlite",
            "requests over budget in any 60 s, as the fake counted them",
            float(over),
            0,
            True,
            f"{over} of {total} requests beyond {REQUESTS_PER_MINUTE} in 60 s",
        ),
    ]


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv[1:]):
        print(
            f"{figure.benchmark} | {figure.database} | {figure.measure} | {figure.value:g} "
            f"| {figure.goal} | {'ok' if figure.ok else 'MISSED'} | {figure.detail}"
        )
