"""SQL that migrations have applied: the views, written once, never edited.

A migration that ran must produce the same schema forever, so the migrations import nothing from
the live code but this module, and nothing here changes once a migration uses it: a new version
of a view is a new function, used by a new migration. The views' column meanings are the stable
interface for SQL users (see the README).
"""

from __future__ import annotations


def token_units(dialect: str, mojos: str, decimals: str) -> str:
    """SQL for an exact amount in token units, the same value on both databases.

    PostgreSQL gets a NUMERIC with exactly ``decimals`` digits after the point. SQLite has no
    decimal type and would turn a division into a float, so it gets the same digits as text.
    """
    if dialect == "postgresql":
        return f"round(CAST({mojos} AS NUMERIC) / power(10::numeric, {decimals}), {decimals})"
    padded = f"printf('%0*d', {decimals} + 1, abs({mojos}))"
    return (
        f"(CASE WHEN {mojos} < 0 THEN '-' ELSE '' END"
        f" || substr({padded}, 1, length({padded}) - {decimals})"
        f" || '.' || substr({padded}, -{decimals}))"
    )


def balance_history_v1(dialect: str) -> str:
    """``balance_history``: one row for every asset of every snapshot (revision 0001)."""
    return f"""
        CREATE VIEW balance_history AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.token_id AS token_id,
               a.symbol AS symbol,
               a.name AS name,
               s.taken_at AS taken_at,
               b.balance_mojos AS balance_mojos,
               {token_units(dialect, "b.balance_mojos", "a.decimals")} AS balance
        FROM snapshot_balances b
        JOIN snapshots s ON s.id = b.snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = b.asset_id
        """


def balance_changes_v1(dialect: str) -> str:
    """``balance_changes``: one row per delta (revision 0001)."""
    return f"""
        CREATE VIEW balance_changes AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.symbol AS symbol,
               s.taken_at AS taken_at,
               p.taken_at AS previous_taken_at,
               d.previous_balance_mojos AS previous_balance_mojos,
               d.balance_mojos AS balance_mojos,
               d.delta_mojos AS delta_mojos,
               {token_units(dialect, "d.delta_mojos", "a.decimals")} AS delta
        FROM deltas d
        JOIN snapshots s ON s.id = d.snapshot_id
        JOIN snapshots p ON p.id = d.previous_snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = d.asset_id
        """
