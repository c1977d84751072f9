"""Repairs lost webhooks: asks Stripe about orders left in ``pending_payment``.

localstripe sends each webhook once, and real Stripe can fail to reach us for
days; the reconciler makes the outcome independent of webhook delivery. Safe in
several replicas at once: the transitions are compare-and-set.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select, update

from services.orders import refunds, renewals, settlement
from services.orders.context import OrdersContext
from services.orders.models import Order
from services.orders.orders import PENDING
from services.orders.runtime import orders_context_of
from shared.db import utcnow
from shared.errors import ProblemError
from shared.periodic import Periodic

logger = logging.getLogger("sluice.orders")


async def reconcile_once(ctx: OrdersContext, *, older_than_seconds: float | None = None,
                         batch: int = 100) -> dict[str, int]:
    """Check one batch of stale pending orders; return how many ended in each outcome."""
    threshold = ctx.settings.reconcile_after_seconds if older_than_seconds is None else older_than_seconds
    cutoff = utcnow() - timedelta(seconds=threshold)
    async with ctx.sessionmaker() as s:
        rows = (await s.execute(
            select(Order.id, Order.payment_intent_id)
            .where(Order.status == PENDING, Order.payment_intent_id.is_not(None),
                   Order.last_payment_at <= cutoff)
            .order_by(Order.last_payment_at).limit(batch)
        )).all()
    outcomes: dict[str, int] = {}
    for order_id, pi_id in rows:
        assert pi_id is not None
        try:
            intent = await ctx.gateway.retrieve(pi_id)
        except ProblemError as exc:
            logger.warning("reconciler could not read %s for %s: %s", pi_id, order_id, exc.detail)
            outcomes["stripe_error"] = outcomes.get("stripe_error", 0) + 1
            continue
        async with ctx.sessionmaker() as s, s.begin():
            if intent.status == "succeeded":
                outcome = await settlement.payment_succeeded(s, intent, "reconciler")
            elif intent.status == "requires_payment_method" and intent.last_payment_error:
                outcome = await settlement.payment_failed(s, intent, "reconciler")
            else:
                outcome = "still_" + intent.status
                # Look again after another threshold, not on every run.
                await s.execute(update(Order).where(Order.id == order_id, Order.status == PENDING)
                                .values(last_payment_at=utcnow()))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for outcome, count in (await refunds.resume_stale(ctx.sessionmaker, ctx.gateway)).items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    for outcome, count in (await renewals.run_clock(ctx)).items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    if outcomes:
        logger.info("reconciled %d pending order(s) and refunds: %s", len(rows), outcomes)
    return outcomes


@contextlib.asynccontextmanager
async def reconciler(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: run :func:`reconcile_once` every ``reconcile_interval_seconds``."""
    ctx = orders_context_of(app)
    interval = ctx.settings.reconcile_interval_seconds
    if interval <= 0:
        yield
        return

    async with Periodic("orders-reconciler", lambda: reconcile_once(ctx), interval,
                        run_at_start=False).running():
        yield
