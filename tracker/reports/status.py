"""Poll health per address: when it last succeeded, what failed since, how much history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from tracker.domain import CANCELLED
from tracker.reports.selection import EVERYTHING, Selection, resolve_addresses
from tracker.store.models import PollAttempt, Snapshot


@dataclass(frozen=True)
class StatusRow:
    address: str
    label: str | None
    last_success: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    consecutive_failures: int
    snapshots: int | None


def status(
    engine: Engine, selection: Selection = EVERYTHING, *, count_snapshots: bool = True
) -> list[StatusRow]:
    """Each address's poll health: last success, last error, failures since the last success.

    A poll cancelled by a stop is not a failure. ``count_snapshots`` off skips the one part
    whose cost grows with the history (metrics scrapes do without it).
    """
    result = []
    with engine.connect() as connection:
        for address in resolve_addresses(connection, selection):
            attempts = select(PollAttempt.finished_at).where(PollAttempt.address_id == address.id)
            newest = PollAttempt.started_at.desc()
            last_ok = connection.execute(
                attempts.where(PollAttempt.ok).order_by(newest).limit(1)
            ).scalar()
            last = connection.execute(attempts.order_by(newest).limit(1)).scalar()
            failures = select(PollAttempt.error, PollAttempt.finished_at).where(
                PollAttempt.address_id == address.id,
                ~PollAttempt.ok,
                PollAttempt.error != CANCELLED,
            )
            if last_ok is not None:
                failures = failures.where(PollAttempt.finished_at > last_ok)
            last_error = connection.execute(failures.order_by(newest).limit(1)).first()
            consecutive = connection.execute(
                select(func.count()).select_from(failures.subquery())
            ).scalar_one()
            snapshots = (
                connection.execute(
                    select(func.count())
                    .select_from(Snapshot)
                    .where(Snapshot.address_id == address.id)
                ).scalar_one()
                if count_snapshots
                else None
            )
            result.append(
                StatusRow(
                    address.address,
                    address.label,
                    last_ok,
                    last,
                    last_error.error if last_error is not None else None,
                    consecutive,
                    snapshots,
                )
            )
    return result
