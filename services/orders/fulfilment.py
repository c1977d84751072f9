"""Delivers entitlement commands from the outbox to the access service.

The command is written in the transaction that makes an order ``paid`` (or
``refunded``); this relay posts it with the orders service's own token:

* ``grant_entitlement`` → ``POST {access}/v1/entitlements`` (idempotent by order id);
  on 200/201 the order becomes ``fulfilled`` (only if it is still ``paid``).
* ``revoke_entitlement`` → ``POST {access}/v1/entitlements/by-order/{order_id}/revoke``.
* ``entitlement_change`` → ``POST {access}/v1/entitlements/by-order/{order_id}/changes`` (a
  subscription's renewal, grace, hold, plan or cap); a change that ``fulfils`` an order makes
  that order ``fulfilled``.

Failures raise, so the outbox keeps the message and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from services.orders.context import OrdersContext
from services.orders.entitlement_commands import CHANGE
from services.orders.models import Order
from services.orders.orders import (
    FULFILLED,
    GRANT,
    PAID,
    REFUND_PENDING,
    REVOKE,
    Who,
    load_for_update,
    transition,
)
from services.orders.settlement import STRIPE_DESTINATION
from shared.db import utcnow
from shared.outbox import OutboxMessage, OutboxRelay, record_event, running
from shared.service_auth import ServiceTokenAuth, TokenSource
from shared.tracing import delivery

logger = logging.getLogger("sluice.orders")


async def mark_fulfilled(ctx: OrdersContext, granted: Sequence[tuple[str, str | None]]) -> int:
    """Make each granted order ``fulfilled`` (only if still ``paid``), in one transaction.

    An order whose refund is at Stripe (``refund_pending``) only records the entitlement
    id: the refund decides where it goes next (``refunded``, or back to ``fulfilled``)."""
    done = 0
    async with ctx.sessionmaker() as s, s.begin():
        for order_id, entitlement_id in granted:
            order = await load_for_update(s, order_id)
            if order is not None and order.status == REFUND_PENDING and order.fulfilled_at is None:
                await s.execute(update(Order).where(Order.id == order_id, Order.status == REFUND_PENDING)
                                .values(entitlement_id=entitlement_id, fulfilled_at=utcnow()))
                continue
            if order is None or order.status != PAID:
                continue  # already fulfilled, or refunded meanwhile (the revoke follows)
            await transition(s, order, FULFILLED, Who(system="fulfilment"),
                             details={"entitlement_id": entitlement_id},
                             changes={"entitlement_id": entitlement_id})
            done += 1
    return done


def access_deliverer(
    ctx: OrdersContext, http: httpx.AsyncClient, access_url: str, token: TokenSource
) -> Callable[[Sequence[OutboxMessage]], Awaitable[None]]:
    base = access_url.rstrip("/")
    auth = ServiceTokenAuth(token)

    async def post(url: str, body: dict[str, object], message: OutboxMessage) -> httpx.Response:
        with delivery(message, "access") as trace_headers:
            return await http.post(url, json=body, headers=trace_headers, auth=auth)

    async def deliver(messages: Sequence[OutboxMessage]) -> None:
        granted: list[tuple[str, str | None]] = []
        try:
            for message in messages:
                order_id = str(message.payload["order_id"])
                if message.kind == GRANT:
                    resp = await post(f"{base}/v1/entitlements", message.payload, message)
                    if resp.status_code not in (200, 201):
                        raise RuntimeError(f"access refused the grant for {order_id}: "
                                           f"{resp.status_code} {resp.text[:300]}")
                    ent = resp.json().get("id") if resp.headers.get("content-type", "").startswith(
                        "application/json") else None
                    granted.append((order_id, str(ent) if ent else None))
                elif message.kind == CHANGE:
                    body = {k: v for k, v in message.payload.items() if k not in ("order_id", "fulfils")}
                    resp = await post(f"{base}/v1/entitlements/by-order/{order_id}/changes", body, message)
                    if resp.status_code == 409:
                        continue  # the entitlement was revoked: billing changes no longer apply
                    if resp.status_code not in (200, 201):
                        raise RuntimeError(f"access refused the change for {order_id}: "
                                           f"{resp.status_code} {resp.text[:300]}")
                    if message.payload.get("fulfils"):
                        granted.append((str(message.payload["fulfils"]), str(resp.json().get("id"))))
                elif message.kind == REVOKE:
                    resp = await post(f"{base}/v1/entitlements/by-order/{order_id}/revoke",
                                      {"reason": message.payload.get("reason", "refund")}, message)
                    if resp.status_code not in (200, 201, 204):
                        raise RuntimeError(f"access refused the revocation for {order_id}: "
                                           f"{resp.status_code} {resp.text[:300]}")
                else:
                    logger.error("unknown outbox command %s (%s); skipping it",
                                 message.kind, message.message_id)
        finally:
            if granted:
                # Shielded: a shutdown that cancels the relay must not interrupt this
                # transaction half-way. Grants confirmed before a failure are recorded too
                # (the batch is retried; access answers 200 for a repeated grant).
                await asyncio.shield(mark_fulfilled(ctx, granted))

    return deliver


@contextlib.asynccontextmanager
async def fulfilment_relay(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: relay entitlement commands to the access service while serving."""
    ctx: OrdersContext = app.state.orders
    token: TokenSource | None = app.state.orders_token_source
    if token is None:
        logger.warning("no service client secret (SLUICE_ORDERS_SERVICE_CLIENT_SECRET): entitlement "
                       "commands stay in the outbox until one is configured")
        yield
        return
    relay = OutboxRelay(
        ctx.sessionmaker, "access",
        access_deliverer(ctx, app.state.outbound_http, ctx.settings.access_url, token),
        batch_size=20, poll_interval=ctx.settings.fulfilment_poll_seconds, max_backoff=30.0,
    )
    async with running([relay]):  # woken after each commit that enqueues a command
        yield


def stripe_refund_deliverer(ctx: OrdersContext) -> Callable[[Sequence[OutboxMessage]], Awaitable[None]]:
    """Refunds payments no order needs (duplicates); Stripe's idempotency key is per intent."""

    async def deliver(messages: Sequence[OutboxMessage]) -> None:
        for message in messages:
            pi, order_id = str(message.payload["payment_intent_id"]), str(message.payload["order_id"])
            with delivery(message, STRIPE_DESTINATION):
                refund_id = await ctx.gateway.refund(pi, order_id, key=f"{pi}-unneeded-refund")
                async with ctx.sessionmaker() as s, s.begin():
                    await record_event(s, service="orders", action="orders.payment.refunded",
                                       subject_type="order", subject_id=order_id,
                                       details={"payment_intent_id": pi, "stripe_refund_id": refund_id,
                                                "reason": message.payload.get("reason")})

    return deliver


@contextlib.asynccontextmanager
async def stripe_refund_relay(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan step: give back payments that no order needs (see ``settlement``)."""
    ctx: OrdersContext = app.state.orders
    relay = OutboxRelay(ctx.sessionmaker, STRIPE_DESTINATION, stripe_refund_deliverer(ctx),
                        batch_size=10, poll_interval=max(1.0, ctx.settings.fulfilment_poll_seconds),
                        max_backoff=300.0)
    async with running([relay]):
        yield
