"""The configuration file: loaded, checked completely, and frozen before anything else runs.

A daemon that runs for months should refuse a typo on day one rather than poll the wrong thing
quietly, so unknown keys, wrong types and invalid addresses are all errors, reported on one line
that names the file, the key and the bad value. One pydantic model is the whole configuration;
secrets (the API key, URLs that may carry a password or a token) are ``SecretStr``, so no repr or
log line can show them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from tracker.config_prices import PricesSection
from tracker.config_read import (
    API_KEY_ENV,
    DATABASE_URL_ENV,
    DEFAULT_CONFIG,
    Database,
    check_database_url,
    config_path,
    read_toml,
)
from tracker.domain import PREFIXES, AddressError, WatchedAddress, normalize_address
from tracker.errors import ConfigError
from tracker.redact import Redactor, mask_url, url_secrets
from tracker.retention.policy import Policy, parse_policy

HOSTS: dict[str, dict[str, str]] = {
    "mainnet": {"free": "https://api.spacescan.io", "pro": "https://pro-api.spacescan.io"},
    "testnet11": {
        "free": "https://api-testnet11.spacescan.io",
        "pro": "https://pro-api-testnet11.spacescan.io",
    },
}
# The free host allows about one request every 20 s; paid plans allow far more, but how much is
# not published, so the keyed default stays modest and users raise it to match their plan.
FREE_REQUESTS_PER_MINUTE = 3.0
AUTO_CONCURRENCY = 64
MAX_CONCURRENCY = 256
KEYED_REQUESTS_PER_MINUTE = 60.0
_SECRET_KEYS = {"api_key", "url", "webhook_url", "token"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/") if value else value


class DatabaseSection(_Section):
    url: SecretStr = SecretStr("sqlite:///tracker.db")

    @field_validator("url")
    @classmethod
    def _supported(cls, value: SecretStr) -> SecretStr:
        check_database_url(value.get_secret_value())
        return value


class SpacescanSection(_Section):
    network: Literal["mainnet", "testnet11"] = "mainnet"
    base_url: str = ""  # resolved from network and api_key when not given
    api_key: SecretStr | None = Field(default=None, min_length=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    requests_per_minute: float = Field(default=0.0, gt=0, le=100_000)  # resolved when not given
    # "auto": as many requests in flight as the budget's pace needs (up to AUTO_CONCURRENCY);
    # a number caps it.
    concurrency: int | Literal["auto"] = "auto"
    max_attempts: int = Field(default=4, ge=1, le=20)
    include_xch: bool = True
    include_dust: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        network = data.get("network", "mainnet")
        # A network of the wrong type (a list) is reported by the field's own check.
        hosts = (
            HOSTS.get(network, HOSTS["mainnet"]) if isinstance(network, str) else HOSTS["mainnet"]
        )
        keyed = bool(data.get("api_key"))
        resolved = dict(data)
        # Only a key that is not given is resolved: a given one, even 0, false or "", is
        # checked like any value (a typo must not quietly become the default).
        if resolved.get("base_url") is None:
            resolved["base_url"] = hosts["pro" if keyed else "free"]
        if resolved.get("requests_per_minute") is None:
            resolved["requests_per_minute"] = (
                KEYED_REQUESTS_PER_MINUTE if keyed else FREE_REQUESTS_PER_MINUTE
            )
        return resolved

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value) or ""

    @field_validator("concurrency", mode="plain")
    @classmethod
    def _cap(cls, value: object) -> int | str:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value == "auto" or (whole and 1 <= value <= MAX_CONCURRENCY):  # type: ignore[operator]
            return value  # type: ignore[return-value]
        raise ValueError(f'must be "auto" or a whole number from 1 to {MAX_CONCURRENCY}')

    @property
    def concurrency_cap(self) -> int:
        """The most requests in flight at once (the limit itself follows the budget's pace)."""
        return AUTO_CONCURRENCY if self.concurrency == "auto" else int(self.concurrency)

    @property
    def key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None


class ScheduleSection(_Section):
    interval_seconds: int = Field(default=300, ge=1, le=31_536_000)


class MetricsSection(_Section):
    """Prometheus /metrics and /healthz; off unless a port is given."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"
    # /healthz fails when an address has had no successful poll for this long (default: three
    # intervals, so one failed poll is not an outage but a dead API or database is).
    stale_after_seconds: int | None = Field(default=None, ge=1)


class NotificationsSection(_Section):
    """A webhook POSTed once per balance change; off unless a URL is given."""

    webhook_url: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=3, ge=1, le=20)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _http_url(value.get_secret_value())
        return value


class RetentionSection(_Section):
    """Thinning of old snapshots, applied by the daemon once a day; off unless ``keep`` is set."""

    keep: str | None = None

    @field_validator("keep")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        if value is not None:
            parse_policy(value)  # a PolicyError is a ValueError: one line naming the bad part
        return value


class WorkersSection(_Section):
    """One daemon per database (single), or several sharing the address list (shared).

    Shared mode needs PostgreSQL: SQLite allows one writer process, so one daemon, per file.
    ``budget``: whether ``spacescan.requests_per_minute`` is split between the live workers (one
    API key or one IP for all of them) or allowed to each worker (a key or an IP per worker).
    """

    mode: Literal["single", "shared"] = "single"
    budget: Literal["split", "each"] = "split"


class AddressEntry(_Section):
    address: str
    label: str | None = Field(default=None, max_length=200)


class Settings(_Section):
    """The whole configuration, checked; ``path`` is the file it came from."""

    database: DatabaseSection = DatabaseSection()
    spacescan: SpacescanSection = SpacescanSection()
    schedule: ScheduleSection = ScheduleSection()
    metrics: MetricsSection = MetricsSection()
    notifications: NotificationsSection = NotificationsSection()
    retention: RetentionSection = RetentionSection()
    workers: WorkersSection = WorkersSection()
    prices: PricesSection = PricesSection()
    addresses: tuple[AddressEntry, ...] = Field(default=(), strict=False)

    _path: Path = PrivateAttr(default=Path(DEFAULT_CONFIG))

    @property
    def path(self) -> Path:
        return self._path

    @property
    def database_url(self) -> str:
        return self.database.url.get_secret_value()

    @property
    def masked_database_url(self) -> str:
        return mask_url(self.database_url)

    @property
    def location(self) -> Database:
        return Database(self.database_url, self.path)

    @property
    def watched(self) -> tuple[WatchedAddress, ...]:
        return tuple(WatchedAddress(entry.address, entry.label) for entry in self.addresses)

    @property
    def interval_seconds(self) -> int:
        return self.schedule.interval_seconds

    @property
    def stale_after_seconds(self) -> int:
        return self.metrics.stale_after_seconds or 3 * self.interval_seconds

    @property
    def retention_policy(self) -> Policy | None:
        """The ``[retention] keep`` policy (already checked at load), or None when unset."""
        return parse_policy(self.retention.keep) if self.retention.keep is not None else None

    @property
    def network_prefix(self) -> str:
        return PREFIXES[self.spacescan.network]

    def redactor(self) -> Redactor:
        """Masks every secret of this configuration in any text."""
        secrets: list[str | None] = [self.spacescan.key]
        secrets.extend(url_secrets(self.database_url))
        if self.notifications.webhook_url is not None:
            secrets.extend(url_secrets(self.notifications.webhook_url.get_secret_value()))
        return Redactor(secrets)


def load(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the whole file; raises :class:`ConfigError` with a one-line message."""
    env = os.environ if env is None else env
    return parse(read_toml(path), path, env)


def parse(raw: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Settings:
    """Check a parsed file (with the environment's overrides) into :class:`Settings`."""
    data = _with_environment(raw, env)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        where = DATABASE_URL_ENV if env.get(DATABASE_URL_ENV) else None
        raise ConfigError(_describe(exc, path, where)) from None
    addresses = _check_addresses(settings.addresses, settings.network_prefix, path)
    if settings.workers.mode == "shared" and not settings.database_url.startswith("postgres"):
        where = DATABASE_URL_ENV if env.get(DATABASE_URL_ENV) else "database.url"
        raise ConfigError(
            f"{path}: workers.mode: 'shared' needs PostgreSQL, but {where} is a SQLite database "
            "(SQLite allows one daemon per database: use mode = 'single')"
        )
    settings = settings.model_copy(update={"addresses": addresses})
    settings._path = path
    return settings


def _with_environment(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The file's values with ``TRACKER_DATABASE_URL`` and ``SPACESCAN_API_KEY`` applied."""
    data = dict(raw)
    for variable, section, key in (
        (DATABASE_URL_ENV, "database", "url"),
        (API_KEY_ENV, "spacescan", "api_key"),
    ):
        if env.get(variable):
            table = data.get(section, {})
            if isinstance(table, dict):
                data[section] = {**table, key: env[variable]}
    return data


def _check_addresses(
    entries: tuple[AddressEntry, ...], prefix: str, path: Path
) -> tuple[AddressEntry, ...]:
    seen: dict[str, int] = {}
    result = []
    for index, entry in enumerate(entries):
        key = f"addresses[{index}].address"
        try:
            address = normalize_address(entry.address, prefix)
        except AddressError as exc:
            raise ConfigError(
                f"{path}: {key}: {_short(entry.address)} is not a valid Chia address ({exc})"
            ) from None
        if address in seen:
            first = f"addresses[{seen[address]}]"
            raise ConfigError(f"{path}: {key}: {_short(entry.address)} is a duplicate of {first}")
        seen[address] = index
        result.append(AddressEntry(address=address, label=entry.label))
    return tuple(result)


def _describe(exc: ValidationError, path: Path, database_env: str | None) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    key = _dotted(loc)
    message = first["msg"].removeprefix("Value error, ")
    where = f"{path}: {key}"
    if database_env and loc[:2] == ("database", "url"):
        where = database_env
    if first["type"] == "extra_forbidden":
        text = f"{where}: unknown key (check the spelling)"
    elif first["type"] == "missing":
        text = f"{where}: required key is missing"
    else:
        secret = any(part in _SECRET_KEYS for part in loc if isinstance(part, str))
        shown = "(hidden)" if secret else _short(_redact(first.get("input")))
        if secret and loc[-1] in ("url", "webhook_url") and isinstance(first.get("input"), str):
            shown = repr(mask_url(first["input"]))
        text = f"{where}: {message}, got {shown}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # A quoted TOML key may be empty or hold a newline; repr keeps the message on one line.
        name = part if part and part.isprintable() else repr(part)
        out += f".{name}" if out else name
    return out or "(top level)"


def _redact(value: object) -> object:
    """The value with everything under a secret key hidden (e.g. a [[spacescan]] typo)."""
    if isinstance(value, Mapping):
        return {k: "(hidden)" if k in _SECRET_KEYS else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["Database", "Settings", "config_path", "load", "parse"]
