"""The prices table: observed prices written, and read back as lines for the valuation rule.

A price is written once per (asset, quote, moment): recording it again (a backfill run twice, two
workers of a shared database) does nothing. Prices refer to the ``assets`` rows by key, so an
asset not seen in any snapshot yet (XCH when only CATs are tracked) is created first, as a poll
would create it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    String,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by

from tracker.clock import Clock, SystemClock
from tracker.domain import XCH, XCH_ASSET, Asset
from tracker.store.catalog import upsert_assets
from tracker.store.engine import is_locked, write_transaction
from tracker.store.models import Asset as AssetRow
from tracker.store.models import Price, PriceSettings
from tracker.store.writer import LOCKED_RETRY
from tracker.valuation import MICROSECOND, PriceLine, canonical_price

_T = TypeVar("_T")
_NAIVE_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class PriceRecord:
    """One observed price: ``asset_id`` is ``xch`` or a CAT's asset id, ``quote`` is ``xch`` or
    a currency code."""

    asset_id: str
    quote: str
    price: Decimal
    observed_at: datetime
    source: str


class PriceStore:
    """Writes prices (and the valuation settings the view uses) to the database."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self._clock = clock or SystemClock()

    def record(self, records: Sequence[PriceRecord]) -> int:
        """Store prices in one transaction; returns how many were new."""
        if not records:
            return 0
        canonical = [canonical_price(record.price) for record in records]
        if None in canonical:
            raise ValueError("not a price tracker can store (see tracker.valuation)")
        records = [replace(r, price=p) for r, p in zip(records, canonical, strict=True) if p]

        def work(connection: Connection) -> int:
            keys = asset_keys(connection, {record.asset_id for record in records})
            rows = [
                {
                    "asset_id": keys[record.asset_id],
                    "quote": record.quote,
                    "price": record.price,
                    "observed_at": record.observed_at,
                    "source": record.source,
                }
                for record in records
            ]
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = (
                dialect.insert(Price)
                .on_conflict_do_nothing(index_elements=["asset_id", "quote", "observed_at"])
                .returning(Price.id)
            )
            # RETURNING names only the rows inserted (rowcount is not reliable here).
            return sum(len(connection.execute(statement, row).all()) for row in rows)

        return self._write(work)

    def configure(self, currency: str | None, max_age_seconds: int) -> None:
        """Record the settings the ``balance_values`` view values with (when they changed)."""

        def work(connection: Connection) -> None:
            stored = connection.execute(
                select(PriceSettings.currency, PriceSettings.max_age_seconds).where(
                    PriceSettings.id == 1
                )
            ).first()
            if stored is not None and tuple(stored) == (currency, max_age_seconds):
                return
            if stored is None:
                connection.execute(
                    insert(PriceSettings).values(
                        id=1, currency=currency, max_age_seconds=max_age_seconds
                    )
                )
            else:
                connection.execute(
                    update(PriceSettings)
                    .where(PriceSettings.id == 1)
                    .values(currency=currency, max_age_seconds=max_age_seconds)
                )

        self._write(work)

    def latest(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
        """When each (asset id, quote) was last priced, for those priced at all."""
        wanted = set(pairs)
        if not wanted:
            return {}
        query = (
            select(AssetRow.asset_id, Price.quote, func.max(Price.observed_at))
            .join(AssetRow, AssetRow.id == Price.asset_id)
            .where(AssetRow.asset_id.in_(bindparam("assets", expanding=True)))
            .group_by(AssetRow.asset_id, Price.quote)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query, {"assets": sorted({a for a, _ in wanted})}).all()
        found: dict[tuple[str, str], datetime] = {}
        for asset_id, quote, observed_at in rows:
            if (asset_id, quote) in wanted and observed_at is not None:
                found[(asset_id, quote)] = observed_at
        return found

    def _write(self, work: Callable[[Connection], _T]) -> _T:
        def attempt(_number: int) -> _T:
            with write_transaction(self.engine) as connection:
                return work(connection)

        return LOCKED_RETRY.run(attempt, self._clock, retryable=is_locked)


def asset_keys(connection: Connection, asset_ids: Iterable[str]) -> dict[str, int]:
    """The ``assets`` keys of these asset ids, creating the rows of assets never seen."""
    wanted = set(asset_ids)
    known = {
        row.asset_id: row.id
        for row in connection.execute(
            select(AssetRow.id, AssetRow.asset_id).where(AssetRow.asset_id.in_(sorted(wanted)))
        )
    }
    missing = [XCH_ASSET if a == XCH else Asset(a) for a in sorted(wanted - set(known))]
    if missing:
        known.update(upsert_assets(connection, missing, {}))
    return known


def epoch_micros(dialect: str, column: Any) -> ColumnElement[int]:
    """SQL for a time column as exact microseconds since the epoch (see valuation.micros)."""
    if dialect == "postgresql":
        # Whole seconds and the microseconds of the minute as floats, each exact (a float's 53
        # bits hold both): three times cheaper than extract(), which computes in NUMERIC.
        seconds = cast(func.floor(func.date_part("epoch", column)), BigInteger)
        fraction = cast(func.date_part("microseconds", column), BigInteger) % 1_000_000
        return seconds * 1_000_000 + fraction
    # SQLite keeps UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds, then the fraction.
    # (Without the fraction: SQLite rounds its times to milliseconds, so .999999 would count up.)
    seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), BigInteger)
    return seconds * 1_000_000 + cast(func.substr(column, 21, 6), BigInteger)


def micros_of(dialect: str, column: Any) -> tuple[ColumnElement[Any], Callable[[Any], int]]:
    """A time column to read as microseconds since the epoch, and what turns each value read
    into them: PostgreSQL computes them (:func:`epoch_micros`); SQLite's UTC text is parsed
    here, several times faster than by SQLite's own date functions."""
    if dialect == "postgresql":
        return epoch_micros(dialect, column), int
    return type_coerce(column, String), _sqlite_micros


def _sqlite_micros(text: str) -> int:
    return (datetime.fromisoformat(text) - _NAIVE_EPOCH) // MICROSECOND


def price_lines(
    connection: Connection,
    wanted: Iterable[tuple[int, str]],
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[tuple[int, str], PriceLine]:
    """The prices of each (asset key, quote) observed from ``since`` to ``until`` (inclusive;
    either may be open), as lines the valuation rule reads.

    A year of hourly prices is thousands of rows per asset: they come as integers and text, and
    become ``Decimal`` only where a value needs them (on PostgreSQL, one row per line).
    """
    dialect = connection.dialect.name
    when, read = micros_of(dialect, Price.observed_at)
    price = cast(Price.price, Text)
    columns: list[ColumnElement[Any]] = [when, price]
    if dialect == "postgresql":
        comma: Any = aggregate_order_by(literal_column("','"), Price.observed_at)
        columns = [func.string_agg(cast(when, Text), comma), func.string_agg(price, comma)]
    query = select(*columns).where(
        Price.asset_id == bindparam("asset"), Price.quote == bindparam("quote")
    )
    if since is not None:
        query = query.where(Price.observed_at >= bindparam("since"))
    if until is not None:
        query = query.where(Price.observed_at <= bindparam("until"))
    if dialect != "postgresql":
        query = query.order_by(Price.observed_at)
    lines = {}
    for asset, quote in set(wanted):
        params = {"asset": asset, "quote": quote, "since": since, "until": until}
        if dialect == "postgresql":
            times, prices = connection.execute(query, params).one()
            lines[(asset, quote)] = PriceLine.of(
                [int(t) for t in times.split(",")] if times else [],
                prices.split(",") if prices else [],
            )
        else:
            rows = connection.execute(query, params).all()
            lines[(asset, quote)] = PriceLine.of([read(t) for t, _ in rows], [p for _, p in rows])
    return lines


def settings_of(connection: Connection) -> tuple[str | None, int] | None:
    """The currency and maximum age the view values with (None: the row is gone)."""
    row = connection.execute(
        select(PriceSettings.currency, PriceSettings.max_age_seconds).where(PriceSettings.id == 1)
    ).first()
    return None if row is None else (row.currency, row.max_age_seconds)
