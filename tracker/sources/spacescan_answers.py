"""Spacescan's answers: a tolerant reader of good ones and a strict judge of bad ones.

The real API's answers vary (the token list under ``data`` or ``balance``, numbers as JSON numbers
or strings, XCH fields nested or not), so every documented shape is accepted. Anything else is an
error for that address, because a misread answer stored as a snapshot would show up as a fake
balance change forever. Amounts never pass through ``float``: JSON numbers are parsed as
``Decimal`` and converted to integer mojos exactly; a number that a float has already rounded
(an integer of mojos written with an exponent, past 2**53) is refused rather than trusted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

from tracker.domain import (
    CAT_DECIMALS,
    MAX_MOJOS,
    XCH_DECIMALS,
    AddressError,
    Asset,
    asset_id_of_token,
    is_asset_id,
)
from tracker.sources.base import BadAnswer, RateLimited, Refused
from tracker.valuation import XCH_QUOTE, canonical_price

# ASCII digits only: Python's int() and Decimal() also take Arabic-Indic or full-width digits.
_NUMBER = re.compile(r"\s*-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "ratelimit")
# Integers up to this are exact in a float, so a mojo count written as 1.5e3 is still exact.
_FLOAT_EXACT = 2**53

Redact = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class TokenAnswer:
    """A token-balance answer: CAT mojos and names per asset id, and the prices in XCH that the
    rows carried (``price_xch``; an asset without a usable one is simply absent)."""

    balances: dict[str, int]
    assets: dict[str, Asset]
    prices_xch: dict[str, Decimal] = field(default_factory=dict)


def parse_token_balances(
    body: bytes | str, redact: Redact = _unchanged
) -> tuple[dict[str, int], dict[str, Asset]]:
    """CAT balances in CAT mojos (1 token = 1,000) and what the answer says of each asset."""
    answer = parse_token_answer(body, redact)
    return answer.balances, answer.assets


def parse_token_answer(body: bytes | str, redact: Redact = _unchanged) -> TokenAnswer:
    """The balances as :func:`parse_token_balances` reads them, and each row's ``price_xch``.

    A price is a bonus, never a condition: a row whose ``price_xch`` is missing, null, zero or
    not a number keeps its balance and just has no price.
    """
    payload = _payload(body, redact)
    rows = payload.get("data")
    if not isinstance(rows, list):
        rows = payload.get("balance")
    if not isinstance(rows, list):
        raise BadAnswer("no token list in the answer (expected 'data' or 'balance')")
    answer = TokenAnswer({}, {}, {})
    for index, row in enumerate(rows):
        asset, mojos = _token(row, index)
        if asset.asset_id in answer.balances:
            raise BadAnswer(f"token {index}: asset {asset.asset_id} is listed twice")
        answer.balances[asset.asset_id] = mojos
        answer.assets[asset.asset_id] = asset
        price = price_of(row.get("price_xch")) if isinstance(row, dict) else None
        if price is not None:
            answer.prices_xch[asset.asset_id] = price
    return answer


def price_of(value: object) -> Decimal | None:
    """A price from a JSON number or numeric string, exactly; None for anything else (null, a
    word, a boolean, zero, a negative or absurd number). Never raises."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        return None
    return canonical_price(amount)


def parse_xch_price(
    body: bytes | str, currency: str, redact: Redact = _unchanged
) -> Decimal | None:
    """The XCH price in ``currency`` from ``/stats/price``; None when the answer has no price
    (a null, or a past moment Spacescan has no price for).

    Both documented shapes are read: ``{"price": 31.2}`` (a number or a string, at the top or
    under ``data``) and ``{"price": {"usd": "31.2", ...}}``.
    """
    found = _price_field(_payload(body, redact))
    if isinstance(found, dict):
        found = _keyed(found, currency)
    return _price_or_none(found, f"price in {currency}")


def parse_token_price(
    body: bytes | str, currency: str, redact: Redact = _unchanged
) -> Decimal | None:
    """A CAT's price in XCH from ``/token/price/{asset_id}``
    (``{"price": {"usd": "0.026", "xch": "0.0011"}}``); None when it has none."""
    found = _price_field(_payload(body, redact))
    if not isinstance(found, dict):
        if found is None:
            return None
        raise BadAnswer(f"token price {clip(found)!r} does not say its currency")
    return _price_or_none(_keyed(found, XCH_QUOTE), "price in XCH")


def _price_field(payload: dict[str, Any]) -> object:
    if "price" in payload:
        return payload["price"]
    data = payload.get("data")
    if isinstance(data, dict) and "price" in data:
        return data["price"]
    raise BadAnswer("no price in the answer (expected 'price')")


def _keyed(prices: dict[str, Any], quote: str) -> object:
    """The entry of ``quote`` in ``{"usd": …, "xch": …}``, whatever the keys' case."""
    for key, value in prices.items():
        if isinstance(key, str) and key.lower() == quote.lower():
            return value
    return None


def _price_or_none(value: object, what: str) -> Decimal | None:
    """None for null or zero ("no price"); a number that cannot be a price is a bad answer."""
    price = price_of(value)
    if price is not None or value is None or _zero(value):
        return price
    raise BadAnswer(f"{what} is {clip(value)!r}, not a usable price")


def _zero(value: object) -> bool:
    try:
        return not isinstance(value, bool) and Decimal(str(value).strip()) == 0
    except (InvalidOperation, ValueError):
        return False


def parse_xch_balance(body: bytes | str, redact: Redact = _unchanged) -> int:
    """The XCH balance in mojos (the exact ``mojo`` field, else ``xch``)."""
    payload = _payload(body, redact)
    fields = payload
    if "mojo" not in fields and "xch" not in fields and isinstance(payload.get("data"), dict):
        fields = payload["data"]
    if "mojo" in fields:
        return _whole_mojos(fields["mojo"])
    if "xch" in fields:
        return _mojos(_amount(fields["xch"], "xch"), XCH_DECIMALS, "xch")
    raise BadAnswer("no XCH balance in the answer (expected 'mojo')")


def server_message(body: bytes, redact: Redact = _unchanged) -> str:
    """``: <message>`` from an error answer's JSON, or nothing."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if isinstance(payload, dict) and payload.get("message"):
        return f": {clip(redact(str(payload['message'])))}"
    return ""


def _payload(body: bytes | str, redact: Redact) -> dict[str, Any]:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = redact(text)
    if text.lstrip().startswith("<"):
        raise BadAnswer("answered HTML instead of JSON")
    try:
        payload = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    # ArithmeticError: a JSON number whose exponent Decimal cannot hold (1e99999999999999999999).
    except (ValueError, ArithmeticError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise BadAnswer(f"answer is not valid JSON ({detail}, {len(text)} bytes)") from None
    if not isinstance(payload, dict):
        raise BadAnswer(f"answer is a JSON {type(payload).__name__}, expected an object")
    status = payload.get("status", "success")
    if status != "success":
        message = clip(payload.get("message"))
        text_status = clip(status)
        if any(word in f"{message} {text_status}".lower() for word in _RATE_LIMIT_WORDS):
            raise RateLimited(f"rate limited: {message or text_status}")
        raise Refused(f"status {text_status}" + (f": {message}" if message else ""))
    return payload


def _token(row: object, index: int) -> tuple[Asset, int]:
    if not isinstance(row, dict):
        raise BadAnswer(f"token {index}: expected an object, got {_kind(row)}")
    asset_id = row.get("asset_id")
    if asset_id is None and isinstance(row.get("token_id"), str):
        try:
            asset_id = asset_id_of_token(row["token_id"])
        except AddressError as exc:
            raise BadAnswer(f"token {index}: malformed token_id ({exc})") from None
    if isinstance(asset_id, str):
        asset_id = asset_id.removeprefix("0x").lower()
    if not isinstance(asset_id, str) or not is_asset_id(asset_id):
        raise BadAnswer(f"token {index}: malformed asset_id {clip(asset_id)!r}")
    if "balance" not in row:
        raise BadAnswer(f"token {index} ({asset_id[:8]}…): no balance")
    mojos = _mojos(
        _amount(row["balance"], f"token {asset_id[:8]}… balance"), CAT_DECIMALS, asset_id
    )
    return Asset(asset_id, _text(row.get("name")), _text(row.get("symbol"))), mojos


def _amount(value: object, what: str) -> Decimal:
    """An exact, finite, non-negative amount from a JSON number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadAnswer(f"{what} is {_kind(value)}, expected a number")
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        raise BadAnswer(f"{what} is {clip(value)!r}, expected a number")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise BadAnswer(f"{what} is {clip(value)!r}, expected a number") from None
    if not amount.is_finite():
        raise BadAnswer(f"{what} is not finite")
    if amount < 0:
        raise BadAnswer(f"{what} is negative ({clip(value)})")
    return amount


def _whole_mojos(value: object) -> int:
    """``mojo``: an integer. Written as a float (with a point or an exponent) it is trusted only
    where a float is exact; past 2**53 its last digits may already be lost."""
    amount = _amount(value, "mojo")
    written = value if isinstance(value, str) else str(value)
    floating = isinstance(value, Decimal) or any(mark in written for mark in ".eE")
    if floating and amount >= _FLOAT_EXACT:
        raise BadAnswer(
            f"mojo {clip(written)} is written as a float, which is not exact at this size"
        )
    return _mojos(amount, 0, "mojo")


def _mojos(amount: Decimal, decimals: int, what: str) -> int:
    if amount.adjusted() > 30:
        raise BadAnswer(f"{what}: amount {clip(amount)} is too large")
    with localcontext() as context:
        context.prec = 80
        # Rounding here can only drop digits far below one mojo (the integer part is at most
        # 43 digits), so an inexact result means a fraction of a mojo: never round it away.
        context.traps[Inexact] = True
        try:
            mojos = amount.scaleb(decimals)
            fractional = mojos != mojos.to_integral_value()
        except Inexact:
            fractional = True
        if fractional:
            raise BadAnswer(f"{what}: amount {clip(amount)} has a fraction of a mojo")
    result = int(mojos)
    if result > MAX_MOJOS:
        raise BadAnswer(f"{what}: amount {clip(amount)} exceeds the 64-bit mojo range stored")
    return result


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip()[:200] or None
    return None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def clip(value: object, limit: int = 120) -> str:
    """One line of at most ``limit`` characters (redact before clipping, never after)."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
