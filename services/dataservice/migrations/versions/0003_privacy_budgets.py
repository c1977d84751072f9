"""differential privacy: product budgets per release period, charges, bounded copies;
the differencing history goes (DP makes it unnecessary)

Revision ID: 0003_privacy_budgets
Revises: 0002
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0003_privacy_budgets"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_query_history_recent", table_name="query_history")
    op.drop_table("query_history")
    op.create_table(
        "privacy_budgets",
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("epsilon_total_micro", sa.BigInteger(), nullable=False),
        sa.Column("epsilon_spent_micro", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("delta_total_pico", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("delta_spent_pico", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("answers", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("renews_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "period", name="pk_privacy_budgets"),
    )
    op.create_table(
        "privacy_charges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("catalog_product_id", sa.String(64), nullable=False),
        sa.Column("entitlement_id", sa.String(64), nullable=False),
        sa.Column("organisation_id", sa.String(64)),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("epsilon_micro", sa.BigInteger(), nullable=False),
        sa.Column("delta_pico", sa.BigInteger(), nullable=False),
        sa.Column("usage_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_charges"),
    )
    op.create_index("ix_privacy_charges_product_period", "privacy_charges",
                    ["product_id", "period", "id"])
    op.create_table(
        "dp_releases",
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(63), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("built_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "period", name="pk_dp_releases"),
    )


def downgrade() -> None:
    # The bounded copies are tables the service created at run time; they go with it.
    for (name,) in op.get_bind().execute(sa.text("SELECT table_name FROM dp_releases")).all():
        op.drop_table(name)
    op.drop_table("dp_releases")
    op.drop_index("ix_privacy_charges_product_period", table_name="privacy_charges")
    op.drop_table("privacy_charges")
    op.drop_table("privacy_budgets")
    op.create_table(
        "query_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("entitlement_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("where_fingerprint", sa.String(64), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_query_history"),
        sa.UniqueConstraint("entitlement_id", "product_id", "where_fingerprint",
                            name="uq_query_history_entitlement_id"),
    )
    op.create_index("ix_query_history_recent", "query_history", ["entitlement_id", "product_id", "id"])
