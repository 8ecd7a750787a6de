"""The real ``tracker`` command as a process: one-shot runs, the daemon, its config, waiting.

Waits are for events (a line in the log, a row in the database, a request at the fake), each
with a generous deadline that only a hung process reaches: a loaded 2-core machine may be slow,
never wrong. Speed goals belong in ``bench/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

WAIT_SECONDS = 60.0
"""How long a wait for an event may take before the test fails: far beyond any normal run."""
_POLL_LINE = re.compile(r"poll finished: (\d+) of (\d+) addresses ok, (\d+) failed")


def wait_for(
    condition: Callable[[], object], what: str = "a condition", timeout: float = WAIT_SECONDS
) -> None:
    """Until ``condition()`` is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a tracker process: this one's, without tracker's own overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TRACKER_DATABASE_URL", "TRACKER_CONFIG", "SPACESCAN_API_KEY")
    }
    env.update(extra or {})
    return env


def run_tracker(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``tracker ARGS`` to completion, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tracker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        cwd=cwd,
        check=False,
    )


def write_config(
    path: Path,
    *,
    db_url: str,
    api_url: str | None = None,
    addresses: Sequence[str | tuple[str, str]] = (),
    interval: int = 300,
    spacescan: Mapping[str, object] | None = None,
    sections: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """A tracker.toml: the database, the API (with a budget tests never wait on), the addresses
    (an address or ``(address, label)``), and any other ``sections``."""
    values: dict[str, object] = {
        "requests_per_minute": 6000,
        "timeout_seconds": 5,
        "max_attempts": 2,
    }
    if api_url is not None:
        values["base_url"] = api_url
    values.update(spacescan or {})
    lines = ["[database]", f"url = {_toml(db_url)}", "[spacescan]"]
    lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    lines += ["[schedule]", f"interval_seconds = {interval}"]
    for name, table in (sections or {}).items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
    for entry in addresses:
        address, label = (entry, None) if isinstance(entry, str) else entry
        lines += ["[[addresses]]", f"address = {_toml(address)}"]
        if label is not None:
            lines.append(f"label = {_toml(label)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # JSON's escapes are TOML basic-string escapes


class Daemon:
    """``tracker --config CONFIG run`` as a real process, its output appended to ``log``."""

    def __init__(
        self,
        config: Path,
        *,
        log: Path | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.log_path = log or config.with_name(f"{config.stem}-{uuid.uuid4().hex[:8]}.log")
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._read = b""
        self._log: IO[bytes] = self.log_path.open("ab")
        command = [sys.executable, "-m", "tracker", "--config", str(config)]
        self.spawned = time.time()
        self.process = subprocess.Popen(
            [*command, *(["-v"] if verbose else []), "run", *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            cwd=config.parent,
        )

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything this daemon printed so far (read incrementally)."""
        with self.log_path.open("rb") as log:
            log.seek(self.offset + len(self._read))
            self._read += log.read()
        return self._read.decode("utf-8", errors="replace")

    def polls(self, since: int = 0) -> list[tuple[int, int, int]]:
        """(ok, addresses, failed) of each ``poll finished`` line after character ``since``."""
        return [
            (int(m[1]), int(m[2]), int(m[3])) for m in _POLL_LINE.finditer(self.output()[since:])
        ]

    def wait_for(
        self, what: str, done: Callable[[], object], timeout: float = WAIT_SECONDS
    ) -> None:
        """Until ``done()``; fails at once if the daemon exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not done():
            if not self.alive():
                raise AssertionError(
                    f"the daemon exited ({self.process.returncode}) waiting for {what}:\n"
                    + self.output()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}:\n" + self.output()[-3000:]
                )
            time.sleep(0.05)

    def wait_for_line(self, needle: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait_for(repr(needle), lambda: needle in self.output(), timeout)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:
            raise AssertionError("no VmRSS in /proc status")
        return int(match[1])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def sigkill(self) -> float:
        at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        return at

    def terminate(self, timeout: float = 30.0) -> tuple[int, float, float]:
        """SIGTERM; (exit status, when it was sent, seconds it took to exit)."""
        at = time.time()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9, at, time.monotonic() - started
        return self.process.returncode, at, time.monotonic() - started

    def exit_status(self, timeout: float = WAIT_SECONDS) -> int:
        """Wait for the daemon to exit on its own."""
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        self._log.close()
