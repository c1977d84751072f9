"""entitlements, revocation feed and usage records

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

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "entitlements",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("buyer_org", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("plan_kind", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(500), nullable=False),
        sa.Column("grade", sa.String(32), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_until", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text()),
        sa.Column("product_suspended", sa.Boolean(), nullable=False),
        sa.Column("org_suspended", sa.Boolean(), nullable=False),
        sa.Column("query_quota", sa.Integer()),
        sa.Column("queries_used", sa.Integer(), nullable=False),
        sa.Column("epsilon_budget", sa.Float()),
        sa.Column("epsilon_used", sa.Float(), nullable=False),
        sa.Column("max_rows", sa.Integer()),
        sa.Column("min_group_size", sa.Integer()),
        sa.Column("usage_policy", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_entitlements"),
        sa.UniqueConstraint("order_id", name="uq_entitlements_order_id"),
    )
    op.create_index("ix_entitlements_buyer_created", "entitlements", ["buyer_org", "created_at"])
    op.create_index("ix_entitlements_provider_created", "entitlements", ["provider_org", "created_at"])
    op.create_index("ix_entitlements_product", "entitlements", ["product_id"])
    op.create_index("ix_entitlements_org_suspended", "entitlements", ["org_suspended"])
    op.create_table(
        "revocations",
        sa.Column("id", _BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("entitlement_id", sa.String(40)),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revocations"),
    )
    op.create_index("ix_revocations_subject", "revocations", ["subject_id"])
    op.create_table(
        "usage_records",
        sa.Column("seq", _BIGINT_ID, nullable=False, autoincrement=True),
        sa.Column("usage_id", sa.String(64), nullable=False),
        sa.Column("entitlement_id", sa.String(40), nullable=False),
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("plan_kind", sa.String(16), nullable=False),
        sa.Column("buyer_org", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(40), nullable=False),
        sa.Column("query_number", sa.Integer(), nullable=False),
        sa.Column("rows_returned", sa.Integer(), nullable=False),
        sa.Column("suppressed_groups", sa.Integer(), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("reported_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_usage_records"),
        sa.UniqueConstraint("usage_id", name="uq_usage_records_usage_id"),
    )
    op.create_index("ix_usage_records_entitlement", "usage_records", ["entitlement_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_usage_records_entitlement", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index("ix_revocations_subject", table_name="revocations")
    op.drop_table("revocations")
    op.drop_index("ix_entitlements_org_suspended", table_name="entitlements")
    op.drop_index("ix_entitlements_product", table_name="entitlements")
    op.drop_index("ix_entitlements_provider_created", table_name="entitlements")
    op.drop_index("ix_entitlements_buyer_created", table_name="entitlements")
    op.drop_table("entitlements")
