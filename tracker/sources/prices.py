"""Spacescan's prices: the XCH price in a fiat currency (now or at a past moment), a CAT's in XCH.

A small client on top of :class:`~tracker.sources.spacescan.SpacescanSource`: every request goes
through its one request path, so it waits for the same :class:`~tracker.sources.budget.RateBudget`
as the balance requests, is bounded by :func:`~tracker.sources.http.fetch`, retried by the same
:class:`~tracker.retry.RetryPolicy`, carries the same headers (and API key) and is counted in the
same metrics. What to fetch and when is decided by the service layer (``service.pricing``).

- ``GET /stats/price?currency=USD[&period=UNIX]``: the XCH price, now or at a past time. An older
  page of Spacescan's docs calls the parameter ``cur``; both are sent.
- ``GET /token/price/{asset_id}?currency=USD``: a CAT's current price, of which tracker keeps the
  one in XCH (a CAT is priced in XCH; its fiat value follows from the XCH price).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from urllib.parse import quote, urlencode

from tracker.domain import is_asset_id
from tracker.sources.spacescan import SpacescanSource
from tracker.sources.spacescan_answers import parse_token_price, parse_xch_price

SOURCE_NOW = "spacescan"
"""``prices.source`` of a price fetched for a poll (``/stats/price``, ``/token/price``)."""
SOURCE_ROWS = "spacescan-balance"
"""``prices.source`` of a ``price_xch`` read from a token-balance answer."""
SOURCE_PAST = "spacescan-history"
"""``prices.source`` of a past XCH price fetched by ``prices backfill``."""


class PriceSource:
    """Reads prices from Spacescan through ``client``'s requests; safe to share between threads.

    Each method answers a price, or None when Spacescan has none (a null, a zero, a moment it
    has no price for), and raises the final ``SourceError`` of a request that failed (or
    ``Cancelled`` when stopping).
    """

    def __init__(self, client: SpacescanSource) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"PriceSource({self._client!r})"

    def xch_price(self, currency: str, at: datetime | None = None) -> Decimal | None:
        """The XCH price in ``currency``: now, or at the moment ``at`` (whole seconds)."""
        params = {"currency": currency, "cur": currency}
        if at is not None:
            params["period"] = str(int(at.timestamp()))
        url = f"{self._client.base_url}/stats/price?{urlencode(params)}"
        what = "XCH price" + (f" at {int(at.timestamp())}" if at is not None else "")
        return self._client.request(
            "stats-price", url, lambda body, redact: parse_xch_price(body, currency, redact), what
        )

    def token_price(self, asset_id: str, currency: str) -> Decimal | None:
        """A CAT's current price in XCH."""
        if not is_asset_id(asset_id):
            raise ValueError(f"not a CAT asset id: {asset_id!r}")
        query = urlencode({"currency": currency})
        url = f"{self._client.base_url}/token/price/{quote(asset_id)}?{query}"
        return self._client.request(
            "token-price",
            url,
            lambda body, redact: parse_token_price(body, currency, redact),
            f"price of {asset_id[:8]}…",
        )
