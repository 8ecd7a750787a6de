"""The Spacescan address API: a tolerant reader of good answers and a strict judge of bad ones.

The real API's answers vary (the token list under ``data`` or ``balance``, numbers as JSON numbers
or strings, XCH fields nested or not), so every documented shape is accepted. Anything else is an
error for that address, because a misread answer stored as a snapshot would show up as a fake
balance change forever. Amounts never pass through ``float``: JSON numbers are parsed as
``Decimal`` and converted to integer mojos exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from tracker import __version__
from tracker.addresses import AddressError, bech32m_decode, is_asset_id
from tracker.clock import Clock
from tracker.ratelimit import RateBudget, RetryPolicy

USER_AGENT = f"tracker/{__version__} (Chia portfolio tracker; python-requests)"
XCH_DECIMALS = 12
CAT_DECIMALS = 3
# Balances are stored as signed 64-bit integers of mojos (9.2 million XCH, 9.2e15 CAT tokens).
MAX_MOJOS = 2**63 - 1

_NUMBER = re.compile(r"\s*-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "ratelimit")
_T = TypeVar("_T")


class SpacescanError(Exception):
    """A failed request or an answer that cannot be trusted; ``str()`` is one line."""

    retryable = False
    retry_after: float | None = None


class BadAnswer(SpacescanError):
    """The server answered, but not with a well-formed balance answer."""


class Refused(SpacescanError):
    """The server said no (``status: failed``, HTTP 4xx): asking again will not help."""


class Unavailable(SpacescanError):
    """Network failure, timeout or HTTP 5xx: worth retrying."""

    retryable = True


class RateLimited(Unavailable):
    """HTTP 429 or a rate-limit message: every request waits, not just this one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class TokenBalance:
    asset_id: str
    name: str | None
    symbol: str | None
    mojos: int


@dataclass(frozen=True)
class Balances:
    """One address's answer: ``xch_mojos`` is None when XCH is not tracked."""

    tokens: tuple[TokenBalance, ...]
    xch_mojos: int | None


class SpacescanClient:
    """Fetches the balances of one address; safe to share between threads.

    :param session: the HTTP session (tests hand in one that ``responses`` controls)
    :param budget: the request budget shared by every request of this process
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session,
        budget: RateBudget,
        clock: Clock,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        on_response: Callable[[str, str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._budget = budget
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout = (min(10.0, timeout_seconds), timeout_seconds)
        # Told (endpoint, "200" / "429" / "timeout" / "connection") of every attempt: metrics.
        self._on_response = on_response or (lambda _endpoint, _status: None)

    def __repr__(self) -> str:
        return f"SpacescanClient({self.base_url!r}, api_key={'***' if self._api_key else None})"

    def balances(self, address: str, *, include_xch: bool = True) -> Balances:
        """Both balance endpoints for ``address``; raises :class:`SpacescanError`."""
        tokens = self._get("token-balance", address, parse_token_balances)
        xch = self._get("xch-balance", address, parse_xch_balance) if include_xch else None
        return Balances(tokens=tokens, xch_mojos=xch)

    def _get(self, endpoint: str, address: str, parse: Callable[[bytes], _T]) -> _T:
        url = f"{self.base_url}/address/{endpoint}/{address}"
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        attempt = 0
        while True:
            attempt += 1
            self._budget.acquire()
            try:
                response = self._session.get(url, headers=headers, timeout=self._timeout)
                self._on_response(endpoint, str(response.status_code))
                # Parsed inside the loop: a rate-limit message in a 200 body must be retried too.
                return parse(self._judge(response))
            except SpacescanError as exc:
                error = exc
            except requests.Timeout:
                self._on_response(endpoint, "timeout")
                error = Unavailable(f"no answer within {self._timeout[1]:g} s")
            except requests.RequestException as exc:
                self._on_response(endpoint, "connection")
                error = Unavailable(f"connection failed ({_cause(exc)})")
            wait = self._retry.backoff(attempt, error.retry_after)
            too_long = (error.retry_after or 0.0) > self._retry.max_retry_after
            if isinstance(error, RateLimited):
                # Every caller waits, even when this one gives up (last attempt, or a wait too
                # long to spend inside one poll: then later polls still honour Retry-After).
                self._budget.pause(
                    min(error.retry_after or 0.0, self._retry.max_pause) if too_long else wait
                )
            if not error.retryable or too_long or attempt >= self._retry.max_attempts:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                if too_long:
                    suffix += f" (asked to wait {error.retry_after:.0f} s)"
                message = f"{endpoint}: {error}{suffix}"
                if self._api_key:  # a server may echo the key back in its message
                    message = message.replace(self._api_key, "***")
                raise type(error)(message) from None
            self._clock.sleep(wait)

    def _judge(self, response: requests.Response) -> bytes:
        status = response.status_code
        if status == 200:
            return response.content
        message = _server_message(response.content)
        if status == 429:
            raise RateLimited(
                f"HTTP 429 rate limited{message}", _retry_after(response, self._clock)
            )
        if status >= 500:
            raise Unavailable(f"HTTP {status}{message}")
        if status in (401, 403):
            hint = " (check the API key)" if self._api_key else " (the host may need an API key)"
            raise Refused(f"HTTP {status} forbidden{message}{hint}")
        raise Refused(f"HTTP {status}{message}")


def parse_token_balances(body: bytes | str) -> tuple[TokenBalance, ...]:
    """CAT balances from a ``token-balance`` answer, in CAT mojos (1 token = 1,000)."""
    payload = _payload(body)
    rows = payload.get("data")
    if not isinstance(rows, list):
        rows = payload.get("balance")
    if not isinstance(rows, list):
        raise BadAnswer("no token list in the answer (expected 'data' or 'balance')")
    tokens: dict[str, TokenBalance] = {}
    for index, row in enumerate(rows):
        token = _token(row, index)
        if token.asset_id in tokens:
            raise BadAnswer(f"token {index}: asset {token.asset_id} is listed twice")
        tokens[token.asset_id] = token
    return tuple(tokens.values())


def parse_xch_balance(body: bytes | str) -> int:
    """The XCH balance in mojos from an ``xch-balance`` answer (the exact ``mojo`` field)."""
    payload = _payload(body)
    fields = payload
    if "mojo" not in fields and "xch" not in fields and isinstance(payload.get("data"), dict):
        fields = payload["data"]
    if "mojo" in fields:
        return _mojos(_amount(fields["mojo"], "mojo"), 0, "mojo")
    if "xch" in fields:
        return _mojos(_amount(fields["xch"], "xch"), XCH_DECIMALS, "xch")
    raise BadAnswer("no XCH balance in the answer (expected 'mojo')")


def _payload(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    stripped = text.lstrip()
    if stripped.startswith("<"):
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
        message = _clip(payload.get("message"))
        text_status = _clip(status)
        if any(word in f"{message} {text_status}".lower() for word in _RATE_LIMIT_WORDS):
            raise RateLimited(f"rate limited: {message or text_status}")
        raise Refused(f"status {text_status}" + (f": {message}" if message else ""))
    return payload


def _token(row: object, index: int) -> TokenBalance:
    if not isinstance(row, dict):
        raise BadAnswer(f"token {index}: expected an object, got {_kind(row)}")
    asset_id = row.get("asset_id")
    if asset_id is None and isinstance(row.get("token_id"), str):
        asset_id = _asset_from_token_id(row["token_id"], index)
    if not isinstance(asset_id, str) or not is_asset_id(asset_id.removeprefix("0x")):
        raise BadAnswer(f"token {index}: malformed asset_id {_clip(asset_id)!r}")
    asset_id = asset_id.removeprefix("0x").lower()
    if "balance" not in row:
        raise BadAnswer(f"token {index} ({asset_id[:8]}…): no balance")
    mojos = _mojos(_amount(row["balance"], f"token {index} balance"), CAT_DECIMALS, asset_id)
    return TokenBalance(
        asset_id=asset_id, name=_text(row.get("name")), symbol=_text(row.get("symbol")), mojos=mojos
    )


def _asset_from_token_id(token_id: str, index: int) -> str:
    try:
        hrp, data = bech32m_decode(token_id)
    except AddressError as exc:
        raise BadAnswer(f"token {index}: malformed token_id ({exc})") from None
    if hrp != "tkn" or len(data) != 32:
        raise BadAnswer(f"token {index}: malformed token_id {_clip(token_id)!r}")
    return data.hex()


def _amount(value: object, what: str) -> Decimal:
    """An exact, finite, non-negative amount from a JSON number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise BadAnswer(f"{what} is {_kind(value)}, expected a number")
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        raise BadAnswer(f"{what} is {_clip(value)!r}, expected a number")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise BadAnswer(f"{what} is {_clip(value)!r}, expected a number") from None
    if not amount.is_finite():
        raise BadAnswer(f"{what} is not finite")
    if amount < 0:
        raise BadAnswer(f"{what} is negative ({_clip(value)})")
    return amount


def _mojos(amount: Decimal, decimals: int, what: str) -> int:
    if amount.adjusted() > 30:
        raise BadAnswer(f"{what}: amount {_clip(amount)} is too large")
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
            raise BadAnswer(f"{what}: amount {_clip(amount)} has a fraction of a mojo")
    result = int(mojos)
    if result > MAX_MOJOS:
        raise BadAnswer(f"{what}: amount {_clip(amount)} exceeds the 64-bit mojo range stored")
    return result


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip()[:200] or None
    return None


def _server_message(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return ""
    if isinstance(payload, dict) and payload.get("message"):
        return f": {_clip(payload['message'])}"
    return ""


def _retry_after(response: requests.Response, clock: Clock) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())


def _cause(exc: requests.RequestException) -> str:
    """The innermost reason of a connection failure, without object reprs or URLs."""
    reason: BaseException = exc
    while True:
        inner = getattr(reason, "reason", None)
        if inner is None and reason.args and isinstance(reason.args[0], BaseException):
            inner = reason.args[0]
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = re.sub(r"<[^>]*>:?\s*", "", str(reason))
    text = re.sub(r"\S+://\S+", "", text)
    return _clip(f"{type(reason).__name__}: {text}" if text else type(reason).__name__, 160)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _clip(value: object, limit: int = 120) -> str:
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
