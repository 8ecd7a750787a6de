"""Shared mode: per-address poll leases and the workers' heartbeats.

Created on both databases so the schema stays one, but only used on PostgreSQL, where several
`tracker run` workers may share one address list (tracker/leases.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def UTC() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "poll_leases",
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("claimed_round", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", UTC(), nullable=True),
        sa.Column("expires_at", UTC(), nullable=True),
        sa.Column("polled_at", UTC(), nullable=True),
        sa.Column("polled_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["address_id"],
            ["addresses.id"],
            name=op.f("fk_poll_leases_address_id_addresses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("address_id", name=op.f("pk_poll_leases")),
    )
    op.create_table(
        "poll_workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.Column("seen_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_poll_workers")),
    )


def downgrade() -> None:
    op.drop_table("poll_workers")
    op.drop_table("poll_leases")
