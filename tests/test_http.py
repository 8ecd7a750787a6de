"""The bounded HTTP layer against misbehaving servers of our own on 127.0.0.1.

Each server is a plain socket that answers exactly as badly as a test needs: trickling, silent,
bombing, oversized, redirecting. Wall-clock assertions are generous on purpose (a deadline of
about a second must end well within ten): the suite runs on loaded two-core machines.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests

from tracker.sources import http
from tracker.sources.base import BadAnswer, Refused, TimedOut, Unavailable

KEY = "sk-http-test-key-0123"
DEADLINE = 1.0
GENEROUS = 10.0  # a deadline of DEADLINE seconds must end well within this

Handler = Callable[["Connection"], object]


@dataclass
class Connection:
    """One accepted connection, its request head already read."""

    sock: socket.socket
    head: bytes
    stop: threading.Event

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the client has gone."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` a byte at a time, one every ``interval`` seconds, until told to stop."""
        for index in range(len(data)):
            if self.stop.wait(interval) or not self.send(data[index : index + 1]):
                return


@dataclass
class Server:
    """Accepts on 127.0.0.1 and hands each connection's request to ``handler`` in a thread."""

    handler: Handler
    heads: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(1.0)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            head = b""
            sock.settimeout(5)
            try:
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            except OSError:
                return
            self.heads.append(head)
            self.handler(Connection(sock, head, self.stop))

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
            pass  # wakes the accepting thread at once
        self._listener.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        server = Server(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def answer(
    status: str = "200 OK", body: bytes = b"", headers: dict[str, str] | None = None
) -> Handler:
    """A handler that answers once and closes (saying so), with a Content-Length unless
    ``headers`` set the framing (chunked, or ``Connection: close`` alone: until the close)."""
    fields = dict(headers or {})
    if "Transfer-Encoding" not in fields and "Connection" not in fields:
        fields["Content-Length"] = str(len(body))
    fields.setdefault("Connection", "close")

    def handle(connection: Connection) -> None:
        lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        connection.send(f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body)

    return handle


def chunked(body: bytes, size: int = 4096) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def fetch(
    url: str,
    *,
    session: requests.Session | None = None,
    deadline_seconds: float = 30.0,
    max_bytes: int = 32 * 2**20,
) -> http.Answer:
    """A GET with the API key, as the Spacescan source sends one."""
    return http.fetch(
        session or http.session(),
        "GET",
        url,
        limits=http.Limits(deadline_seconds=deadline_seconds, max_bytes=max_bytes),
        headers={"x-api-key": KEY},
    )


def timed(call: Callable[[], object]) -> tuple[BaseException | object, float]:
    """What ``call`` returned or raised, and how long it took; run in a thread, so that a broken
    deadline fails the test instead of hanging the suite."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome, "the request did not end within 60 s"
    return outcome[0], time.monotonic() - started


# --- a total deadline, whatever the server does ----------------------------------------------


def test_good_answer(serve: Callable[[Handler], Server]) -> None:
    server = serve(answer(body=b'{"ok": true}', headers={"Content-Type": "application/json"}))
    result = fetch(server.origin + "/x")
    assert (result.status, result.body) == (200, b'{"ok": true}')
    assert result.headers["Content-Type"] == "application/json"
    assert b"x-api-key: " + KEY.encode() in server.heads[0]


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000, id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"a" * 1000, id="body"),
    ],
)
def test_trickling_server_ends_at_the_deadline(
    serve: Callable[[Handler], Server], response: bytes
) -> None:
    # A byte every 0.4 s never trips a socket read timeout (each read waits less than that):
    # only the total deadline ends the request.
    server = serve(lambda connection: connection.trickle(response, 0.4))
    outcome, elapsed = timed(lambda: fetch(server.origin, deadline_seconds=DEADLINE))
    assert isinstance(outcome, TimedOut), outcome
    assert outcome.retryable
    assert "within 1 s" in str(outcome)
    assert DEADLINE * 0.9 <= elapsed < GENEROUS


def test_server_that_never_answers_hits_the_deadline(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda connection: connection.stop.wait())
    outcome, elapsed = timed(lambda: fetch(server.origin, deadline_seconds=DEADLINE))
    assert isinstance(outcome, TimedOut), outcome
    assert DEADLINE * 0.9 <= elapsed < GENEROUS
    assert len(server.heads) == 1  # the request was sent and not answered


def test_session_still_works_after_a_request_was_cut(serve: Callable[[Handler], Server]) -> None:
    silent = serve(lambda connection: connection.stop.wait())
    good = serve(answer(body=b"fine"))
    session = http.session()
    outcome, _ = timed(lambda: fetch(silent.origin, session=session, deadline_seconds=0.5))
    assert isinstance(outcome, TimedOut), outcome
    assert fetch(good.origin, session=session).body == b"fine"


def test_refused_connection_is_unavailable_not_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    outcome, elapsed = timed(lambda: fetch(f"http://127.0.0.1:{port}/"))
    assert type(outcome) is Unavailable, outcome
    assert "connection failed" in str(outcome)
    assert "\n" not in str(outcome)
    assert elapsed < GENEROUS


# --- decompression bombs and size limits -----------------------------------------------------

INFLATED = 2**28  # 256 MiB of zeros, about 260 kB on the wire


def zero_bomb(encoding: str) -> bytes:
    """``INFLATED`` zero bytes as a gzip or zlib stream, built from one repeated deflate block."""
    mib = bytes(2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(mib) + compressor.flush()
    count = INFLATED // len(mib)
    deflate = first + block * (count - 2) + last
    if encoding == "gzip":
        crc = 0
        for _ in range(count):
            crc = zlib.crc32(mib, crc)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        return header + deflate + struct.pack("<II", crc, INFLATED % 2**32)
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(mib, adler)
    return b"\x78\xda" + deflate + struct.pack(">I", adler)


@pytest.fixture(scope="module", params=["gzip", "deflate"])
def bomb(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    encoding = str(request.param)
    return encoding, zero_bomb(encoding)


def test_the_bomb_is_what_it_claims(bomb: tuple[str, bytes]) -> None:
    _, body = bomb
    assert len(body) < INFLATED // 500
    decoder = zlib.decompressobj(wbits=47)
    assert decoder.decompress(body[: 2**16], 2**20) == bytes(2**20)  # decodes: to zeros


@pytest.mark.parametrize("max_bytes", [2**20, 8 * 2**20])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_compression_bomb_is_refused_without_inflating_it(
    serve: Callable[[Handler], Server], bomb: tuple[str, bytes], max_bytes: int, framing: str
) -> None:
    encoding, body = bomb
    headers = {"Content-Encoding": encoding}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        body = chunked(body, 65_536)
    server = serve(answer(body=body, headers=headers))
    tracemalloc.start()
    try:
        with pytest.raises(BadAnswer, match=r"larger than .* bytes \(decoded\)"):
            fetch(server.origin, max_bytes=max_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The limit, the chunk being decoded and the server's copy of the wire body: far below the
    # 256 MiB it would inflate to.
    assert peak < max_bytes + 24 * 2**20, f"peak {peak:,} bytes"


def test_compressed_answer_within_the_limit_is_decoded(serve: Callable[[Handler], Server]) -> None:
    data = b'{"data": []}' * 1000
    server = serve(answer(body=zlib.compress(data, wbits=31), headers={"Content-Encoding": "gzip"}))
    assert fetch(server.origin, max_bytes=len(data)).body == data


@pytest.mark.parametrize(
    ("headers", "body", "match"),
    [
        ({"Content-Encoding": "br"}, b"xx", "unsupported encoding 'br'"),
        ({"Content-Encoding": "gzip"}, b"not gzip at all", "not valid gzip data"),
    ],
)
def test_undecodable_answer_is_a_bad_answer(
    serve: Callable[[Handler], Server], headers: dict[str, str], body: bytes, match: str
) -> None:
    server = serve(answer(body=body, headers=headers))
    with pytest.raises(BadAnswer, match=match):
        fetch(server.origin)


def test_declared_length_over_the_limit_is_refused_before_reading(
    serve: Callable[[Handler], Server],
) -> None:
    server = serve(answer(body=b"x" * 200_000))
    outcome, _ = timed(lambda: fetch(server.origin, max_bytes=1000))
    assert isinstance(outcome, BadAnswer), outcome
    assert str(outcome) == "answer of 200,000 bytes is larger than 1,000 bytes"


@pytest.mark.parametrize(
    ("headers", "framing"),
    [
        ({"Transfer-Encoding": "chunked"}, chunked),
        ({"Connection": "close"}, lambda body: body),  # ends when the server closes
    ],
    ids=["chunked", "until-close"],
)
def test_undeclared_length_over_the_limit_is_refused(
    serve: Callable[[Handler], Server],
    headers: dict[str, str],
    framing: Callable[[bytes], bytes],
) -> None:
    over = serve(answer(body=framing(b"x" * 200_000), headers=headers))
    with pytest.raises(BadAnswer, match=r"larger than 1,000 bytes \(decoded\)"):
        fetch(over.origin, max_bytes=1000)
    exact = serve(answer(body=framing(b"y" * 1000), headers=headers))
    assert fetch(exact.origin, max_bytes=1000).body == b"y" * 1000


# --- redirects -------------------------------------------------------------------------------


def test_redirect_to_another_origin_is_not_followed(serve: Callable[[Handler], Server]) -> None:
    other = serve(answer(body=b"stolen"))
    first = serve(answer("302 Found", headers={"Location": f"{other.origin}/collect"}))
    with pytest.raises(Refused) as info:
        fetch(first.origin + "/address")
    message = str(info.value)
    assert f"redirected to {other.origin}" in message
    assert f"only sent to {first.origin}" in message
    time.sleep(0.2)  # had anything been sent to the other server, it would have arrived by now
    assert other.heads == []  # never contacted, so never saw the key
    assert KEY.encode() in first.heads[0]


def redirect(status: str, location: str, then: bytes = b"here") -> Handler:
    """Redirects to ``location`` (``{port}``: the server's own port); answers ``then`` at /new."""

    def handle(connection: Connection) -> None:
        if connection.path.endswith("/new"):
            answer(body=then)(connection)
        else:
            port = connection.sock.getsockname()[1]
            answer(status, headers={"Location": location.format(port=port)})(connection)

    return handle


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/new",  # same port, another host name
        "https://127.0.0.1:{port}/new",  # same host and port, another scheme
        "//localhost:{port}/new",  # scheme-relative
    ],
)
def test_redirect_to_another_host_name_or_scheme_is_not_followed(
    serve: Callable[[Handler], Server], location: str
) -> None:
    server = serve(redirect("307 Temporary Redirect", location))
    with pytest.raises(Refused, match="which is not followed"):
        fetch(server.origin + "/old")
    assert len(server.heads) == 1


@pytest.mark.parametrize("location", ["/new", "http://127.0.0.1:{port}/new", "new"])
def test_same_origin_redirect_is_followed_with_the_key(
    serve: Callable[[Handler], Server], location: str
) -> None:
    server = serve(redirect("301 Moved Permanently", location))
    result = fetch(server.origin + "/old")
    assert (result.status, result.body) == (200, b"here")
    assert result.url == server.origin + "/new"
    assert len(server.heads) == 2
    assert all(KEY.encode() in head for head in server.heads)


def test_redirect_loop_is_refused(serve: Callable[[Handler], Server]) -> None:
    server = serve(answer("302 Found", headers={"Location": "/again"}))
    with pytest.raises(Refused, match="more than 3 redirects"):
        fetch(server.origin)
    assert len(server.heads) == 4


def test_a_redirect_without_location_is_an_answer(serve: Callable[[Handler], Server]) -> None:
    server = serve(answer("302 Found", body=b"nowhere"))
    assert fetch(server.origin).status == 302
