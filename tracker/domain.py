"""What tracker is about, with no I/O: addresses, assets, observations, deltas and units.

Every other package speaks these types. Amounts are integers of mojos; token units are exact
``Decimal`` made from them by the asset's own rule (XCH has 12 decimals, a CAT 3), which lives
here and only here.

Chia addresses are bech32m (BIP-350) encodings of a 32-byte puzzle hash; they are decoded and
encoded by ``chia-wallet-sdk``'s ``Address``, the field's own implementation, imported when first
needed (the read-only commands should not pay for it).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_PREC, Context, Decimal
from functools import lru_cache
from typing import Generic, TypeVar

XCH = "xch"
"""The asset id tracker gives XCH (a CAT's is its 64-hex TAIL hash)."""
XCH_DECIMALS = 12
CAT_DECIMALS = 3
MAX_MOJOS = 2**63 - 1
"""Balances are stored as signed 64-bit integers (9.2 million XCH, 9.2e15 CAT tokens)."""
PUZZLE_HASH_BYTES = 32
PREFIXES = {"mainnet": "xch", "testnet11": "txch"}
CANCELLED = "cancelled: stopping"
"""The error recorded for a poll cut short by a stop: not a failure of the address."""

_ASSET_ID = re.compile(r"[0-9a-f]{64}", re.ASCII)
# scaleb rounds to its context's precision (28 digits by default, which a portfolio total can
# exceed), so units are made in a context that never rounds.
_EXACT = Context(prec=MAX_PREC)


class AddressError(ValueError):
    """Not an acceptable address or token id; the message is a short reason for the user."""


def decimals_of(asset_id: str) -> int:
    """12 for XCH, 3 for every CAT."""
    return XCH_DECIMALS if asset_id == XCH else CAT_DECIMALS


def units(mojos: int, decimals: int) -> Decimal:
    """Exact token units with every decimal shown: 1500 CAT mojos -> Decimal('1.500')."""
    return Decimal(mojos).scaleb(-decimals, _EXACT)


def is_asset_id(text: str) -> bool:
    """Whether ``text`` is a CAT asset id: 64 lowercase hex characters."""
    return _ASSET_ID.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Asset:
    """XCH or a CAT, with what is known of its name; ``decimals`` follows from the id."""

    asset_id: str
    name: str | None = None
    symbol: str | None = None

    @property
    def decimals(self) -> int:
        return decimals_of(self.asset_id)

    @property
    def token_id(self) -> str | None:
        """The ``tkn1…`` form of a CAT's asset id (None for XCH)."""
        return None if self.asset_id == XCH else token_id(self.asset_id)

    def units(self, mojos: int) -> Decimal:
        return units(mojos, self.decimals)

    @property
    def display(self) -> str:
        """How a person names it: the symbol, else the asset id."""
        return self.symbol or self.asset_id


XCH_ASSET = Asset(XCH, "Chia", "XCH")


@dataclass(frozen=True, slots=True)
class WatchedAddress:
    """An address from the configuration, with its optional label."""

    address: str
    label: str | None = None


@dataclass(frozen=True)
class Observation:
    """What one successful read of an address saw: mojos per asset id (``xch`` for XCH).

    ``started_at`` is when the read began, ``taken_at`` when its answer was complete: the
    snapshot's time. ``assets`` carries names and symbols when the source knows them.
    """

    address: str
    started_at: datetime
    taken_at: datetime
    balances: dict[str, int]
    assets: dict[str, Asset] = field(default_factory=dict)
    prices_xch: dict[str, Decimal] = field(default_factory=dict)
    """What the source said a CAT is worth in XCH, when it said so (Spacescan's ``price_xch``)."""

    def asset(self, asset_id: str) -> Asset:
        return self.assets.get(asset_id) or (XCH_ASSET if asset_id == XCH else Asset(asset_id))


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class AssetDelta(Generic[K]):
    """A change of one asset between two consecutive snapshots of an address."""

    asset: K
    previous_mojos: int
    mojos: int

    @property
    def delta_mojos(self) -> int:
        return self.mojos - self.previous_mojos


def compute_deltas(
    previous: Mapping[K, int] | None, current: Mapping[K, int]
) -> list[AssetDelta[K]]:
    """One delta per asset whose balance differs; none at all for a baseline (no previous).

    An asset missing from a snapshot has a balance of zero: "appeared" and "disappeared" are
    changes from or to zero, so replaying the deltas on the baseline gives back every snapshot.
    """
    if previous is None:
        return []
    deltas = [
        AssetDelta(asset, previous.get(asset, 0), mojos)
        for asset, mojos in current.items()
        if previous.get(asset, 0) != mojos
    ]
    deltas.extend(
        AssetDelta(asset, mojos, 0)
        for asset, mojos in previous.items()
        if asset not in current and mojos != 0
    )
    return deltas


def apply_deltas(balances: Mapping[K, int], deltas: Iterable[AssetDelta[K]]) -> dict[K, int]:
    """The balances after ``deltas``, with zero balances dropped (as "not held")."""
    result = {asset: mojos for asset, mojos in balances.items() if mojos}
    for delta in deltas:
        result[delta.asset] = result.get(delta.asset, 0) + delta.delta_mojos
        if result[delta.asset] == 0:
            del result[delta.asset]
    return result


# Addresses and token ids ------------------------------------------------------------------


def decode_bech32m(text: str) -> tuple[str, bytes]:
    """The prefix and 32-byte payload of a bech32m string (an address or a token id)."""
    if not text or not text.isascii() or not text.isprintable():
        raise AddressError("not a bech32m string")
    from chia_wallet_sdk import Address

    try:
        decoded = Address.decode(text)
    except ValueError as exc:
        raise AddressError(_reason(str(exc))) from None
    return decoded.prefix, bytes(decoded.puzzle_hash)


def encode_bech32m(prefix: str, payload: bytes) -> str:
    from chia_wallet_sdk import Address

    return str(Address(payload, prefix).encode())


def _reason(message: str) -> str:
    """The SDK's error, in the words tracker has always used."""
    text = message.lower()
    if "not bech32m" in text:
        return "bech32 checksum, expected bech32m"
    if "mixed-case" in text:
        return "mixed case"
    if "checksum" in text:
        return "bad checksum"
    if "separator" in text:
        return "missing separator '1'"
    found = re.search(r"expected 32 bytes, found (\d+)", text)
    if found:
        return f"payload is {found[1]} bytes, expected {PUZZLE_HASH_BYTES}"
    return "not bech32m (" + " ".join(message.split())[:80] + ")"


def puzzle_hash(address: str, prefix: str) -> bytes:
    """The 32-byte puzzle hash of an address on the network with ``prefix`` (``xch``/``txch``)."""
    found, payload = decode_bech32m(address.strip())
    if found != prefix:
        raise AddressError(f"expected prefix {prefix!r}, got {found!r}")
    return payload


def normalize_address(address: str, prefix: str) -> str:
    """A valid address in canonical (lowercase) form; pasted text may carry spaces or capitals."""
    puzzle_hash(address, prefix)
    return address.strip().lower()


def address_of(puzzle_hash: bytes, prefix: str) -> str:
    return encode_bech32m(prefix, puzzle_hash)


@lru_cache(maxsize=4096)
def token_id(asset_id: str) -> str:
    """The ``tkn1…`` form of a CAT asset id, as wallets and explorers show it."""
    if not is_asset_id(asset_id):
        raise AddressError(f"asset id must be 64 lowercase hex characters, got {asset_id!r}")
    return encode_bech32m("tkn", bytes.fromhex(asset_id))


def asset_id_of_token(token: str) -> str:
    """The asset id of a ``tkn1…`` token id."""
    prefix, payload = decode_bech32m(token)
    if prefix != "tkn":
        raise AddressError(f"expected prefix 'tkn', got {prefix!r}")
    return payload.hex()
