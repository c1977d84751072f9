"""api_clients.previous_secret_hash/_expires_at: the secret a self-service rotation replaced,
valid until the time the client chose (two valid secrets during the overlap, never more)

Revision ID: 0006_client_previous_secret
Revises: 0005_outbox_dead_letter
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0006_client_previous_secret"
down_revision: str | None = "0005_outbox_dead_letter"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("previous_secret_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("previous_secret_expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret_hash")
