"""Subscriptions and private offers, invoices, statements and payouts, spending and earnings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sluice.cli.core import (
    AllPages,
    Api,
    Cursor,
    JsonFile,
    JsonText,
    Limit,
    command,
    group,
    load_document,
    paged,
)

subscriptions = group("subscriptions", "Subscriptions: start, pay, change plan, cap, cancel (buyer); "
                                       "renew now (operator).")
offers = group("offers", "Private offers: a plan at custom terms for one buyer organisation (provider).")
invoices = group("invoices", "Invoices and receipts of paid orders, with refunds as credit notes.")
payouts = group("payouts", "Payouts of providers' balances (operator); yours (provider).")

SubscriptionId = Annotated[str, typer.Argument(help="the subscription's id (sbs_...).")]
OfferId = Annotated[str, typer.Argument(help="the offer's id (off_...).")]
InvoiceNumber = Annotated[str, typer.Argument(help="the invoice's number (SL-000042).")]
GroupBy = Annotated[str, typer.Option(help="comma-separated: period (UTC month), product, plan.")]
SUBSCRIPTION_COLUMNS = ["id", "status", "product_id", "plan_id", "current_period_end", "cancel_at_period_end",
                        "spend_cap", "periods_paid"]
OFFER_COLUMNS = ["id", "status", "buyer_org", "product_id", "version", "plan.price", "plan.currency",
                 "expires_at"]
INVOICE_COLUMNS = ["number", "order_id", "billing_reason", "total_display", "currency", "refunded",
                   "issued_at"]
SUMMARY_COLUMNS = ["period", "product_id", "plan_id", "currency", "charged", "refunded", "provider_earnings",
                   "orders"]


@command(subscriptions, "create", calls="orders POST /v1/subscriptions")
def subscription_create(
    api: Api,
    quote: Annotated[str, typer.Option(help="a quote with mode subscription (quo_...).")],
    purpose: Annotated[str, typer.Option(help="your declared purpose; one of the product's allowed ones.")],
    payment_method: Annotated[str, typer.Option(
        help="a Stripe PaymentMethod, saved for the renewals (test: pm_card_visa).")] = "pm_card_visa",
    spend_cap: Annotated[int | None, typer.Option(
        help="metered plans: the most to pay per period, minor units before VAT.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="retrying with the same key returns the same subscription (default: a new key).")] = None,
) -> Any:
    """Subscribe: the first period is paid at once and access granted; it renews every period."""
    return api.subscribe(quote, purpose, payment_method, spend_cap=spend_cap,
                         idempotency_key=idempotency_key)


@command(subscriptions, "list", calls="orders GET /v1/subscriptions", columns=SUBSCRIPTION_COLUMNS)
def subscription_list(
    api: Api,
    status: Annotated[str | None, typer.Option(
        help="incomplete, active, past_due, suspended or canceled.")] = None,
    limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False,
) -> Any:
    """Subscriptions you may see: your organisation's (buyer), your products' (provider), all (overseers)."""
    return paged(api.subscriptions_page, all_pages=all_pages, cursor=cursor, limit=limit, status=status)


@command(subscriptions, "get", calls="orders GET /v1/subscriptions/{subscription_id}")
def subscription_get(api: Api, subscription_id: SubscriptionId) -> Any:
    """One subscription: its status, plan, current period and cap."""
    return api.get_subscription(subscription_id)


@command(subscriptions, "pay", calls="orders POST /v1/subscriptions/{subscription_id}/payment-method")
def subscription_pay(
    api: Api, subscription_id: SubscriptionId,
    payment_method: Annotated[str, typer.Option(help="a Stripe PaymentMethod (test: pm_card_visa).")],
) -> Any:
    """Save a payment method for renewals and pay what is owed with it (buyer)."""
    return api.subscription_payment_method(subscription_id, payment_method)


@command(subscriptions, "cancel", calls="orders POST /v1/subscriptions/{subscription_id}/cancel")
def subscription_cancel(api: Api, subscription_id: SubscriptionId) -> Any:
    """End at the paid period's end (active), or now if money is owed (buyer)."""
    return api.cancel_subscription(subscription_id)


@command(subscriptions, "resume", calls="orders POST /v1/subscriptions/{subscription_id}/resume")
def subscription_resume(api: Api, subscription_id: SubscriptionId) -> Any:
    """Undo a cancellation scheduled for the period's end (buyer)."""
    return api.resume_subscription(subscription_id)


@command(subscriptions, "change-plan", calls="orders POST /v1/subscriptions/{subscription_id}/change-plan")
def subscription_change_plan(
    api: Api, subscription_id: SubscriptionId,
    plan: Annotated[str, typer.Option(help="another plan of the same version and period (plan_...).")],
) -> Any:
    """Upgrade (the prorated difference is charged now) or downgrade (refunded now) (buyer)."""
    return api.change_subscription_plan(subscription_id, plan)


@command(subscriptions, "cap", calls="orders PATCH /v1/subscriptions/{subscription_id}")
def subscription_cap(
    api: Api, subscription_id: SubscriptionId,
    spend_cap: Annotated[int | None, typer.Option(
        help="the most one period may cost, minor units before VAT; leave out to lift the cap.")] = None,
) -> Any:
    """Set or lift a metered subscription's spending cap (buyer)."""
    return api.set_spend_cap(subscription_id, spend_cap)


@command(subscriptions, "renew", calls="orders POST /v1/subscriptions/{subscription_id}/renew")
def subscription_renew(api: Api, subscription_id: SubscriptionId) -> Any:
    """Bill the next period now instead of at the period's end (operator)."""
    return api.renew_subscription(subscription_id)


@command(offers, "create", calls="orders POST /v1/offers")
def offer_create(api: Api, json_text: JsonText = None, json_file: JsonFile = None) -> Any:
    """Make a private offer (provider): {product_id, plan_id, buyer_org, terms: {price: ...}, valid_days}."""
    return api.create_offer(load_document(json_text, json_file))


@command(offers, "list", calls="orders GET /v1/offers", columns=OFFER_COLUMNS)
def offer_list(api: Api, limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
    """Offers you made (provider) or that were made to your organisation (buyer)."""
    return paged(api.offers_page, all_pages=all_pages, cursor=cursor, limit=limit)


@command(offers, "get", calls="orders GET /v1/offers/{offer_id}")
def offer_get(api: Api, offer_id: OfferId) -> Any:
    """One offer you may see."""
    return api.get_offer(offer_id)


@command(offers, "withdraw", calls="orders POST /v1/offers/{offer_id}/withdraw")
def offer_withdraw(api: Api, offer_id: OfferId) -> Any:
    """Withdraw an open offer (its provider)."""
    return api.withdraw_offer(offer_id)


@command(invoices, "list", calls="orders GET /v1/invoices", columns=INVOICE_COLUMNS)
def invoice_list(
    api: Api, order: Annotated[str | None, typer.Option(help="only this order's invoice (ord_...).")] = None,
    limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False,
) -> Any:
    """Invoices you may see, newest first: those you paid (buyer), of your sales (provider)."""
    return paged(api.invoices_page, all_pages=all_pages, cursor=cursor, limit=limit, order_id=order)


@command(invoices, "get", calls="orders GET /v1/invoices/{number}")
def invoice_get(api: Api, number: InvoiceNumber) -> Any:
    """One invoice: lines, VAT, total, platform fee, credit notes."""
    return api.get_invoice(number)


@command(invoices, "html", calls="orders GET /v1/invoices/{number}/html")
def invoice_html(
    api: Api, number: InvoiceNumber,
    save: Annotated[str, typer.Option(help="write the printable HTML to this file.")],
) -> Any:
    """Download an invoice as printable HTML (open it, print or save as PDF)."""
    path = Path(save)
    path.write_text(api.invoice_html(number), encoding="utf-8")
    return {"invoice": number, "saved": str(path)}


@command(payouts, "create", calls="orders POST /v1/payouts")
def payout_create(
    api: Api,
    provider_org: Annotated[str, typer.Option(help="the provider organisation to pay (org_...).")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. EUR.")],
    period: Annotated[str, typer.Option(help="the closed UTC month whose end balance is paid (YYYY-MM).")],
) -> Any:
    """Pay a provider its balance at the end of a closed month, once (operator)."""
    return api.create_payout(provider_org, currency, period)


@command(payouts, "list", calls="orders GET /v1/payouts",
         columns=["id", "provider_org", "currency", "period", "amount", "status", "stripe_payout_id"])
def payout_list(api: Api, period: Annotated[str | None, typer.Option(help="only this month (YYYY-MM).")]
                = None) -> Any:
    """Payouts: yours (provider), all (operator, regulator)."""
    return api.payouts(period=period)


def register_top_level(app: typer.Typer) -> None:
    """``sluice statement``, ``sluice spending`` and ``sluice earnings-summary``."""

    @command(app, "statement", calls="orders GET /v1/providers/me/statements")
    def statement(api: Api, period: Annotated[str, typer.Option(help="the UTC month (YYYY-MM).")]) -> Any:
        """Your settlement statement for a month: sales, refunds, VAT, fees, earnings, payouts, balance."""
        return api.statement(period)

    @command(app, "spending", calls="orders GET /v1/buyers/me/spending", columns=SUMMARY_COLUMNS)
    def spending(api: Api, group_by: GroupBy = "period") -> Any:
        """What your organisation spent, by month, product and plan (buyer)."""
        return api.spending(group_by=group_by)

    @command(app, "earnings-summary", calls="orders GET /v1/providers/me/earnings/summary",
             columns=SUMMARY_COLUMNS)
    def earnings_summary(api: Api, group_by: GroupBy = "period") -> Any:
        """What your organisation earned, by month, product and plan (provider)."""
        return api.earnings_summary(group_by=group_by)
