"""Benchmark "poll cycle": with the default configuration, does the budget set the pace?

A poll cycle's hard limit is the rate budget (requests ÷ budget per second): the number of
reads in flight adapts to the answer time (Little's law), so the pool never is the limit.
Everything else (HTTP handling, parsing, storing every snapshot on the polling thread, the
budget's own pacing) should hide behind it. The ratio of the measured cycle to that bound shows
what a user pays on every poll, independent of how fast this machine is; it is measured with
fast answers (50 ms) and slow ones (1 s, large wallets).

The tracker's pieces are built by the library's own assembly (``tracker.service.assembly``)
from the default configuration but for the budget, on a freshly migrated SQLite file, against
the fake Spacescan on 127.0.0.1 with a fixed latency, run in a process of its own as the real
API is on another machine. The fake also counts requests beyond the budget in any 60 s, which
must be none.

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


CASES = (
    # (answer time, budget per minute, addresses, measured cycles): a fast API with a large
    # budget, and slow answers (large wallets) at a pro plan's budget.
    (0.05, 6000, 200, 3),
    (1.0, 600, 100, 2),
)
QUICK_CASES = ((0.05, 6000, 20, 1), (1.0, 600, 10, 1))


def measure(quick: bool = False) -> list[Figure]:
    """Each case with the default configuration: its worst cycle against its budget's time."""
    figures: list[Figure] = []
    for latency, budget, count, cycles in QUICK_CASES if quick else CASES:
        figures += _case(latency, budget, count, cycles)
    return figures


def _case(latency: float, budget: int, count: int, cycles: int) -> list[Figure]:
    """One warm-up cycle, then the measured cycles; the worst measured one is the figure."""
    addresses = [address_text(n) for n in range(1, count + 1)]
    watched = [WatchedAddress(address, f"bench {n}") for n, address in enumerate(addresses, 1)]
    defaults = SpacescanSection.model_validate({})  # what a config that sets neither gets
    wanted = count * (2 if defaults.include_xch else 1)
    fake = RemoteFake(latency, budget)
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as workdir, fake:
        engine = engines.create(f"sqlite:///{Path(workdir) / 'tracker.db'}")
        migrate.upgrade(engine)
        poller = bench_poller(  # the config's defaults but for the budget
            engine,
            fake.url,
            requests_per_minute=budget,
            max_attempts=defaults.max_attempts,
            timeout_seconds=defaults.timeout_seconds,
            concurrency=defaults.concurrency,
            include_xch=defaults.include_xch,
        )
        try:
            times: list[float] = []
            changes = 0
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
                    f"[{BENCHMARK}] {latency * 1000:g} ms answers: {name}: {count} addresses, "
                    f"{served} requests in {seconds:.2f} s, {summary.changes} balance changes"
                )
                if cycle > 0:
                    times.append(seconds)
                    changes += summary.changes
            over = fake.over_budget()
            total = fake.served()
        finally:
            engine.dispose()
    bound = wanted / (budget / 60)
    worst = max(times)
    pool = f"pool: auto, up to {defaults.concurrency_cap}"
    detail = (
        f"{count} addresses, {wanted} requests/cycle, answers in {latency * 1000:g} ms, "
        f"budget {budget}/min ({pool}); cycles {', '.join(f'{t:.2f}' for t in times)} s; "
        f"bound: the budget, {bound:.2f} s; {changes} balance changes stored"
    )
    where = f"sqlite, {latency * 1000:g} ms answers"
    return [
        Figure(
            BENCHMARK,
            where,
            "worst cycle time ÷ the budget's time (default configuration)",
            round(worst / bound, 3),
            RATIO_GOAL,
            True,
            detail,
        ),
        Figure(
            BENCHMARK,
            where,
            "requests over budget in any 60 s, as the fake counted them",
            float(over),
            0,
            True,
            f"{over} of {total} requests beyond {budget} in 60 s",
        ),
    ]


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv[1:]):
        print(
            f"{figure.benchmark} | {figure.database} | {figure.measure} | {figure.value:g} "
            f"| {figure.goal} | {'ok' if figure.ok else 'MISSED'} | {figure.detail}"
        )
