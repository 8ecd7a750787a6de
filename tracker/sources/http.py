"""HTTP with bounds: a total deadline, a size limit, and no credential sent to another origin.

``requests`` times out each socket read, not a whole request: a server that trickles a byte a
second never trips a read timeout, and a poll waiting on it never ends. Here every request has a
**total** deadline (connect, headers and body together): when it passes, a watchdog shuts the
request's socket down, which ends any read at once. Bodies are read raw and decompressed here,
with a limit on the decoded size, so a small gzip bomb cannot take the process's memory.
Redirects are followed only within the same origin (scheme, host and port); a redirect elsewhere
is an error, so an API key or a client certificate is never presented to another host.

Every failure is a :class:`~tracker.sources.base.SourceError` whose message is one line.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tracker.redact import origin
from tracker.sources.base import BadAnswer, Refused, TimedOut, Unavailable

MAX_REDIRECTS = 3
CHUNK = 65_536


@dataclass(frozen=True)
class Limits:
    """Bounds of one request: ``deadline_seconds`` in all, ``max_bytes`` of decoded body."""

    deadline_seconds: float = 30.0
    connect_seconds: float = 10.0
    max_bytes: int = 32 * 2**20


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


class _Watchdog:
    """One thread that shuts down the sockets of requests past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        watch = _Watch(deadline)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="http-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return watch

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][2].done:
                    if self._heap:
                        heapq.heappop(self._heap)
                        continue
                    self._cond.wait()
                deadline, _, watch = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            watch.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()


class _Watch:
    """The deadline of one request on this thread, and the connections it used."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = False
        self.expired = False
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            expired = self.expired
        if expired:
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)

    def finish(self) -> None:
        with self._lock:
            self.done = True


def _shut(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixed into urllib3's connections: each request tells the thread's watch its socket."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch: _Watch | None = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def session(pool_size: int = 10) -> requests.Session:
    """A session whose requests can be cut at their deadline (use it with :func:`fetch`)."""
    result = requests.Session()
    adapter = _Adapter(pool_connections=4, pool_maxsize=max(pool_size, 1), pool_block=False)
    result.mount("http://", adapter)
    result.mount("https://", adapter)
    return result


def fetch(
    http: requests.Session,
    method: str,
    url: str,
    *,
    limits: Limits,
    headers: Mapping[str, str] | None = None,
    json: object = None,
    data: bytes | None = None,
    **options: Any,
) -> Answer:
    """One request, whole, within ``limits``; raises ``SourceError`` subclasses.

    ``options`` go to ``requests`` (``cert``, ``verify``). The answer's status is not judged
    here: a 500 is an answer like any other.
    """
    deadline = time.monotonic() + limits.deadline_seconds
    watch = _WATCHDOG.watch(deadline)
    _current.watch = watch
    try:
        for _ in range(MAX_REDIRECTS + 1):
            answer = _once(http, method, url, limits, deadline, headers, json, data, options)
            location = answer.headers.get("Location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return answer
            target = urljoin(url, location)
            if origin(target) != origin(url):
                raise Refused(
                    f"HTTP {answer.status}: redirected to {origin(target)}, which is not followed "
                    f"(credentials are only sent to {origin(url)})"
                )
            url = target
        raise Refused(f"more than {MAX_REDIRECTS} redirects")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if watch.expired or time.monotonic() >= deadline:
            raise TimedOut(
                f"no complete answer within {limits.deadline_seconds:g} s (the request's deadline)"
            ) from None
        if isinstance(exc, requests.ConnectTimeout):
            raise TimedOut(f"no connection within {limits.connect_seconds:g} s") from None
        if isinstance(exc, requests.Timeout):
            raise TimedOut(f"no answer within {limits.deadline_seconds:g} s") from None
        raise Unavailable(f"connection failed ({cause(exc)})") from None
    finally:
        watch.finish()
        _current.watch = None


def _once(
    http: requests.Session,
    method: str,
    url: str,
    limits: Limits,
    deadline: float,
    headers: Mapping[str, str] | None,
    json: object,
    data: bytes | None,
    options: Mapping[str, Any],
) -> Answer:
    left = max(deadline - time.monotonic(), 0.001)
    response = http.request(
        method,
        url,
        headers={"Accept-Encoding": "gzip, deflate", **(headers or {})},
        json=json,
        data=data,
        timeout=(min(limits.connect_seconds, left), left),
        allow_redirects=False,
        stream=True,
        **options,
    )
    with response:
        body = _read(response, limits)
        return Answer(response.status_code, response.headers, body, url)


def _read(response: requests.Response, limits: Limits) -> bytes:
    """The decoded body, refused as soon as it would pass ``limits.max_bytes``."""
    limit = limits.max_bytes
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadAnswer(f"answer of {int(declared):,} bytes is larger than {limit:,} bytes")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        decoder: Any = zlib.decompressobj(wbits=47)
    elif encoding == "deflate":
        decoder = zlib.decompressobj(wbits=47 if _zlib_header(response) else -15)
    elif encoding in ("identity", ""):
        decoder = None
    else:
        raise BadAnswer(f"answer in an unsupported encoding {encoding[:40]!r}")
    parts: list[bytes] = []
    size = 0
    raw = response.raw
    while True:
        chunk = raw.read(CHUNK, decode_content=False)
        if not chunk:
            break
        if decoder is not None:
            try:
                chunk = decoder.decompress(chunk, limit - size + 1)
            except zlib.error:
                raise BadAnswer(f"answer is not valid {encoding} data") from None
            if decoder.unconsumed_tail:
                size = limit + 1
        size += len(chunk)
        if size > limit:
            raise BadAnswer(f"answer is larger than {limit:,} bytes (decoded)")
        parts.append(chunk)
    return b"".join(parts)


def _zlib_header(response: requests.Response) -> bool:
    # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate; wbits=47 takes
    # zlib and gzip, -15 raw deflate. Without peeking, assume the standard.
    return True


def cause(exc: BaseException) -> str:
    """The innermost reason of a connection failure, without object reprs or URLs."""
    import re

    reason: BaseException = exc
    while True:
        inner = getattr(reason, "reason", None)
        if inner is None and reason.args and isinstance(reason.args[0], BaseException):
            inner = reason.args[0]
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = re.sub(r"<[^>]*>:?\s*", "", str(reason))
    text = re.sub(r"\S+://\S+", "", text)
    text = " ".join(text.split())
    name = type(reason).__name__
    text = f"{name}: {text}" if text else name
    return text if len(text) <= 160 else text[:159] + "…"
