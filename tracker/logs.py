"""Log lines as operators read them: one line each, no secret, no control character.

A log line may quote a server's message, a token's name or a label, text that could carry a
secret (a server echoing the API key) or a newline that forges a second log line. The handler's
formatter redacts every known secret and escapes control characters after the message is
formatted, so it holds whatever a module logs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from tracker.sanitize import printable

NOISY = ("urllib3", "alembic")


class SafeFormatter(logging.Formatter):
    """Formats as usual, then redacts secrets and escapes control characters."""

    def __init__(self, redact: Callable[[str], str], fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        text = self._redact(super().format(record))
        if record.exc_info or record.stack_info:
            # A traceback (debug logs only) keeps its lines; the message's are escaped, even one
            # that itself says "Traceback".
            head = self._redact(self.formatMessage(record))
            if text.startswith(head):
                return printable(head) + text[len(head) :]
        return printable(text)


def setup(*, verbose: bool, redact: Callable[[str], str] = lambda text: text) -> None:
    """Log to stderr: INFO (DEBUG with ``verbose``), every line through :class:`SafeFormatter`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        SafeFormatter(redact, "%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        for noisy in NOISY:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # A poll longer than the interval makes APScheduler warn at every skipped run; the
        # start-up line already says polls will run back to back, once.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
