"""`tracker run` as an operator sees it: metrics, /healthz, webhooks and SIGHUP, end to end."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from support import make_address
from support.fakeapi import FakeSpacescan
from support.process import Daemon, write_config
from support.webhooks import Receiver

ALICE, BOB, CAROL = make_address(11), make_address(12), make_address(13)
API_KEY = "test-key-4f1c9a77e2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure(
    path: Path, api: str, db_url: str, port: int, hook: str, addresses: list[str]
) -> Path:
    return write_config(
        path,
        db_url=db_url,
        api_url=api,
        addresses=addresses,
        interval=1,
        sections={"metrics": {"port": port}, "notifications": {"webhook_url": hook}},
    )


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample served; nothing while the daemon is still starting."""
    try:
        text = requests.get(f"{base}/metrics", timeout=10).text
    except requests.ConnectionError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def balance_key(address: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (
        "tracker_balance",
        (("address", address), ("asset_id", "xch"), ("label", ""), ("symbol", "XCH")),
    )


def test_metrics_webhook_and_reload(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'tracker.db'}"
    config = tmp_path / "tracker.toml"
    base = f"http://127.0.0.1:{port}"
    env = {"SPACESCAN_API_KEY": API_KEY}
    with FakeSpacescan(api_key=API_KEY) as api:
        for address in (ALICE, BOB, CAROL):
            api.set_xch(address, 1_000_000_000_000)
        configure(config, api.url, db_url, port, receiver.url, [ALICE, BOB])
        with Daemon(config, env=env) as daemon:
            daemon.wait_for("the first poll", lambda: balance_key(ALICE) in scrape(base))
            assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
            samples = scrape(base)
            assert samples[balance_key(ALICE)] == 1.0
            assert any(name == "tracker_api_requests_total" for name, _ in samples)

            api.set_xch(ALICE, 1_250_000_000_000)
            daemon.wait_for("a notification", lambda: len(receiver.received) >= 1)
            assert receiver.received[0]["address"] == ALICE
            assert receiver.received[0]["delta"] == "0.250000000000"

            # Drop BOB, add CAROL, reload: CAROL gets polled, BOB no longer.
            configure(config, api.url, db_url, port, receiver.url, [ALICE, CAROL])
            daemon.signal(signal.SIGHUP)
            daemon.wait_for("CAROL's poll", lambda: api.count(path_contains=CAROL) >= 2)
            bob_after_reload = api.count(path_contains=BOB)
            daemon.wait_for("CAROL's polls", lambda: api.count(path_contains=CAROL) >= 6)
            assert api.count(path_contains=BOB) == bob_after_reload
            assert balance_key(BOB) not in scrape(base)
            status, _, _ = daemon.terminate()
            err = daemon.output()
        assert status == 0, err
        assert "reloaded: 2 addresses (1 added, 1 removed" in err
        assert "s3cret-token" not in err
        assert API_KEY not in err

        # Restarted, with the API down: the stored balances are exported before any poll.
        api.stop()
        with Daemon(config, env=env) as again:
            again.wait_for("the metrics", lambda: balance_key(ALICE) in scrape(base))
            assert scrape(base)[balance_key(ALICE)] == 1.25
            again.terminate()
