"""Reading the configuration file, and the one part of it every command needs: the database.

The full configuration is checked by one pydantic model (:mod:`tracker.config`) before anything
that uses it runs. A read-only command (balances, report, export…) uses only where the history
is, so it reads only that, checked by the same rule, and starts without importing pydantic:
``tracker balances`` should answer at once.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker.errors import ConfigError
from tracker.redact import Redactor, mask_url, url_secrets

DEFAULT_CONFIG = "tracker.toml"
CONFIG_ENV = "TRACKER_CONFIG"
DATABASE_URL_ENV = "TRACKER_DATABASE_URL"
API_KEY_ENV = "SPACESCAN_API_KEY"
DEFAULT_DATABASE_URL = "sqlite:///tracker.db"


@dataclass(frozen=True)
class Database:
    """Where the history is: all a read-only command needs of the configuration."""

    url: str
    path: Path

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def redactor(self) -> Redactor:
        return Redactor(url_secrets(self.url))


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--config`` wins, then ``$TRACKER_CONFIG``, then ``./tracker.toml``."""
    return Path(explicit or env.get(CONFIG_ENV) or DEFAULT_CONFIG)


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML; every way it can fail is one ``ConfigError`` line naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
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


def load_database(path: Path, env: Mapping[str, str] | None = None) -> Database:
    """Only the database's URL (``TRACKER_DATABASE_URL`` wins), checked as the full load does."""
    env = os.environ if env is None else env
    if env.get(DATABASE_URL_ENV):
        url, where = env[DATABASE_URL_ENV], DATABASE_URL_ENV
    else:
        section = read_toml(path).get("database", {})
        where = f"{path}: database.url"
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: database: expected a table, got {type(section).__name__}")
        url = section.get("url", DEFAULT_DATABASE_URL)
        if not isinstance(url, str):
            raise ConfigError(f"{where}: Input should be a valid string, got (hidden)")
    try:
        check_database_url(url)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}, got {mask_url(url)!r}") from None
    return Database(url, path)


def check_database_url(url: str) -> None:
    """Only what tracker can open: SQLite (pysqlite) and PostgreSQL through psycopg 3."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError("not a database URL (expected e.g. sqlite:///tracker.db)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError("only sqlite and postgresql databases are supported")
    if driver and driver not in ("psycopg", "pysqlite"):
        use = "postgresql:// (psycopg 3)" if backend != "sqlite" else "sqlite:///FILE"
        raise ValueError(f"the {driver} driver is not supported: use {use}")
    for name, value in parsed.query.items():
        if name in ("timeout", "connect_timeout", "statement_timeout"):
            text = value if isinstance(value, str) else ",".join(value)
            try:
                number = float(text)
            except ValueError:
                number = -1.0
            if not 0 <= number < 1e9:
                raise ValueError(f"query parameter {name}={text!r} must be a number of seconds")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
