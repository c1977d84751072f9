"""Applying what Stripe says about a PaymentIntent to its order.

Three sources report outcomes: the answer to a server-side confirm, webhooks, and
the reconciler. All go through these functions, inside the caller's transaction,
so whichever arrives first applies the change and the others find nothing to do.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.models import Order, PaymentAttempt
from services.orders.orders import (
    CANCELLED,
    FAILED,
    PAID,
    PENDING,
    Who,
    buyer_of,
    load_for_update,
    transition,
)
from services.orders.payments import Intent
from shared.outbox import enqueue, record_event

logger = logging.getLogger("sluice.orders")

STRIPE_DESTINATION = "stripe"
REFUND_PAYMENT = "refund_payment"


async def _order_of(session: AsyncSession, intent: Intent) -> tuple[Order | None, str]:
    attempt = await session.get(PaymentAttempt, intent.id)
    if attempt is None:
        return None, "unknown_payment_intent"
    claimed = intent.metadata.get("order_id")
    if claimed and claimed != attempt.order_id:
        return None, "order_mismatch"
    order = await load_for_update(session, attempt.order_id)
    return order, "" if order else "unknown_order"


async def _anomaly(session: AsyncSession, order: Order, verb: str, intent: Intent, source: str,
                   **details: Any) -> None:
    logger.warning("payment anomaly on %s: %s (%s)", order.id, verb, intent.id)
    await record_event(session, service="orders", action=f"orders.payment.{verb}", subject_type="order",
                       subject_id=order.id, outcome="failure",
                       details={"payment_intent_id": intent.id, "amount": intent.amount,
                                "currency": intent.currency, "by": source, **details})


async def payment_succeeded(session: AsyncSession, intent: Intent, source: str) -> str:
    """Make the order ``paid`` if this intent's money is what the order asked; return the outcome."""
    order, problem = await _order_of(session, intent)
    if order is None:
        return problem
    if intent.amount != order.gross or intent.currency != order.currency:
        await _anomaly(session, order, "amount_mismatched", intent, source,
                       expected_amount=order.gross, expected_currency=order.currency)
        return "amount_mismatch"
    if order.status in (PENDING, FAILED):
        await transition(session, order, PAID, Who(system=source),
                         details={"payment_intent_id": intent.id},
                         changes={"payment_intent_id": intent.id, "payment_claimed_until": None})
        return "paid"
    if order.payment_intent_id == intent.id:
        return "already_" + order.status
    # Money the order does not need (a second successful attempt, or a payment that
    # succeeded after the buyer cancelled): give it back, through the outbox.
    verb, outcome = (("succeeded_after_cancel", "paid_after_cancel") if order.status == CANCELLED
                     else ("duplicated", "duplicate_payment"))
    await _anomaly(session, order, verb, intent, source, paid_with=order.payment_intent_id,
                   refund="automatic")
    await enqueue(session, kind=REFUND_PAYMENT, destination=STRIPE_DESTINATION,
                  message_id=f"refund:{intent.id}",
                  payload={"payment_intent_id": intent.id, "order_id": order.id, "reason": outcome})
    return outcome


async def payment_failed(session: AsyncSession, intent: Intent, source: str,
                         card_error: dict[str, Any] | None = None, *, payer: Who | None = None) -> str:
    """Make the order ``payment_failed`` if this is its current attempt and it is still pending.

    Audited as a ``failure`` of the buyer's payment: by ``payer`` when the buyer's own
    request learnt it, else on behalf of the buyer who placed the order."""
    order, problem = await _order_of(session, intent)
    if order is None:
        return problem
    if order.status != PENDING or order.payment_intent_id != intent.id:
        return "no_change"  # an older attempt, or news that arrived after the success
    error = card_error or intent.last_payment_error or {"code": None, "message": "The payment failed."}
    who = payer or Who(system=source, on_behalf=buyer_of(order))
    await transition(session, order, FAILED, who, outcome="failure",
                     details={"payment_intent_id": intent.id, "card_error": error},
                     changes={"last_payment_error": error})
    return "payment_failed"
