"""The configuration file: loaded, checked completely, and frozen before anything else runs.

A daemon that runs for months should refuse a typo on day one rather than poll the wrong thing
quietly, so unknown keys, wrong types and invalid addresses are all errors, reported on one line
that names the file, the key and the bad value.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from tracker.addresses import AddressError, normalize_address
from tracker.retention import Policy, parse_policy

DEFAULT_CONFIG = "tracker.toml"
CONFIG_ENV = "TRACKER_CONFIG"
DATABASE_URL_ENV = "TRACKER_DATABASE_URL"
API_KEY_ENV = "SPACESCAN_API_KEY"

NETWORKS: dict[str, dict[str, str]] = {
    "mainnet": {
        "prefix": "xch",
        "free": "https://api.spacescan.io",
        "pro": "https://pro-api.spacescan.io",
    },
    "testnet11": {
        "prefix": "txch",
        "free": "https://api-testnet11.spacescan.io",
        "pro": "https://pro-api-testnet11.spacescan.io",
    },
}

# The free host allows about one request every 20 s; paid plans allow far more, but how much is
# not published, so the keyed default stays modest and users raise it to match their plan.
FREE_REQUESTS_PER_MINUTE = 3.0
KEYED_REQUESTS_PER_MINUTE = 60.0


class ConfigError(Exception):
    """A configuration problem; its message is the one line shown to the user (exit status 2)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatabaseSection(_Section):
    url: str = Field(default="sqlite:///tracker.db", min_length=1)


class SpacescanSection(_Section):
    network: Literal["mainnet", "testnet11"] = "mainnet"
    base_url: str | None = None
    api_key: str | None = Field(default=None, min_length=1)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    requests_per_minute: float | None = Field(default=None, gt=0, le=100_000)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_attempts: int = Field(default=4, ge=1, le=20)
    include_xch: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


class ScheduleSection(_Section):
    interval_seconds: int = Field(default=300, ge=1)


class MetricsSection(_Section):
    """Prometheus /metrics and /healthz; off unless a port is given."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"
    # /healthz fails when no address has had a successful poll for this long (default: three
    # intervals, so one failed poll is not an outage but a dead API or database is).
    stale_after_seconds: int | None = Field(default=None, ge=1)


class NotificationsSection(_Section):
    """A webhook POSTed once per balance change; off unless a URL is given."""

    webhook_url: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=3, ge=1, le=20)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
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


class _File(_Section):
    database: DatabaseSection = DatabaseSection()
    spacescan: SpacescanSection = SpacescanSection()
    schedule: ScheduleSection = ScheduleSection()
    metrics: MetricsSection = MetricsSection()
    notifications: NotificationsSection = NotificationsSection()
    retention: RetentionSection = RetentionSection()
    workers: WorkersSection = WorkersSection()
    addresses: list[AddressEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class WatchedAddress:
    address: str
    label: str | None


@dataclass(frozen=True)
class SpacescanSettings:
    base_url: str
    network: str
    api_key: str | None
    timeout_seconds: float
    requests_per_minute: float
    concurrency: int
    max_attempts: int
    include_xch: bool

    def __repr__(self) -> str:
        # The key must never reach a log line, not even through a repr in a debug message.
        key = "'***'" if self.api_key else "None"
        return (
            f"SpacescanSettings(base_url={self.base_url!r}, network={self.network!r}, "
            f"api_key={key}, requests_per_minute={self.requests_per_minute})"
        )


@dataclass(frozen=True)
class Settings:
    path: Path
    database_url: str
    spacescan: SpacescanSettings
    interval_seconds: int
    addresses: tuple[WatchedAddress, ...]
    metrics: MetricsSection = field(default_factory=MetricsSection)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    workers: WorkersSection = field(default_factory=WorkersSection)

    def __repr__(self) -> str:
        # Neither the database password nor a webhook's token may reach a log line.
        try:
            url = make_url(self.database_url).render_as_string(hide_password=True)
        except (ArgumentError, ValueError):
            url = "<database URL>"
        return (
            f"Settings(path={str(self.path)!r}, database_url={url!r}, spacescan={self.spacescan!r},"
            f" interval_seconds={self.interval_seconds}, addresses={len(self.addresses)})"
        )

    @property
    def stale_after_seconds(self) -> int:
        return self.metrics.stale_after_seconds or 3 * self.interval_seconds

    @property
    def retention_policy(self) -> Policy | None:
        """The ``[retention] keep`` policy (already checked at load), or None when unset."""
        return parse_policy(self.retention.keep) if self.retention.keep is not None else None


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config`` wins, then ``$TRACKER_CONFIG``, then ``./tracker.toml``."""
    return Path(explicit or env.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the whole file; raises :class:`ConfigError` with a one-line message."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (give --config PATH or set {CONFIG_ENV})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {_one_line(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
    return parse(raw, path, env)


def parse(raw: Mapping[str, Any], path: Path, env: Mapping[str, str]) -> Settings:
    try:
        data = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None

    network = NETWORKS[data.spacescan.network]
    addresses = _check_addresses(data.addresses, network["prefix"], path)

    api_key = env.get(API_KEY_ENV) or data.spacescan.api_key
    base_url = data.spacescan.base_url or network["pro" if api_key else "free"]
    rpm = data.spacescan.requests_per_minute or (
        KEYED_REQUESTS_PER_MINUTE if api_key else FREE_REQUESTS_PER_MINUTE
    )
    database_url = env.get(DATABASE_URL_ENV) or data.database.url
    _check_database_url(
        database_url, DATABASE_URL_ENV if env.get(DATABASE_URL_ENV) else f"{path}: database.url"
    )
    if data.workers.mode == "shared" and make_url(database_url).get_backend_name() != "postgresql":
        where = DATABASE_URL_ENV if env.get(DATABASE_URL_ENV) else "database.url"
        raise ConfigError(
            f"{path}: workers.mode: 'shared' needs PostgreSQL, but {where} is a SQLite database "
            "(SQLite allows one daemon per database: use mode = 'single')"
        )
    return Settings(
        path=path,
        database_url=database_url,
        spacescan=SpacescanSettings(
            base_url=base_url,
            network=data.spacescan.network,
            api_key=api_key,
            timeout_seconds=data.spacescan.timeout_seconds,
            requests_per_minute=rpm,
            concurrency=data.spacescan.concurrency,
            max_attempts=data.spacescan.max_attempts,
            include_xch=data.spacescan.include_xch,
        ),
        interval_seconds=data.schedule.interval_seconds,
        addresses=addresses,
        metrics=data.metrics,
        notifications=data.notifications,
        retention=data.retention,
        workers=data.workers,
    )


def _check_addresses(
    entries: list[AddressEntry], prefix: str, path: Path
) -> tuple[WatchedAddress, ...]:
    seen: dict[str, int] = {}
    result = []
    for index, entry in enumerate(entries):
        key = f"addresses[{index}].address"
        try:
            address = normalize_address(entry.address, prefix)
        except AddressError as exc:
            raise ConfigError(
                f"{path}: {key}: {entry.address!r} is not a valid Chia address ({exc})"
            ) from None
        if address in seen:
            raise ConfigError(
                f"{path}: {key}: {entry.address!r} is a duplicate of addresses[{seen[address]}]"
            )
        seen[address] = index
        result.append(WatchedAddress(address=address, label=entry.label))
    return tuple(result)


def _check_database_url(url: str, where: str) -> None:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"{where}: {_short(url)}: not a database URL (expected e.g. sqlite:///tracker.db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"{where}: {shown!r}: only sqlite and postgresql databases are supported")


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    key = _dotted(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        text = f"{key}: unknown key (check the spelling)"
    elif first["type"] == "missing":
        text = f"{key}: required key is missing"
    else:
        shown = "(hidden)" if "api_key" in first["loc"] else _short(first.get("input"))
        text = f"{key}: {message}, got {shown}"
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


# The password of anything shaped like user:password@host, hidden before a value is echoed.
_CREDENTIALS = re.compile(r"(?<=:)[^@\s'\"]*(?=@)")


def _redact(value: object) -> object:
    """The value with everything under an ``api_key`` key hidden (e.g. a [[spacescan]] typo)."""
    if isinstance(value, Mapping):
        return {k: "(hidden)" if k == "api_key" else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _short(value: object) -> str:
    text = _CREDENTIALS.sub("***", repr(_redact(value)))
    return text if len(text) <= 80 else text[:77] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
