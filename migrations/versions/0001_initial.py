"""The first schema: addresses, assets, snapshots, balances, deltas, poll attempts, two views.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tracker.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = tracker.models.UTCDateTime


def token_units(mojos: str, decimals: str) -> str:
    """SQL for an exact decimal amount in token units, the same value on both databases.

    PostgreSQL gets a NUMERIC with exactly ``decimals`` digits after the point. SQLite has no
    decimal type and would turn a division into a float, so it gets the same digits as text.
    """
    if op.get_bind().dialect.name == "postgresql":
        return f"round(CAST({mojos} AS NUMERIC) / power(10::numeric, {decimals}), {decimals})"
    padded = f"printf('%0*d', {decimals} + 1, abs({mojos}))"
    return (
        f"(CASE WHEN {mojos} < 0 THEN '-' ELSE '' END"
        f" || substr({padded}, 1, length({padded}) - {decimals})"
        f" || '.' || substr({padded}, -{decimals}))"
    )


def upgrade() -> None:
    op.create_table(
        "addresses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("added_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_addresses_address")),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(100), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("symbol", sa.String(200), nullable=True),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("asset_id", name=op.f("uq_assets_asset_id")),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"], name=op.f("fk_snapshots_address_id_addresses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint(
            "address_id", "taken_at", name=op.f("uq_snapshots_address_id_taken_at")
        ),
    )
    op.create_table(
        "snapshot_balances",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("balance_mojos", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_snapshot_balances_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshot_balances_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "asset_id", name=op.f("pk_snapshot_balances")),
    )
    op.create_table(
        "deltas",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("previous_snapshot_id", sa.Integer(), nullable=False),
        sa.Column("previous_balance_mojos", sa.BigInteger(), nullable=False),
        sa.Column("balance_mojos", sa.BigInteger(), nullable=False),
        sa.Column("delta_mojos", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_deltas_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(
            ["previous_snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_deltas_previous_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_deltas_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "asset_id", name=op.f("pk_deltas")),
    )
    op.create_index(op.f("ix_deltas_asset_id"), "deltas", ["asset_id"])
    op.create_table(
        "poll_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.Column("finished_at", UTC(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"], name=op.f("fk_poll_attempts_address_id_addresses")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_poll_attempts_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_attempts")),
    )
    op.create_index(
        op.f("ix_poll_attempts_address_id_started_at"),
        "poll_attempts",
        ["address_id", "started_at"],
    )
    op.execute(
        f"""
        CREATE VIEW balance_history AS
        SELECT ad.address AS address,
               ad.label AS label,
               a.asset_id AS asset_id,
               a.token_id AS token_id,
               a.symbol AS symbol,
               a.name AS name,
               s.taken_at AS taken_at,
               b.balance_mojos AS balance_mojos,
               {token_units("b.balance_mojos", "a.decimals")} AS balance
        FROM snapshot_balances b
        JOIN snapshots s ON s.id = b.snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = b.asset_id
        """
    )
    op.execute(
        f"""
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
               {token_units("d.delta_mojos", "a.decimals")} AS delta
        FROM deltas d
        JOIN snapshots s ON s.id = d.snapshot_id
        JOIN snapshots p ON p.id = d.previous_snapshot_id
        JOIN addresses ad ON ad.id = s.address_id
        JOIN assets a ON a.id = d.asset_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW balance_changes")
    op.execute("DROP VIEW balance_history")
    op.drop_index(op.f("ix_poll_attempts_address_id_started_at"), table_name="poll_attempts")
    op.drop_table("poll_attempts")
    op.drop_index(op.f("ix_deltas_asset_id"), table_name="deltas")
    op.drop_table("deltas")
    op.drop_table("snapshot_balances")
    op.drop_table("snapshots")
    op.drop_table("assets")
    op.drop_table("addresses")
