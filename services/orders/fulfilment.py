"""The orders service's relays: entitlement commands to the access service, and refunds of
payments no order needs to Stripe (both registrations in ``shared.relays``).

The command is written in the transaction that makes an order ``paid`` (or
``refunded``); :data:`FULFILMENT_RELAY` posts it with the orders service's own token:

* ``grant_entitlement`` → ``POST {access}/v1/entitlements`` (idempotent by order id);
  consecutive grants go together to ``POST {access}/v1/entitlements/batch``, answered per grant;
  once access took it, the order becomes ``fulfilled`` (only if it is still ``paid``:
  the relay's ``on_delivered`` hook, :func:`fulfil_on_delivery`).
* ``revoke_entitlement`` → ``POST {access}/v1/entitlements/by-order/{order_id}/revoke``.
* ``entitlement_change`` → ``POST {access}/v1/entitlements/by-order/{order_id}/changes`` (a
  subscription's renewal, grace, hold, plan or cap); a change that ``fulfils`` an order makes
  that order ``fulfilled``.

Answers follow the one outbox policy (``shared.outbox.check_delivered``): 2xx and 409 are
delivered, a permanent refusal is dead-lettered, anything else is retried with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence

import httpx
from fastapi import FastAPI
from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.context import OrdersContext
from services.orders.entitlement_commands import ACCESS_DESTINATION, CHANGE
from services.orders.models import Order
from services.orders.orders import (
    FULFILLED,
    GRANT,
    PAID,
    REFUND_PENDING,
    REVOKE,
    TRANSITIONS,
    Who,
    load_for_update,
    transition,
    transition_details,
)
from services.orders.runtime import orders_context_of
from services.orders.settlement import STRIPE_DESTINATION
from shared.db import utcnow
from shared.events import Actor, new_event
from shared.logging import request_id_var
from shared.outbox import (
    WAKE_COALESCE_SECONDS,
    Deliverer,
    OutboxMessage,
    actor_of,
    enqueue_events,
    record_event,
)
from shared.relays import Delivered, HttpDelivery, OnDelivered, Outgoing, Relay, RelayContext
from shared.tracing import delivery

logger = logging.getLogger("sluice.orders")


async def mark_fulfilled(ctx: OrdersContext, granted: Sequence[tuple[str, str | None]]) -> int:
    """Make each granted order ``fulfilled`` (only if still ``paid``), in one transaction.

    Measured (docs/performance.md, orders): a locked read-modify-write per order (``SELECT …
    FOR UPDATE``, the compare-and-set ``UPDATE``, the event's ``INSERT``) was most of the
    relay's cost per order. The common case — a ``paid`` order that belongs to no
    subscription — moves in one set-based compare-and-set for the whole batch
    (:func:`_fulfil_paid`), its events in one multi-row ``INSERT``; every other order (its
    refund is at Stripe, it belongs to a subscription, or it already moved on) takes the
    per-order path (:func:`_fulfil_one`). Returns how many orders became ``fulfilled``."""
    done = 0
    async with ctx.sessionmaker() as s, s.begin():
        moved = await _fulfil_paid(s, granted)
        for order_id, entitlement_id in granted:
            if order_id not in moved:
                done += await _fulfil_one(s, order_id, entitlement_id)
    return done + len(moved)


#: The ``paid`` → ``fulfilled`` verb of the status machine (the audit action's last part).
_FULFILLED_VERB = TRANSITIONS[(PAID, FULFILLED)][0]
_WHO = Who(system="fulfilment")
_MOVED = (Order.id, Order.product_id, Order.version, Order.buyer_org, Order.provider_org, Order.gross,
          Order.currency)


async def _fulfil_paid(s: AsyncSession, granted: Sequence[tuple[str, str | None]]) -> set[str]:
    """``transition(order, FULFILLED)`` for every granted order that is ``paid`` and not a
    subscription's, as one ``UPDATE … WHERE id IN (…) AND status = 'paid' RETURNING`` (the same
    compare-and-set per row: a row whose status changed meanwhile is not touched) and one
    ``INSERT`` of their ``orders.order.fulfilled`` events, with the values and event payloads
    ``transition`` writes. Returns the ids of the orders it moved. (A subscription's order
    goes through ``transition``, which also takes the subscription's lock.)"""
    entitlements: dict[str, str | None] = {}
    for order_id, entitlement_id in granted:
        entitlements.setdefault(order_id, entitlement_id)  # the first grant of an order counts
    if not entitlements:
        return set()
    now = utcnow()
    rows = (await s.execute(
        update(Order)
        .where(Order.id.in_(list(entitlements)), Order.status == PAID, Order.subscription_id.is_(None))
        .values(status=FULFILLED, updated_at=now, fulfilled_at=now,
                entitlement_id=case(entitlements, value=Order.id))
        .returning(*_MOVED)
        .execution_options(synchronize_session=False)
    )).all()
    if not rows:
        return set()
    moved = {row.id: row for row in rows}
    acting, request_id = _WHO.actor(), request_id_var.get()
    actor = acting if isinstance(acting, Actor) else actor_of(acting)  # as record_event does
    events = []
    for order_id, entitlement_id in entitlements.items():  # in the batch's order
        row = moved.get(order_id)
        if row is None:
            continue
        order = Order(id=row.id, product_id=row.product_id, version=row.version, buyer_org=row.buyer_org,
                      provider_org=row.provider_org, gross=row.gross, currency=row.currency)
        events.append(new_event(
            service="orders", action=f"orders.order.{_FULFILLED_VERB}", subject_type="order",
            subject_id=order_id, actor=actor, request_id=request_id,
            details=transition_details(order, PAID, FULFILLED, _WHO, {"entitlement_id": entitlement_id})))
    await enqueue_events(s, events)
    return set(moved)


async def _fulfil_one(s: AsyncSession, order_id: str, entitlement_id: str | None) -> int:
    """One granted order the set-based path did not move: 1 if it became ``fulfilled``. An
    order whose refund is at Stripe (``refund_pending``) only records the entitlement id: the
    refund decides where it goes next (``refunded``, or back to ``fulfilled``)."""
    order = await load_for_update(s, order_id)
    if order is not None and order.status == REFUND_PENDING and order.fulfilled_at is None:
        await s.execute(update(Order).where(Order.id == order_id, Order.status == REFUND_PENDING)
                        .values(entitlement_id=entitlement_id, fulfilled_at=utcnow()))
        return 0
    if order is None or order.status != PAID:
        return 0  # already fulfilled, or refunded meanwhile (the revoke follows)
    await transition(s, order, FULFILLED, _WHO, details={"entitlement_id": entitlement_id},
                     changes={"entitlement_id": entitlement_id})
    return 1


def grant_runs(messages: Sequence[OutboxMessage]) -> Iterator[Sequence[OutboxMessage]]:
    """A claimed batch in id order: each run of consecutive grants together (one batch request),
    every other command alone, so a change or revoke still follows its grant."""
    grants: list[OutboxMessage] = []
    for message in messages:
        if message.kind == GRANT:
            grants.append(message)
            continue
        if grants:
            yield grants
            grants = []
        yield [message]
    if grants:
        yield grants


#: How long a commit's wake-up of the fulfilment relay waits, once for all the orders paid
#: meanwhile: woken by every commit, the relay kept up in batches of a few grants, each paying
#: its claim, request, mark and fulfilment; 50 ms more before a grant leaves made them larger
#: (server CPU per order relays included -4 to -10 %, PostgreSQL's -2 to -6 %, load 4-6;
#: docs/performance.md, orders).
RELAY_WAKE_DELAY = 0.05

#: The same for the orders' audit relay (four events per order, a relay run costs ~4 ms of CPU
#: whatever its size: shared/audit_relay.py): at most as long as the autocommit audit events of
#: other paths wait (``shared.outbox.WAKE_COALESCE_SECONDS``). Both together: server CPU per
#: order relays included -7 to -15 %, PostgreSQL's -7 to -12 % (load 4.5-5.4).
AUDIT_WAKE_DELAY = WAKE_COALESCE_SECONDS

#: Access's batch grant takes at most this many items (services/access/grant_batch.py).
MAX_GRANTS_PER_REQUEST = 100


def _entitlement_command(run: Sequence[OutboxMessage]) -> Outgoing | None:
    if len(run) > 1:  # consecutive grants (grant_runs), answered per grant
        return Outgoing("POST", "/v1/entitlements/batch",
                        {"items": [{"idempotency_key": m.message_id, "body": m.payload} for m in run]},
                        split=_grant_answers)
    [message] = run
    order_id = str(message.payload["order_id"])
    if message.kind == GRANT:
        return Outgoing("POST", "/v1/entitlements", message.payload)
    if message.kind == CHANGE:
        body = {k: v for k, v in message.payload.items() if k not in ("order_id", "fulfils")}
        return Outgoing("POST", f"/v1/entitlements/by-order/{order_id}/changes", body)
    if message.kind == REVOKE:
        return Outgoing("POST", f"/v1/entitlements/by-order/{order_id}/revoke",
                        {"reason": message.payload.get("reason", "refund")})
    logger.error("unknown outbox command %s (%s); skipping it", message.kind, message.message_id)
    return None


def _grant_answers(resp: httpx.Response) -> list[httpx.Response]:
    """Access's batch answer as the answer each grant would have had alone (status and body;
    a problem keeps its media type), for the delivery policy and :func:`granted_orders`."""
    answers = []
    for result in resp.json()["results"]:
        status, body = int(result["status"]), result["body"]
        media = "application/json" if 200 <= status < 300 else "application/problem+json"
        answers.append(httpx.Response(status, json=body, headers={"content-type": media},
                                      request=resp.request))
    return answers


def _entitlement_id(resp: httpx.Response) -> str | None:
    ent = resp.json().get("id") if resp.headers.get("content-type", "").startswith(
        "application/json") else None
    return str(ent) if ent else None


def granted_orders(delivered: Sequence[Delivered]) -> list[tuple[str, str | None]]:
    """The orders access has just granted: (order id, entitlement id) of each grant, and of
    each change that ``fulfils`` an order, that access took. A 409 grants nothing: a change to
    a revoked entitlement no longer applies, and a grant refused because the order already
    holds an entitlement on other terms leaves the order ``paid`` for an operator (logged)."""
    granted: list[tuple[str, str | None]] = []
    for d in delivered:
        payload = d.message.payload
        if d.response.status_code == 409:
            if d.message.kind == GRANT:
                logger.error("access holds another entitlement for order %s (409: %s); the order "
                             "stays paid", payload["order_id"], d.response.text[:300])
            continue
        if d.message.kind == GRANT:
            granted.append((str(payload["order_id"]), _entitlement_id(d.response)))
        elif d.message.kind == CHANGE and payload.get("fulfils"):
            granted.append((str(payload["fulfils"]), _entitlement_id(d.response)))
    return granted


def fulfil_on_delivery(ctx: RelayContext) -> OnDelivered:
    """The fulfilment relay's follow-up: the granted orders become ``fulfilled`` (grants
    confirmed before a failure in the same batch too; the batch is retried and access
    answers 200 for a repeated grant)."""
    orders = orders_context_of(ctx.app)

    async def fulfil(delivered: Sequence[Delivered]) -> None:
        granted = granted_orders(delivered)
        if granted:
            await mark_fulfilled(orders, granted)

    return fulfil


def outbound(app: FastAPI) -> httpx.AsyncClient:
    """The client orders calls other services with (tests serve them in-process)."""
    return orders_context_of(app).outbound


#: Entitlement commands to the access service, in order (a change after its grant): consecutive
#: grants in one ``POST /v1/entitlements/batch`` (was one request per grant: ~1 ms of server CPU
#: each, docs/performance.md, orders), changes and revokes one at a time; the orders the grants
#: fulfil are marked by :func:`fulfil_on_delivery`. Batches of 100 (was 20): the claim, the mark
#: and the fulfilment are one statement each per batch, so a larger batch costs PostgreSQL ~15 %
#: less CPU per order under a backlog (docs/performance.md, orders); with no backlog a batch is
#: whatever one commit woke the relay for.
FULFILMENT_RELAY = Relay(
    ACCESS_DESTINATION,
    HttpDelivery("access", "access_url", _entitlement_command, runs=grant_runs,
                 on_delivered=fulfil_on_delivery, client=outbound),
    what="entitlement commands", batch_size=MAX_GRANTS_PER_REQUEST, max_backoff=30.0,
    poll=lambda settings: settings.fulfilment_poll_seconds, wake_delay=RELAY_WAKE_DELAY,
)


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


def _stripe_refunds(ctx: RelayContext) -> Deliverer:
    orders = orders_context_of(ctx.app)
    return stripe_refund_deliverer(orders)


#: Payments that no order needs (see ``settlement``), given back at Stripe (no service token).
STRIPE_REFUND_RELAY = Relay(
    STRIPE_DESTINATION, _stripe_refunds, what="refunds of unneeded payments", needs_token=False,
    batch_size=10, max_backoff=300.0, poll=lambda settings: max(1.0, settings.fulfilment_poll_seconds),
)
