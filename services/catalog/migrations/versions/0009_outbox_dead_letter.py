"""outbox.dead_at: messages a receiver refused for good, kept for an operator

Revision ID: 0009_outbox_dead_letter
Revises: 0008_rerender_public_documents
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from shared.migration_ops import add_outbox_dead_letter, drop_outbox_dead_letter

revision: str = "0009_outbox_dead_letter"
down_revision: str | None = "0008_rerender_public_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_dead_letter()


def downgrade() -> None:
    drop_outbox_dead_letter()
