"""The tables. Alembic owns the schema; these models must match ``migrations/`` exactly.

Amounts are integers of mojos (``BigInteger``) so that no database ever rounds them; times are
UTC everywhere, and SQLite (which has no time zone type) stores them as UTC text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

XCH_ASSET_ID = "xch"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class ExactDecimal(TypeDecorator[Decimal]):
    """Exact decimals (prices): NUMERIC on PostgreSQL, the same digits as text on SQLite, whose
    NUMERIC would make them floats."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        return dialect.type_descriptor(Text() if dialect.name == "sqlite" else Numeric())

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Address(Base):
    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(100), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Asset(Base):
    """XCH is the asset ``xch`` (12 decimals); a CAT is its 64-hex asset id (3 decimals)."""

    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(200))
    symbol: Mapped[str | None] = mapped_column(String(200))
    decimals: Mapped[int] = mapped_column(Integer)


class Snapshot(Base):
    """One successful poll of one address; its balances are every row that points to it."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("address_id", "taken_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SnapshotBalance(Base):
    __tablename__ = "snapshot_balances"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    balance_mojos: Mapped[int] = mapped_column(BigInteger)


class Delta(Base):
    """A change of one asset between two consecutive successful snapshots of an address."""

    __tablename__ = "deltas"
    # Reports sum the deltas of an address in a window: a range of this index over the changes
    # alone (covering what they sum), not a walk through every mostly unchanged snapshot.
    __table_args__ = (
        Index(None, "asset_id"),
        Index(None, "address_id", "taken_at", "asset_id", "delta_mojos"),
    )

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    previous_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    # Copies of the snapshot's address and time, written with it and never changed.
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    previous_balance_mojos: Mapped[int] = mapped_column(BigInteger)
    balance_mojos: Mapped[int] = mapped_column(BigInteger)
    delta_mojos: Mapped[int] = mapped_column(BigInteger)


class PollAttempt(Base):
    """Every poll of every address, good or bad, so gaps in the history are visible."""

    __tablename__ = "poll_attempts"
    __table_args__ = (Index(None, "address_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ok: Mapped[bool]
    error: Mapped[str | None] = mapped_column(Text)
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"))


class PollLease(Base):
    """Shared mode: who polls an address in which round (see tracker.leases); PostgreSQL only.

    ``holder`` and ``expires_at`` are set while a worker polls the address; ``claimed_round`` is
    the round (``floor(epoch / interval_seconds)`` on the database clock) it was last claimed in.
    """

    __tablename__ = "poll_leases"

    address_id: Mapped[int] = mapped_column(
        ForeignKey("addresses.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str | None] = mapped_column(String(200))
    claimed_round: Mapped[int | None] = mapped_column(BigInteger)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polled_by: Mapped[str | None] = mapped_column(String(200))


class PollWorker(Base):
    """Shared mode: the workers, with a heartbeat; those seen lately share the list and budget."""

    __tablename__ = "poll_workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Price(Base):
    """A price observed at a time: an asset in XCH (``quote = 'xch'``) or XCH in a currency
    (``quote`` its ISO code); ``source`` says where it came from (see tracker.sources.prices)."""

    __tablename__ = "prices"
    # The valuation rule looks up the latest price at or before a moment: a backward step of
    # this index. Recording the same price twice (a backfill run again) is a no-op.
    __table_args__ = (UniqueConstraint("asset_id", "quote", "observed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    quote: Mapped[str] = mapped_column(String(8))
    price: Mapped[Decimal] = mapped_column(ExactDecimal())
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(40))


class PriceSettings(Base):
    """One row (id 1): the currency and maximum price age the ``balance_values`` view uses, as
    the last writer (``run``, ``poll``, ``prices backfill``) was configured; NULL currency: off."""

    __tablename__ = "price_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    currency: Mapped[str | None] = mapped_column(String(8))
    max_age_seconds: Mapped[int] = mapped_column(Integer)
