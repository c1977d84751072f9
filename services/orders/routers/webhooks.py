"""``POST /v1/webhooks/stripe``: Stripe's calls, authenticated by their signature."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from services.orders import webhooks
from services.orders.runtime import Ctx
from services.orders.schemas import WebhookAck
from shared.problems import problem_docs

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "/stripe", response_model=WebhookAck,
    summary="Receive a Stripe event (Stripe only: verified by the Stripe-Signature header)",
    description="No bearer token: the `Stripe-Signature` header is checked against the raw body with the "
    "endpoint's signing secret (400 when it does not verify). Each event id is applied once; repeated "
    "and out-of-order deliveries change nothing. Handles `payment_intent.succeeded` and "
    "`payment_intent.payment_failed`; other types are acknowledged and ignored.",
    responses=problem_docs(400),
)
async def stripe_webhook(
    request: Request, ctx: Ctx,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    payload = await request.body()
    event = webhooks.verify(payload, stripe_signature, ctx.settings.stripe_webhook_secret.get_secret_value(),
                            tolerance=ctx.settings.stripe_webhook_tolerance_seconds)
    outcome, _duplicate = await webhooks.handle(ctx, event)
    return WebhookAck(event_id=event["id"], outcome=outcome)
