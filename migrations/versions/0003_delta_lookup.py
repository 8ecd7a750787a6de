"""Deltas carry their address and time, indexed, so reports find them without the snapshots.

A report over a window needs the deltas of an address between two moments. Through the
snapshots, that walks every snapshot of the address in the window (8,760 a year when polled
hourly, nearly all unchanged) to find the few that have deltas; with ``(address_id, taken_at)``
on the deltas themselves it is one index range scan over the changes alone. The index also holds
``asset_id`` and ``delta_mojos``, all a report sums, so the scan never visits the table itself
(an index-only scan). Both columns are copies of the snapshot's, written in the same
transaction, and never change.

SQLite changes columns by rebuilding the table (Alembic's batch mode), which a view naming the
table would block, so ``balance_changes`` is dropped and created again around it, unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tracker.store.frozen import balance_changes_v1

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def UTC() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def create_balance_changes() -> None:
    """``balance_changes`` exactly as 0001 created it."""
    op.execute(balance_changes_v1(op.get_bind().dialect.name))


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW balance_changes")
    with op.batch_alter_table("deltas") as batch:
        batch.add_column(sa.Column("address_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("taken_at", UTC(), nullable=True))
    if sqlite:
        op.execute(
            "UPDATE deltas SET"
            " address_id = (SELECT s.address_id FROM snapshots s WHERE s.id = deltas.snapshot_id),"
            " taken_at = (SELECT s.taken_at FROM snapshots s WHERE s.id = deltas.snapshot_id)"
        )
    else:
        op.execute(
            "UPDATE deltas d SET address_id = s.address_id, taken_at = s.taken_at"
            " FROM snapshots s WHERE s.id = d.snapshot_id"
        )
    with op.batch_alter_table("deltas") as batch:
        batch.alter_column("address_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("taken_at", existing_type=UTC(), nullable=False)
        batch.create_foreign_key(
            op.f("fk_deltas_address_id_addresses"), "addresses", ["address_id"], ["id"]
        )
    op.create_index(
        op.f("ix_deltas_address_id_taken_at_asset_id_delta_mojos"),
        "deltas",
        ["address_id", "taken_at", "asset_id", "delta_mojos"],
    )
    if sqlite:
        create_balance_changes()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW balance_changes")
    op.drop_index(op.f("ix_deltas_address_id_taken_at_asset_id_delta_mojos"), table_name="deltas")
    with op.batch_alter_table("deltas") as batch:
        batch.drop_constraint(op.f("fk_deltas_address_id_addresses"), type_="foreignkey")
        batch.drop_column("taken_at")
        batch.drop_column("address_id")
    if sqlite:
        create_balance_changes()
