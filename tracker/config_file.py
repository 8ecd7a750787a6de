"""The configuration file as a person keeps it: written once from a starter, edited in place.

A hand-kept TOML file has comments worth keeping, so edits go through tomlkit, which preserves
them, and every edit is checked by loading the result (the same validation as at start-up)
before it replaces the file: an edit can never leave a file the daemon would refuse. The starter
is ``config.example.toml`` itself (shipped in the wheel as ``tracker/starter.toml``), so the
example and what ``tracker init`` writes never drift apart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.config import Settings, load
from tracker.domain import PREFIXES, AddressError, normalize_address
from tracker.errors import ConfigError, NotFound, UsageError

_HERE = Path(__file__).resolve().parent


def starter_text() -> str:
    """The commented example configuration (in the wheel, or beside the package in a checkout)."""
    for candidate in (_HERE / "starter.toml", _HERE.parent / "config.example.toml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ConfigError("the starter configuration is missing from this installation")


def init(path: Path, addresses: Sequence[tuple[str, str | None]], network: str = "mainnet") -> None:
    """Write a new configuration at ``path`` watching ``addresses``; never overwrites a file."""
    import tomlkit

    if path.exists():
        raise UsageError(f"{path} already exists: edit it, or add addresses to it")
    document = tomlkit.parse(starter_text())
    document.pop("addresses", None)
    if network != "mainnet":
        document["spacescan"]["network"] = network
    for address, label in _checked(addresses, PREFIXES.get(network, "xch")):
        _append(document, address, label)
    _replace(path, tomlkit.dumps(document), create=True)


def add_address(path: Path, address: str, label: str | None = None) -> Settings:
    """Add an address to the file (keeping its comments); returns the settings it now holds."""
    import tomlkit

    settings = load(path)
    ((address, label),) = _checked([(address, label)], settings.network_prefix)
    if address in {entry.address for entry in settings.addresses}:
        raise UsageError(f"{path}: {address} is already watched")
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    _append(document, address, label)
    return _replace(path, tomlkit.dumps(document))


def remove_address(path: Path, address_or_label: str) -> tuple[str, Settings]:
    """Remove one address (given as itself or by its unique label); its history stays."""
    import tomlkit

    settings = load(path)
    needle = address_or_label.strip()
    matches = [
        entry.address
        for entry in settings.addresses
        if entry.address == needle.lower() or entry.label == needle
    ]
    if not matches:
        raise NotFound(f"{path}: {needle!r} is not a watched address or label")
    if len(matches) > 1:
        raise UsageError(f"{path}: the label {needle!r} names several addresses: give one")
    document = tomlkit.parse(path.read_text(encoding="utf-8"))
    entries: Any = document["addresses"]
    keep = [e for e in entries if str(e.get("address", "")).strip().lower() != matches[0]]
    entries.clear()
    for entry in keep:
        entries.append(entry)
    if not keep:
        document.pop("addresses")
    return matches[0], _replace(path, tomlkit.dumps(document))


def tell_daemon_to_reload(settings: Settings) -> str:
    """SIGHUP to the daemon of this database when it runs on this host; says what happened."""
    holder = _daemon(settings)
    if holder is None:
        return "no daemon runs on this database here; a daemon reads the file when it starts"
    pid, host = holder
    if host != socket.gethostname():
        return f"the daemon runs on {host} (pid {pid}): reload it there (systemctl reload tracker)"
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        return f"could not signal the daemon (pid {pid}): {exc.strerror}; reload it by hand"
    return f"the daemon (pid {pid}) reloads its address list now"


def _daemon(settings: Settings) -> tuple[int, str] | None:
    """The pid and host of the daemon holding this database's lock, if it says."""
    url = settings.database_url
    if url.startswith("sqlite"):
        from tracker.store.engine import normalize_url, sqlite_memory

        parsed = normalize_url(url)
        if sqlite_memory(parsed) or not parsed.database:
            return None
        lock = Path(parsed.database).with_name(Path(parsed.database).name + ".lock")
        try:
            info: dict[str, Any] = json.loads(lock.read_text())
            return int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    from tracker.store.advisory import running_daemon

    return running_daemon(url)


def _checked(
    addresses: Sequence[tuple[str, str | None]], prefix: str
) -> list[tuple[str, str | None]]:
    result = []
    for address, label in addresses:
        try:
            result.append((normalize_address(address, prefix), label or None))
        except AddressError as exc:
            raise UsageError(f"{address!r} is not a valid Chia address ({exc})") from None
    return result


def _append(document: Any, address: str, label: str | None) -> None:
    import tomlkit

    entry = tomlkit.table()
    entry["address"] = address
    if label:
        entry["label"] = label
    if "addresses" not in document:
        document["addresses"] = tomlkit.aot()
    document["addresses"].append(entry)


def _replace(path: Path, text: str, *, create: bool = False) -> Settings:
    """Check ``text`` as a configuration, then put it in place atomically."""
    directory = path.resolve().parent
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory, text=True)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        try:
            settings = load(temporary)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(temporary), str(path))) from None
        if not create:
            temporary.chmod(path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    settings._path = path
    return settings
