"""Request and response bodies of subscriptions, private offers, invoices, statements and
payouts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.orders.models import Offer as OfferRow
from services.orders.models import Payout as PayoutRow
from services.orders.models import Subscription as SubscriptionRow
from services.orders.offers import status_of
from shared.params import ID_PATTERN, MAX_INT32

SubscriptionStatus = Literal["incomplete", "active", "past_due", "suspended", "canceled"]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"quote_id": "quo_5b1e0f3a9c7d2e4f6a8b0c1d", "purpose": "research",
         "payment_method": "pm_card_visa"}]})

    quote_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN,
                          description="A quote with mode `subscription`.")
    purpose: str = Field(min_length=1, max_length=64)
    payment_method: str = Field(min_length=1, max_length=255, description="A Stripe PaymentMethod id "
                                "(e.g. `pm_card_visa` in test mode); saved for the renewals.")
    spend_cap: int | None = Field(default=None, ge=1, le=99_999_999,
                                  description="Metered plans: the most to pay per period (base fee + usage, "
                                  "minor units, before VAT). Queries stop there.")


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"spend_cap": 5000}]})

    spend_cap: int | None = Field(ge=1, le=99_999_999, description="null lifts the cap.")


class PaymentMethodUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"payment_method": "pm_card_visa"}]})

    payment_method: str = Field(min_length=1, max_length=255)


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"plan_id": "plan_yearly"}]})

    plan_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                         description="Another plan of the subscription's product version, same period.")


class Subscription(BaseModel):
    id: str = Field(examples=["sbs_4c2d8e1f0a9b7c6d5e4f3a2b"])
    status: SubscriptionStatus
    buyer_org: str
    provider_org: str
    product_id: str
    version: int
    plan_id: str
    plan: dict[str, Any] = Field(description="The plan's terms as subscribed (an offer's custom terms).")
    purpose: str
    currency: str
    current_period_start: datetime | None = None
    current_period_end: datetime | None = Field(default=None, description="When the next renewal is billed.")
    cancel_at_period_end: bool
    grace_until: datetime | None = Field(default=None, description="While past due: access lasts until then.")
    spend_cap: int | None = None
    periods_paid: int
    first_order_id: str = Field(description="Its first order; its entitlement is the subscription's.")
    offer_id: str | None = None
    stripe_subscription_id: str | None = None
    created_at: datetime
    canceled_at: datetime | None = None


def subscription_out(s: SubscriptionRow) -> Subscription:
    return Subscription(
        id=s.id, status=s.status, buyer_org=s.buyer_org, provider_org=s.provider_org, product_id=s.product_id,
        version=s.version, plan_id=s.plan_id, plan=s.plan, purpose=s.purpose, currency=s.currency,
        current_period_start=s.current_period_start, current_period_end=s.current_period_end,
        cancel_at_period_end=s.cancel_at_period_end, grace_until=s.grace_until, spend_cap=s.spend_cap,
        periods_paid=s.periods_paid, first_order_id=s.first_order_id, offer_id=s.offer_id,
        stripe_subscription_id=s.stripe_subscription_id, created_at=s.created_at, canceled_at=s.canceled_at)


class OfferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "product_id": "prd_3f9c1a", "plan_id": "plan_monthly", "buyer_org": "org_4f1c2a9d0b7e6c5a3f21",
        "terms": {"price": 3900}, "note": "Research consortium rate", "valid_days": 30}]})

    product_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    version: int | None = Field(default=None, ge=1, le=MAX_INT32,
                                description="Default: the product's latest version.")
    plan_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                         description="The plan the offer starts from.")
    buyer_org: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                           description="The only organisation that sees it.")
    terms: dict[str, Any] = Field(default_factory=dict, description="Changes to the plan: any of "
                                  "currency, price, price_per_query, included_queries, tiers, query_quota, "
                                  "access_days, trial_days, trial_queries.")
    note: str | None = Field(default=None, max_length=1000)
    valid_days: int = Field(default=30, ge=1, le=365)


class Offer(BaseModel):
    id: str = Field(examples=["off_9d8c7b6a5f4e3d2c1b0a9f8e"])
    status: Literal["open", "accepted", "withdrawn", "expired"]
    provider_org: str
    buyer_org: str
    product_id: str
    version: int
    base_plan_id: str
    plan: dict[str, Any]
    note: str | None = None
    accepted_by: str | None = Field(default=None, description="The order or subscription that used it.")
    created_at: datetime
    expires_at: datetime


def offer_out(o: OfferRow) -> Offer:
    return Offer(id=o.id, status=status_of(o), provider_org=o.provider_org, buyer_org=o.buyer_org,
                 product_id=o.product_id, version=o.version, base_plan_id=o.base_plan_id, plan=o.plan,
                 note=o.note, accepted_by=o.accepted_by, created_at=o.created_at, expires_at=o.expires_at)


class CreditNote(BaseModel):
    refund_id: str
    amount: int
    reason: str
    issued_at: datetime | None
    stripe_refund_id: str | None


class InvoiceDocument(BaseModel):
    number: str = Field(examples=["SL-000042"])
    title: str
    billing_reason: str
    issued_at: datetime
    order_id: str
    subscription_id: str | None = None
    buyer_org: str
    provider_org: str
    product_id: str
    version: int
    plan_id: str
    currency: str
    lines: list[dict[str, Any]]
    subtotal: int = Field(description="Before VAT; includes the platform fee.")
    tax: int
    tax_rate: dict[str, Any] | None = Field(default=None, description="VAT rate (and its Stripe TaxRate).")
    total: int
    total_display: str
    platform_fee: int
    provider_share: int
    period_start: str | None = None
    period_end: str | None = None
    paid_at: str | None = None
    stripe_invoice_id: str | None = None
    payment_intent_id: str | None = None
    credit_notes: list[CreditNote]
    refunded: int
    balance: int = Field(description="total - refunded")


class StatementLine(BaseModel):
    currency: str
    sales: int = Field(description="Charged to buyers (including VAT).")
    refunds: int
    tax: int = Field(description="VAT collected for the authorities (not the provider's).")
    platform_fees: int
    earnings: int = Field(description="The provider's share after refunds.")
    paid_out: int
    balance: int = Field(description="Earned but not yet paid out, all periods up to this one.")
    orders: int


class Statement(BaseModel):
    provider_org: str
    period: str = Field(examples=["2026-11"])
    period_start: datetime
    period_end: datetime
    lines: list[StatementLine]
    payouts: list[dict[str, Any]]


class PayoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"provider_org": "org_8a7b6c5d4e3f2a1b0c9d", "currency": "EUR", "period": "2026-11"}]})

    provider_org: str = Field(min_length=1, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="UTC month whose end the balance "
                        "is taken at (YYYY-MM).")


class Payout(BaseModel):
    id: str
    provider_org: str
    currency: str
    period: str
    amount: int
    status: Literal["paid", "recorded"] = Field(description="`paid`: a Stripe Payout was made; `recorded`: "
                                                "ledger only (Stripe cannot pay out this currency).")
    stripe_payout_id: str | None
    created_at: datetime


def payout_out(p: PayoutRow) -> Payout:
    return Payout(id=p.id, provider_org=p.provider_org, currency=p.currency, period=p.period, amount=p.amount,
                  status=p.status, stripe_payout_id=p.stripe_payout_id, created_at=p.created_at)


class SummaryRow(BaseModel):
    period: str | None = Field(default=None, examples=["2026-11"])
    product_id: str | None = None
    plan_id: str | None = None
    currency: str
    charged: int = Field(description="Money in (including VAT).")
    refunded: int
    tax: int
    platform_fees: int
    provider_earnings: int
    net: int = Field(description="charged - refunded (buyer: spent; provider: see provider_earnings).")
    orders: int


class Summary(BaseModel):
    organisation: str
    group_by: list[str]
    rows: list[SummaryRow]
