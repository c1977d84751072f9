"""Stripe webhook events: verified, stored once, applied through :mod:`settlement`."""

from __future__ import annotations

import logging
import time
from typing import Any

import stripe
from sqlalchemy.exc import IntegrityError

from services.orders import billing_events, settlement
from services.orders.context import OrdersContext
from services.orders.models import StripeEvent
from services.orders.payments import intent_from
from shared.db import utcnow
from shared.errors import BadRequest

logger = logging.getLogger("sluice.orders")

HANDLED = ("payment_intent.succeeded", "payment_intent.payment_failed")


def _signed_at(signature: str) -> int | None:
    """The ``t=`` timestamp of a ``Stripe-Signature`` header (None if absent or malformed)."""
    for item in signature.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def verify(payload: bytes, signature: str | None, secret: str, *, tolerance: int = 300) -> dict[str, Any]:
    """Check the ``Stripe-Signature`` header against the raw body; return the event as JSON.

    The signed timestamp must lie within ``tolerance`` seconds of now *in both directions*:
    the SDK refuses only old ones, and a signature dated in the future would let a captured
    request be replayed for that long."""
    if not signature:
        raise BadRequest("The Stripe-Signature header is missing; only Stripe can call this endpoint.",
                         problem="webhook-signature-invalid", title="Invalid webhook signature")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise BadRequest(
            "The Stripe-Signature header does not match the body (wrong secret, modified body, or "
            f"a timestamp older than {tolerance} seconds).",
            problem="webhook-signature-invalid", title="Invalid webhook signature",
        ) from exc
    except ValueError as exc:
        raise BadRequest("The webhook body is not a JSON Stripe event.", problem="webhook-malformed",
                         title="Malformed webhook") from exc
    signed_at = _signed_at(signature)
    if signed_at is None or signed_at > time.time() + tolerance:
        raise BadRequest(
            f"The Stripe-Signature timestamp lies more than {tolerance} seconds in the future; "
            "check the sender's clock (Stripe signs with the time it sends).",
            problem="webhook-signature-invalid", title="Invalid webhook signature",
        )
    data: dict[str, Any] = event.to_dict()
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise BadRequest("The event has no id or type.", problem="webhook-malformed",
                         title="Malformed webhook")
    return data


async def handle(ctx: OrdersContext, event: dict[str, Any]) -> tuple[str, bool]:
    """Apply the event once. Returns (outcome, duplicate)."""
    etype: str = event["type"]
    obj = (event.get("data") or {}).get("object") or {}
    pi_id = obj.get("id") if etype.startswith("payment_intent.") else None
    record = StripeEvent(id=event["id"], type=etype, payment_intent_id=pi_id,
                         order_id=(obj.get("metadata") or {}).get("order_id"), outcome="received",
                         received_at=utcnow())
    async with ctx.sessionmaker() as s:
        try:
            async with s.begin():
                s.add(record)
                # The insert takes the event id first: a concurrent delivery of the same
                # event waits here and then fails on the primary key.
                await s.flush()
                outcome = "ignored"
                if etype in HANDLED and pi_id:
                    intent = intent_from(obj)
                    if etype == "payment_intent.succeeded":
                        outcome = await settlement.payment_succeeded(s, intent, "stripe-webhook")
                    else:
                        outcome = await settlement.payment_failed(s, intent, "stripe-webhook")
                elif etype in billing_events.HANDLED:
                    outcome = await billing_events.handle(s, etype, obj)
                record.outcome = outcome
        except IntegrityError:
            async with ctx.sessionmaker() as check:
                if await check.get(StripeEvent, event["id"]) is None:
                    raise  # not a repeated delivery: a real fault, let Stripe retry
            return "duplicate", True
    logger.info("stripe event %s (%s): %s", event["id"], etype, outcome)
    return outcome, False
