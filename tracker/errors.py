"""One vocabulary for everything that can go wrong in a way a user must hear about.

Every error the library raises on purpose is a :class:`TrackerError`: its message is one line that
names the culprit (a key, an address, a host), and its ``exit_code`` is what the command line
exits with. Callers catch this one root; the CLI prints ``tracker: error: <message>``. A library
message says what is wrong, never which flag to pass: the CLI knows its flags, the library does
not.
"""

from __future__ import annotations


class TrackerError(Exception):
    """A failure the user must hear about; ``str()`` is one line. Exit status 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class UsageError(TrackerError):
    """Asked for something that cannot be done as asked: a bad argument or option. Exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file (or an environment override) is invalid. Exit 2."""


class Conflict(UsageError):
    """Another process holds what this one needs (the daemon lock). Exit 2."""


class NotFound(TrackerError):
    """An address, label or asset that is not in the database, or nothing to show. Exit 1."""


class SourceError(TrackerError):
    """A balance source (Spacescan, the chain) failed or answered something untrustworthy.

    ``retryable`` says whether asking again may help; ``retry_after`` is a wait the source asked
    for (HTTP ``Retry-After``), when it asked for one.
    """

    retryable = False
    retry_after: float | None = None


class StoreError(TrackerError):
    """The database could not be used (unreachable, locked, refused a write). Exit 1."""


class WriteRefused(StoreError):
    """The store refused a write that would corrupt the history (not a database failure)."""
