"""A TCP proxy in front of PostgreSQL that can lose a COMMIT's acknowledgement.

It forwards bytes both ways. Armed, it lets the next ``COMMIT`` through to the server, waits for
the server to answer (so the transaction *is* committed), and then cuts the client's connection
without passing the answer on: exactly what a network failure at the worst moment looks like to
the client.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"


class CommitCutter:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{port}")
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            gate = threading.Event()
            for args in ((client, server, True, gate), (server, client, False, gate)):
                thread = threading.Thread(target=self._pipe, args=args, daemon=True)
                thread.start()

    def _pipe(
        self, source: socket.socket, sink: socket.socket, upstream: bool, gate: threading.Event
    ) -> None:
        try:
            while data := source.recv(65536):
                if upstream and _COMMIT in data and self.armed.is_set():
                    self.armed.clear()
                    gate.set()  # the server's next answer is the acknowledgement: drop it
                    sink.sendall(data)
                    continue
                if not upstream and gate.is_set():
                    self.cut.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
