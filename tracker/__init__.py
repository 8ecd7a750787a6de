"""tracker: an exact, gap-aware history of Chia balances, polled from Spacescan."""

from __future__ import annotations

__version__ = "0.1.0"
