#!/usr/bin/env python3
"""Benchmark "start-up": how long a person waits for `tracker --help` and `tracker balances`.

Each command is timed as a whole process (interpreter start, imports, the work, exit), against a
process that only imports what no CLI can do without: `python -c "import click"` for --help and
`python -c "import sqlalchemy"` for a read. Runs alternate between the command and its baseline,
and the figure is the ratio of their fastest runs (the least disturbed by anything else the
machine does).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, progress

RUNS = 15
QUICK_RUNS = 3


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _ratio(command: list[str], baseline: list[str], runs: int) -> tuple[float, float, float]:
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_seconds(command))
        theirs.append(_seconds(baseline))
    return min(ours) / min(theirs), min(ours), min(theirs)


def _small_database(directory: Path) -> Path:
    """A config and a database with one address and a few snapshots."""
    from tracker.domain import XCH_ASSET, Observation, WatchedAddress
    from tracker.store import engine as engines
    from tracker.store import migrate
    from tracker.store.writer import SnapshotStore

    address = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
    url = f"sqlite:///{directory / 'tracker.db'}"
    engine = engines.create(url)
    try:
        migrate.upgrade(engine)
        store = SnapshotStore(engine)
        store.sync_addresses([WatchedAddress(address, "example")], datetime.now(UTC))
        for n in range(3):
            at = datetime(2026, 1, 1 + n, tzinfo=UTC)
            store.record_one(Observation(address, at, at, {"xch": n}, {"xch": XCH_ASSET}))
    finally:
        engine.dispose()
    config = directory / "tracker.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[[addresses]]\naddress = "{address}"\nlabel = "example"\n'
    )
    return config


def measure(quick: bool = False) -> list[Figure]:
    runs = QUICK_RUNS if quick else RUNS
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as directory:
        config = _small_database(Path(directory))
        tracker = [python, "-m", "tracker", "--config", str(config)]
        cases = [
            ("tracker --help", [*tracker, "--help"], "import click", 4.0),
            ("tracker balances", [*tracker, "balances"], "import sqlalchemy", 1.5),
        ]
        figures = []
        for name, command, baseline, goal in cases:
            ratio, ours, theirs = _ratio(command, [python, "-c", baseline], runs)
            progress(f"[start-up] {name}: {ours * 1000:.0f} ms, {baseline}: {theirs * 1000:.0f} ms")
            figures.append(
                Figure(
                    "start-up",
                    "sqlite" if "balances" in name else "-",
                    f'`{name}` ÷ `python -c "{baseline}"` (fastest of {runs} each)',
                    round(ratio, 3),
                    goal,
                    True,
                    f"{ours * 1000:.0f} ms vs {theirs * 1000:.0f} ms",
                )
            )
    return figures


if __name__ == "__main__":
    for figure in measure(quick="--quick" in sys.argv[1:]):
        print(f"{figure.benchmark} | {figure.measure} | {figure.value:g} | {figure.detail}")
