"""Tests of the fake Spacescan server itself, so end-to-end failures can be blamed on the tracker.

Everything goes through real HTTP with ``requests``, as the tracker does.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3.util import SKIP_HEADER

from support.fakeapi import ALL_FAULTS, PUSHED, FakeSpacescan, Response, Served

ADDRESS = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
BURN = "xch1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqm6ks6e8mvy"
TESTNET = "t" + ADDRESS
ASSET = "14b40962" + "ab" * 26 + "5cb495"
OTHER_ASSET = "cd" * 32
TOKENS = "/address/token-balance/"
XCH = "/address/xch-balance/"
NO_USER_AGENT = {"User-Agent": SKIP_HEADER}  # None would let urllib3 add its own
BIG = "9007199254740.993"  # 2**53 + 1 CAT mojos: a float would round it


@pytest.fixture
def fake() -> Iterator[FakeSpacescan]:
    with FakeSpacescan() as server:
        yield server


def get(fake: FakeSpacescan, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("timeout", 2)
    return requests.get(fake.url + path, **kwargs)


def outcome(fake: FakeSpacescan, path: str, **kwargs: Any) -> requests.Response | Exception:
    """The response, or the exception ``requests`` raised (reset, truncation, timeout)."""
    try:
        return get(fake, path, **kwargs)
    except requests.RequestException as exc:
        return exc


def payload(response: requests.Response) -> Any:
    return json.loads(response.text, parse_float=Decimal)


def token_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows = body["data"] if "data" in body else body["balance"]
    assert isinstance(rows, list)
    return rows


def amount(value: object) -> Decimal:
    assert isinstance(value, Decimal | int | str)
    assert not isinstance(value, bool)
    return Decimal(value)


# -- good answers ---------------------------------------------------------------------------------


def test_token_balance_cycles_through_documented_shapes(fake: FakeSpacescan) -> None:
    fake.set_token(ADDRESS, ASSET, BIG, name="Spacebucks", symbol="SBX")
    fake.set_token(ADDRESS, OTHER_ASSET, 5, name=None, symbol=None)
    answers = [get(fake, TOKENS + ADDRESS) for _ in range(4)]
    assert {a.status_code for a in answers} == {200}
    bodies = [payload(a) for a in answers]

    assert [("data" in b, "balance" in b) for b in bodies] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    balance_types = {type(row["balance"]) for b in bodies for row in token_rows(b)}
    assert balance_types == {Decimal, int, str}
    for body in bodies:
        assert body["status"] == "success"
        first, second = token_rows(body)
        assert first["asset_id"] == ASSET
        assert (first["name"], first["symbol"], first["preview_url"]) == ("Spacebucks", "SBX", None)
        assert amount(first["balance"]) == Decimal(BIG)
        assert (second["name"], second["symbol"]) == (None, None)
        assert amount(second["balance"]) == 5
    assert f'"balance": {BIG},' in answers[0].text
    assert f'"balance": "{BIG}",' in answers[1].text


def test_variance_off_always_gives_data_and_numbers() -> None:
    with FakeSpacescan(variance=False) as fake:
        fake.set_token(ADDRESS, ASSET, "1234.567")
        fake.set_xch(ADDRESS, 7)
        for _ in range(4):
            (row,) = payload(get(fake, TOKENS + ADDRESS))["data"]
            assert row["balance"] == Decimal("1234.567")
            assert payload(get(fake, XCH + ADDRESS))["mojo"] == 7


def test_xch_balance_alternates_top_level_and_nested(fake: FakeSpacescan) -> None:
    mojos = 2**64 + 1
    fake.set_xch(ADDRESS, mojos)
    first, second = (get(fake, XCH + ADDRESS).json() for _ in range(2))
    assert first["status"] == second["status"] == "success"
    assert first["mojo"] == second["data"]["mojo"] == mojos
    assert first["xch"] == pytest.approx(mojos / 10**12)


def test_unknown_address_has_no_tokens_and_zero_xch(fake: FakeSpacescan) -> None:
    assert get(fake, TOKENS + BURN).json() == {"status": "success", "data": []}
    assert get(fake, XCH + TESTNET).json() == {"status": "success", "xch": 0.0, "mojo": 0}


def test_remove_token(fake: FakeSpacescan) -> None:
    fake.set_token(ADDRESS, ASSET, 1)
    fake.set_token(ADDRESS, OTHER_ASSET, 2)
    fake.remove_token(ADDRESS, ASSET)
    assert [row["asset_id"] for row in get(fake, TOKENS + ADDRESS).json()["data"]] == [OTHER_ASSET]
    with pytest.raises(KeyError):
        fake.remove_token(ADDRESS, ASSET)


def test_setters_refuse_values_that_could_not_be_served_exactly() -> None:
    fake = FakeSpacescan()
    with pytest.raises(TypeError):
        fake.set_token(ADDRESS, ASSET, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        fake.set_token(ADDRESS, ASSET, "NaN")
    with pytest.raises(ValueError, match="address"):
        fake.set_xch("xch1tooshort", 1)
    with pytest.raises(ValueError, match="unknown fault"):
        FakeSpacescan(faults=["teapot"])


# -- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["xch1tooshort", ADDRESS[:-1], "b" + ADDRESS[1:], ADDRESS + "q"]
)
def test_invalid_address_is_400(fake: FakeSpacescan, address: str) -> None:
    for path in (TOKENS, XCH):
        answer = get(fake, path + address)
        assert answer.status_code == 400
        assert answer.json() == {"status": "failed", "message": "Invalid address"}


def test_unknown_path_is_404(fake: FakeSpacescan) -> None:
    assert get(fake, "/address/nft-balance/" + ADDRESS).status_code == 404
    assert get(fake, "/").status_code == 404


def test_api_key_is_enforced() -> None:
    forbidden = {"status": "failed", "message": "Forbidden"}
    with FakeSpacescan(api_key="sekrit") as fake:
        assert get(fake, XCH + ADDRESS).json() == forbidden
        assert get(fake, XCH + ADDRESS, headers={"x-api-key": "wrong"}).status_code == 403
        assert get(fake, XCH + ADDRESS, headers={"X-API-Key": "sekrit"}).status_code == 200
        assert fake.count(status=403) == 2
        assert fake.requests[-1].headers["x-api-key"] == "sekrit"


def test_user_agent_is_required(fake: FakeSpacescan) -> None:
    answer = get(fake, TOKENS + ADDRESS, headers=NO_USER_AGENT)
    assert answer.status_code == 403
    assert "user-agent" not in fake.requests[-1].headers
    assert get(fake, TOKENS + ADDRESS, headers={"User-Agent": "tracker/0.1"}).status_code == 200
    assert fake.requests[-1].headers["user-agent"] == "tracker/0.1"


# -- scripted answers -----------------------------------------------------------------------------


def test_pushed_responses_are_served_first_in_first_out_by_path(fake: FakeSpacescan) -> None:
    fake.set_xch(ADDRESS, 3)
    fake.push(
        "xch-balance",
        Response(500, {"status": "failed", "message": "boom"}),
        Response(200, "not json", headers={"X-Test": "1", "Content-Type": "text/plain"}),
    )
    assert get(fake, TOKENS + ADDRESS).status_code == 200  # other path: untouched
    first = get(fake, XCH + ADDRESS + "?include_dust=true")
    assert (first.status_code, first.json()["message"]) == (500, "boom")
    second = get(fake, XCH + ADDRESS, headers=NO_USER_AGENT)  # checks are bypassed
    assert (second.status_code, second.text) == (200, "not json")
    assert (second.headers["X-Test"], second.headers["Content-Type"]) == ("1", "text/plain")
    assert get(fake, XCH + ADDRESS).json()["mojo"] == 3

    assert [(s.status, s.fault) for s in fake.requests] == [
        (200, None),
        (500, PUSHED),
        (200, PUSHED),
        (200, None),
    ]
    assert (fake.requests[1].path, fake.requests[1].query) == (XCH + ADDRESS, "include_dust=true")


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (Response(reset=True), requests.ConnectionError),
        (
            Response(body={"status": "success", "data": []}, truncate=True),
            requests.exceptions.ChunkedEncodingError,
        ),
    ],
    ids=["reset", "truncate"],
)
def test_pushed_broken_connections_raise_and_server_recovers(
    fake: FakeSpacescan, response: Response, error: type[Exception]
) -> None:
    fake.push(TOKENS, response)
    with requests.Session() as session:
        with pytest.raises(error):
            session.get(fake.url + TOKENS + ADDRESS, timeout=2)
        assert session.get(fake.url + TOKENS + ADDRESS, timeout=2).status_code == 200
    assert fake.requests[0].status == (0 if response.reset else 200)


def test_truncated_body_announces_full_length(fake: FakeSpacescan) -> None:
    fake.push(TOKENS, Response(body=b"0123456789", truncate=True))
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="5 bytes read, 5 more"):
        get(fake, TOKENS + ADDRESS)


def test_delays_and_latency() -> None:
    with FakeSpacescan(latency=0.03) as fake:
        fake.push(XCH, Response(delay=1.0))
        with pytest.raises(requests.Timeout):
            get(fake, XCH + ADDRESS, timeout=0.1)
        started = time.monotonic()
        assert get(fake, XCH + ADDRESS).status_code == 200
        assert time.monotonic() - started >= 0.03


# -- fault injection ------------------------------------------------------------------------------


def check_fault(kind: str, answer: requests.Response | Exception) -> None:
    """What a client receives for each fault kind on the token endpoint."""
    expected_status = {"429": 429, "429-no-retry-after": 429, "500": 500, "502": 502, "503": 503}
    if kind in expected_status:
        assert isinstance(answer, requests.Response)
        assert answer.status_code == expected_status[kind]
        assert answer.headers.get("Retry-After") == ("1" if kind == "429" else None)
    elif kind == "reset":
        assert isinstance(answer, requests.ConnectionError)
    elif kind == "truncated":
        assert isinstance(answer, requests.exceptions.ChunkedEncodingError)
    elif kind == "timeout":
        assert isinstance(answer, requests.Response)
        assert answer.status_code == 504
    elif kind == "html":
        assert isinstance(answer, requests.Response)
        assert answer.status_code == 200
        assert answer.text.startswith("<!DOCTYPE html>")
    else:
        assert isinstance(answer, requests.Response)
        assert answer.status_code == 200
        body = payload(answer)
        if kind == "status-failed":
            assert body == {"status": "failed", "message": "Internal error"}
        elif kind == "missing-list":
            assert body == {"status": "success"}
        elif kind == "wrong-types":
            assert all(isinstance(row["balance"], dict | list | bool) for row in body["data"])
        else:
            assert kind == "negative"
            assert all(row["balance"] < 0 for row in body["data"])


@pytest.mark.parametrize("kind", ALL_FAULTS)
def test_each_fault_kind_at_rate_one(kind: str) -> None:
    with FakeSpacescan(fault_rate=1.0, faults=[kind], timeout_delay=0.02) as fake:
        fake.set_token(ADDRESS, ASSET, BIG)
        fake.set_xch(ADDRESS, 5)
        check_fault(kind, outcome(fake, TOKENS + ADDRESS))
        xch = outcome(fake, XCH + ADDRESS)
        if kind in ("wrong-types", "negative", "missing-list"):
            assert isinstance(xch, requests.Response)
            body = xch.json()
            assert body["status"] == "success"
            assert kind != "wrong-types" or not isinstance(body["mojo"], int)
            assert kind != "negative" or body["mojo"] < 0
            assert kind != "missing-list" or "mojo" not in body
        assert [s.fault for s in fake.requests] == [kind, kind]
        assert fake.count(fault=kind) == 2
        assert fake.count(fault=None) == 0


@pytest.mark.parametrize("kind", ["wrong-types", "negative"])
def test_body_faults_still_bite_when_the_address_has_no_tokens(kind: str) -> None:
    with FakeSpacescan(fault_rate=1.0, faults=[kind]) as fake:
        body = payload(get(fake, TOKENS + BURN))
        if kind == "wrong-types":
            assert body["data"] == {}
        else:
            assert [row["balance"] for row in body["data"]] == [-1]


def test_faults_are_reproducible_from_the_seed() -> None:
    def run(seed: int) -> list[str | None]:
        with FakeSpacescan(fault_rate=0.5, seed=seed, timeout_delay=0.01) as fake:
            fake.set_token(ADDRESS, ASSET, 1)
            for _ in range(20):
                outcome(fake, TOKENS + ADDRESS)
            return [s.fault for s in fake.requests]

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    assert None in first
    assert len(set(first)) > 3


def test_faults_only_hit_balance_endpoints_of_allowed_clients() -> None:
    with FakeSpacescan(fault_rate=1.0, faults=["500"]) as fake:
        assert get(fake, "/elsewhere").status_code == 404
        assert get(fake, XCH + ADDRESS, headers=NO_USER_AGENT).status_code == 403
        assert get(fake, XCH + ADDRESS).status_code == 500
        assert [s.fault for s in fake.requests] == [None, None, "500"]


# -- request log ----------------------------------------------------------------------------------


def test_count_filters(fake: FakeSpacescan) -> None:
    fake.push(XCH, Response(503))
    get(fake, XCH + ADDRESS)
    get(fake, XCH + ADDRESS)
    get(fake, TOKENS + ADDRESS)
    get(fake, TOKENS + "nope")
    assert fake.count() == 4
    assert fake.count(path_contains="xch-balance") == 2
    assert fake.count(fault=None) == 3
    assert fake.count(fault=PUSHED, status=503) == 1
    assert fake.count(path_contains=TOKENS, status=200) == 1
    assert fake.count(status=400) == 1
    assert all(earlier.at <= later.at for earlier, later in pairwise(fake.requests))


def test_over_budget_counts_a_burst() -> None:
    with FakeSpacescan(max_requests_per_minute=2) as fake:
        for _ in range(5):
            get(fake, XCH + ADDRESS)
        # Preceding requests within 60 s: 0, 1, 2, 3, 4; more than 2 for the last two.
        assert fake.over_budget() == 2


def test_over_budget_window_slides() -> None:
    fake = FakeSpacescan(max_requests_per_minute=2)
    for at in (0.0, 10.0, 20.0, 30.0, 61.0, 62.0, 100.0, 160.0):
        fake.requests.append(Served(1000.0 + at, XCH + ADDRESS, "", {}, 200, None))
    # Over: 30 (0, 10, 20 before it), 61 (10, 20, 30), 62 (10, 20, 30, 61). Not 100 (61, 62)
    # nor 160 (100: exactly 60 s earlier is outside the window).
    assert fake.over_budget() == 3
    with pytest.raises(ValueError, match="max_requests_per_minute"):
        FakeSpacescan().over_budget()


def test_wait_count(fake: FakeSpacescan) -> None:
    timer = threading.Timer(0.05, get, args=(fake, XCH + ADDRESS))
    timer.start()
    assert fake.wait_count(1, path_contains="xch-balance", timeout=2)
    timer.join()
    assert not fake.wait_count(2, timeout=0.05)


# -- lifecycle ------------------------------------------------------------------------------------


def test_stop_is_prompt_with_idle_and_stalled_connections() -> None:
    fake = FakeSpacescan(fault_rate=1.0, faults=["timeout"], timeout_delay=30).start()
    results: list[requests.Response | Exception] = []
    stalled = threading.Thread(target=lambda: results.append(outcome(fake, XCH + ADDRESS)))
    with requests.Session() as idle:
        fake.push(XCH, Response())
        assert idle.get(fake.url + XCH + ADDRESS, timeout=2).status_code == 200
        stalled.start()
        assert fake.wait_count(2)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 1
    stalled.join(2)
    assert isinstance(results[0], requests.ConnectionError)
    fake.stop()  # idempotent


def test_restart_keeps_port_and_log() -> None:
    with FakeSpacescan() as fake:
        url = fake.url
        assert get(fake, XCH + ADDRESS).status_code == 200
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + XCH + ADDRESS, timeout=2)
    with fake:
        assert fake.url == url
        assert get(fake, XCH + ADDRESS).status_code == 200
    assert fake.count() == 2


def test_standalone_main_serves_until_interrupted() -> None:
    script = Path(__file__).parent / "support" / "fakeapi.py"
    args = [sys.executable, str(script), "--port", "0", "--address", ADDRESS, "--xch-mojos", "42"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert requests.get(url + XCH + ADDRESS, timeout=2).json()["mojo"] == 42
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0


# -- prices ---------------------------------------------------------------------------------------


def test_xch_price_now_and_in_the_past_in_every_documented_shape(fake: FakeSpacescan) -> None:
    assert payload(get(fake, "/stats/price?currency=USD")) == {"status": "success", "price": None}
    fake.set_xch_price("31.20")
    fake.set_xch_price("28.4", currency="EUR")
    fake.set_xch_price("20.5", period=1_700_000_000)
    prices = [payload(get(fake, "/stats/price?currency=USD"))["price"] for _ in range(3)]
    assert sorted(prices, key=lambda p: type(p).__name__) == [
        Decimal("31.20"),
        {"usd": "31.20"},
        "31.20",
    ]
    assert price_in(get(fake, "/stats/price?cur=eur"), "eur") == Decimal("28.4")
    assert price_in(get(fake, "/stats/price?currency=USD&period=1700003600")) == Decimal("20.5")
    before = payload(get(fake, "/stats/price?currency=USD&period=1699999999"))
    assert before == {"status": "success", "price": None}
    assert fake.count(path_contains="/stats/price", fault=None) == 7


def price_in(answer: requests.Response, currency: str = "usd") -> Decimal:
    price = payload(answer)["price"]
    return Decimal(str(price[currency] if isinstance(price, dict) else price))


def test_token_price_and_row_prices(fake: FakeSpacescan) -> None:
    fake.set_token(ADDRESS, ASSET, 2)
    fake.set_token(ADDRESS, OTHER_ASSET, 3)
    fake.set_token_price(ASSET, "0.0011", "0.026")
    fake.set_token_price(OTHER_ASSET, None)
    assert payload(get(fake, f"/token/price/{ASSET}?currency=USD")) == {
        "status": "success",
        "price": {"usd": "0.026", "xch": "0.0011"},
    }
    assert get(fake, f"/token/price/{'ee' * 32}?currency=USD").status_code == 404
    first, second = token_rows(payload(get(fake, TOKENS + ADDRESS)))
    assert (first["price_xch"], second["price_xch"]) == (Decimal("0.0011"), None)


def test_rows_without_prices() -> None:
    with FakeSpacescan(row_prices=False) as fake:
        fake.set_token(ADDRESS, ASSET, 2)
        (row,) = token_rows(payload(get(fake, TOKENS + ADDRESS)))
        assert set(row) == {"asset_id", "name", "symbol", "preview_url", "balance"}
