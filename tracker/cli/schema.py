"""``tracker db``: the schema's revisions (owned by Alembic migrations)."""

from __future__ import annotations

import click

from tracker.cli.app import App, cli, confirm, yes_option


@cli.group("db")
def db_group() -> None:
    """Database schema commands (the schema is owned by Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def db_upgrade(app: App, revision: str) -> None:
    """Create or upgrade the schema. `run` and `poll` do this on their own.

    \b
    Example:
      tracker db upgrade
    """
    click.echo(f"database at revision {app.reader.upgrade(revision)}")


@db_group.command("downgrade")
@click.argument("revision")
@yes_option
@click.pass_obj
def db_downgrade(app: App, revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION: what later revisions hold is dropped (`base` drops
    every table, the whole history). Asks first; without a terminal, only with --yes.

    \b
    Example:
      tracker db downgrade 0002 --yes
    """
    confirm(f"downgrade {app.reader.database.masked_url} to {revision}", yes)
    click.echo(f"database at revision {app.reader.downgrade(revision) or 'base'}")


@db_group.command("current")
@click.pass_obj
def db_current(app: App) -> None:
    """Show the schema revision of the database and the newest this tracker knows."""
    current, head = app.reader.revisions()
    click.echo(f"database: {current or 'empty'}")
    click.echo(f"newest:   {head}")
