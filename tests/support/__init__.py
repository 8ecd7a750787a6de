"""Everything tests share: databases, the fake Spacescan, a clock, the real process.

Tests import from here (``from support import make_address``), never from ``conftest``: fixtures
live in ``conftest.py``, helpers here.
"""

from __future__ import annotations

from pathlib import Path

from tracker.domain import encode_bech32m

ROOT = Path(__file__).resolve().parents[2]


def make_address(n: int, prefix: str = "xch") -> str:
    """A valid, distinct Chia address for test number ``n``."""
    return encode_bech32m(prefix, n.to_bytes(32, "big"))


def make_asset(n: int) -> str:
    """A distinct 64-hex CAT asset id."""
    return f"{n:064x}"
