"""Tables of the orders service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
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
    quote_id: Mapped[str] = mapped_column(String(40), unique=True)
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
