"""Time as people write it and as tracker prints it: one parser, one format.

A moment is an ISO-8601 date or time (UTC unless it carries an offset) or an age counted back
from now (``7d``); an age is a number and a unit. The command line, the retention policy and the
web dashboard all parse through here, so ``7d`` means the same everywhere and an out-of-range
value is one clear error, never an ``OverflowError`` from deep inside ``datetime``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tracker.errors import UsageError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# A century is further back than any Chia history, and keeps every date computed from an age
# (and a year of periods after it) inside datetime's range.
MAX_AGE = timedelta(days=36_500)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

_AGE = re.compile(r"([0-9]+)([smhdw])", re.ASCII)


class OutOfRange(UsageError):
    """A well-formed age or time too far from now to mean anything."""


def parse_age(text: str, units: str = "smhdw") -> timedelta:
    """``90d`` -> 90 days; ``units`` are the letters allowed (retention ages: ``hdw``).

    Raises :class:`UsageError` naming the text.
    """
    match = _AGE.fullmatch(text.strip().lower())
    if match is None or match[2] not in units:
        names = ", ".join(f"N{unit}" for unit in units)
        raise UsageError(f"{_shown(text)} is not an age ({names})")
    digits = match[1].lstrip("0")
    if len(digits) > 12 or int(digits or 0) * UNITS[match[2]] > MAX_AGE.total_seconds():
        raise OutOfRange(f"{_shown(text)} is too long ago (at most {MAX_AGE.days}d)")
    return timedelta(seconds=int(digits or 0) * UNITS[match[2]])


def parse_moment(text: str, now: datetime) -> datetime:
    """An ISO-8601 time (UTC unless it says otherwise) or an age before ``now``, in UTC.

    Raises :class:`UsageError` naming the text when it is neither, or outside 1970-9000.
    """
    stripped = text.strip()
    if _AGE.fullmatch(stripped.lower()):
        return now - parse_age(stripped)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise UsageError(
            f"{_shown(text)} is not an ISO-8601 time (2026-12-31T23:59:59Z) or an age (7d)"
        ) from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        moment = LATEST + timedelta(days=1)
    if not EARLIEST <= moment <= LATEST:
        raise OutOfRange(f"{_shown(text)} is out of range (1970 to 9000)")
    return moment


def iso(moment: datetime) -> str:
    """``2026-11-24T12:00:00Z``: the one way tracker writes a time (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
