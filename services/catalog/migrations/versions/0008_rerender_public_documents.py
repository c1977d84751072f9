"""Re-render the stored public documents: ``privacy_budget`` moved from the version's members
to the product's state (it changes with every report of the data service, while a published
version never changes), so documents rendered before carry a stale ``privacy_budget: null``.

Clearing them is enough: the general read path renders and stores each again on its first
public read (services/catalog/published.py).

Revision ID: 0008_rerender_public_documents
Revises: 0007_outbox_trace_context
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_rerender_public_documents"
down_revision: str | None = "0007_outbox_trace_context"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE product_versions SET public_doc = NULL"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE product_versions SET public_doc = NULL"))
