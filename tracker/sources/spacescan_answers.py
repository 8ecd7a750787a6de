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

# ASCII digits only: Python's int() and Decimal() also take Arabic-Indic or full-width digits.
_NUMBER = re.compile(r"\s*-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "ratelimit")
# Integers up to this are exact in a float, so a mojo count written as 1.5e3 is still exact.
_FLOAT_EXACT = 2**53

Redact = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


def parse_token_balances(
    body: bytes | str, redact: Redact = _unchanged
) -> tuple[dict[str, int], dict[str, Asset]]:
    """CAT balances in CAT mojos (1 token = 1,000) and what the answer says of each asset."""
    payload = _payload(body, redact)
    rows = payload.get("data")
    if not isinstance(rows, list):
        rows = payload.get("balance")
    if not isinstance(rows, list):
        raise BadAnswer("no token list in the answer (expected 'data' or 'balance')")
    balances: dict[str, int] = {}
    assets: dict[str, Asset] = {}
    for index, row in enumerate(rows):
        asset, mojos = _token(row, index)
        if asset.asset_id in balances:
            raise BadAnswer(f"token {index}: asset {asset.asset_id} is listed twice")
        balances[asset.asset_id] = mojos
        assets[asset.asset_id] = asset
    return balances, assets


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
