"""billing: subscriptions, trials, private offers, VAT, invoices, payouts, Stripe object ids

Revision ID: 0004_billing
Revises: 0003_refunds
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision: str = "0004_billing"
down_revision: str | None = "0003_refunds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_COLUMNS = ("billing_reason", "subscription_id", "period_start", "period_end", "stripe_invoice_id",
                 "tax", "tax_bps", "offer_id")


def _orders_and_quotes() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("quote_id", existing_type=sa.String(40), nullable=True)
        batch.add_column(sa.Column("billing_reason", sa.String(32), nullable=False,
                                   server_default="purchase"))
        batch.add_column(sa.Column("subscription_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("period_start", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("period_end", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("stripe_invoice_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("tax", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tax_bps", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("offer_id", sa.String(40), nullable=True))
    op.create_index("ix_orders_subscription_id", "orders", ["subscription_id"])
    op.create_index("ix_orders_stripe_invoice_id", "orders", ["stripe_invoice_id"])
    with op.batch_alter_table("quotes") as batch:
        batch.add_column(sa.Column("mode", sa.String(16), nullable=False, server_default="prepaid"))
        batch.add_column(sa.Column("offer_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("tax", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tax_bps", sa.Integer(), nullable=False, server_default="0"))


def _subscriptions() -> None:
    op.create_table(
        "billing_customers",
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("stripe_customer_id", sa.String(64), nullable=False),
        sa.Column("default_payment_method", sa.String(64), nullable=True),
        sa.Column("invoice_lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("buyer_org", name="pk_billing_customers"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("buyer_sub", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("quote_id", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("tax_bps", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(64), nullable=True),
        sa.Column("stripe_plan_id", sa.String(128), nullable=True),
        sa.Column("stripe_canceled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("current_period_start", UTCDateTime(), nullable=True),
        sa.Column("current_period_end", UTCDateTime(), nullable=True),
        sa.Column("billing_anchor", UTCDateTime(), nullable=True),
        sa.Column("periods_paid", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("grace_until", UTCDateTime(), nullable=True),
        sa.Column("grace_days", sa.Integer(), nullable=False),
        sa.Column("first_order_id", sa.String(40), nullable=False),
        sa.Column("spend_cap", sa.BigInteger(), nullable=True),
        sa.Column("usage_billed_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
        sa.UniqueConstraint("buyer_org", "idempotency_key", name="uq_subscriptions_buyer_org_idempotency_key"),
        sa.UniqueConstraint("quote_id", name="uq_subscriptions_quote_id"),
    )
    op.create_index("ix_subscriptions_status_period_end", "subscriptions", ["status", "current_period_end"])
    op.create_index("ix_subscriptions_buyer_org_created", "subscriptions", ["buyer_org", "created_at"])
    op.create_index("ix_subscriptions_provider_org_created", "subscriptions", ["provider_org", "created_at"])
    op.create_index("ix_subscriptions_stripe_subscription_id", "subscriptions", ["stripe_subscription_id"])


def _offers_trials_documents() -> None:
    op.create_table(
        "offers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("base_plan_id", sa.String(64), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accepted_by", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offers"),
    )
    op.create_index("ix_offers_buyer_org_created", "offers", ["buyer_org", "created_at"])
    op.create_index("ix_offers_provider_org_created", "offers", ["provider_org", "created_at"])
    op.create_table(
        "trials",
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("buyer_org", "product_id", name="pk_trials"),
    )
    op.create_table(
        "invoices",
        sa.Column("number", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("buyer_org", sa.String(64), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(64), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_invoices"),
        sa.UniqueConstraint("order_id", name="uq_invoices_order_id"),
    )
    op.create_index("ix_invoices_buyer_org_number", "invoices", ["buyer_org", "number"])
    op.create_index("ix_invoices_provider_org_number", "invoices", ["provider_org", "number"])
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("provider_org", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stripe_payout_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payouts"),
        sa.UniqueConstraint("provider_org", "currency", "period", name="uq_payouts_provider_org_currency_period"),
    )
    op.create_table(
        "stripe_objects",
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("stripe_id", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_stripe_objects"),
    )


def upgrade() -> None:
    _orders_and_quotes()
    _subscriptions()
    _offers_trials_documents()


def downgrade() -> None:
    for table in ("stripe_objects", "payouts"):
        op.drop_table(table)
    op.drop_index("ix_invoices_provider_org_number", table_name="invoices")
    op.drop_index("ix_invoices_buyer_org_number", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("trials")
    op.drop_index("ix_offers_provider_org_created", table_name="offers")
    op.drop_index("ix_offers_buyer_org_created", table_name="offers")
    op.drop_table("offers")
    for ix in ("ix_subscriptions_stripe_subscription_id", "ix_subscriptions_provider_org_created",
               "ix_subscriptions_buyer_org_created", "ix_subscriptions_status_period_end"):
        op.drop_index(ix, table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("billing_customers")
    with op.batch_alter_table("quotes") as batch:
        for column in ("tax_bps", "tax", "offer_id", "mode"):
            batch.drop_column(column)
    op.drop_index("ix_orders_stripe_invoice_id", table_name="orders")
    op.drop_index("ix_orders_subscription_id", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        for column in reversed(ORDER_COLUMNS):
            batch.drop_column(column)
        batch.alter_column("quote_id", existing_type=sa.String(40), nullable=False)
