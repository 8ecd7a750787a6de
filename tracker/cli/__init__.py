"""The ``tracker`` command: parses arguments, calls :class:`tracker.Tracker`, prints."""

from __future__ import annotations

from collections.abc import Sequence

from tracker.cli import daemon, prices, reading, schema, setup  # noqa: F401  (each registers its commands)
from tracker.cli.app import cli


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; ``SystemExit`` carries the exit status."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="tracker")


__all__ = ["cli", "main"]
