"""``/v1/orders``: placing, paying, cancelling, refunding and reading orders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from sqlalchemy import select

from services.orders import checkout
from services.orders.context import OrdersContext
from services.orders.listing import newest_first, next_page
from services.orders.models import Order as OrderRow
from services.orders.orders import get_visible, visibility_filter
from services.orders.refunds import RefundAsk
from services.orders.runtime import Ctx
from services.orders.schemas import Order, OrderCreate, PayRequest, RefundRequest, Status, order_out
from shared.auth import Buyer, Principal, require_roles
from shared.db import DbSession
from shared.errors import BadRequest
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/orders", tags=["orders"])

Reader = Annotated[Principal, Depends(require_roles("buyer", "provider", "regulator", "operator"))]
Refunder = Annotated[Principal, Depends(require_roles("provider", "operator"))]

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255,
    description="Required. A unique key per order you mean to place (e.g. a UUID). Repeating a "
    "request with the same key and body returns the same order; a different body is refused.",
)]

RefundKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=128,
    description="Needed for partial and pro-rata refunds: a unique value per refund you mean to make; "
    "repeating it returns the order without refunding again.",
)]



def _for_buyer(principal: Principal, order: OrderRow) -> bool:
    return "buyer" in principal.roles and order.buyer_org == principal.org_id


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Order,
    summary="Order from a quote for a declared purpose (buyer, Idempotency-Key required)",
    description="Free plans become `paid` at once (and the entitlement is granted). Paid plans create a "
    "Stripe PaymentIntent and return its `payment.client_secret` for Stripe.js; API-only buyers pay with "
    "`POST /v1/orders/{id}/pay`. Answers 201 when created, 200 with `Idempotent-Replayed: true` for a "
    "repeat of the same key and body.",
    responses={**problem_docs(400, 401, 403, 404, 409, 422, 503),
               200: {"description": "A repeat of an earlier request: the same order", "model": Order}},
)
async def place_order(body: OrderCreate, ctx: Ctx, buyer: Buyer, key: IdempotencyKey = None) -> Response:
    if not key or not key.strip():
        raise BadRequest("The Idempotency-Key header is required: send a unique value (e.g. a UUID) per "
                         "order, and the same value when you retry.", problem="idempotency-key-missing")
    return await place_order_response(ctx, buyer, key, body)


async def place_order_response(ctx: OrdersContext, buyer: Principal, key: str, body: OrderCreate) -> Response:
    """The order (or the one ``key`` already made) and the response for it; shared with the
    order lane (services/orders/order_lane.py), which answers the plainest requests before
    FastAPI's routing."""
    order, created = await checkout.place_order(ctx, buyer, key=key.strip(),
                                                quote_id=body.quote_id, purpose=body.purpose)
    # Dumped here, not returned for FastAPI to validate against Order again and re-encode: the
    # same bytes in one pass (docs/performance.md, orders).
    content = order_out(order, for_buyer=True).model_dump_json()
    if created:
        return Response(content, status_code=status.HTTP_201_CREATED, media_type="application/json")
    return Response(content, status_code=status.HTTP_200_OK, media_type="application/json",
                    headers={"Idempotent-Replayed": "true"})


@router.get(
    "", response_model=Page[Order], summary="List orders you may see",
    description="Buyers see their organisation's orders, providers the orders for their products, "
    "regulators and operators all orders. Newest first.",
    responses=problem_docs(400, 401, 403),
)
async def list_orders(
    session: DbSession, principal: Reader, limit: LimitParam = 50, cursor: CursorParam = None,
    status_: Annotated[Status | None, Query(alias="status", description="Only orders in this state.")] = None,
    product_id: Annotated[str | None, Query(max_length=64)] = None,
    subscription_id: Annotated[str | None, Query(max_length=40, description="Only this subscription's "
                                                 "orders (its periods and plan changes).")] = None,
    provider: Annotated[str | None, Query(max_length=64, description="Only orders for this provider "
                                          "organisation's products (org_…, as the catalog's).")] = None,
    buyer: Annotated[str | None, Query(max_length=64, description="Only orders of this buyer "
                                       "organisation (org_…).")] = None,
) -> Page[Order]:
    stmt = newest_first(select(OrderRow), OrderRow.created_at, OrderRow.id, cursor).limit(limit + 1)
    where = visibility_filter(principal)
    if where is not None:
        stmt = stmt.where(where)
    if status_:
        stmt = stmt.where(OrderRow.status == status_)
    if product_id:
        stmt = stmt.where(OrderRow.product_id == product_id)
    if subscription_id:
        stmt = stmt.where(OrderRow.subscription_id == subscription_id)
    if provider:
        stmt = stmt.where(OrderRow.provider_org == provider)
    if buyer:
        stmt = stmt.where(OrderRow.buyer_org == buyer)
    rows, nxt = next_page(list((await session.execute(stmt)).scalars().all()), limit)
    return Page(items=[order_out(o, for_buyer=_for_buyer(principal, o)) for o in rows], next_cursor=nxt)


@router.get("/{order_id}", response_model=Order, summary="Get an order you may see",
            responses=problem_docs(401, 403, 404))
async def get_order(order_id: str, session: DbSession, principal: Reader) -> Order:
    order = await get_visible(session, principal, order_id)
    return order_out(order, for_buyer=_for_buyer(principal, order))


@router.post(
    "/{order_id}/pay", response_model=Order,
    summary="Pay (or retry paying) your order server-side (buyer)",
    description="With `payment_method` (e.g. `pm_card_visa`), attaches it to the PaymentIntent and confirms "
    "it: a success makes the order `paid` at once; a decline makes it `payment_failed` and answers 402 "
    "with the card error. On a `payment_failed` order this first starts a new attempt (a new "
    "PaymentIntent). Without `payment_method` it only (re)starts the attempt and returns the "
    "`client_secret`. Paying a paid order changes nothing.",
    responses={**problem_docs(401, 403, 404, 409, 422, 503),
               402: {"description": "The card was declined; `card_error` says why",
                     "content": {"application/problem+json": {}}}},
)
async def pay_order(order_id: str, body: PayRequest, ctx: Ctx, buyer: Buyer) -> Order:
    order, next_action = await checkout.pay_order(ctx, buyer, order_id, body.payment_method)
    return order_out(order, for_buyer=True, next_action=next_action)


@router.post("/{order_id}/cancel", response_model=Order, summary="Cancel your unpaid order (buyer)",
             description="Cancels the PaymentIntents at Stripe first; an order that turns out to be paid "
             "is not cancelled (409).",
             responses=problem_docs(401, 403, 404, 409, 503))
async def cancel_order(order_id: str, ctx: Ctx, buyer: Buyer) -> Order:
    return order_out(await checkout.cancel_order(ctx, buyer, order_id), for_buyer=True)


@router.post(
    "/{order_id}/refund", response_model=Order,
    summary="Refund all or part of a paid order (operator, or the provider of the product)",
    description="Decides the refund first (the order is `refund_pending` while Stripe is asked), refunds "
    "at Stripe with a stored idempotency key, then books ledger reversals. A full refund makes the order "
    "`refunded` and revokes the entitlement; a partial one (`amount` in minor units, or `pro_rata`: the "
    "unused share of the access window) returns it to `fulfilled` and keeps, shortens or ends access "
    "as `access` says. Never more than was captured (422 `refund-within-captured`). Partial refunds need "
    "an `Idempotency-Key`. Refunding a refunded order changes nothing.",
    responses=problem_docs(401, 403, 404, 409, 422, 503),
)
async def refund_order(order_id: str, body: RefundRequest, ctx: Ctx, principal: Refunder,
                       key: RefundKey = None) -> Order:
    partial = body.amount is not None or body.pro_rata
    if partial and not (key and key.strip()):
        raise BadRequest("A partial or pro-rata refund needs an Idempotency-Key header (a unique value per "
                         "refund you mean to make), so that a retry cannot refund twice.",
                         problem="idempotency-key-missing")
    ask = RefundAsk(reason=body.reason, amount=body.amount, pro_rata=body.pro_rata, access=body.access,
                    request_key=key.strip() if key and key.strip() else None)
    order = await checkout.refund_order(ctx, principal, order_id, ask)
    return order_out(order, for_buyer=False)


