"""refunds: refund rows decided before Stripe, partial refunds, ledger entries per refund

Revision ID: 0003_refunds
Revises: 0002
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0003_refunds"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNIQUE = "uq_ledger_entries_order_id_kind_account"
NEW_UNIQUE = "uq_ledger_entries_order_id_kind_account_ref"


def _sqlite_append_only_triggers(create: bool) -> None:
    """SQLite drops a table's triggers when batch mode rebuilds it: put them back."""
    for verb in ("UPDATE", "DELETE"):
        name = f"ledger_entries_no_{verb.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        if create:
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON ledger_entries "
                       "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END")


def _swap_unique(drop: str, create: str, columns: list[str], *, add_ref: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("ledger_entries", recreate="always" if sqlite else "never") as batch:
        if add_ref:
            batch.add_column(sa.Column("ref", sa.String(40), nullable=False, server_default=""))
        batch.drop_constraint(drop, type_="unique")
        batch.create_unique_constraint(create, columns)
        if not add_ref:
            batch.drop_column("ref")
    if sqlite:
        _sqlite_append_only_triggers(create=True)


def upgrade() -> None:
    op.add_column("orders", sa.Column("refunded_amount", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("order_status_before", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("stripe_refund_id", sa.String(64), nullable=True),
        sa.Column("stripe_attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refunds"),
    )
    op.create_index("ix_refunds_order_id", "refunds", ["order_id"])
    op.create_index("ix_refunds_status_claimed", "refunds", ["status", "claimed_until"])
    _swap_unique(OLD_UNIQUE, NEW_UNIQUE, ["order_id", "kind", "account", "ref"], add_ref=True)


def downgrade() -> None:
    _swap_unique(NEW_UNIQUE, OLD_UNIQUE, ["order_id", "kind", "account"], add_ref=False)
    op.drop_index("ix_refunds_status_claimed", table_name="refunds")
    op.drop_index("ix_refunds_order_id", table_name="refunds")
    op.drop_table("refunds")
    op.drop_column("orders", "refunded_amount")
