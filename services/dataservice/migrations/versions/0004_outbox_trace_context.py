"""outbox.trace_context: the W3C trace headers of the span that wrote each message

Revision ID: 0004_outbox_trace_context
Revises: 0003_privacy_budgets
Create Date: 2026-11-29
"""
from collections.abc import Sequence

from shared.migration_ops import add_outbox_trace_context, drop_outbox_trace_context

revision: str = "0004_outbox_trace_context"
down_revision: str | None = "0003_privacy_budgets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_outbox_trace_context()


def downgrade() -> None:
    drop_outbox_trace_context()
