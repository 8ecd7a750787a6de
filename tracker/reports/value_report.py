"""The change report with values: what each holding was worth at the start and the end of each
period, and how much of the change was flows (what came in or went out) and how much market.

Built like the plain report (:mod:`tracker.reports.changes`): each address's start balances plus
its deltas in the window. The deltas are read one by one rather than summed in the database,
because each is valued at its own snapshot's prices; they are then grouped by the prices that
value them, so a period costs one exact multiplication per price that applied, not per delta.

A period's start is valued at the snapshot its start balance comes from (the window's start
snapshot, then the last snapshot before each period), its end at the next period's start
snapshot (the window's end snapshot for the last), so periods add up to the window exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, literal, select

from tracker.reports.changes import (
    Change,
    ReportRow,
    bucket_rows,
    check_window,
    cut_of,
    totals,
    windows_of,
)
from tracker.reports.periods import Period, period_key, period_start_sql
from tracker.reports.pricebook import Digits, PriceBook, ValueRule
from tracker.reports.selection import (
    EVERYTHING,
    AddressRef,
    Selection,
    asset_order,
    resolve_addresses,
    selected_asset,
)
from tracker.reports.values import TOTAL
from tracker.store import queries
from tracker.store.models import Delta
from tracker.store.prices import micros_of
from tracker.store.queries import AssetRef, SnapshotRef
from tracker.valuation import ValueChange, from_digits, micros, split, sum_changes
from tracker.valuation import total as exact_sum

Moved = tuple[datetime | None, int, int, int]
"""One delta: (its period's start, asset key, its time in microseconds since the epoch, mojos)."""
ZERO = Decimal(0)


@dataclass(slots=True)
class ValueReportRow:
    """A row of the change report with its values in ``currency``; a portfolio row (``symbol``
    :data:`~tracker.reports.values.TOTAL`) has no asset and no balances. ``unpriced`` (totals
    only) counts the rows left out of the value sums because a part of them had no price."""

    address: str | None
    label: str | None
    asset_id: str | None
    symbol: str | None
    period: str | None
    start_at: datetime
    end_at: datetime
    start_balance: Decimal | None
    end_balance: Decimal | None
    change: Decimal | None
    changes: int
    start_balance_mojos: int | None
    end_balance_mojos: int | None
    change_mojos: int | None
    currency: str | None
    start_value: Decimal | None
    end_value: Decimal | None
    value_change: Decimal | None
    flows: Decimal | None
    market: Decimal | None
    unpriced: int | None = None

    @classmethod
    def of(cls, row: ReportRow, currency: str | None, worth: ValueChange) -> ValueReportRow:
        return cls(
            row.address,
            row.label,
            row.asset_id,
            row.symbol,
            row.period,
            row.start_at,
            row.end_at,
            row.start_balance,
            row.end_balance,
            row.change,
            row.changes,
            row.start_balance_mojos,
            row.end_balance_mojos,
            row.change_mojos,
            currency,
            worth.start_value,
            worth.end_value,
            worth.value_change,
            worth.flows,
            worth.market,
        )

    @property
    def worth(self) -> ValueChange:
        return ValueChange(
            self.start_value, self.end_value, self.value_change, self.flows, self.market
        )


def value_report(
    engine: Engine,
    rule: ValueRule,
    since: datetime | None = None,
    until: datetime | None = None,
    selection: Selection = EVERYTHING,
    *,
    period: Period | None = None,
    total: bool = False,
) -> list[ValueReportRow]:
    """The change report (:func:`~tracker.reports.changes.change_report`) with values; with
    ``total``, summed per asset across the addresses, and a portfolio row per period."""
    check_window(since, until)
    rows: list[ValueReportRow] = []
    with engine.connect() as connection:
        only = selected_asset(connection, selection)
        addresses = resolve_addresses(connection, selection)
        windows = windows_of(connection, addresses, since, until)
        starts = queries.balances_of(
            connection, [start.id for start, _ in windows.values()], only.id if only else None
        )
        moved = _deltas(connection, windows, only, period)
        assets = queries.assets(
            connection,
            {pk for held in starts.values() for pk in held}
            | {pk for found in moved.values() for _, pk, _, _ in found},
        )
        cuts = {
            address_id: cut_of(start, end, since, until, period)
            for address_id, (start, end) in windows.items()
        }
        moments = _moments(connection, windows, cuts)
        edges = [when for times in moments.values() for when in times]
        book = PriceBook.load(
            connection,
            rule,
            {a.asset_id for a in assets.values()},
            min(edges, default=None),
            max(edges, default=None),
        )
    for address in addresses:
        if address.id in windows:
            start = windows[address.id][0]
            rows.extend(
                _address_rows(
                    address,
                    cuts[address.id],
                    starts.get(start.id, {}),
                    moved.get(address.id, []),
                    assets,
                    moments[address.id],
                    book,
                )
            )
    return _totals(rows, rule.currency) if total else rows


def _deltas(
    connection: Connection,
    windows: dict[int, tuple[SnapshotRef, SnapshotRef]],
    only: AssetRef | None,
    period: Period | None,
) -> dict[int, list[Moved]]:
    """Per address, each delta after its start snapshot up to its end one, with its period and
    its time in microseconds; one range scan of the deltas' index per address, in one query."""
    if not windows:
        return {}
    key = period_start_sql(connection, period) if period is not None else literal(None)
    when, read = micros_of(connection.dialect.name, Delta.taken_at)
    query = select(Delta.address_id, key, Delta.asset_id, when, Delta.delta_mojos).where(
        Delta.address_id.in_(list(windows)),
        Delta.taken_at > min(start.taken_at for start, _ in windows.values()),
        Delta.taken_at <= max(end.taken_at for _, end in windows.values()),
    )
    if only is not None:
        query = query.where(Delta.asset_id == only.id)
    bounds = {a: (micros(s.taken_at), micros(e.taken_at)) for a, (s, e) in windows.items()}
    known: dict[object, datetime] = {}
    found: dict[int, list[Moved]] = defaultdict(list)
    for address_id, period_of, pk, taken, mojos in connection.execute(query).all():
        at = read(taken)
        after, through = bounds[address_id]
        if after < at <= through:
            start = known.get(period_of) if period_of is not None else None
            if start is None and period_of is not None:
                start = period_key(period_of, known)
            found[address_id].append((start, pk, at, mojos))
    return found


def _moments(
    connection: Connection,
    windows: dict[int, tuple[SnapshotRef, SnapshotRef]],
    cuts: dict[int, list[tuple[str | None, datetime, datetime]]],
) -> dict[int, list[datetime]]:
    """Per address, the times of the snapshots its periods are valued at: the start of each
    period, then the end of the last (one lookup of the snapshot index per boundary)."""
    boundaries: dict[datetime, list[int]] = defaultdict(list)
    for address_id, cut in cuts.items():
        for _, begin, _ in cut[1:]:
            boundaries[begin].append(address_id)
    before: dict[tuple[int, datetime], datetime] = {}
    for begin, address_ids in boundaries.items():
        for address_id, ref in queries.last_before(connection, address_ids, begin).items():
            before[(address_id, begin)] = ref.taken_at
    result = {}
    for address_id, cut in cuts.items():
        start, end = windows[address_id]
        inner = [before.get((address_id, begin), start.taken_at) for _, begin, _ in cut[1:]]
        result[address_id] = [start.taken_at, *inner, end.taken_at]
    return result


def _address_rows(
    address: AddressRef,
    cut: list[tuple[str | None, datetime, datetime]],
    held: dict[int, int],
    moved: list[Moved],
    assets: dict[int, AssetRef],
    moments: list[datetime],
    book: PriceBook,
) -> list[ValueReportRow]:
    """The plain rows of one address, each with its start and end values, flows and market."""
    valuers = {pk: book.valuer(ref.asset_id, ref.decimals) for pk, ref in assets.items()}
    sums, flows = _grouped(moved, valuers)
    changes: list[Change] = [(k, pk, mojos, count) for (k, pk), (mojos, count) in sums.items()]
    plain = bucket_rows(address, cut, held, changes, assets)
    index = {begin: n for n, (_, begin, _) in enumerate(cut)}
    keys = {ref.asset_id: pk for pk, ref in assets.items()}
    at = [micros(moment) for moment in moments]
    single = len(cut) == 1 and cut[0][0] is None
    result = []
    # A period's end is the next one's start: the same balance at the same snapshot.
    known: dict[tuple[int, int, int], Decimal | None] = {}
    for row in plain:
        n = 0 if single else index[row.start_at]
        pk = keys[row.asset_id]
        opening = (pk, row.start_balance_mojos, n)
        if opening in known:
            start = known[opening]
        else:
            start = _decimal(valuers[pk](row.start_balance_mojos, at[n]))
        end = known[(pk, row.end_balance_mojos, n + 1)] = _decimal(
            valuers[pk](row.end_balance_mojos, at[n + 1])
        )
        flow = flows.get((None if single else cut[n][1], pk), ZERO)
        result.append(ValueReportRow.of(row, book.currency, split(start, end, flow)))
    return result


def _decimal(found: Digits | None) -> Decimal | None:
    return None if found is None else from_digits(*found)


def _grouped(
    moved: list[Moved], valuers: dict[int, Callable[[int, int], Digits | None]]
) -> tuple[dict[tuple[datetime | None, int], list[int]], dict[Any, Decimal | None]]:
    """The deltas summed per period and asset (mojos, count), and valued per period and asset,
    each at its own snapshot's prices (None when one has none). A year of deltas is tens of
    thousands: they are valued in exact integer arithmetic, summed per number of decimals."""
    sums: dict[tuple[datetime | None, int], list[int]] = {}
    valued: dict[tuple[datetime | None, int], dict[int, int] | None] = {}
    for key, pk, at, mojos in moved:
        group = (key, pk)
        entry = sums.get(group)
        if entry is None:
            entry = sums[group] = [0, 0]
            valued[group] = {}
        entry[0] += mojos
        entry[1] += 1
        by_scale = valued[group]
        if by_scale is not None:
            found = valuers[pk](mojos, at)
            if found is None:
                valued[group] = None
            else:
                by_scale[found[1]] = by_scale.get(found[1], 0) + found[0]
    flows: dict[Any, Decimal | None] = {
        group: None if parts is None else exact_sum(from_digits(c, s) for s, c in parts.items())
        for group, parts in valued.items()
    }
    return sums, flows


def _totals(rows: list[ValueReportRow], currency: str | None) -> list[ValueReportRow]:
    """Per period and asset across the addresses, then the portfolio of each period."""
    by_key: dict[tuple[str | None, str | None], list[ValueReportRow]] = defaultdict(list)
    for row in rows:
        by_key[(row.period, row.asset_id)].append(row)
    plain: dict[tuple[str | None, str | None], ReportRow] = {
        (r.period, r.asset_id): r for r in totals([_plain(row) for row in rows])
    }
    summed = []
    for key, group in by_key.items():
        worth, unpriced = sum_changes(row.worth for row in group)
        entry = ValueReportRow.of(plain[key], currency, worth)
        entry.unpriced = unpriced
        summed.append(entry)
    by_period: dict[str | None, list[ValueReportRow]] = defaultdict(list)
    for entry in summed:
        by_period[entry.period].append(entry)
    result = []
    for name in sorted(by_period, key=lambda p: p or ""):
        group = sorted(by_period[name], key=lambda r: asset_order(r.asset_id or "", r.symbol))
        worth, _ = sum_changes(row.worth for row in group if row.worth.priced)
        whole = ValueReportRow(
            None,
            None,
            None,
            TOTAL,
            name,
            min(r.start_at for r in group),
            max(r.end_at for r in group),
            None,
            None,
            None,
            sum(r.changes for r in group),
            None,
            None,
            None,
            currency,
            worth.start_value,
            worth.end_value,
            worth.value_change,
            worth.flows,
            worth.market,
            sum(r.unpriced or 0 for r in group),
        )
        result.extend([*group, whole])
    return result


def _plain(row: ValueReportRow) -> ReportRow:
    """Back to the plain row, to sum the balances as the plain report does."""
    return ReportRow(
        row.address,
        row.label,
        row.asset_id or "",
        row.symbol,
        row.period,
        row.start_at,
        row.end_at,
        row.start_balance or Decimal(0),
        row.end_balance or Decimal(0),
        row.change or Decimal(0),
        row.changes,
        row.start_balance_mojos or 0,
        row.end_balance_mojos or 0,
        row.change_mojos or 0,
    )
