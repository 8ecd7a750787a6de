"""A fake Spacescan address API served over real HTTP, for end-to-end and soak tests.

Why a real server and not a mocked transport: end-to-end tests run the actual ``tracker`` process
pointed at this server through its config ``base_url``, so everything between the process and the
wire (sessions, timeouts, retries, keep-alive, rate limiting) is exercised as in production.

What it reproduces, from ``/work/shared/spacescan-api.md``:

- the two balance endpoints, alternating deterministically between the documented answer shapes
  (list under ``data`` or ``balance``, numbers as JSON numbers or strings, XCH fields at top level
  or under ``data``) so a client that only copes with one shape fails quickly;
- amounts written into the JSON text exactly from :class:`~decimal.Decimal`, never through a float;
- the gateway's rejections (missing ``User-Agent``, bad ``x-api-key``) and the error body format;
- reproducible fault injection (``random.Random(seed)``) for the soak test, each fault named in the
  request log so a test can check how the client reacted to each kind;
- one-shot scripted answers (:meth:`FakeSpacescan.push`) for precise unit-style scenarios;
- the price endpoints (``/stats/price``, current or at a ``period``, alternating between a number,
  a string and a currency-keyed object; ``/token/price/{asset_id}`` with string prices) and each
  token row's ``price_xch``, as set by :meth:`FakeSpacescan.set_xch_price` and
  :meth:`FakeSpacescan.set_token_price` (never faulted: the soak's accounting is about balances);
- a hook called after each good answer has been completely sent (``on_good_answer``), and an
  atomic :meth:`FakeSpacescan.set_balances`, so a soak test can move an address to its next
  known state exactly when the client got the current one.

Stdlib only, so it also runs standalone: ``python tests/fakeapi.py --port 8555 --address xch1...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

ALL_FAULTS: tuple[str, ...] = (
    "429",
    "429-no-retry-after",
    "500",
    "502",
    "503",
    "reset",
    "timeout",
    "truncated",
    "html",
    "status-failed",
    "wrong-types",
    "negative",
    "missing-list",
)
"""Every fault kind :class:`FakeSpacescan` can inject; the name is recorded in ``Served.fault``."""

PUSHED = "pushed"
"""``Served.fault`` of a request answered by a response queued with :meth:`FakeSpacescan.push`."""

TOKEN_PATH = "/address/token-balance/"
XCH_PATH = "/address/xch-balance/"
XCH_PRICE_PATH = "/stats/price"
TOKEN_PRICE_PATH = "/token/price/"
DEFAULT_PRICE_XCH = Decimal("0.01")
"""A CAT's ``price_xch`` in token-balance rows unless set otherwise (also ``price``: 0.25)."""
MOJOS_PER_XCH = 10**12
BUDGET_WINDOW = 60.0

_TOKEN_VARIANTS: tuple[tuple[str, str], ...] = (
    ("data", "number"),
    ("balance", "string"),
    ("balance", "number"),
    ("data", "mixed"),
)
"""Cycle of (list key, number style) for token answers; "mixed" alternates string/number per row,
as the docs warn that the type may vary row to row."""

_HTML = {"Content-Type": "text/html; charset=utf-8"}
_HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking your browser</h1></body></html>"
)


@dataclass
class Served:
    """One request as the server saw it, so tests can assert on what the client really sent."""

    at: float
    """``time.monotonic()`` when the request line was read."""
    path: str
    """Path without the query string."""
    query: str
    headers: dict[str, str]
    """Request headers, names lower-cased so lookups do not depend on the client's spelling."""
    status: int
    """Status sent; 0 when the connection was reset without an answer."""
    fault: str | None
    """Injected fault (a name from :data:`ALL_FAULTS`, or :data:`PUSHED`); None: a real answer."""
    wall: float = 0.0
    """``time.time()`` when the request line was read, to compare with times in a database."""
    sent: float | None = None
    """``time.monotonic()`` once the whole answer was handed to the socket; None if it never was
    (a reset, a stop, or a client that hung up first)."""


@dataclass(frozen=True)
class Response:
    """A canned answer, either queued by a test with :meth:`FakeSpacescan.push` or built internally.

    ``body`` as a dict or list is sent as JSON; str and bytes are sent as given. The Content-Type
    defaults to ``application/json`` (a raw body is usually a malformed-JSON test) and any header
    given in ``headers`` overrides the defaults, including Content-Length.
    """

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (on top of the server's ``latency``)."""
    reset: bool = False
    """Close the socket with a TCP reset, sending nothing."""
    truncate: bool = False
    """Announce the full Content-Length, send only half of the body, then close."""
    trickle: float = 0.0
    """Send the body one byte at a time, this many seconds apart (a stalling, hostile peer)."""

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        """Return the body bytes and the headers to send, defaults filled in."""
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
        else:
            data = json.dumps(self.body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        given = {name.lower() for name in self.headers}
        headers = {k: v for k, v in headers.items() if k.lower() not in given}
        headers.update(self.headers)
        return data, headers


def _failed(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Spacescan's error body format, so clients can be tested on reading ``message``."""
    return Response(status, {"status": "failed", "message": message}, headers or {})


def _decimal_text(amount: Decimal) -> str:
    """Plain (no exponent) decimal text, identical in the JSON number and string forms."""
    return format(amount, "f")


def _valid_address(address: str) -> bool:
    return (len(address) == 62 and address.startswith("xch1")) or (
        len(address) == 63 and address.startswith("txch1")
    )


@dataclass(frozen=True)
class _Token:
    amount: Decimal
    name: str | None
    symbol: str | None


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its live connections, so ``stop()`` can close them.

    The stock server neither joins daemon handler threads nor wakes those blocked on an idle
    keep-alive connection; left alone they would outlive the test and leak their sockets
    (a ResourceWarning, an error under ``filterwarnings = error``).
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeSpacescan) -> None:
        self.fake = fake
        self.workers: dict[threading.Thread, socket.socket] = {}
        self.workers_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Run each connection in a tracked daemon thread."""
        worker = threading.Thread(
            target=self._work, args=(request, client_address), daemon=True, name="fakeapi-conn"
        )
        with self.workers_lock:
            self.workers[worker] = cast(socket.socket, request)
        worker.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self.workers_lock:
                self.workers.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up (they time out on purpose); report real bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Wake every handler blocked on its socket and wait for all of them to finish."""
        with self.workers_lock:
            workers = dict(self.workers)
        for conn in workers.values():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Speaks HTTP/1.1 with keep-alive, like the real gateway, so connection reuse is exercised."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeSpacescan/1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers (40 ms on Linux), which no real gateway would add.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log; the request log is ``FakeSpacescan.requests``."""

    def do_GET(self) -> None:
        """Decide the answer, log it, then send it (after any delay)."""
        fake = cast(_Server, self.server).fake
        at, wall = time.monotonic(), time.time()
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        response, fault = fake._decide(url.path, headers, url.query)
        served = Served(
            at, url.path, url.query, headers, 0 if response.reset else response.status, fault, wall
        )
        fake._log(served)
        if fake._stopping.wait(fake.latency + response.delay):
            self.close_connection = True
            return
        try:
            self._send(response)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return
        if not response.reset:
            served.sent = time.monotonic()
            if fault is None and response.status == 200:  # only _good() answers 200 unfaulted
                fake._answered_well(url.path)

    def _send(self, response: Response) -> None:
        if response.reset:
            self.close_connection = True
            # Linger 0 makes close() send an RST; the socket really closes when rfile is closed,
            # which StreamRequestHandler.finish() does before the server's own shutdown (a FIN).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        data, headers = response.encoded()
        self.send_response(response.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.truncate:
            self.close_connection = True
            data = data[: len(data) // 2]
        if response.trickle:
            for index in range(len(data)):
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
                if cast(_Server, self.server).fake._stopping.wait(response.trickle):
                    return
            return
        self.wfile.write(data)


class FakeSpacescan:
    """The fake server: balances set by the test, every documented answer shape, faults on demand.

    Use it as a context manager (``with FakeSpacescan() as fake:``) so the socket and threads are
    always released. All methods are thread-safe and may be called while the server is running.

    :param api_key: when set, requests must carry ``x-api-key`` equal to it (else 403).
    :param latency: seconds added before every answer.
    :param fault_rate: probability that a request to a balance endpoint gets a fault instead.
    :param faults: fault kinds to choose from (uniformly), names from :data:`ALL_FAULTS`.
    :param seed: seed of the fault RNG, so a soak run can be replayed.
    :param max_requests_per_minute: budget checked by :meth:`over_budget` (nothing is enforced).
    :param variance: alternate between the documented answer shapes (off: always ``data`` and
        JSON numbers).
    :param timeout_delay: how long the "timeout" fault stalls before its 504.
    :param port: port to bind; 0 picks a free one. A restarted server keeps its first port.
    :param row_prices: token rows carry ``price_xch``, ``price`` and ``total_value`` (off: the
        documented rows, without them).
    :param on_good_answer: called as ``on_good_answer(endpoint, address)`` (``endpoint`` is
        :data:`TOKEN_PATH` or :data:`XCH_PATH`) from the handler thread, after a good answer
        (not a fault, not pushed, not a rejection) has been completely written to the socket.
        Whether the client then reads it is up to the client.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = ALL_FAULTS,
        seed: int = 0,
        max_requests_per_minute: float | None = None,
        variance: bool = True,
        timeout_delay: float = 5.0,
        port: int = 0,
        on_good_answer: Callable[[str, str], None] | None = None,
        row_prices: bool = True,
    ) -> None:
        unknown = sorted(set(faults) - set(ALL_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        self.api_key = api_key
        self.latency = latency
        self.fault_rate = fault_rate
        self.faults: tuple[str, ...] = tuple(faults)
        self.max_requests_per_minute = max_requests_per_minute
        self.variance = variance
        self.timeout_delay = timeout_delay
        self.on_good_answer = on_good_answer
        self.requests: list[Served] = []
        self._port = port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._logged = threading.Condition(self._lock)
        self._xch: dict[str, int] = {}
        self._tokens: dict[str, dict[str, _Token]] = {}
        self._pushed: list[tuple[str, Response]] = []
        self.row_prices = row_prices
        self._xch_prices: dict[str, dict[int | None, Decimal | None]] = {}
        self._token_prices: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._price_answers = 0
        self._token_answers = 0
        self._xch_answers = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to put in the client's config; only known once started."""
        if self._server is None:
            raise RuntimeError("FakeSpacescan is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeSpacescan:
        """Bind and serve in a daemon thread; after a ``stop()`` it may be started again."""
        if self._server is not None:
            raise RuntimeError("FakeSpacescan is already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True, name="fakeapi-serve"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release every socket and thread, cutting short any pending delay.

        Requests still waiting (latency, "timeout" fault) are dropped without an answer.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        thread.join()
        server.close_connections(timeout=5.0)
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> FakeSpacescan:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------

    def set_xch(self, address: str, mojos: int) -> None:
        """Set the XCH balance of ``address``, in mojos."""
        self._check_address(address)
        if not isinstance(mojos, int) or isinstance(mojos, bool):
            raise TypeError("mojos must be an int")
        with self._lock:
            self._xch[address] = mojos

    def set_token(
        self,
        address: str,
        asset_id: str,
        amount: str | int | Decimal,
        *,
        name: str | None = "Token",
        symbol: str | None = "TKN",
    ) -> None:
        """Add or replace a CAT row; ``amount`` is in whole tokens and is served exactly.

        Floats are refused: they would already have lost the digits the tests check for.
        """
        self._check_address(address)
        if isinstance(amount, float | bool):
            raise TypeError("amount must be str, int or Decimal, not float")
        value = Decimal(amount)
        if not value.is_finite():
            raise ValueError("amount must be finite")
        with self._lock:
            self._tokens.setdefault(address, {})[asset_id] = _Token(value, name, symbol)

    def set_balances(
        self,
        address: str,
        xch_mojos: int,
        tokens: Mapping[str, tuple[str | Decimal, str | None, str | None]],
    ) -> None:
        """Replace every balance of ``address`` at once: XCH in mojos, and the complete CAT list
        as ``{asset_id: (amount in whole tokens, name, symbol)}``.

        Atomic: a concurrent answer sees either the old or the new state, never a mix.
        """
        self._check_address(address)
        if not isinstance(xch_mojos, int) or isinstance(xch_mojos, bool):
            raise TypeError("xch_mojos must be an int")
        rows = {}
        for asset_id, (amount, name, symbol) in tokens.items():
            if isinstance(amount, float | bool):
                raise TypeError("amount must be str or Decimal, not float")
            value = Decimal(amount)
            if not value.is_finite():
                raise ValueError("amount must be finite")
            rows[asset_id] = _Token(value, name, symbol)
        with self._lock:
            self._xch[address] = xch_mojos
            self._tokens[address] = rows

    def remove_token(self, address: str, asset_id: str) -> None:
        """Drop a CAT row; raises KeyError if it was never set (a likely test mistake)."""
        with self._lock:
            del self._tokens[address][asset_id]

    def set_xch_price(
        self, price: str | Decimal | None, *, currency: str = "USD", period: int | None = None
    ) -> None:
        """The XCH price in ``currency`` now (``period`` None), or from the Unix time ``period``
        on (a request for a past time gets the latest set at or before it, else null)."""
        value = None if price is None else _exact(price)
        with self._lock:
            self._xch_prices.setdefault(currency.upper(), {})[period] = value

    def set_token_price(
        self, asset_id: str, xch: str | Decimal | None, fiat: str | Decimal | None = None
    ) -> None:
        """A CAT's price in XCH (and in the currency), served by ``/token/price`` and as the
        ``price_xch`` of its token rows (None: null there)."""
        with self._lock:
            self._token_prices[asset_id] = (
                None if xch is None else _exact(xch),
                None if fiat is None else _exact(fiat),
            )

    def push(self, path_contains: str, *responses: Response) -> None:
        """Queue one-shot responses for the next requests whose path contains ``path_contains``.

        Queued responses are consumed first-in first-out and take precedence over everything else
        (key and User-Agent checks, fault injection), so a test gets exactly what it scripted.
        """
        with self._lock:
            self._pushed.extend((path_contains, response) for response in responses)

    # -- inspection --------------------------------------------------------------------------

    def count(
        self,
        *,
        path_contains: str = "",
        fault: str | Literal["any"] | None = "any",
        status: int | None = None,
    ) -> int:
        """Number of logged requests matching all filters (``fault=None``: real answers only)."""
        with self._lock:
            served = list(self.requests)
        return sum(
            1
            for s in served
            if path_contains in s.path
            and (fault == "any" or s.fault == fault)
            and (status is None or s.status == status)
        )

    def wait_count(self, n: int, *, path_contains: str = "", timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests matching ``path_contains`` arrived; False on timeout.

        For end-to-end tests, which must wait for the daemon's polls rather than sleep blindly.
        """
        deadline = time.monotonic() + timeout
        with self._logged:
            while sum(1 for s in self.requests if path_contains in s.path) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self._logged.wait(left):
                    return sum(1 for s in self.requests if path_contains in s.path) >= n
        return True

    def over_budget(self) -> int:
        """Requests that arrived while more than ``max_requests_per_minute`` had already arrived
        in the preceding 60 s (sliding window), i.e. how often the client broke its rate limit.

        With a budget of N, the (N+2)-th request within 60 s is the first one counted: one request
        of slack, so jitter between the client's clock and arrival times is not a failure.
        """
        if self.max_requests_per_minute is None:
            raise ValueError("over_budget() needs max_requests_per_minute")
        with self._lock:
            times = sorted(s.at for s in self.requests)
        over = 0
        first = 0
        for i, at in enumerate(times):
            while times[first] <= at - BUDGET_WINDOW:
                first += 1
            if i - first > self.max_requests_per_minute:
                over += 1
        return over

    # -- answering (called from handler threads) ---------------------------------------------

    @staticmethod
    def _check_address(address: str) -> None:
        if not _valid_address(address):
            raise ValueError(f"not an address the fake would accept: {address!r}")

    def _log(self, served: Served) -> None:
        with self._logged:
            self.requests.append(served)
            self._logged.notify_all()

    def _decide(
        self, path: str, headers: Mapping[str, str], query: str = ""
    ) -> tuple[Response, str | None]:
        """Pick the answer to a request and the fault name to log with it."""
        with self._lock:
            for i, (needle, response) in enumerate(self._pushed):
                if needle in path:
                    del self._pushed[i]
                    return response, PUSHED
        if not headers.get("user-agent"):
            return _failed(403, "Forbidden"), None
        if self.api_key is not None and headers.get("x-api-key") != self.api_key:
            return _failed(403, "Forbidden"), None
        if path == XCH_PRICE_PATH or path.startswith(TOKEN_PRICE_PATH):
            return self._price_answer(path, query), None
        if path.startswith(TOKEN_PATH):
            endpoint, address = TOKEN_PATH, path[len(TOKEN_PATH) :]
        elif path.startswith(XCH_PATH):
            endpoint, address = XCH_PATH, path[len(XCH_PATH) :]
        else:
            return _failed(404, "Not found"), None
        fault = self._draw_fault()
        if fault is not None:
            return self._fault(fault, endpoint, address), fault
        if not _valid_address(address):
            return _failed(400, "Invalid address"), None
        return self._good(endpoint, address), None

    def _answered_well(self, path: str) -> None:
        hook = self.on_good_answer
        if hook is None:
            return
        for endpoint in (TOKEN_PATH, XCH_PATH):
            if path.startswith(endpoint):
                hook(endpoint, path[len(endpoint) :])
                return

    def _draw_fault(self) -> str | None:
        if self.fault_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
        return None

    def _good(self, endpoint: str, address: str) -> Response:
        with self._lock:
            if endpoint == TOKEN_PATH:
                turn = self._token_answers
                self._token_answers += 1
            else:
                turn = self._xch_answers
                self._xch_answers += 1
        if not self.variance:
            turn = 0
        if endpoint == TOKEN_PATH:
            return self._token_answer(address, *_TOKEN_VARIANTS[turn % len(_TOKEN_VARIANTS)])
        return Response(200, self._xch_body(address, nested=turn % 2 == 1))

    def _token_rows(self, address: str, style: str) -> list[dict[str, Any]]:
        """Rows with Decimal values (JSON numbers) or str values (JSON strings), per ``style``."""
        with self._lock:
            tokens = list(self._tokens.get(address, {}).items())
            prices = dict(self._token_prices)
        rows = []
        for index, (asset_id, token) in enumerate(tokens):
            as_string = style == "string" or (style == "mixed" and index % 2 == 0)
            numbers: dict[str, Decimal | None] = {"balance": token.amount}
            if self.row_prices:
                in_xch, fiat = prices.get(asset_id, (DEFAULT_PRICE_XCH, Decimal("0.25")))
                each = fiat if fiat is not None else Decimal("0.25")
                numbers["price_xch"] = in_xch
                numbers["price"] = each
                numbers["total_value"] = (token.amount * each).quantize(Decimal("0.01"))
            rows.append(
                {
                    "asset_id": asset_id,
                    "name": token.name,
                    "symbol": token.symbol,
                    "preview_url": None,
                    **{
                        k: _decimal_text(v) if as_string and v is not None else v
                        for k, v in numbers.items()
                    },
                }
            )
        return rows

    def _price_answer(self, path: str, query: str) -> Response:
        """``/stats/price`` (XCH, now or at ``period``) or ``/token/price/{asset_id}``."""
        params = dict(parse_qsl(query))
        currency = (params.get("currency") or params.get("cur") or "USD").upper()
        with self._lock:
            turn = self._price_answers if self.variance else 0
            self._price_answers += 1
            if path.startswith(TOKEN_PRICE_PATH):
                found = self._token_prices.get(path[len(TOKEN_PRICE_PATH) :])
                if found is None:
                    return _failed(404, "Token not found")
                in_xch, fiat = found
                texts = [None if v is None else _decimal_text(v) for v in (fiat, in_xch)]
                prices = {currency.lower(): texts[0], "xch": texts[1]}
                return Response(200, {"status": "success", "price": prices})
            known = self._xch_prices.get(currency, {})
            period = params.get("period")
            if period is None:
                price = known.get(None)
            else:
                past = [p for p in known if p is not None and p <= int(period)]
                price = known[max(past)] if past else None
        shape = turn % 3  # a JSON number, a string, or an object keyed by currency
        text = "null" if price is None else _decimal_text(price)
        value = text if shape == 0 or price is None else f'"{text}"'
        if shape == 2:
            value = f'{{"{currency.lower()}": {value}}}'
        return Response(200, f'{{"status": "success", "price": {value}}}'.encode())

    def _token_answer(self, address: str, list_key: str, style: str) -> Response:
        body = {"status": "success", list_key: self._token_rows(address, style)}
        return Response(200, _dumps_exact(body).encode())

    def _xch_body(self, address: str, *, nested: bool) -> dict[str, Any]:
        with self._lock:
            mojos = self._xch.get(address, 0)
        fields = {"xch": mojos / MOJOS_PER_XCH, "mojo": mojos}
        return {"status": "success", "data": fields} if nested else {"status": "success", **fields}

    def _fault(self, fault: str, endpoint: str, address: str) -> Response:
        """Build the answer for an injected fault; body faults keep the rest of the answer valid."""
        if fault in ("429", "429-no-retry-after"):
            retry_after = {"Retry-After": "1"} if fault == "429" else {}
            return _failed(429, "rate limit exceeded", retry_after)
        if fault == "500":
            return _failed(500, "Internal Server Error")
        if fault == "502":
            return Response(502, b"<html><h1>502 Bad Gateway</h1></html>", _HTML)
        if fault == "503":
            return _failed(503, "Service Unavailable")
        if fault == "reset":
            return Response(reset=True)
        if fault == "timeout":
            stalled = _failed(504, "Gateway Timeout")
            return Response(stalled.status, stalled.body, delay=self.timeout_delay)
        if fault == "html":
            return Response(200, _HTML_PAGE, _HTML)
        if fault == "status-failed":
            return _failed(200, "Internal error")
        if fault == "truncated":
            return Response(200, self._good(endpoint, address).body, truncate=True)
        with self._lock:
            wrong: object = ({"value": "1"}, [1], True)[self._rng.randrange(3)]
        body: dict[str, Any]
        if fault == "missing-list":
            body = {"status": "success"}
        elif endpoint == XCH_PATH:
            body = self._xch_body(address, nested=False)
            if fault == "wrong-types":
                body["mojo"] = wrong
            else:  # negative
                body["mojo"] = -(abs(body["mojo"]) or 1)
                body["xch"] = body["mojo"] / MOJOS_PER_XCH
        else:
            rows = self._token_rows(address, "number")
            if fault == "wrong-types":
                # Without tokens there is no balance to spoil: the list itself gets a wrong type.
                body = {"status": "success", "data": [{**r, "balance": wrong} for r in rows] or {}}
            else:  # negative; an address without tokens gets a made-up row
                rows = rows or [
                    {
                        "asset_id": "ff" * 32,
                        "name": None,
                        "symbol": None,
                        "preview_url": None,
                        "balance": Decimal(0),
                    }
                ]
                body = {
                    "status": "success",
                    "data": [{**r, "balance": -(abs(r["balance"]) or 1)} for r in rows],
                }
        return Response(200, _dumps_exact(body).encode())


def _exact(value: str | Decimal) -> Decimal:
    if isinstance(value, float | bool):
        raise TypeError("a price must be str or Decimal, not float")
    price = Decimal(value)
    if not price.is_finite():
        raise ValueError("a price must be finite")
    return price


def _dumps_exact(value: object) -> str:
    """``json.dumps`` that writes Decimals as exact JSON numbers instead of failing on them."""
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k))}: {_dumps_exact(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_dumps_exact(v) for v in value) + "]"
    return json.dumps(value)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve one address by hand, e.g. to point a locally run tracker at it."""
    parser = argparse.ArgumentParser(description="Fake Spacescan address API")
    parser.add_argument("--port", type=int, default=8555)
    parser.add_argument("--address", action="append", default=[], help="may be repeated")
    parser.add_argument("--xch-mojos", type=int, default=0)
    parser.add_argument("--api-key")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeSpacescan(port=args.port, api_key=args.api_key, fault_rate=args.fault_rate)
    for address in args.address:
        fake.set_xch(address, args.xch_mojos)
    with fake:
        print(fake.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
