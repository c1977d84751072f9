"""Orders service: quotes, orders, payment, refunds, the ledger and provider earnings."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from sluice.transport import JSON, Transport


class OrdersApi(Transport):
    def quote(self, product_id: str | None, version: int | None, plan_id: str | None, *, periods: int = 1,
              quantity: int = 0, mode: str = "prepaid", offer_id: str | None = None) -> JSON:
        """Price a plan of a pinned product version for your organisation (buyer); ``mode``
        prepaid, subscription or trial; ``offer_id`` a private offer made to you."""
        body: JSON = {"periods": periods, "quantity": quantity, "mode": mode}
        for key, value in (("product_id", product_id), ("version", version), ("plan_id", plan_id),
                           ("offer_id", offer_id)):
            if value is not None:
                body[key] = value
        return self.post("orders", "/v1/quotes", body)

    def get_quote(self, quote_id: str) -> JSON:
        return self.get("orders", f"/v1/quotes/{quote_id}")

    def create_order(self, quote_id: str, purpose: str, idempotency_key: str | None = None) -> JSON:
        """Order a quote; the ``Idempotency-Key`` makes a retried request return the same order."""
        return self.post("orders", "/v1/orders", {"quote_id": quote_id, "purpose": purpose},
                         headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())})

    def pay_order(self, order_id: str, payment_method: str = "pm_card_visa") -> JSON:
        return self.post("orders", f"/v1/orders/{order_id}/pay", {"payment_method": payment_method})

    def cancel_order(self, order_id: str) -> JSON:
        return self.post("orders", f"/v1/orders/{order_id}/cancel")

    def refund_order(self, order_id: str, reason: str, *, amount: int | None = None, pro_rata: bool = False,
                     access: str | None = None, idempotency_key: str | None = None) -> JSON:
        """Refund all (default), ``amount`` minor units, or the unused share (``pro_rata``);
        partial refunds carry an ``Idempotency-Key`` (a new one unless given)."""
        body: JSON = {"reason": reason}
        if amount is not None:
            body["amount"] = amount
        if pro_rata:
            body["pro_rata"] = True
        if access:
            body["access"] = access
        partial = amount is not None or pro_rata
        key = idempotency_key or (str(uuid.uuid4()) if partial else None)
        headers = {"Idempotency-Key": key} if key else None
        return self.post("orders", f"/v1/orders/{order_id}/refund", body, headers=headers)

    def get_order(self, order_id: str) -> JSON:
        return self.get("orders", f"/v1/orders/{order_id}")

    def orders_page(self, **params: Any) -> JSON:
        """One page of the orders you may see (``status``, ``product_id``,
        ``subscription_id``, ``provider``, ``buyer``, ``limit``, ``cursor``)."""
        return self.get("orders", "/v1/orders", params)

    def list_orders(self, **filters: Any) -> list[JSON]:
        """Every order you may see (all pages)."""
        return list(self.pages(self.url("orders", "/v1/orders"), filters))

    def wait_for_order(self, order_id: str, status: str, timeout: float = 30.0,
                       on_wait: Callable[[JSON], None] | None = None) -> JSON:
        """Poll until the order reaches ``status`` (payments and fulfilment are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.get_order(order_id)
            if order["status"] == status:
                return order
            if time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} is {order['status']}, not {status}, after {timeout}s")
            if on_wait:
                on_wait(order)
            time.sleep(0.3)

    # --- money ---------------------------------------------------------------------------
    def ledger(self, **params: Any) -> JSON:
        """Ledger entries and totals per currency (regulator, operator; ``order_id`` filter)."""
        return self.get("orders", "/v1/ledger", params)

    def earnings(self, **params: Any) -> JSON:
        """Your organisation's sales and earnings as a provider."""
        return self.get("orders", "/v1/providers/me/earnings", params)
