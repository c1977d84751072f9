"""Tables of the orders service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, make_metadata, utcnow
from shared.outbox_model import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata()


class Quote(Base):
    """A priced offer for one buyer organisation, pinned to one catalog version."""

    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    buyer_org: Mapped[str] = mapped_column(String(64))
    buyer_sub: Mapped[str] = mapped_column(String(128))
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    provider_org: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_kind: Mapped[str] = mapped_column(String(16))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    allowed_purposes: Mapped[list[str]] = mapped_column(JSON)
    periods: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column(BigInteger)
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    provider_share: Mapped[int] = mapped_column(BigInteger)
    fee_bps: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    access: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set once, by the order that used the quote (a quote is good for one order).
    order_id: Mapped[str | None] = mapped_column(String(40), unique=True, default=None)
    #: prepaid (an order) | subscription (renews every period) | trial (free, once per product)
    mode: Mapped[str] = mapped_column(String(16), default="prepaid", server_default="prepaid")
    offer_id: Mapped[str | None] = mapped_column(String(40), default=None)
    tax: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    tax_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # The Idempotency-Key is scoped to the buyer organisation.
        UniqueConstraint("buyer_org", "idempotency_key", name="uq_orders_buyer_org_idempotency_key"),
        Index("ix_orders_buyer_org_created", "buyer_org", "created_at", "id"),
        Index("ix_orders_provider_org_created", "provider_org", "created_at", "id"),
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_status_payment_at", "status", "last_payment_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    buyer_org: Mapped[str] = mapped_column(String(64))
    buyer_sub: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    #: The quote it was placed from; None for the orders a subscription makes itself
    #: (renewals, plan changes).
    quote_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    provider_org: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[str] = mapped_column(String(64))
    plan_kind: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column(BigInteger)
    platform_fee: Mapped[int] = mapped_column(BigInteger)
    provider_share: Mapped[int] = mapped_column(BigInteger)
    fee_bps: Mapped[int] = mapped_column(Integer)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    access: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    client_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    payment_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Whoever holds this lease (set atomically) creates the next PaymentIntent; the others wait.
    payment_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_payment_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_payment_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    refund_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(64), default=None)
    #: Minor units given back so far (partial refunds add up; never more than ``gross``).
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: purchase | trial | subscription_create | subscription_cycle | subscription_update
    billing_reason: Mapped[str] = mapped_column(String(32), default="purchase", server_default="purchase")
    subscription_id: Mapped[str | None] = mapped_column(String(40), index=True, default=None)
    #: The billing period a subscription order pays for (its access window when paid).
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    #: VAT in minor units, included in ``gross`` (``gross = platform_fee + provider_share + tax``).
    tax: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    tax_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    offer_id: Mapped[str | None] = mapped_column(String(40), default=None)
    refund_reason: Mapped[str | None] = mapped_column(Text, default=None)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    entitlement_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PaymentAttempt(Base):
    """One Stripe PaymentIntent created for an order (a retry after a failure makes a new one)."""

    __tablename__ = "payment_attempts"

    payment_intent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeEvent(Base):
    """Each Stripe event id, stored once: a repeated delivery finds its row and changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), default=None)
    order_id: Mapped[str | None] = mapped_column(String(40), default=None)
    outcome: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Refund(Base):
    """One refund of an order, decided (``pending``) before Stripe is called.

    The row is committed together with the order's move to ``refund_pending``, so a
    refund and the fulfilment of the same order are serialized by that one transition;
    the stored ``idempotency_key`` makes a repeated Stripe call (a retry after a lost
    answer, the reconciler) the same refund, and ``claimed_until`` lets exactly one
    caller at a time talk to Stripe about it."""

    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_status_claimed", "status", "claimed_until"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)
    # revoke (a full refund) | keep | shorten | end: what happens to the entitlement
    access: Mapped[str] = mapped_column(String(16))
    # pending | succeeded | failed
    status: Mapped[str] = mapped_column(String(16))
    #: The order's status before ``refund_pending``: where a partial or failed refund returns.
    order_status_before: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(64), default=None)
    stripe_attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    failure: Mapped[str | None] = mapped_column(Text, default=None)
    requested_by: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class BillingCustomer(Base):
    """The Stripe Customer of a buyer organisation (one per organisation).

    ``invoice_lease_until`` serializes invoice making per customer: localstripe pulls
    every pending invoice item of a customer into the next invoice it makes, so two
    subscriptions of one organisation must not build invoices at the same time."""

    __tablename__ = "billing_customers"

    buyer_org: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64))
    default_payment_method: Mapped[str | None] = mapped_column(String(64), default=None)
    invoice_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(Base):
    """A plan a buyer organisation pays for every period until it cancels.

    Each period is an order (``billing_reason`` subscription_create / subscription_cycle),
    so the order state machine, the ledger, invoices and refunds work per period; the
    subscription's own states are in :mod:`services.orders.subscriptions`."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("buyer_org", "idempotency_key", name="uq_subscriptions_buyer_org_idempotency_key"),
        Index("ix_subscriptions_status_period_end", "status", "current_period_end"),
        Index("ix_subscriptions_buyer_org_created", "buyer_org", "created_at"),
        Index("ix_subscriptions_provider_org_created", "provider_org", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    buyer_org: Mapped[str] = mapped_column(String(64))
    buyer_sub: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    quote_id: Mapped[str] = mapped_column(String(40), unique=True)
    provider_org: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    plan_id: Mapped[str] = mapped_column(String(64))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    fee_bps: Mapped[int] = mapped_column(Integer)
    tax_bps: Mapped[int] = mapped_column(Integer)
    offer_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # incomplete | active | past_due | suspended | canceled
    status: Mapped[str] = mapped_column(String(16))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    stripe_plan_id: Mapped[str | None] = mapped_column(String(128), default=None)
    stripe_canceled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: Period n ends n calendar periods after the anchor (so month ends do not drift).
    billing_anchor: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    periods_paid: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: How long access lasts after a failed renewal (the platform's setting when subscribed).
    grace_days: Mapped[int] = mapped_column(Integer)
    #: The order whose entitlement the subscription keeps extending.
    first_order_id: Mapped[str] = mapped_column(String(40))
    #: A buyer's cap on one period's spending (base fee + usage, before tax) for metered plans.
    spend_cap: Mapped[int | None] = mapped_column(BigInteger, default=None)
    #: Usage records (access ``seq``) up to this one are billed already.
    usage_billed_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: Whoever holds this lease is talking to Stripe about the subscription.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Offer(Base):
    """A private offer: a plan at custom terms for one named buyer organisation."""

    __tablename__ = "offers"
    __table_args__ = (
        Index("ix_offers_buyer_org_created", "buyer_org", "created_at"),
        Index("ix_offers_provider_org_created", "provider_org", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_org: Mapped[str] = mapped_column(String(64))
    buyer_org: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    base_plan_id: Mapped[str] = mapped_column(String(64))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # open | accepted | withdrawn (expired is computed from expires_at)
    status: Mapped[str] = mapped_column(String(16))
    accepted_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Trial(Base):
    """A free trial taken: at most one per buyer organisation and product."""

    __tablename__ = "trials"

    buyer_org: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invoice(Base):
    """The invoice (or receipt) of a paid order, numbered in issue order.

    ``document`` is frozen when the order is paid; refunds appear beside it as credit
    notes (rows of :class:`Refund`)."""

    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_buyer_org_number", "buyer_org", "number"),
        Index("ix_invoices_provider_org_number", "provider_org", "number"),
    )

    number: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    order_id: Mapped[str] = mapped_column(String(40), unique=True)
    buyer_org: Mapped[str] = mapped_column(String(64))
    provider_org: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(64), default=None)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Payout(Base):
    """Money paid out to a provider for one period and currency (see docs/orders.md:
    localstripe has no Connect; the Stripe ``Payout`` object stands in where it can)."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("provider_org", "currency", "period",
                         name="uq_payouts_provider_org_currency_period"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_org: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM, UTC
    amount: Mapped[int] = mapped_column(BigInteger)
    # pending (decided, Stripe not yet told) | paid | recorded (no Stripe payout: ledger only)
    status: Mapped[str] = mapped_column(String(16))
    stripe_payout_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StripeObject(Base):
    """Ids of Stripe objects the service creates once and reuses (tax rates, products,
    plans), by a key of ours."""

    __tablename__ = "stripe_objects"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(Base):
    """Append-only: entries are only ever inserted; a refund adds reversing entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_provider_org_id", "provider_org", "id"),
        # At most one entry of each kind per account per order and reference (the refund id
        # of a reversal, "" otherwise): a retried transition cannot book twice.
        UniqueConstraint("order_id", "kind", "account", "ref",
                         name="uq_ledger_entries_order_id_kind_account_ref"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    order_id: Mapped[str] = mapped_column(String(40))
    # charge | platform_fee | provider_earning | refund_reversal
    kind: Mapped[str] = mapped_column(String(32))
    # gross (what the buyer paid) | platform | provider: charge and its reversal book "gross",
    # the fee "platform", the earning "provider".
    account: Mapped[str] = mapped_column(String(16))
    buyer_org: Mapped[str] = mapped_column(String(64))
    provider_org: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    #: What the entry belongs to besides the order: the refund id of a reversal, else "".
    ref: Mapped[str] = mapped_column(String(40), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


outbox = outbox_table(Base.metadata)
