"""product_versions.public_doc: each published version's public JSON, rendered once

Versions published before this revision keep a null document; the general read path
renders it and stores it on the first public read (services/catalog/published.py).

Revision ID: 0004_version_public_documents
Revises: 0003_product_privacy_budget
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_version_public_documents"
down_revision: str | None = "0003_product_privacy_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("product_versions") as batch:
        batch.add_column(sa.Column("public_doc", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("product_versions") as batch:
        batch.drop_column("public_doc")
