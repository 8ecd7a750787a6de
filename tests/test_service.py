"""`tracker run` as an operator sees it: metrics, /healthz, webhooks and SIGHUP, end to end."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import requests
from conftest import make_address
from fakeapi import FakeSpacescan
from prometheus_client.parser import text_string_to_metric_families
from test_e2e import ALICE, API_KEY, BOB, Daemon
from webhooks import Receiver

CAROL = make_address(13)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(api: str, db_url: str, port: int, hook: str, addresses: list[str]) -> str:
    entries = "".join(f'[[addresses]]\naddress = "{a}"\n' for a in addresses)
    return (
        f'[database]\nurl = "{db_url}"\n'
        f'[spacescan]\nbase_url = "{api}"\nrequests_per_minute = 6000\n'
        f"[schedule]\ninterval_seconds = 1\n"
        f"[metrics]\nport = {port}\n"
        f'[notifications]\nwebhook_url = "{hook}"\n' + entries
    )


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample served; nothing while the daemon is still starting."""
    try:
        text = requests.get(f"{base}/metrics", timeout=5).text
    except requests.ConnectionError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_metrics_webhook_and_reload(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    config = tmp_path / "tracker.toml"
    with FakeSpacescan(api_key=API_KEY) as api:
        for address in (ALICE, BOB, CAROL):
            api.set_xch(address, 1_000_000_000_000)
        config.write_text(config_text(api.url, db_url, port, receiver.url, [ALICE, BOB]))
        with Daemon(config) as daemon:
            base = f"http://127.0.0.1:{port}"
            key = (
                "tracker_balance",
                (("address", ALICE), ("asset_id", "xch"), ("label", ""), ("symbol", "XCH")),
            )
            wait_for(lambda: key in scrape(base))  # after the first poll has been stored
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            samples = scrape(base)
            assert samples[key] == 1.0
            assert any(name == "tracker_api_requests_total" for name, _ in samples)

            api.set_xch(ALICE, 1_250_000_000_000)
            wait_for(lambda: len(receiver.received) >= 1)
            assert receiver.received[0]["address"] == ALICE
            assert receiver.received[0]["delta"] == "0.250000000000"

            # Drop BOB, add CAROL, reload: CAROL gets polled, BOB no longer.
            config.write_text(config_text(api.url, db_url, port, receiver.url, [ALICE, CAROL]))
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(lambda: api.count(path_contains=CAROL) >= 2)
            bob_after_reload = api.count(path_contains=BOB)
            wait_for(lambda: api.count(path_contains=CAROL) >= 6)
            assert api.count(path_contains=BOB) == bob_after_reload
            _, _, err = daemon.terminate()
    assert daemon.process.returncode == 0, err
    assert "reloaded: 2 addresses (1 added, 1 removed" in err
    assert "s3cret-token" not in err
    assert API_KEY not in err
