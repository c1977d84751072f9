"""entitlement billing: changes from orders (renewal, grace, hold for non-payment, refunds)

Revision ID: 0003_entitlement_billing
Revises: 0002
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0003_entitlement_billing"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entitlements") as batch:
        batch.add_column(sa.Column("billing_suspended", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("spend_cap", sa.JSON(), nullable=True))
    op.create_table(
        "entitlement_changes",
        sa.Column("change_id", sa.String(64), nullable=False),
        sa.Column("entitlement_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("change_id", name="pk_entitlement_changes"),
    )
    op.create_index("ix_entitlement_changes_entitlement_id", "entitlement_changes", ["entitlement_id"])


def downgrade() -> None:
    op.drop_index("ix_entitlement_changes_entitlement_id", table_name="entitlement_changes")
    op.drop_table("entitlement_changes")
    with op.batch_alter_table("entitlements") as batch:
        batch.drop_column("spend_cap")
        batch.drop_column("billing_suspended")
