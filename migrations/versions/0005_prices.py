"""Prices: observed prices, the valuation settings of the view, and the view ``balance_values``.

``prices`` holds every price tracker observed: a CAT's in XCH (``quote = 'xch'``) and XCH's in a
fiat currency (``quote`` its ISO code), exact (NUMERIC on PostgreSQL, the digits as text on
SQLite), with when it was observed and where it came from. ``price_settings`` is one row: the
currency and maximum price age of the last writer, which the view values with.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tracker.store.frozen import balance_values_v1

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def UTC() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("quote", sa.String(8), nullable=False),
        sa.Column("price", sa.Text() if dialect == "sqlite" else sa.Numeric(), nullable=False),
        sa.Column("observed_at", UTC(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_prices_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prices")),
        sa.UniqueConstraint(
            "asset_id", "quote", "observed_at", name=op.f("uq_prices_asset_id_quote_observed_at")
        ),
    )
    settings = op.create_table(
        "price_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("max_age_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_settings")),
    )
    # The configuration's defaults, until a writer records its own.
    op.bulk_insert(settings, [{"id": 1, "currency": "USD", "max_age_seconds": 7200}])
    op.execute(balance_values_v1(dialect))


def downgrade() -> None:
    op.execute("DROP VIEW balance_values")
    op.drop_table("price_settings")
    op.drop_table("prices")
