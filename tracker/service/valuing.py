"""The :class:`~tracker.Tracker` methods about values: valued balances, the valued report, the
value chart and the price backfill.

A mixin, so that the facade stays one class (``Tracker.values(...)``) while its value methods
live beside each other here. Like every facade method they raise only ``TrackerError``; a
question about values while valuation is off (``[prices] currency = "none"``) is a
``UsageError``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from tracker.errors import TrackerError, UsageError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tracker.clock import SystemClock
    from tracker.config import Settings
    from tracker.reports.balances import BalanceRow
    from tracker.reports.periods import Period
    from tracker.reports.pricebook import ValueRule
    from tracker.reports.selection import Selection
    from tracker.reports.value_report import ValueReportRow
    from tracker.reports.value_series import ValueSeries
    from tracker.reports.values import ValueRow
    from tracker.service.price_backfill import BackfillSummary

P = ParamSpec("P")
R = TypeVar("R")


def _database(method: Callable[P, R]) -> Callable[P, R]:
    """The facade's own guard (``tracker.service.tracker._database``), found when called."""

    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from tracker.service.tracker import _database as guard

        return guard(method)(*args, **kwargs)

    return wrapper


class ValueMethods:
    """Values of the history: mixed into :class:`~tracker.Tracker`."""

    if TYPE_CHECKING:

        @property
        def settings(self) -> Settings: ...

        def engine(self, *, create: bool = False) -> Engine: ...

        def balances(
            self, selection: Selection | None = None, at: datetime | None = None
        ) -> list[BalanceRow]: ...

    def value_rule(self) -> ValueRule:
        """The currency and maximum price age of the configuration; raises when off."""
        from tracker.reports.pricebook import ValueRule

        prices = self.settings.prices
        if prices.fiat is None:
            raise UsageError(
                f'valuation is off ([prices] currency = "none" in {self.settings.path})'
            )
        return ValueRule.of(prices.fiat, prices.max_age)

    @_database
    def values(
        self,
        selection: Selection | None = None,
        at: datetime | None = None,
        *,
        total: bool = False,
    ) -> list[ValueRow]:
        """Each address's balances with prices and values (the latest, or at a moment); with
        ``total``, per asset across the addresses and the portfolio's total."""
        from tracker.reports.selection import EVERYTHING
        from tracker.reports.values import valued_balances

        rule = self.value_rule()
        return valued_balances(self.engine(), rule, selection or EVERYTHING, at, portfolio=total)

    @_database
    def balance_totals(
        self, selection: Selection | None = None, at: datetime | None = None
    ) -> list[ValueRow]:
        """The balances of each asset summed across the addresses (no prices needed)."""
        from tracker.reports.selection import EVERYTHING
        from tracker.reports.values import summed

        return summed(self.balances(selection or EVERYTHING, at))

    @_database
    def value_report(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        selection: Selection | None = None,
        *,
        period: Period | None = None,
        total: bool = False,
    ) -> list[ValueReportRow]:
        """The change report with start and end values, and the change split into flows and
        market, per address and asset (and period); with ``total``, the portfolio too."""
        from tracker.reports.selection import EVERYTHING
        from tracker.reports.value_report import value_report

        rule = self.value_rule()
        return value_report(
            self.engine(), rule, since, until, selection or EVERYTHING, period=period, total=total
        )

    @_database
    def value_series(
        self,
        selection: Selection | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ValueSeries:
        """The portfolio's value over a window, per asset (all addresses, or a selection)."""
        from tracker.reports.selection import EVERYTHING
        from tracker.reports.value_series import value_series

        rule = self.value_rule()
        return value_series(self.engine(), rule, selection or EVERYTHING, since, until)

    def value_chart(self, output: Path, series: ValueSeries) -> int:
        """Draw ``series`` to ``output`` (.png, .svg, .pdf); returns how many assets it shows."""
        from tracker.reports.value_chart import draw_values

        try:
            return draw_values(series, output)
        except OSError as exc:
            raise TrackerError(f"{output}: {exc.strerror or exc}") from None

    @_database
    def backfill_prices(
        self,
        since: datetime | None = None,
        *,
        clock: SystemClock | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> BackfillSummary:
        """Fetch the XCH price at the start of each UTC hour that has an unpriced snapshot."""
        from tracker.clock import SystemClock
        from tracker.service.price_backfill import backfill

        rule = self.value_rule()
        return backfill(
            self.settings,
            self.engine(),
            rule,
            clock or SystemClock(),
            since=since,
            progress=progress,
        )
