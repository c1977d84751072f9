"""usage counters and query history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entitlement_usage",
        sa.Column("entitlement_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("queries_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("epsilon_used_micro", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_returned", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("entitlement_id", name="pk_entitlement_usage"),
    )
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


def downgrade() -> None:
    op.drop_index("ix_query_history_recent", table_name="query_history")
    op.drop_table("query_history")
    op.drop_table("entitlement_usage")
