"""Stripe Billing through the same ``stripe.StripeClient`` as payments: Customers,
PaymentMethods, Products and Plans, TaxRates, Subscriptions, InvoiceItems, Invoices,
off-session PaymentIntents and Payouts.

What localstripe (dev and tests) implements shapes these calls; docs/orders.md lists
what is emulated:

* A Subscription's period never advances in localstripe and nothing happens at its end,
  so Sluice keeps the billing clock: for each period it creates the subscription's next
  Invoice (``POST /v1/invoices`` with ``subscription``) and pays it. Any invoice made for
  a subscription bills the plan once more, so pending usage items join that invoice.
* Every pending InvoiceItem of a Customer joins the next invoice made for it, so callers
  serialize invoice making per customer (``BillingCustomer.invoice_lease_until``).
* Changing a subscription's plan makes localstripe add "Unused time" credits worth every
  earlier invoice; Sluice removes them and prorates itself (:func:`remove_pending_prorations`).
* Invoice metadata is dropped and invoice numbers do not exist: Sluice keys invoices by
  their id and numbers its own.
* Idempotency keys are sent on every create (real Stripe replays them); localstripe does
  not replay them, which is why every flow commits its step before calling Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from services.orders.payments import (
    Intent,
    PaymentDeclined,
    PaymentGateway,
    card_error_of,
    intent_from,
    plain,
    provider_unavailable,
)
from shared.errors import RuleViolation

#: Currencies localstripe can pay out (it refuses the others); real Stripe pays out in
#: the account's settlement currencies.
PAYOUT_CURRENCIES = ("EUR",)


@dataclass(frozen=True)
class InvoiceView:
    """What the orders service needs to know about a Stripe Invoice."""

    id: str
    status: str  # draft | open | paid | void
    subtotal: int
    tax: int
    total: int
    currency: str
    payment_intent_id: str | None
    lines: list[dict[str, Any]]


def invoice_from(obj: Any) -> InvoiceView:
    data = plain(obj)
    lines = (data.get("lines") or {}).get("data") or []
    return InvoiceView(
        id=str(data["id"]), status=str(data.get("status")), subtotal=int(data.get("subtotal") or 0),
        tax=int(data.get("tax") or 0), total=int(data.get("total") or 0),
        currency=str(data.get("currency") or "").upper(), payment_intent_id=data.get("payment_intent"),
        lines=[{"description": ln.get("description"), "amount": int(ln.get("amount") or 0),
                "proration": bool(ln.get("proration"))} for ln in lines],
    )


def _declined(exc: stripe.CardError, payment_intent_id: str = "") -> PaymentDeclined:
    error = plain(exc.json_body.get("error", {})) if isinstance(exc.json_body, dict) else {}
    return PaymentDeclined(payment_intent_id, card_error_of(error or {"code": exc.code,
                                                                      "message": exc.user_message}))


class BillingGateway:
    """The Stripe Billing calls of the orders service (sharing ``payments``' client)."""

    def __init__(self, payments: PaymentGateway) -> None:
        self.v1 = payments.client.v1

    # --- customers and payment methods --------------------------------------------------

    async def create_customer(self, buyer_org: str) -> str:
        try:
            customer = await self.v1.customers.create_async(
                {"name": buyer_org, "metadata": {"buyer_org": buyer_org}},
                {"idempotency_key": f"customer-{buyer_org}"})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the billing customer") from exc
        return str(customer.id)

    async def attach_payment_method(self, customer_id: str, payment_method: str) -> str:
        """Attach ``payment_method`` and make it the customer's default; returns its id
        (Stripe's test shortcuts such as ``pm_card_visa`` become a new id)."""
        try:
            attached = await self.v1.payment_methods.attach_async(payment_method, {"customer": customer_id})
        except stripe.CardError as exc:
            raise _declined(exc) from exc
        except stripe.InvalidRequestError as exc:
            raise RuleViolation(
                f"Stripe refused the payment method {payment_method!r}: {exc.user_message}. Pass a "
                "valid PaymentMethod id such as pm_card_visa (test mode).",
                rule="payment-method-valid") from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "saving the payment method") from exc
        await self.set_default_payment_method(customer_id, str(attached.id))
        return str(attached.id)

    async def set_default_payment_method(self, customer_id: str, payment_method: str) -> None:
        try:
            await self.v1.customers.update_async(
                customer_id, {"invoice_settings": {"default_payment_method": payment_method}})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "restoring the saved payment method") from exc

    # --- products, plans and tax rates ----------------------------------------------------

    async def _ensure(self, kind: str, object_id: str, params: dict[str, Any]) -> str:
        """Retrieve the object with our deterministic id, or create it."""
        service = getattr(self.v1, kind)
        try:
            try:
                found = await service.retrieve_async(object_id)
                return str(found.id)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
            created = await service.create_async({"id": object_id, **params},
                                                 {"idempotency_key": f"{kind}-{object_id}"})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, f"creating the {kind[:-1]} {object_id}") from exc
        return str(created.id)

    async def ensure_plan(self, *, product_id: str, product_title: str, plan_key: str, amount: int,
                          currency: str, interval: str) -> str:
        """The Stripe Product and Plan of one priced catalog plan (created once)."""
        stripe_product = await self._ensure("products", f"sluice_{product_id}"[:64],
                                            {"name": product_title or product_id})
        return await self._ensure("plans", plan_key, {
            "amount": amount, "currency": currency.lower(), "interval": interval,
            "product": stripe_product})

    async def create_tax_rate(self, *, display_name: str, percentage: float, jurisdiction: str) -> str:
        try:
            rate = await self.v1.tax_rates.create_async({
                "display_name": display_name, "inclusive": False, "percentage": percentage,
                "jurisdiction": jurisdiction})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the tax rate") from exc
        return str(rate.id)

    # --- subscriptions ----------------------------------------------------------------------

    async def create_subscription(self, *, customer_id: str, plan_id: str, tax_rates: list[str],
                                  subscription_id: str) -> tuple[str, str, str | None]:
        """(Stripe subscription id, its status, its first invoice); localstripe makes and
        pays the first invoice at once with the customer's default payment method."""
        params: Any = {"customer": customer_id, "items": [{"plan": plan_id}],
                       "metadata": {"sluice_subscription": subscription_id}}
        if tax_rates:
            params["default_tax_rates"] = tax_rates
        try:
            sub = await self.v1.subscriptions.create_async(
                params, {"idempotency_key": f"{subscription_id}-create"})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the subscription") from exc
        data = plain(sub)
        return str(data["id"]), str(data.get("status")), data.get("latest_invoice")

    async def change_plan(self, stripe_subscription_id: str, customer_id: str, plan_id: str) -> None:
        """Move the Stripe subscription to ``plan_id`` (Sluice prorates itself)."""
        try:
            sub = plain(await self.v1.subscriptions.retrieve_async(stripe_subscription_id))
            item = sub["items"]["data"][0]["id"]
            await self.v1.subscriptions.update_async(stripe_subscription_id,
                                                     {"items": [{"id": item, "plan": plan_id}]})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "changing the subscription's plan") from exc
        await self.remove_pending_prorations(customer_id)

    async def remove_pending_prorations(self, customer_id: str) -> int:
        """Delete the proration items a plan change left pending (see the module docstring)."""
        removed = 0
        try:
            pending = await self.v1.invoice_items.list_async({"customer": customer_id, "limit": 100})
            for item in pending.data:
                if plain(item).get("proration"):
                    await self.v1.invoice_items.delete_async(str(item.id))
                    removed += 1
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "removing Stripe's proration items") from exc
        return removed

    async def cancel_subscription(self, stripe_subscription_id: str) -> None:
        try:
            await self.v1.subscriptions.cancel_async(stripe_subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise provider_unavailable(exc, "cancelling the subscription") from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "cancelling the subscription") from exc

    async def set_cancel_at_period_end(self, stripe_subscription_id: str, cancel: bool) -> None:
        try:
            await self.v1.subscriptions.update_async(stripe_subscription_id,
                                                     {"cancel_at_period_end": cancel})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "updating the subscription") from exc

    # --- invoices ---------------------------------------------------------------------------

    async def add_invoice_item(self, *, customer_id: str, stripe_subscription_id: str, amount: int,
                               currency: str, description: str, order_id: str, line: int) -> str:
        try:
            item = await self.v1.invoice_items.create_async({
                "customer": customer_id, "subscription": stripe_subscription_id, "amount": amount,
                "currency": currency.lower(), "description": description,
                "metadata": {"order_id": order_id, "line": str(line)}},
                {"idempotency_key": f"{order_id}-item-{line}"})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "adding the usage to the invoice") from exc
        return str(item.id)

    async def pending_lines(self, customer_id: str, order_id: str) -> set[int]:
        """The lines of ``order_id`` already waiting at Stripe (an earlier attempt added them)."""
        try:
            pending = await self.v1.invoice_items.list_async({"customer": customer_id, "limit": 100})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "reading pending invoice items") from exc
        found = set()
        for item in pending.data:
            meta = plain(item).get("metadata") or {}
            if meta.get("order_id") == order_id and str(meta.get("line", "")).isdigit():
                found.add(int(meta["line"]))
        return found

    async def create_invoice(self, *, customer_id: str, stripe_subscription_id: str, key: str) -> InvoiceView:
        try:
            invoice = await self.v1.invoices.create_async(
                {"customer": customer_id, "subscription": stripe_subscription_id}, {"idempotency_key": key})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the invoice") from exc
        return invoice_from(invoice)

    async def pay_invoice(self, invoice_id: str) -> InvoiceView:
        """Charge the customer's default payment method; a decline leaves the invoice open."""
        try:
            return invoice_from(await self.v1.invoices.pay_async(invoice_id))
        except stripe.CardError as exc:
            raise _declined(exc) from exc
        except stripe.InvalidRequestError as exc:
            if "already paid" in str(exc.user_message or "").lower():
                return await self.retrieve_invoice(invoice_id)
            raise provider_unavailable(exc, "paying the invoice") from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "paying the invoice") from exc

    async def retrieve_invoice(self, invoice_id: str) -> InvoiceView:
        try:
            return invoice_from(await self.v1.invoices.retrieve_async(invoice_id))
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "reading the invoice") from exc

    async def void_invoice(self, invoice_id: str) -> None:
        try:
            await self.v1.invoices.void_invoice_async(invoice_id)
        except stripe.InvalidRequestError:
            return  # paid or void already: nothing to stop
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "voiding the invoice") from exc

    async def retrieve_intent(self, payment_intent_id: str) -> Intent:
        try:
            return intent_from(await self.v1.payment_intents.retrieve_async(payment_intent_id))
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "reading the payment") from exc

    # --- off-session charges and payouts --------------------------------------------------

    async def charge_saved_method(self, *, customer_id: str, payment_method: str, amount: int,
                                  currency: str, order_id: str, key: str) -> Intent:
        """Charge the customer's saved method now (a plan upgrade's prorated difference)."""
        params: Any = {
            "amount": amount, "currency": currency.lower(), "customer": customer_id,
            "payment_method": payment_method, "payment_method_types": ["card"], "confirm": True,
            "metadata": {"order_id": order_id, "attempt": "1"}}
        try:
            pi = await self.v1.payment_intents.create_async(params, {"idempotency_key": key})
        except stripe.CardError as exc:
            raise _declined(exc) from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "charging the saved payment method") from exc
        return intent_from(pi)

    async def create_payout(self, *, amount: int, currency: str, payout_id: str,
                            provider_org: str) -> str | None:
        """A Stripe Payout standing in for a Connect transfer; None where Stripe cannot."""
        if currency not in PAYOUT_CURRENCIES:
            return None
        try:
            payout = await self.v1.payouts.create_async(
                {"amount": amount, "currency": currency.lower(),
                 "metadata": {"payout_id": payout_id, "provider_org": provider_org},
                 "description": f"Sluice settlement {payout_id}"},
                {"idempotency_key": f"payout-{payout_id}"})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the payout") from exc
        return str(payout.id)
