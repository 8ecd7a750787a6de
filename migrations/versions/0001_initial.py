"""The first schema: addresses, assets, snapshots, balances, deltas, poll attempts, two views.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tracker.store.frozen import balance_changes_v1, balance_history_v1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def UTC() -> sa.DateTime:
    """Times are timestamptz on PostgreSQL and UTC text on SQLite (see store.models)."""
    return sa.DateTime(timezone=True)


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
    dialect = op.get_bind().dialect.name
    op.execute(balance_history_v1(dialect))
    op.execute(balance_changes_v1(dialect))


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
