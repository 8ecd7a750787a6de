"""Shared mode's tables: poll leases and worker heartbeats, as SQL on PostgreSQL.

The protocol is described in :mod:`tracker.service.shared`; this module is its statements: a
claim is one ``UPDATE`` over rows picked with ``FOR UPDATE SKIP LOCKED``, so two workers never
claim the same address and never wait for each other.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence

from sqlalchemy import Connection, text

FORGET_SECONDS = 3600.0
"""A worker row unseen for this long is deleted (a clean stop deletes its own at once)."""

_CLAIM = text(
    """
    WITH due AS (
        SELECT address_id FROM poll_leases
        WHERE address_id = ANY(:ids)
          AND (holder IS NULL AND (claimed_round IS NULL OR claimed_round < :round)
               OR holder IS NOT NULL AND expires_at < now())
        ORDER BY claimed_round NULLS FIRST, address_id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE poll_leases AS l
    SET holder = :holder, claimed_round = :round, claimed_at = now(),
        expires_at = now() + :lease * interval '1 second'
    FROM due WHERE l.address_id = due.address_id
    RETURNING l.address_id
    """
)
_FINISH = text(
    "UPDATE poll_leases SET holder = NULL, expires_at = NULL, polled_at = now(),"
    " polled_by = :holder WHERE address_id = ANY(:ids) AND holder = :holder"
)
# A released address was not polled: it loses its round, so it is claimed again (first).
_RELEASE = text(
    "UPDATE poll_leases SET holder = NULL, expires_at = NULL, claimed_round = NULL"
    " WHERE address_id = ANY(:ids) AND holder = :holder"
)
_RELEASE_ALL = text(
    "UPDATE poll_leases SET holder = NULL, expires_at = NULL, claimed_round = NULL"
    " WHERE holder = :holder"
)
_ADD = text(
    "INSERT INTO poll_leases (address_id) SELECT unnest(CAST(:ids AS integer[]))"
    " ON CONFLICT DO NOTHING"
)
_SEEN = text(
    "INSERT INTO poll_workers (id, host, pid, started_at, seen_at)"
    " VALUES (:holder, :host, :pid, now(), now())"
    " ON CONFLICT (id) DO UPDATE SET seen_at = now()"
)
_RENEW = text(
    "UPDATE poll_leases SET expires_at = now() + :lease * interval '1 second'"
    " WHERE holder = :holder"
)
_FORGET = text("DELETE FROM poll_workers WHERE seen_at < now() - :forget * interval '1 second'")
_LEAVE = text("DELETE FROM poll_workers WHERE id = :holder")
_NOW_AND_OTHERS = text(
    "SELECT CAST(extract(epoch FROM now()) AS double precision),"
    " (SELECT count(*) FROM poll_workers"
    "  WHERE id <> :holder AND seen_at > now() - :lease * interval '1 second')"
)


def worker_id() -> str:
    """Unique per process and readable in ``poll_leases.holder``: host, pid and a random tag."""
    return f"{socket.gethostname()[:150]}:{os.getpid()}:{secrets.token_hex(3)}"


def claim(
    connection: Connection,
    holder: str,
    ids: Sequence[int],
    round_: int,
    limit: int | None,
    lease_seconds: float,
) -> list[int]:
    """Lease up to ``limit`` (None: all) of ``ids`` not yet claimed in ``round_``, or whose lease
    expired; returns the claimed ids. Concurrent claimers get disjoint sets without waiting.
    """
    if not ids or (limit is not None and limit <= 0):
        return []
    rows = connection.execute(
        _CLAIM,
        {
            "holder": holder,
            "ids": list(ids),
            "round": round_,
            "limit": limit,
            "lease": lease_seconds,
        },
    )
    return sorted(row[0] for row in rows)


def finish(connection: Connection, holder: str, ids: Sequence[int]) -> None:
    """The polls of ``ids`` ended (success or failure): done for this round, leases released."""
    if ids:
        connection.execute(_FINISH, {"holder": holder, "ids": list(ids)})


def release(connection: Connection, holder: str, ids: Sequence[int] | None = None) -> None:
    """Give back leases without a poll (all of ``holder``'s with None): claimable again at once."""
    if ids is None:
        connection.execute(_RELEASE_ALL, {"holder": holder})
    elif ids:
        connection.execute(_RELEASE, {"holder": holder, "ids": list(ids)})


def heartbeat(connection: Connection, holder: str, lease_seconds: float) -> int:
    """Say ``holder`` is alive, renew its leases, forget long-dead workers; the live count."""
    params = {"holder": holder, "lease": lease_seconds}
    connection.execute(_SEEN, {**params, "host": socket.gethostname()[:255], "pid": os.getpid()})
    connection.execute(_RENEW, params)
    connection.execute(_FORGET, {"forget": FORGET_SECONDS})
    others = connection.execute(_NOW_AND_OTHERS, params).one()[1]
    return int(others) + 1


def add(connection: Connection, ids: Sequence[int]) -> None:
    """Make sure every address in ``ids`` has a lease row."""
    if ids:
        connection.execute(_ADD, {"ids": sorted(ids)})


def leave(connection: Connection, holder: str) -> None:
    """Delete ``holder``'s worker row (its leases are released separately)."""
    connection.execute(_LEAVE, {"holder": holder})


def now_and_others(connection: Connection, holder: str, lease_seconds: float) -> tuple[float, int]:
    """The database's clock (Unix seconds) and how many other workers are alive."""
    epoch, others = connection.execute(
        _NOW_AND_OTHERS, {"holder": holder, "lease": lease_seconds}
    ).one()
    return float(epoch), int(others)
