"""Quotes and orders (buyer), refunds (operator, provider), the ledger and earnings."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sluice.cli.core import (
    AllPages,
    Api,
    Cursor,
    Limit,
    command,
    group,
    paged,
)
from sluice.cli.output import stderr_console

quotes = group("quotes", "Quotes: the price of a plan, valid 15 minutes for one order (buyer).")
orders = group("orders", "Orders: order, pay, cancel (buyer); refund (operator, provider); list.")

OrderId = Annotated[str, typer.Argument(help="the order's id (ord_...).")]
ORDER_COLUMNS = ["id", "status", "product_id", "version", "purpose", "price.total_display",
                 "price.currency", "entitlement_id", "created_at"]
LEDGER_COLUMNS = ["id", "order_id", "kind", "account", "amount", "currency", "created_at"]


@command(quotes, "create", calls="orders POST /v1/quotes")
def quote_create(
    api: Api,
    product: Annotated[str | None, typer.Option(help="the product's id (prd_...); not with --offer.")] = None,
    version: Annotated[int | None, typer.Option(
        help="the published version to buy (the latest; see `products get`).")] = None,
    plan: Annotated[str | None, typer.Option(help="the plan's id (plan_..., see `products get`).")] = None,
    periods: Annotated[int, typer.Option(help="prepaid periodic plans: how many periods.")] = 1,
    quantity: Annotated[int, typer.Option(help="prepaid metered plans: how many queries to buy.")] = 0,
    mode: Annotated[str, typer.Option(
        help="prepaid (an order), subscription (renews: `subscriptions create`) or trial (free, once).")]
    = "prepaid",
    offer: Annotated[str | None, typer.Option(help="a private offer made to your organisation (off_...).")]
    = None,
) -> Any:
    """Price a plan for your organisation; the quote's `id` is what `orders create` (or
    `subscriptions create`) takes."""
    return api.quote(product, version, plan, periods=periods, quantity=quantity, mode=mode, offer_id=offer)


@command(quotes, "get", calls="orders GET /v1/quotes/{quote_id}")
def quote_get(api: Api, quote_id: Annotated[str, typer.Argument(help="the quote's id (quo_...).")]) -> Any:
    """One of your organisation's quotes."""
    return api.get_quote(quote_id)


@command(orders, "create", calls="orders POST /v1/orders")
def order_create(
    api: Api,
    quote: Annotated[str, typer.Option(help="the quote's id (quo_...).")],
    purpose: Annotated[str, typer.Option(
        help="your declared purpose; one of the product's allowed purposes.")],
    idempotency_key: Annotated[str | None, typer.Option(
        help="retrying with the same key returns the same order (default: a new random key).")] = None,
) -> Any:
    """Order a quote for a declared purpose (free plans are paid at once)."""
    return api.create_order(quote, purpose, idempotency_key)


@command(orders, "list", calls="orders GET /v1/orders", columns=ORDER_COLUMNS)
def order_list(
    api: Api,
    status: Annotated[str | None, typer.Option(
        help="pending_payment, payment_failed, paid, fulfilled, cancelled, refund_pending or refunded.")]
    = None,
    product: Annotated[str | None, typer.Option(help="only orders of this product (prd_...).")] = None,
    subscription: Annotated[str | None, typer.Option(
        help="only this subscription's orders: its periods and plan changes (sbs_...).")] = None,
    provider: Annotated[str | None, typer.Option(help="only orders for this provider organisation's "
                                                 "products (org_...).")] = None,
    buyer: Annotated[str | None, typer.Option(
        help="only this buyer organisation's orders (org_...).")] = None,
    limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False,
) -> Any:
    """Orders you may see: your organisation's (buyer), your products' (provider), all (overseers)."""
    return paged(api.orders_page, all_pages=all_pages, cursor=cursor, limit=limit, status=status,
                 product_id=product, subscription_id=subscription, provider=provider, buyer=buyer)


@command(orders, "get", calls="orders GET /v1/orders/{order_id}")
def order_get(api: Api, order_id: OrderId) -> Any:
    """One order with its payment, price and entitlement."""
    return api.get_order(order_id)


@command(orders, "pay", calls="orders POST /v1/orders/{order_id}/pay")
def order_pay(
    api: Api, order_id: OrderId,
    payment_method: Annotated[str, typer.Option(
        help="a Stripe PaymentMethod id (test cards: pm_card_visa, pm_card_chargeCustomerFail).")]
    = "pm_card_visa",
    wait: Annotated[bool, typer.Option(
        help="wait until the order is fulfilled (the entitlement exists), showing progress.")] = False,
    timeout: Annotated[float, typer.Option(help="with --wait: give up after this many seconds.")] = 60.0,
) -> Any:
    """Pay an order server-side with a payment method (buyer)."""
    order = api.pay_order(order_id, payment_method)
    return wait_for(api, order_id, "fulfilled", timeout) if wait else order


@command(orders, "wait", calls="orders GET /v1/orders/{order_id}")
def order_wait(
    api: Api, order_id: OrderId,
    status: Annotated[str, typer.Option(help="the status to wait for.")] = "fulfilled",
    timeout: Annotated[float, typer.Option(help="give up after this many seconds.")] = 60.0,
) -> Any:
    """Wait until an order reaches a status (payment and fulfilment are asynchronous)."""
    return wait_for(api, order_id, status, timeout)


def wait_for(api: Api, order_id: str, status: str, timeout: float) -> Any:
    with stderr_console().status(f"waiting for order {order_id} to be {status}…") as spinner:
        try:
            return api.wait_for_order(order_id, status, timeout=timeout, on_wait=lambda o: spinner.update(
                f"order {order_id} is {o['status']}, waiting for {status}…"))
        except TimeoutError as exc:
            stderr_console().print(f"[bold red]error:[/bold red] {exc}")
            raise typer.Exit(1) from None


@command(orders, "cancel", calls="orders POST /v1/orders/{order_id}/cancel")
def order_cancel(api: Api, order_id: OrderId) -> Any:
    """Cancel an unpaid order (buyer)."""
    return api.cancel_order(order_id)


@command(orders, "refund", calls="orders POST /v1/orders/{order_id}/refund")
def order_refund(
    api: Api, order_id: OrderId,
    reason: Annotated[str, typer.Option(help="why (recorded on the order and in the audit log).")],
    amount: Annotated[int | None, typer.Option(help="refund only this many minor units (partial).")] = None,
    pro_rata: Annotated[bool, typer.Option(help="refund the unused share of the access window.")] = False,
    access: Annotated[str | None, typer.Option(
        help="a partial refund's effect on access: keep (default), shorten or end.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="partial refunds: retrying with the same key refunds once (default: a new key).")] = None,
) -> Any:
    """Refund a paid order, all of it (entitlement revoked) or part (operator, or the product's
    provider): money back through Stripe and ledger reversals, never more than was paid."""
    return api.refund_order(order_id, reason, amount=amount, pro_rata=pro_rata, access=access,
                            idempotency_key=idempotency_key)


def register_top_level(app: typer.Typer) -> None:
    """``sluice ledger`` and ``sluice earnings``."""

    @command(app, "ledger", calls="orders GET /v1/ledger", columns=LEDGER_COLUMNS)
    def ledger(api: Api, order: Annotated[str | None, typer.Option(help="only this order's entries.")] = None,
               limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
        """Ledger entries and totals per currency (regulator, operator)."""
        return paged(api.ledger, all_pages=all_pages, cursor=cursor, limit=limit, order_id=order)

    @command(app, "earnings", calls="orders GET /v1/providers/me/earnings")
    def earnings(api: Api, limit: Limit = None, cursor: Cursor = None, all_pages: AllPages = False) -> Any:
        """Your sales and earnings as a provider, with totals per currency."""
        return paged(api.earnings, all_pages=all_pages, cursor=cursor, limit=limit)
