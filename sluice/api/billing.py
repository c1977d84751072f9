"""Orders service, billing: subscriptions, private offers, invoices, statements, payouts and
the spending and earnings views."""

from __future__ import annotations

import uuid
from typing import Any

from sluice.transport import JSON, Transport


class BillingApi(Transport):
    # --- subscriptions -------------------------------------------------------------------
    def subscribe(self, quote_id: str, purpose: str, payment_method: str, *, spend_cap: int | None = None,
                  idempotency_key: str | None = None) -> JSON:
        """Start a subscription from a quote with mode ``subscription`` (buyer)."""
        body: JSON = {"quote_id": quote_id, "purpose": purpose, "payment_method": payment_method}
        if spend_cap is not None:
            body["spend_cap"] = spend_cap
        return self.post("orders", "/v1/subscriptions", body,
                         headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def subscriptions_page(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/subscriptions", params)

    def get_subscription(self, subscription_id: str) -> JSON:
        return self.get("orders", f"/v1/subscriptions/{subscription_id}")

    def subscription_payment_method(self, subscription_id: str, payment_method: str) -> JSON:
        """Save a payment method for renewals and pay what is owed with it (buyer)."""
        return self.post("orders", f"/v1/subscriptions/{subscription_id}/payment-method",
                         {"payment_method": payment_method})

    def cancel_subscription(self, subscription_id: str) -> JSON:
        return self.post("orders", f"/v1/subscriptions/{subscription_id}/cancel")

    def resume_subscription(self, subscription_id: str) -> JSON:
        return self.post("orders", f"/v1/subscriptions/{subscription_id}/resume")

    def change_subscription_plan(self, subscription_id: str, plan_id: str) -> JSON:
        return self.post("orders", f"/v1/subscriptions/{subscription_id}/change-plan", {"plan_id": plan_id})

    def set_spend_cap(self, subscription_id: str, spend_cap: int | None) -> JSON:
        return self.patch("orders", f"/v1/subscriptions/{subscription_id}", {"spend_cap": spend_cap})

    def renew_subscription(self, subscription_id: str) -> JSON:
        """Bill the next period now (operator)."""
        return self.post("orders", f"/v1/subscriptions/{subscription_id}/renew")

    # --- offers ---------------------------------------------------------------------------
    def create_offer(self, body: JSON) -> JSON:
        return self.post("orders", "/v1/offers", body)

    def offers_page(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/offers", params)

    def get_offer(self, offer_id: str) -> JSON:
        return self.get("orders", f"/v1/offers/{offer_id}")

    def withdraw_offer(self, offer_id: str) -> JSON:
        return self.post("orders", f"/v1/offers/{offer_id}/withdraw")

    # --- invoices, statements, payouts, views ---------------------------------------------
    def invoices_page(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/invoices", params)

    def get_invoice(self, number: str) -> JSON:
        return self.get("orders", f"/v1/invoices/{number}")

    def invoice_html(self, number: str) -> str:
        """The printable HTML of an invoice."""
        return str(self.request("GET", self.url("orders", f"/v1/invoices/{number}/html")))

    def statement(self, period: str) -> JSON:
        return self.get("orders", "/v1/providers/me/statements", {"period": period})

    def create_payout(self, provider_org: str, currency: str, period: str) -> JSON:
        return self.post("orders", "/v1/payouts",
                         {"provider_org": provider_org, "currency": currency, "period": period})

    def payouts(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/payouts", params)

    def spending(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/buyers/me/spending", params)

    def earnings_summary(self, **params: Any) -> JSON:
        return self.get("orders", "/v1/providers/me/earnings/summary", params)
