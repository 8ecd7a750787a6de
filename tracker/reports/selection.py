"""Which addresses and asset a question is about, resolved the same way for every report.

An unknown address, label or asset is a :class:`~tracker.errors.NotFound` raised before anything
is read or printed, so every report words it the same way and never prints half an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, or_, select

from tracker.domain import XCH
from tracker.errors import NotFound, UsageError
from tracker.store.models import Address, Asset
from tracker.store.queries import AssetRef


@dataclass(frozen=True)
class Selection:
    """Which addresses and asset a report is about; empty means all."""

    address: str | None = None
    label: str | None = None
    asset: str | None = None


EVERYTHING = Selection()


@dataclass(frozen=True, slots=True)
class AddressRef:
    id: int
    address: str
    label: str | None


def resolve_addresses(connection: Connection, selection: Selection) -> list[AddressRef]:
    """The addresses a selection names (all of them when it names none), ordered by address."""
    query = select(Address.id, Address.address, Address.label).order_by(Address.address)
    if selection.address is not None:
        needle = selection.address.strip()
        query = query.where(or_(Address.address == needle.lower(), Address.label == needle))
    if selection.label is not None:
        query = query.where(Address.label == selection.label)
    rows = [AddressRef(row.id, row.address, row.label) for row in connection.execute(query)]
    if selection.address is not None:
        if not rows:
            raise NotFound(
                f"unknown address {selection.address!r}: not in the database (polled yet?)"
            )
        if len(rows) > 1:
            raise NotFound(
                f"label {selection.address!r} names several addresses: "
                "give the address, or select them all by label"
            )
    if selection.label is not None and not rows:
        raise NotFound(f"no address has the label {selection.label!r}")
    return rows


def one_address(connection: Connection, address: str | None) -> AddressRef:
    """The address named, or the database's only one; several without a name: UsageError."""
    if address is not None:
        (who,) = resolve_addresses(connection, Selection(address=address))
        return who
    known = resolve_addresses(connection, EVERYTHING)
    if not known:
        raise NotFound("no addresses in the database yet: nothing has been polled")
    if len(known) > 1:
        raise AddressNeeded(len(known))
    return known[0]


class AddressNeeded(UsageError):
    """A question about one address, asked of a database that holds several."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the database holds {count} addresses: choose one (address or label)")
        self.count = count


def resolve_asset(connection: Connection, text: str) -> AssetRef:
    """An asset named by its asset id, its token id (tkn1…), ``xch`` or a unique symbol."""
    needle = text.strip().lower().removeprefix("0x")
    rows = connection.execute(
        select(Asset.id, Asset.asset_id, Asset.symbol, Asset.name, Asset.decimals).where(
            or_(
                Asset.asset_id == needle,
                Asset.token_id == needle,
                func.lower(Asset.symbol) == needle,
            )
        )
    ).all()
    exact = [row for row in rows if needle in (row.asset_id, text.strip().lower())]
    if len(exact) == 1 or len(rows) == 1:
        row = exact[0] if len(exact) == 1 else rows[0]
        return AssetRef(row.id, row.asset_id, row.symbol, row.name, row.decimals)
    if not rows:
        raise NotFound(f"unknown asset {text!r}: give an asset id, a token id, a symbol or xch")
    raise NotFound(f"asset symbol {text!r} is ambiguous: give the asset id instead")


def selected_asset(connection: Connection, selection: Selection) -> AssetRef | None:
    return resolve_asset(connection, selection.asset) if selection.asset is not None else None


def asset_order(asset_id: str, symbol: str | None) -> tuple[bool, str, str]:
    """XCH first, then CATs by symbol, then by asset id for a stable order."""
    return (asset_id != XCH, symbol or "", asset_id)


def ids(addresses: Sequence[AddressRef]) -> list[int]:
    return [address.id for address in addresses]
