"""The ``[prices]`` section of the configuration: what values are computed in, and how fresh.

Kept beside ``config`` (which imports it into ``Settings``) so that valuation's settings and their
rules live in one small place. The same strictness applies: unknown keys, wrong types and a
currency that is not an ISO 4217 code are errors naming the key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

OFF = "none"


class PricesSection(BaseModel):
    """Values in XCH and a fiat currency (see the README's "Values").

    ``currency`` is an ISO 4217 code (any case; stored upper case) or ``"none"``, which turns
    valuation off: no price is fetched and ``--value`` is refused. Prices are fetched at most once
    per ``interval_seconds``; a snapshot is valued with a price at most ``max_age_seconds`` old
    at its time (default: two intervals, so one failed fetch leaves no snapshot unpriced).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    currency: str = "USD"
    interval_seconds: int = Field(default=3600, ge=1, le=31_536_000)
    max_age_seconds: int | None = Field(default=None, ge=1, le=31_536_000)

    @field_validator("currency")
    @classmethod
    def _iso_code(cls, value: str) -> str:
        text = value.strip()
        if text.lower() == OFF:
            return OFF
        if len(text) != 3 or not text.isascii() or not text.isalpha():
            raise ValueError('must be an ISO 4217 currency code such as "USD", or "none"')
        return text.upper()

    @property
    def fiat(self) -> str | None:
        """The fiat currency of values (``USD``), or None when valuation is off."""
        return None if self.currency == OFF else self.currency

    @property
    def max_age(self) -> int:
        """``max_age_seconds``, resolved: by default two fetch intervals."""
        return self.max_age_seconds or 2 * self.interval_seconds
