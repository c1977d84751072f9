"""orders: quotes, orders, payment attempts, Stripe events, ledger

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
        "quotes",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("buyer_sub", sa.String(128), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("plan_kind", sa.String(16), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("allowed_purposes", sa.JSON(), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee", sa.BigInteger(), nullable=False),
        sa.Column("provider_share", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("access", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quotes"),
        sa.UniqueConstraint("order_id", name="uq_quotes_order_id"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("buyer_sub", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("plan_kind", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee", sa.BigInteger(), nullable=False),
        sa.Column("provider_share", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("access", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payment_intent_id", sa.String(64), nullable=True),
        sa.Column("client_secret", sa.String(255), nullable=True),
        sa.Column("payment_attempts", sa.Integer(), nullable=False),
        sa.Column("payment_claimed_until", UTCDateTime(), nullable=True),
        sa.Column("last_payment_at", UTCDateTime(), nullable=True),
        sa.Column("last_payment_error", sa.JSON(), nullable=True),
        sa.Column("refund_claimed_until", UTCDateTime(), nullable=True),
        sa.Column("stripe_refund_id", sa.String(64), nullable=True),
        sa.Column("refund_reason", sa.Text(), nullable=True),
        sa.Column("valid_from", UTCDateTime(), nullable=True),
        sa.Column("valid_until", UTCDateTime(), nullable=True),
        sa.Column("entitlement_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("fulfilled_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("refunded_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("buyer_org", "idempotency_key", name="uq_orders_buyer_org_idempotency_key"),
        sa.UniqueConstraint("quote_id", name="uq_orders_quote_id"),
    )
    op.create_index("ix_orders_buyer_org_created", "orders", ["buyer_org", "created_at", "id"])
    op.create_index("ix_orders_provider_org_created", "orders", ["provider_org", "created_at", "id"])
    op.create_index("ix_orders_created", "orders", ["created_at", "id"])
    op.create_index("ix_orders_status_payment_at", "orders", ["status", "last_payment_at"])
    op.create_index("ix_orders_payment_intent_id", "orders", ["payment_intent_id"])
    op.create_table(
        "payment_attempts",
        sa.Column("payment_intent_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("payment_intent_id", name="pk_payment_attempts"),
    )
    op.create_index("ix_payment_attempts_order_id", "payment_attempts", ["order_id"])
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payment_intent_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stripe_events"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("account", sa.String(16), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("order_id", "kind", "account", name="uq_ledger_entries_order_id_kind_account"),
    )
    op.create_index("ix_ledger_entries_provider_org_id", "ledger_entries", ["provider_org", "id"])
    if op.get_bind().dialect.name == "postgresql":
        # The ledger is append-only in depth: the database itself refuses changes.
        op.execute(
            "CREATE FUNCTION orders_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION orders_ledger_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute("DROP FUNCTION IF EXISTS orders_ledger_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
    op.drop_index("ix_ledger_entries_provider_org_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("stripe_events")
    op.drop_index("ix_payment_attempts_order_id", table_name="payment_attempts")
    op.drop_table("payment_attempts")
    for ix in ("ix_orders_payment_intent_id", "ix_orders_status_payment_at", "ix_orders_created",
               "ix_orders_provider_org_created", "ix_orders_buyer_org_created"):
        op.drop_index(ix, table_name="orders")
    op.drop_table("orders")
    op.drop_table("quotes")
