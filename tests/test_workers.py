"""Three real `tracker run` workers sharing 300 addresses on PostgreSQL, against the fake API.

Rounds are windows of ``interval_seconds`` on the database clock, which is this machine's clock
(``Served.wall``), so the fake's request log says exactly which address was polled in which round.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from support import make_address
from support.databases import query
from support.fakeapi import TOKEN_PATH, FakeSpacescan
from support.process import Daemon, write_config

API_KEY = "test-key-4f1c9a77e2"

INTERVAL = 4
ADDRESSES = [make_address(1000 + n) for n in range(300)]
POLLED = re.compile(r"poll finished: (\d+) of (\d+) addresses ok")


def write_shared_config(path: Path, api_url: str, db_url: str) -> Path:
    return write_config(
        path,
        db_url=db_url,
        api_url=api_url,
        addresses=ADDRESSES,
        interval=INTERVAL,
        # Split: a third each while three are alive; never what limits a round here.
        spacescan={"requests_per_minute": 100000, "concurrency": 8},
        sections={"workers": {"mode": "shared"}},
    )


def run(config: Path) -> Daemon:
    return Daemon(config, env={"SPACESCAN_API_KEY": API_KEY})


def window(at: float) -> int:
    return int(at // INTERVAL)


def wait_until_window(k: int, margin: float = 0.0) -> None:
    """Sleep until window ``k`` has begun (plus ``margin`` seconds)."""
    time.sleep(max(0.0, k * INTERVAL + margin - time.time()))


def polls(api: FakeSpacescan, k: int) -> Counter[str]:
    """How often each address was polled in window ``k`` (one token request per poll)."""
    return Counter(
        s.path[len(TOKEN_PATH) :]
        for s in list(api.requests)
        if s.path.startswith(TOKEN_PATH) and window(s.wall) == k
    )


def assert_each_polled_once(api: FakeSpacescan, k: int) -> None:
    seen = polls(api, k)
    twice = sorted(address for address, n in seen.items() if n > 1)
    skipped = sorted(set(ADDRESSES) - set(seen))
    assert not twice, f"window {k}: {len(twice)} addresses polled more than once"
    assert not skipped, f"window {k}: {len(skipped)} addresses not polled"


def polled_by(run: Daemon, since: int) -> int:
    """Addresses polled by this worker after the first ``since`` characters of its log."""
    return sum(int(match[1]) for match in POLLED.finditer(run.output()[since:]))


@pytest.mark.postgres
@pytest.mark.slow
def test_three_workers_share_the_list_and_take_over_a_killed_ones_share(
    pg_url: str, tmp_path: Path
) -> None:
    with FakeSpacescan(api_key=API_KEY) as api:
        config = write_shared_config(tmp_path / "tracker.toml", api.url, pg_url)
        with run(config) as a, run(config) as b, run(config) as c:
            workers = (a, b, c)
            for worker in workers:
                worker.wait_for_line("3 workers share the address list")
            # One round to settle (the first claims happened before everyone had joined).
            first = window(time.time()) + 2
            wait_until_window(first)
            marks = [len(worker.output()) for worker in workers]
            wait_until_window(first + 2, margin=0.5)
            for k in (first, first + 1):
                assert_each_polled_once(api, k)
            shares = [polled_by(w, mark) for w, mark in zip(workers, marks, strict=True)]
            assert all(share >= 50 for share in shares), shares  # about 100 each per round

            # Killed after its poll of a round: its share is polled by the others in the next.
            killed = window(time.time()) + 1
            wait_until_window(killed, margin=INTERVAL * 0.6)
            c.process.send_signal(signal.SIGKILL)
            c.process.wait(10)
            marks = [len(worker.output()) for worker in (a, b)]
            wait_until_window(killed + 4, margin=0.5)
            for k in range(killed, killed + 4):
                assert_each_polled_once(api, k)
            assert all(polled_by(w, mark) > 0 for w, mark in zip((a, b), marks, strict=True))
            for worker in (a, b):
                assert "2 workers share the address list" in worker.output(), worker.output()

            for worker in (a, b):
                status, _, took = worker.terminate()
                assert status == 0, worker.output()
                assert took < 10
        for worker in (a, b):
            assert "Traceback" not in worker.output()
            assert " ERROR " not in worker.output()
    # The workers that stopped cleanly left; the killed one is still listed until forgotten.
    assert query(pg_url, "SELECT count(*) FROM poll_workers") == [(1,)]
    assert query(pg_url, "SELECT count(*) FROM poll_leases WHERE holder IS NOT NULL") == [(0,)]
