"""Request and response bodies of the orders API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.orders.models import LedgerEntry as LedgerEntryRow
from services.orders.models import Order as OrderRow
from services.orders.models import Quote as QuoteRow
from services.orders.pricing import Money
from shared.params import ID_PATTERN, MAX_INT32, OPTIONAL_ID_PATTERN

Status = Literal["pending_payment", "paid", "fulfilled", "payment_failed", "cancelled", "refund_pending",
                 "refunded"]


class PriceLine(BaseModel):
    code: str = Field(examples=["base"], description="`base`, `usage` or `usage_tier_<n>`.")
    description: str = Field(examples=["Subscription per month"])
    quantity: int = Field(examples=[3])
    unit_price: int = Field(examples=[4900], description="Minor units.")
    amount: int = Field(examples=[14700], description="Minor units.")


class AccessTerm(BaseModel):
    unit: Literal["month", "year", "day"] = Field(examples=["month"])
    count: int = Field(examples=[3])
    query_quota: int | None = Field(default=None, examples=[30000],
                                    description="Queries the entitlement allows in total; null = unlimited.")
    epsilon_budget: float | None = Field(
        default=None, examples=[2.0],
        description="L3: the privacy budget (differential privacy ε) the order buys: what the "
        "entitlement's queries may spend of the product's budget; null = no own limit.")


class Breakdown(BaseModel):
    currency: str = Field(examples=["EUR"], description="ISO 4217 code.")
    lines: list[PriceLine]
    total: int = Field(examples=[14700], description="What the buyer pays, in minor units.")
    platform_fee: int = Field(examples=[1470], description="Platform fee in minor units.")
    provider_share: int = Field(examples=[13230], description="The provider's earning (total - fee).")
    fee_bps: int = Field(examples=[1000], description="Platform fee in basis points.")
    total_display: str = Field(examples=["147.00"],
                               description="The total in major units (no decimals for JPY).")
    subtotal: int = Field(default=0, examples=[14700],
                          description="Before VAT: platform_fee + provider_share.")
    tax: int = Field(default=0, examples=[0], description="VAT in minor units (included in total).")
    tax_bps: int = Field(default=0, examples=[0], description="VAT rate in basis points.")


class QuoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"product_id": "prd_3f9c1a", "version": 1, "plan_id": "plan_monthly", "periods": 3}]})

    product_id: str = Field(default="", max_length=64, pattern=OPTIONAL_ID_PATTERN,
                            description="Required unless `offer_id` is given.")
    version: int = Field(default=0, ge=0, le=MAX_INT32, description="Required unless `offer_id` is given.")
    plan_id: str = Field(default="", max_length=64, pattern=OPTIONAL_ID_PATTERN,
                         description="Required unless `offer_id` is given.")
    periods: int = Field(default=1, ge=1, le=120,
                         description="Number of periods (subscriptions and metered plans with a period).")
    quantity: int = Field(default=0, ge=0, le=1_000_000_000,
                          description="Prepaid queries (metered plans only).")
    mode: Literal["prepaid", "subscription", "trial"] = Field(
        default="prepaid", description="`prepaid`: an order for `periods`/`quantity`; `subscription`: "
        "renews every period (POST /v1/subscriptions); `trial`: free, once per organisation and product.")
    offer_id: str | None = Field(default=None, max_length=40, pattern=ID_PATTERN,
                                 description="A private offer made to your organisation.")

    @model_validator(mode="after")
    def _names_a_plan(self) -> QuoteCreate:
        if self.offer_id is None and not (self.product_id and self.version and self.plan_id):
            raise ValueError("give product_id, version and plan_id (or an offer_id)")
        return self


class Quote(BaseModel):
    id: str = Field(examples=["quo_5b1e0f3a9c7d2e4f6a8b0c1d"])
    product_id: str
    version: int
    provider_org: str
    plan_id: str
    plan_kind: str = Field(examples=["subscription"])
    periods: int
    quantity: int
    allowed_purposes: list[str] = Field(examples=[["research"]],
                                        description="Purposes an order from this quote may declare.")
    access: AccessTerm
    price: Breakdown
    created_at: datetime
    expires_at: datetime
    order_id: str | None = Field(default=None, description="The order that used this quote, if any.")
    mode: str = Field(default="prepaid", examples=["prepaid"])
    offer_id: str | None = None


def breakdown(currency: str, lines: list[dict[str, Any]], gross: int, fee: int, share: int,
              bps: int, tax: int = 0, tax_bps: int = 0) -> Breakdown:
    return Breakdown(currency=currency, lines=[PriceLine(**line) for line in lines], total=gross,
                     platform_fee=fee, provider_share=share, fee_bps=bps,
                     total_display=Money(gross, currency).decimal_string(), subtotal=gross - tax,
                     tax=tax, tax_bps=tax_bps)


def quote_out(q: QuoteRow) -> Quote:
    return Quote(
        id=q.id, product_id=q.product_id, version=q.version, provider_org=q.provider_org,
        plan_id=q.plan_id, plan_kind=q.plan_kind, periods=q.periods, quantity=q.quantity,
        allowed_purposes=q.allowed_purposes, access=AccessTerm(**q.access),
        price=breakdown(q.currency, q.lines, q.gross, q.platform_fee, q.provider_share, q.fee_bps, q.tax,
                        q.tax_bps),
        created_at=q.created_at, expires_at=q.expires_at, order_id=q.order_id, mode=q.mode,
        offer_id=q.offer_id,
    )


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"quote_id": "quo_5b1e0f3a9c7d2e4f6a8b0c1d", "purpose": "research"}]})

    quote_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)
    purpose: str = Field(min_length=1, max_length=64,
                         description="Declared purpose; must be one of the product's allowed purposes.")


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"payment_method": "pm_card_visa"}]})

    payment_method: str | None = Field(
        default=None, max_length=255,
        description="A Stripe PaymentMethod id to confirm with server-side (e.g. `pm_card_visa` in "
        "test mode). Leave it out to only (re)start the payment and get a `client_secret`.",
    )


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"reason": "Data delivered did not match the schema"},
        {"reason": "Two days of downtime", "amount": 500, "access": "keep"},
        {"reason": "Customer leaves early", "pro_rata": True}]})

    reason: str = Field(min_length=3, max_length=500)
    amount: int | None = Field(default=None, ge=1, le=99_999_999,
                               description="Minor units to give back (default: all not yet refunded).")
    pro_rata: bool = Field(default=False, description="Refund the unused share of the access window "
                           "(and end access now, unless `access` says otherwise).")
    access: Literal["keep", "shorten", "end"] | None = Field(
        default=None, description="A partial refund keeps access (default), shortens it by the refunded "
        "share of its window, or ends it now. A full refund always ends it.")


class Payment(BaseModel):
    payment_intent_id: str | None = Field(examples=["pi_3N2x7YH8d9Zk"])
    client_secret: str | None = Field(
        default=None, description="For Stripe.js / mobile SDKs; only shown to the buyer.")
    attempts: int
    last_error: dict[str, Any] | None = Field(
        default=None, examples=[{"code": "card_declined", "decline_code": None,
                                 "message": "Your card was declined."}])
    next_action: dict[str, Any] | None = Field(
        default=None, description="What Stripe needs next (e.g. 3-D Secure), when it needs something.")


class Order(BaseModel):
    id: str = Field(examples=["ord_7c2d9e0f1a3b5c7d9e1f2a3b"])
    status: Status
    buyer_org: str
    provider_org: str
    product_id: str
    version: int
    plan_id: str
    plan_kind: str
    purpose: str = Field(examples=["research"])
    quote_id: str | None = Field(description="None for the orders a subscription makes (renewals).")
    billing_reason: str = Field(default="purchase", examples=["purchase"], description="`purchase`, "
                                "`trial`, `subscription_create`, `subscription_cycle` (a renewal) or "
                                "`subscription_update` (a plan upgrade's prorated charge).")
    subscription_id: str | None = None
    offer_id: str | None = None
    price: Breakdown
    payment: Payment
    access: AccessTerm
    valid_from: datetime | None = Field(default=None, description="Access starts (set when paid).")
    valid_until: datetime | None = Field(default=None, description="Access ends (set when paid).")
    entitlement_id: str | None = None
    refund_reason: str | None = None
    refunded_amount: int = Field(default=0, description="Minor units refunded so far (partial refunds "
                                 "add up; at most the total).")
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None = None
    fulfilled_at: datetime | None = None
    cancelled_at: datetime | None = None
    refunded_at: datetime | None = None


def order_out(o: OrderRow, *, for_buyer: bool, next_action: dict[str, Any] | None = None) -> Order:
    return Order(
        id=o.id, status=o.status,
        buyer_org=o.buyer_org, provider_org=o.provider_org, product_id=o.product_id,
        version=o.version, plan_id=o.plan_id, plan_kind=o.plan_kind, purpose=o.purpose, quote_id=o.quote_id,
        billing_reason=o.billing_reason, subscription_id=o.subscription_id, offer_id=o.offer_id,
        price=breakdown(o.currency, o.lines, o.gross, o.platform_fee, o.provider_share, o.fee_bps, o.tax,
                        o.tax_bps),
        payment=Payment(
            payment_intent_id=o.payment_intent_id,
            client_secret=o.client_secret if for_buyer and o.status == "pending_payment" else None,
            attempts=o.payment_attempts, last_error=o.last_payment_error, next_action=next_action,
        ),
        access=AccessTerm(**o.access), valid_from=o.valid_from, valid_until=o.valid_until,
        entitlement_id=o.entitlement_id, refund_reason=o.refund_reason,
        refunded_amount=o.refunded_amount, created_at=o.created_at,
        updated_at=o.updated_at, paid_at=o.paid_at, fulfilled_at=o.fulfilled_at,
        cancelled_at=o.cancelled_at, refunded_at=o.refunded_at,
    )


class LedgerEntry(BaseModel):
    id: int
    order_id: str
    kind: Literal["charge", "platform_fee", "provider_earning", "tax", "refund_reversal", "payout"]
    account: Literal["gross", "platform", "provider", "tax", "payout"]
    buyer_org: str
    provider_org: str
    currency: str
    amount: int = Field(description="Signed minor units (reversals are negative).")
    ref: str = Field(default="", description="The refund a reversal belongs to (empty otherwise).")
    created_at: datetime


def entry_out(e: LedgerEntryRow) -> LedgerEntry:
    return LedgerEntry(id=e.id, order_id=e.order_id, kind=e.kind, account=e.account,
                       buyer_org=e.buyer_org, provider_org=e.provider_org, currency=e.currency,
                       amount=e.amount, ref=e.ref, created_at=e.created_at)


class CurrencyTotal(BaseModel):
    currency: str = Field(examples=["EUR"])
    gross: int = Field(description="Charged minus refunded, minor units.", examples=[14700])
    platform_fees: int = Field(examples=[1470])
    provider_earnings: int = Field(examples=[13230])
    refunded: int = Field(examples=[0])
    orders: int = Field(description="Orders with entries in this currency.", examples=[1])
    tax: int = Field(default=0, description="VAT collected (charged minus refunded), minor units.",
                     examples=[0])
    paid_out: int = Field(default=0, description="Paid out to providers, minor units.", examples=[0])
    reconciles: bool = Field(description="gross == platform_fees + provider_earnings + tax, always "
                             "true.")


class LedgerPage(BaseModel):
    totals: list[CurrencyTotal]
    items: list[LedgerEntry]
    next_cursor: str | None = None


class Earnings(BaseModel):
    provider_org: str
    totals: list[CurrencyTotal]
    items: list[LedgerEntry] = Field(description="This provider's ledger entries, oldest first.")
    next_cursor: str | None = None


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    outcome: str = Field(examples=["paid"], description="What the event changed (`duplicate`: nothing).")
