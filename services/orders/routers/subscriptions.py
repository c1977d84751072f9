"""``/v1/subscriptions``: renewing plans, their payment methods, plan changes, caps and
cancellation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status
from sqlalchemy import select

from services.orders import renewals, subscribe
from services.orders.billing_schemas import (
    PaymentMethodUpdate,
    PlanChange,
    Subscription,
    SubscriptionCreate,
    SubscriptionPatch,
    SubscriptionStatus,
    subscription_out,
)
from services.orders.listing import newest_first, next_page
from services.orders.models import Subscription as SubscriptionRow
from services.orders.orders import parties_filter
from services.orders.runtime import Ctx
from shared.auth import Buyer, Operator, Principal, require_roles
from shared.db import DbSession
from shared.errors import BadRequest
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

Reader = Annotated[Principal, Depends(require_roles("buyer", "provider", "regulator", "operator"))]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255,
    description="Required. A unique key per subscription you mean to start; repeating the request with "
    "the same key and body returns the same subscription.")]
_PAYMENT: dict[int | str, dict[str, Any]] = {402: {
    "description": "The card was declined; `card_error` says why. Pay again with "
    "`POST /v1/subscriptions/{id}/payment-method`.", "content": {"application/problem+json": {}}}}



def _visible(principal: Principal) -> Any:
    return parties_filter(principal, SubscriptionRow.buyer_org, SubscriptionRow.provider_org)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=Subscription,
    summary="Subscribe from a subscription quote (buyer, Idempotency-Key required)",
    description="Saves the payment method on your organisation's Stripe Customer, creates the Stripe "
    "Subscription and pays its first period at once: the subscription becomes `active` and the "
    "entitlement is granted for the period. It renews every period until cancelled; metered usage is "
    "billed after each period, within the optional `spend_cap`. A declined card answers 402 and leaves "
    "the subscription `incomplete` (pay again with `POST /v1/subscriptions/{id}/payment-method`).",
    responses={**problem_docs(400, 401, 403, 404, 409, 422, 503), **_PAYMENT,
               200: {"description": "A repeat of an earlier request", "model": Subscription}},
)
async def create_subscription(body: SubscriptionCreate, ctx: Ctx, response: Response, buyer: Buyer,
                              key: IdempotencyKey = None) -> Subscription:
    if not key or not key.strip():
        raise BadRequest("The Idempotency-Key header is required: send a unique value (e.g. a UUID) per "
                         "subscription, and the same value when you retry.",
                         problem="idempotency-key-missing")
    ask = subscribe.SubscribeAsk(quote_id=body.quote_id, purpose=body.purpose,
                                 payment_method=body.payment_method, spend_cap=body.spend_cap)
    sub, created = await subscribe.subscribe(ctx, buyer, key.strip(), ask)
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return subscription_out(sub)


@router.get("", response_model=Page[Subscription], summary="List subscriptions you may see",
            description="Buyers see their organisation's, providers those to their products, regulators and "
            "operators all. Newest first.", responses=problem_docs(400, 401, 403))
async def list_subscriptions(
    session: DbSession, principal: Reader, limit: LimitParam = 50, cursor: CursorParam = None,
    status_: Annotated[SubscriptionStatus | None, Query(alias="status")] = None,
) -> Page[Subscription]:
    stmt = newest_first(select(SubscriptionRow), SubscriptionRow.created_at, SubscriptionRow.id, cursor)
    where = _visible(principal)
    if where is not None:
        stmt = stmt.where(where)
    if status_:
        stmt = stmt.where(SubscriptionRow.status == status_)
    rows, nxt = next_page(list((await session.execute(stmt.limit(limit + 1))).scalars()), limit)
    return Page(items=[subscription_out(r) for r in rows], next_cursor=nxt)


@router.get("/{subscription_id}", response_model=Subscription, summary="Get a subscription you may see",
            responses=problem_docs(401, 403, 404))
async def get_subscription(subscription_id: str, session: DbSession, principal: Reader) -> Subscription:
    stmt = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
    where = _visible(principal)
    if where is not None:
        stmt = stmt.where(where)
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise subscribe.not_found(subscription_id)
    return subscription_out(row)


@router.post("/{subscription_id}/payment-method", response_model=Subscription,
             summary="Save a new payment method and pay what is owed with it (buyer)",
             description="Makes it the default for renewals. If the first payment or a renewal failed, "
             "pays that invoice now: a past-due or suspended subscription becomes `active` again and its "
             "entitlement resumes.", responses={**problem_docs(401, 403, 404, 409, 422, 503), **_PAYMENT})
async def update_payment_method(subscription_id: str, body: PaymentMethodUpdate, ctx: Ctx,
                                buyer: Buyer) -> Subscription:
    sub = await subscribe.pay_again(ctx, buyer, subscription_id, body.payment_method)
    return subscription_out(sub)


@router.post("/{subscription_id}/cancel", response_model=Subscription,
             summary="Cancel at the end of the paid period (buyer)",
             description="An active subscription keeps its access until `current_period_end` and is not "
             "renewed (undo with `/resume`). One that owes money (incomplete, past due, suspended) ends now "
             "and its unpaid order is cancelled.", responses=problem_docs(401, 403, 404, 409))
async def cancel_subscription(subscription_id: str, ctx: Ctx, buyer: Buyer) -> Subscription:
    return subscription_out(await subscribe.cancel(ctx, buyer, subscription_id))


@router.post("/{subscription_id}/resume", response_model=Subscription,
             summary="Undo a cancellation scheduled for the period's end (buyer)",
             responses=problem_docs(401, 403, 404, 409))
async def resume_subscription(subscription_id: str, ctx: Ctx, buyer: Buyer) -> Subscription:
    return subscription_out(await subscribe.resume(ctx, buyer, subscription_id))


@router.post("/{subscription_id}/change-plan", response_model=Subscription,
             summary="Upgrade or downgrade now, prorated (buyer)",
             description="Moves to another plan of the same product version with the same period. The "
             "unused time of the current plan is credited and the rest of the period on the new plan "
             "charged: an upgrade charges the difference at once with the saved payment method (an order "
             "with billing_reason `subscription_update`), a downgrade refunds it on the current period's "
             "order. Renewals then bill the new plan.",
             responses={**problem_docs(401, 403, 404, 409, 422, 503), **_PAYMENT})
async def change_plan(subscription_id: str, body: PlanChange, ctx: Ctx, buyer: Buyer) -> Subscription:
    return subscription_out(await renewals.change_plan(ctx, buyer, subscription_id, body.plan_id))


@router.patch("/{subscription_id}", response_model=Subscription,
              summary="Set or lift the spending cap of a metered subscription (buyer)",
              description="The cap is the most one period costs (base fee + usage, before VAT). It becomes "
              "the period's query allowance; when it is reached, tokens are refused with "
              "`spend-cap-reached` until the next period or a higher cap.",
              responses=problem_docs(401, 403, 404, 409, 422, 503))
async def patch_subscription(subscription_id: str, body: SubscriptionPatch, ctx: Ctx,
                             buyer: Buyer) -> Subscription:
    sub = await renewals.set_spend_cap(ctx, buyer, subscription_id, body.spend_cap)
    return subscription_out(sub)


@router.post("/{subscription_id}/renew", response_model=Subscription,
             summary="Bill the next period now (operator)",
             description="The billing clock renews subscriptions when their period ends; this bills the "
             "next period at once (support, demos and tests). A declined card makes the subscription "
             "`past_due` (grace period) rather than failing the request.",
             responses=problem_docs(401, 403, 404, 409, 503))
async def renew_subscription(subscription_id: str, ctx: Ctx, _: Operator,
                             session: DbSession) -> Subscription:
    if await session.get(SubscriptionRow, subscription_id) is None:
        raise subscribe.not_found(subscription_id)
    await renewals.renew(ctx, subscription_id, force=True)
    async with ctx.sessionmaker() as s:
        row = await s.get(SubscriptionRow, subscription_id)
    assert row is not None
    return subscription_out(row)
