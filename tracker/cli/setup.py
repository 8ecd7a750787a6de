"""Commands that write the configuration file: ``init`` and ``address add/remove/list``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tracker.cli.app import App, cli, columns, fail, format_option, print_rows

ADDRESS_COLUMNS = (("address", "text"), ("label", "text"))


def _config_path(app: App) -> Path:
    import os

    from tracker.config import config_path

    return config_path(app.config, os.environ)


def _parse(entries: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """``ADDRESS`` or ``ADDRESS=LABEL``."""
    result = []
    for entry in entries:
        address, _, label = entry.partition("=")
        result.append((address.strip(), label.strip() or None))
    return result


@cli.command()
@click.argument("addresses", nargs=-1, metavar="[ADDRESS[=LABEL]]...")
@click.option(
    "--network",
    type=click.Choice(("mainnet", "testnet11")),
    default="mainnet",
    show_default=True,
    help="The network of the addresses (xch1… or txch1…).",
)
@click.pass_obj
def init(app: App, addresses: tuple[str, ...], network: str) -> None:
    """Write a first configuration file (the commented example) watching ADDRESSES.

    Without ADDRESSES, on a terminal, it asks for them one per line. The file is ./tracker.toml,
    or --config PATH, or $TRACKER_CONFIG; an existing file is never overwritten.

    \b
    Example:
      tracker init xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8=savings
    """
    from tracker.config_file import init as write

    path = _config_path(app)
    entries = _parse(addresses)
    if not entries and sys.stdin.isatty():
        click.echo("Addresses to watch, one per line as ADDRESS or ADDRESS=LABEL (empty: done)")
        while line := click.prompt("address", default="", show_default=False).strip():
            entries += _parse((line,))
    if not entries:
        fail("give at least one address to watch (tracker init ADDRESS[=LABEL]...)", 2)
    write(path, entries, network)
    click.echo(f"wrote {path} watching {len(entries)} address{'es' * (len(entries) != 1)}")
    click.echo(f"next: tracker --config {path} run")


@cli.group("address")
def address_group() -> None:
    """The watched addresses in the configuration file (comments are kept)."""


@address_group.command("add")
@click.argument("address")
@click.option("-l", "--label", metavar="LABEL", help="A name usable instead of the address.")
@click.pass_obj
def address_add(app: App, address: str, label: str | None) -> None:
    """Add ADDRESS to the configuration, and tell a running daemon to reload.

    \b
    Example:
      tracker address add xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8 -l cold
    """
    from tracker.config_file import add_address, tell_daemon_to_reload

    settings = add_address(_config_path(app), address, label)
    click.echo(f"added {address.strip().lower()} to {settings.path}")
    click.echo(tell_daemon_to_reload(settings))


@address_group.command("remove")
@click.argument("address")
@click.pass_obj
def address_remove(app: App, address: str) -> None:
    """Stop watching ADDRESS (or its unique label); its history stays in the database.

    \b
    Example:
      tracker address remove cold
    """
    from tracker.config_file import remove_address, tell_daemon_to_reload

    removed, settings = remove_address(_config_path(app), address)
    click.echo(f"removed {removed} from {settings.path} (its history stays in the database)")
    click.echo(tell_daemon_to_reload(settings))


@address_group.command("list")
@format_option
@click.pass_obj
def address_list(app: App, fmt: str) -> None:
    """The watched addresses and their labels, as the configuration has them."""
    rows = app.tracker.settings.addresses
    print_rows(rows, columns(*ADDRESS_COLUMNS), columns(*ADDRESS_COLUMNS), fmt, wide=True)
