"""Retention policies: which snapshots of an address to keep as they age.

A policy is tiers from the youngest snapshots to the oldest (``all:7d,hourly:90d,daily:forever``):
each keeps snapshots at its resolution until they are its age. This module is pure (no
database): the configuration checks a policy with it, and :mod:`tracker.retention.prune` applies
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from tracker.errors import UsageError
from tracker.times import MAX_AGE, OutOfRange, parse_age

Tier = Literal["all", "hourly", "daily", "weekly", "monthly"]
TIERS: tuple[Tier, ...] = ("all", "hourly", "daily", "weekly", "monthly")

EXAMPLE = "all:7d,hourly:90d,daily:forever"


class PolicyError(UsageError, ValueError):
    """A retention policy that does not parse; ``str()`` is one line naming the bad part.

    A ``ValueError`` too, so that the configuration's validation reports it like any bad value.
    """


@dataclass(frozen=True)
class Rule:
    """One tier: keep snapshots at this resolution until they are ``age`` old (None: forever)."""

    tier: Tier
    age: timedelta | None

    def __str__(self) -> str:
        return f"{self.tier}:{_age_text(self.age)}"


@dataclass(frozen=True)
class Policy:
    """Tiers from the youngest snapshots to the oldest; see :func:`parse_policy`."""

    rules: tuple[Rule, ...]

    def __str__(self) -> str:
        return ",".join(str(rule) for rule in self.rules)


def parse_policy(text: str) -> Policy:
    """``all:7d,hourly:90d,daily:forever``: comma-separated ``tier:age`` pairs.

    Tiers go from finer to coarser (all, hourly, daily, weekly, monthly), each at most once,
    and each reaches further back than the one before; ages are ``Nh``, ``Nd``, ``Nw`` or
    ``forever`` (only for the last tier). Anything else is a :class:`PolicyError`.
    """
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise PolicyError(f"empty retention policy: give tier:age pairs, e.g. {EXAMPLE}")
    rules: list[Rule] = []
    before = ""  # the previous part, as written
    for part in parts:
        tier_text, colon, age_text = (piece.strip() for piece in part.partition(":"))
        if not colon:
            raise PolicyError(f"{part!r}: expected tier:age, e.g. hourly:90d")
        tier = tier_text.lower()
        if tier not in TIERS:
            raise PolicyError(
                f"{part!r}: unknown tier {tier_text!r} (all, hourly, daily, weekly or monthly)"
            )
        age = _parse_age(part, age_text.lower())
        if rules:
            last = rules[-1]
            if last.age is None:
                raise PolicyError(f"{part!r}: comes after {before!r}, which already keeps forever")
            if TIERS.index(tier) <= TIERS.index(last.tier):
                raise PolicyError(
                    f"{part!r}: tiers go from finer to coarser "
                    "(all, hourly, daily, weekly, monthly), each once"
                )
            if age is not None and age <= last.age:
                raise PolicyError(f"{part!r}: must reach further back than {before!r}")
        rules.append(Rule(tier, age))
        before = part
    return Policy(tuple(rules))


def _parse_age(part: str, text: str) -> timedelta | None:
    if text == "forever":
        return None
    try:
        age = parse_age(text, units="hdw")
    except OutOfRange:
        raise PolicyError(
            f"{part!r}: the age is too long (at most {MAX_AGE.days}d, or forever)"
        ) from None
    except UsageError:
        age = timedelta(0)
    if not age:
        raise PolicyError(
            f"{part!r}: the age must be hours, days or weeks (36h, 90d, 52w) or forever"
        )
    return age


def _age_text(age: timedelta | None) -> str:
    if age is None:
        return "forever"
    hours = int(age.total_seconds()) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def bucket(tier: Tier, moment: datetime) -> tuple[int, ...]:
    """The UTC hour, day, week or month of ``moment``, as a key (``all``: the moment itself).

    A week is cut at a month's end (a week across two months is two buckets), so that keeping
    the last snapshot of each week also keeps the last one of each month: reports by month stay
    exact in a weekly tier too.
    """
    t = moment.astimezone(UTC)
    if tier == "hourly":
        return (t.year, t.month, t.day, t.hour)
    if tier == "daily":
        return (t.year, t.month, t.day)
    if tier == "weekly":
        return (t.toordinal() - t.weekday(), t.year, t.month)
    if tier == "monthly":
        return (t.year, t.month)
    return (t.toordinal(), t.hour, t.minute, t.second, t.microsecond)


def keep_flags(times: Sequence[datetime], policy: Policy, now: datetime) -> list[bool]:
    """Which of one address's snapshots (taken at ``times``, oldest first) the policy keeps.

    A snapshot ``now - taken_at`` old falls in the first tier whose age is longer than that.
    ``all`` keeps every snapshot; the other tiers keep the last snapshot of each UTC hour,
    day, week or month (counting only that tier's snapshots); older than the last tier's age
    is removed. The first (baseline) and the latest snapshot are always kept.
    """
    limits = [now - rule.age if rule.age is not None else None for rule in policy.rules]
    flags = [False] * len(times)
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for index in range(len(times) - 1, -1, -1):
        moment = times[index]
        tier = next((i for i, limit in enumerate(limits) if limit is None or moment > limit), None)
        if tier is None:
            continue  # older than the last tier
        if policy.rules[tier].tier == "all":
            flags[index] = True
            continue
        key = (tier, bucket(policy.rules[tier].tier, moment))
        if key not in seen:  # the last snapshot of its bucket, as we walk backwards
            seen.add(key)
            flags[index] = True
    if flags:
        flags[0] = flags[-1] = True
    return flags
