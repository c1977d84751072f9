"""Invoices and receipts of paid orders, with their refunds as credit notes (no FastAPI).

An invoice is issued in the transaction that makes an order ``paid`` (anything with a
price), numbered in issue order (``SL-000042``), and frozen: its lines, net, VAT at the
platform's rate (the same rate as a Stripe ``TaxRate`` on subscription invoices), total,
and the platform fee included in the net, for the buyer's and the provider's books.
Refunds never change it; each succeeded refund is a credit note beside it. What an
invoice says always equals the ledger: total = the order's ``charge``, credit notes =
its ``refund_reversal`` entries on the gross account (tested).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.models import Invoice, Order, Refund, StripeObject
from services.orders.pricing import Money
from shared.db import utcnow

TITLES = {
    "purchase": "Invoice", "subscription_create": "Invoice", "subscription_cycle": "Invoice",
    "subscription_update": "Invoice (plan change)",
}


def number_of(invoice: Invoice) -> str:
    return f"SL-{invoice.number:06d}"


def parse_number(text: str) -> int | None:
    digits = text.removeprefix("SL-")
    return int(digits) if digits.isdigit() and len(digits) <= 12 else None


def tax_rate_key(tax_bps: int, jurisdiction: str) -> str:
    return f"tax_rate:{tax_bps}:{jurisdiction}"


async def issue(session: AsyncSession, order: Order) -> Invoice | None:
    """Issue the order's invoice (in the transaction that makes it ``paid``)."""
    if order.gross <= 0:
        return None
    tax_rate = None
    if order.tax_bps:
        known = (await session.execute(select(StripeObject.stripe_id).where(
            StripeObject.key.like(f"tax_rate:{order.tax_bps}:%")))).scalars().first()
        tax_rate = {"percentage": order.tax_bps / 100, "stripe_tax_rate_id": known}
    document = {
        "title": TITLES.get(order.billing_reason, "Invoice"), "billing_reason": order.billing_reason,
        "order_id": order.id, "subscription_id": order.subscription_id,
        "buyer_org": order.buyer_org, "provider_org": order.provider_org,
        "product_id": order.product_id, "version": order.version, "plan_id": order.plan_id,
        "currency": order.currency, "lines": order.lines, "subtotal": order.gross - order.tax,
        "tax": order.tax, "tax_rate": tax_rate, "total": order.gross,
        "platform_fee": order.platform_fee, "provider_share": order.provider_share,
        "period_start": _iso(order.period_start or order.valid_from),
        "period_end": _iso(order.period_end or order.valid_until),
        "paid_at": _iso(order.paid_at or utcnow()),
        "stripe_invoice_id": order.stripe_invoice_id, "payment_intent_id": order.payment_intent_id,
    }
    invoice = Invoice(order_id=order.id, buyer_org=order.buyer_org, provider_org=order.provider_org,
                      currency=order.currency, total=order.gross, stripe_invoice_id=order.stripe_invoice_id,
                      document=document, issued_at=utcnow())
    session.add(invoice)
    await session.flush()
    return invoice


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    credit_notes: list[dict[str, Any]]

    @property
    def refunded(self) -> int:
        return sum(int(c["amount"]) for c in self.credit_notes)

    def as_dict(self) -> dict[str, Any]:
        doc = self.invoice.document
        return {"number": number_of(self.invoice), "issued_at": self.invoice.issued_at, **doc,
                "total_display": Money(int(doc["total"]), str(doc["currency"])).decimal_string(),
                "credit_notes": self.credit_notes, "refunded": self.refunded,
                "balance": int(doc["total"]) - self.refunded}


async def view(session: AsyncSession, invoice: Invoice) -> InvoiceView:
    refunds = (await session.execute(
        select(Refund).where(Refund.order_id == invoice.order_id, Refund.status == "succeeded")
        .order_by(Refund.completed_at))).scalars().all()
    notes = [{"refund_id": r.id, "amount": r.amount, "reason": r.reason, "issued_at": r.completed_at,
              "stripe_refund_id": r.stripe_refund_id} for r in refunds]
    return InvoiceView(invoice, notes)


def _money(amount: int, currency: str) -> str:
    return f"{Money(amount, currency).decimal_string()} {currency}"


def render_html(found: InvoiceView) -> str:
    """A printable invoice (save it as PDF from the browser); every value escaped."""
    doc = found.as_dict()
    cur = str(doc["currency"])
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(str(line['description']))}</td><td class=n>{int(line['quantity'])}</td>"
        f"<td class=n>{_money(int(line['unit_price']), cur)}</td>"
        f"<td class=n>{_money(int(line['amount']), cur)}</td></tr>" for line in doc["lines"])
    rate = doc.get("tax_rate") or {}
    vat = f"VAT {rate.get('percentage', 0):g}%" if rate else "VAT"
    notes = "".join(
        f"<tr><td>Credit note for refund {esc(str(n['refund_id']))}: {esc(str(n['reason']))}</td>"
        f"<td class=n colspan=3>-{_money(int(n['amount']), cur)}</td></tr>" for n in doc["credit_notes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(doc['title'])} {esc(doc['number'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ccc;padding:.3em;text-align:left}}.n{{text-align:right}}</style></head>
<body><h1>{esc(doc['title'])} {esc(doc['number'])}</h1>
<p>Issued {esc(str(doc['issued_at']))} · order {esc(doc['order_id'])} · paid {esc(str(doc['paid_at']))}</p>
<p>Buyer: {esc(doc['buyer_org'])} · Provider: {esc(doc['provider_org'])} (sold through Sluice)</p>
<p>Product {esc(doc['product_id'])} v{int(doc['version'])}, plan {esc(doc['plan_id'])};
access {esc(str(doc['period_start']))} to {esc(str(doc['period_end']))}</p>
<table><tr><th>Item</th><th class=n>Qty</th><th class=n>Unit</th><th class=n>Amount</th></tr>{rows}
<tr><td colspan=3>Subtotal (includes the platform fee of {_money(int(doc['platform_fee']), cur)})</td>
<td class=n>{_money(int(doc['subtotal']), cur)}</td></tr>
<tr><td colspan=3>{esc(vat)}</td><td class=n>{_money(int(doc['tax']), cur)}</td></tr>
<tr><th colspan=3>Total paid</th><th class=n>{_money(int(doc['total']), cur)}</th></tr>{notes}
<tr><th colspan=3>Balance</th><th class=n>{_money(int(doc['balance']), cur)}</th></tr></table>
</body></html>
"""
