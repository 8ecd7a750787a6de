"""Calendar maths of reports: UTC days, ISO weeks (from Monday) and calendar months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, func

from tracker.store.models import Delta

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
Bucket = tuple[str | None, datetime, datetime]
"""A period's name (None: the whole window), its start and its end."""


def period_start(moment: datetime, period: Period) -> datetime:
    """The UTC start of the day, ISO week (Monday) or month that contains ``moment``."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: datetime, period: Period) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    return (start + timedelta(days=32)).replace(day=1)


def period_name(start: datetime, period: Period) -> str:
    if period == "day":
        return start.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")


def buckets(first: datetime, last: datetime, period: Period) -> list[Bucket]:
    """Every period from the one holding ``first`` to the one holding ``last``."""
    result: list[Bucket] = []
    begin = period_start(first, period)
    while begin <= last:
        end = next_period(begin, period)
        result.append((period_name(begin, period), begin, end))
        begin = end
    return result


def period_start_sql(connection: Connection, period: Period) -> ColumnElement[Any]:
    """SQL for the UTC start of the day, ISO week (Monday) or month of a delta's time."""
    if connection.dialect.name == "postgresql":
        return func.date_trunc(period, func.timezone("UTC", Delta.taken_at))
    # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS...'. 'weekday 0' moves on to the coming
    # Sunday (or stays on one), and six days back from it is that ISO week's Monday.
    if period == "day":
        return func.date(Delta.taken_at)
    if period == "week":
        return func.date(Delta.taken_at, "weekday 0", "-6 days")
    return func.strftime("%Y-%m-01", Delta.taken_at)


def period_key(value: datetime | str, known: dict[object, datetime]) -> datetime:
    """A period start as the database gave it (PostgreSQL: naive UTC; SQLite: text), in UTC."""
    moment = known.get(value)
    if moment is None:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
        moment = known[value] = parsed.replace(tzinfo=UTC)
    return moment
