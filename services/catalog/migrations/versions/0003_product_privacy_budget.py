"""products carry the privacy budget their data service last reported (L3)

Revision ID: 0003_product_privacy_budget
Revises: 0002
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_product_privacy_budget"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both back ends (SQLite >= 3.35 drops columns natively): a batch
# copy of `products` would lose the full-text triggers of migration 0002.
def upgrade() -> None:
    op.add_column("products", sa.Column("privacy_budget", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("products", "privacy_budget")
