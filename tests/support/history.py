"""Building histories for tests: observations as a source would hand them to the store."""

from __future__ import annotations

from datetime import datetime, timedelta

from tracker.domain import XCH, XCH_ASSET, Asset, Observation


def observe(
    address: str,
    at: datetime,
    balances: dict[str, int],
    names: dict[str, tuple[str | None, str | None]] | None = None,
) -> Observation:
    """A successful read of ``address`` finished at ``at``; ``names``: asset -> (name, symbol)."""
    names = names or {}
    assets = {
        asset: XCH_ASSET
        if asset == XCH and asset not in names
        else Asset(asset, *names.get(asset, (None, None)))
        for asset in balances
    }
    return Observation(address, at - timedelta(seconds=1), at, balances, assets)
