"""Refunds (full, partial, pro-rata), decided before Stripe is called.

A refund is three steps, because a Stripe call sits between two commits:

1. **decide** (one transaction): check the amount against what was captured, insert the
   refund ``pending`` with the idempotency key Stripe will see, and move the order to
   ``refund_pending``. This compare-and-set is what serializes a refund with the
   fulfilment of the same order (and with other refunds): whoever comes second sees it.
2. **at Stripe**: only the holder of the refund's lease (``claimed_until``) calls Stripe,
   with the stored key. A caller that takes over after a lost answer first asks Stripe
   whether the refund exists (by its metadata), so it is never made twice.
3. **settle** (one transaction): book the ledger reversal, and move the order to
   ``refunded`` (everything given back) or back where it was (a partial refund, or one
   Stripe refused), with the access change the refund asked for.

A request that cannot reach Stripe leaves the refund ``pending``; repeating the request
or the reconciler (:func:`resume_stale`) finishes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders import ledger, subscriptions
from services.orders.entitlement_commands import enqueue_change
from services.orders.locking import locked
from services.orders.models import Order, Refund, Subscription
from services.orders.orders import (
    FULFILLED,
    PAID,
    REFUND_PENDING,
    REFUNDED,
    Who,
    load_for_update,
    transition,
)
from services.orders.payments import PaymentGateway, RefundRefused
from shared.db import utcnow
from shared.errors import Conflict, ProblemError, RuleViolation
from shared.events import Actor

#: How long the caller that holds a refund may take to hear back from Stripe.
REFUND_LEASE = timedelta(seconds=30)
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class RefundInProgress(Conflict):
    problem = "refund-in-progress"
    title = "A refund of this order is in progress"


class RefundRefusedByStripe(Conflict):
    problem = "refund-refused"
    title = "Stripe refused the refund"


ACCESS_CHOICES = ("keep", "shorten", "end")


@dataclass(frozen=True)
class RefundAsk:
    """What the provider or operator asked for.

    ``amount`` in minor units (None: everything not yet refunded), or ``pro_rata``: the
    unused share of the order's access window. ``access`` decides what a partial refund
    does to the entitlement: ``keep`` it, ``shorten`` it by the refunded share of its
    window, or ``end`` it now (the default of a pro-rata refund). A full refund always
    ends access (the entitlement is revoked)."""

    reason: str
    amount: int | None = None
    request_key: str | None = None
    pro_rata: bool = False
    access: str | None = None


def new_refund_id() -> str:
    return "rf_" + secrets.token_hex(12)


def unused_share(order: Order, amount: int, now: datetime) -> int:
    """The pro-rata amount: ``amount`` times the unused share of the access window."""
    if order.valid_from is None or order.valid_until is None or order.valid_until <= now:
        return 0
    total = (order.valid_until - order.valid_from).total_seconds()
    unused = min(total, (order.valid_until - now).total_seconds())
    return int(amount * unused // total) if total > 0 else 0


def refund_amount(order: Order, ask: RefundAsk) -> int:
    """The amount to refund: positive and never more than what is still captured."""
    remaining = order.gross - order.refunded_amount
    if ask.pro_rata:
        if ask.amount is not None:
            raise RuleViolation("Give either amount or pro_rata, not both.", rule="refund-amount-or-pro-rata")
        amount = min(remaining, unused_share(order, order.gross, utcnow()))
    else:
        amount = remaining if ask.amount is None else ask.amount
    if amount <= 0:
        raise RuleViolation(
            f"A refund must be a positive amount of minor units of {order.currency}; got {amount}.",
            rule="refund-amount-positive",
        )
    if amount > remaining:
        raise RuleViolation(
            f"Order {order.id} captured {order.gross} {order.currency} minor units of which "
            f"{order.refunded_amount} are refunded already; refund at most {remaining}.",
            rule="refund-within-captured", captured=order.gross, refunded=order.refunded_amount,
            refundable=remaining,
        )
    return amount


def access_after(order: Order, ask: RefundAsk, amount: int) -> str:
    """What the refund does to the entitlement (see :class:`RefundAsk`)."""
    if ask.access is not None and ask.access not in ACCESS_CHOICES:
        raise RuleViolation(f"access must be one of {', '.join(ACCESS_CHOICES)}.", rule="refund-access")
    if order.refunded_amount + amount == order.gross:
        if ask.access in ("keep", "shorten"):
            raise RuleViolation("A full refund ends access; refund less to keep or shorten it.",
                                rule="refund-full-ends-access")
        return "revoke"
    return ask.access or ("end" if ask.pro_rata else "keep")


def _requester(who: Who) -> dict[str, Any]:
    actor = who.actor()
    if isinstance(actor, Actor):
        return actor.model_dump()
    return Actor().model_dump()


async def _by_request_key(session: AsyncSession, order_id: str, key: str | None) -> Refund | None:
    if key is None:
        return None
    stmt = select(Refund).where(Refund.order_id == order_id, Refund.idempotency_key == f"{order_id}-{key}")
    return (await session.execute(stmt)).scalar_one_or_none()


async def _pending_of(session: AsyncSession, order_id: str) -> Refund | None:
    stmt = select(Refund).where(Refund.order_id == order_id, Refund.status == PENDING)
    return (await session.execute(stmt)).scalar_one_or_none()


def _same_request(refund: Refund, order: Order, ask: RefundAsk) -> bool:
    """A repeat of the refund in progress (a retry after a lost answer, without a key)."""
    wanted = order.gross - order.refunded_amount if ask.amount is None else ask.amount
    return refund.amount == wanted and refund.reason == ask.reason


@dataclass(frozen=True)
class Decision:
    """The refund to carry out at Stripe; ``leased`` when this decision holds its lease
    (a fresh refund), else it is an earlier pending one the caller must :func:`claim`."""

    refund: Refund
    leased: bool


async def decide(session: AsyncSession, order_id: str, who: Who, ask: RefundAsk) -> Decision | None:
    """Step 1, in the caller's transaction: the refund to carry out at Stripe, or ``None``
    when nothing is left to do there (already refunded, or a free order refunded now).

    Raises :class:`RefundInProgress` while another refund of the order is at Stripe."""
    order = await load_for_update(session, order_id)
    assert order is not None
    replay = await _by_request_key(session, order_id, ask.request_key)
    if replay is not None:
        return Decision(replay, leased=False) if replay.status == PENDING else None
    if order.status == REFUND_PENDING:
        pending = await _pending_of(session, order_id)
        if pending is not None and ask.request_key is None and _same_request(pending, order, ask):
            return Decision(pending, leased=False)
        raise RefundInProgress(
            f"Refund {pending.id if pending else ''} of order {order.id} is in progress; GET the order "
            "in a moment, then ask again if you still want another refund.",
            headers={"Retry-After": "1"}, refund_id=pending.id if pending else None)
    if order.status == REFUNDED:
        return None
    if order.status not in (PAID, FULFILLED):
        raise Conflict(f"Order {order.id} is {order.status}; only paid or fulfilled orders can be refunded.",
                       problem="order-not-refundable", status_now=order.status)
    if order.gross == 0:
        await transition(session, order, REFUNDED, who, details={"reason": ask.reason},
                         changes={"refund_reason": ask.reason})
        return None
    amount = refund_amount(order, ask)
    now = utcnow()
    refund_id = new_refund_id()
    refund = Refund(
        id=refund_id, order_id=order.id, amount=amount, currency=order.currency, reason=ask.reason,
        access=access_after(order, ask, amount),
        status=PENDING, order_status_before=order.status,
        idempotency_key=f"{order.id}-{ask.request_key or refund_id}",
        stripe_attempts=1, claimed_until=now + REFUND_LEASE, requested_by=_requester(who), created_at=now,
    )
    session.add(refund)
    await session.flush()
    await transition(session, order, REFUND_PENDING, who,
                     details={"refund_id": refund_id, "amount": amount, "reason": ask.reason})
    return Decision(refund, leased=True)


async def claim(session: AsyncSession, refund_id: str) -> bool:
    """Take the lease to talk to Stripe about a pending refund nobody holds."""
    now = utcnow()
    result = await session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == PENDING,
               or_(Refund.claimed_until.is_(None), Refund.claimed_until < now))
        .values(claimed_until=now + REFUND_LEASE, stripe_attempts=Refund.stripe_attempts + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release(session: AsyncSession, refund_id: str) -> None:
    """Give the lease back (Stripe could not be reached): the next caller may try at once."""
    await session.execute(update(Refund).where(Refund.id == refund_id, Refund.status == PENDING)
                          .values(claimed_until=None))


async def at_stripe(gateway: PaymentGateway, refund: Refund, payment_intent_id: str) -> str:
    """Step 2 (the caller holds the lease): the Stripe refund id; never refunds twice."""
    if refund.stripe_attempts > 1:
        found = await gateway.find_refund(payment_intent_id, refund.id)
        if found is not None:
            return found
    return await gateway.refund(payment_intent_id, refund.order_id, key=refund.idempotency_key,
                                amount=refund.amount, refund_id=refund.id)


def _settled_status(order: Order) -> str:
    """Where an order goes back after a partial or refused refund."""
    return FULFILLED if order.fulfilled_at is not None else PAID


async def settle(session: AsyncSession, refund_id: str, *, stripe_refund_id: str | None,
                 failure: str | None, source: str) -> Refund:
    """Step 3, in the caller's transaction: record what Stripe did. Idempotent: a refund
    already settled (by a concurrent caller) is returned unchanged."""
    refund = await locked(session, Refund, refund_id)
    assert refund is not None
    if refund.status != PENDING:
        return refund
    order = await load_for_update(session, refund.order_id)
    assert order is not None and order.status == REFUND_PENDING
    who = Who(system=source, on_behalf=Actor(**refund.requested_by))
    now = utcnow()
    details = {"refund_id": refund.id, "amount": refund.amount, "reason": refund.reason}
    if stripe_refund_id is None:
        refund.status, refund.failure, refund.completed_at = FAILED, failure, now
        await transition(session, order, _settled_status(order), who, verb="refund_failed",
                         outcome="failure", details={**details, "failure": failure})
        return refund
    refunded_before = order.refunded_amount
    await ledger.book_refund(session, order, refund.id, refund.amount)
    refund.status, refund.stripe_refund_id, refund.completed_at = SUCCEEDED, stripe_refund_id, now
    refund.claimed_until = None
    changes = {"refunded_amount": refunded_before + refund.amount, "stripe_refund_id": stripe_refund_id,
               "refund_reason": refund.reason, "refund_claimed_until": None}
    details["stripe_refund_id"] = stripe_refund_id
    if refunded_before + refund.amount == order.gross:
        await transition(session, order, REFUNDED, who, details=details, changes=changes)
        return refund
    ends = _shortened(order, refund, now) if refund.access in ("shorten", "end") else None
    if ends is not None:
        changes["valid_until"] = ends
    await transition(session, order, _settled_status(order), who, verb="partially_refunded",
                     details={**details, "refunded_total": changes["refunded_amount"],
                              "access": refund.access},
                     changes=changes)
    if ends is not None:
        await _shorten_access(session, order, refund, ends)
    return refund


def _shortened(order: Order, refund: Refund, now: datetime) -> datetime:
    """The end of access after the refund: now, or the window less its refunded share."""
    assert order.valid_from is not None and order.valid_until is not None
    if refund.access == "shorten":
        cut = (order.valid_until - order.valid_from) * refund.amount / order.gross
        end = order.valid_until - cut
    else:
        end = now
    # never before the window starts (access checks need a non-empty window)
    return max(end, order.valid_from + timedelta(seconds=1))


async def _shorten_access(session: AsyncSession, order: Order, refund: Refund, valid_until: datetime) -> None:
    """Tell access; a subscription whose current period ends now is cancelled too."""
    entitlement_order = order.id
    if order.subscription_id is not None:
        sub = await locked(session, Subscription, order.subscription_id)
        assert sub is not None
        entitlement_order = sub.first_order_id
        if refund.access == "end" and sub.status != subscriptions.CANCELED:
            await subscriptions.transition(
                session, sub, subscriptions.CANCELED, None,
                details={"order_id": order.id, "by": "refund", "refund_id": refund.id})
    await enqueue_change(session, entitlement_order, f"refund:{refund.id}",
                         f"refund {refund.id}: {refund.reason}", valid_until=valid_until)


async def carry_out(sessionmaker: async_sessionmaker[AsyncSession], gateway: PaymentGateway,
                    refund: Refund, *, source: str) -> Refund:
    """Steps 2 and 3 for a refund whose lease the caller holds.

    A Stripe refusal settles the refund as failed and raises :class:`RefundRefusedByStripe`;
    an unreachable Stripe gives the lease back and re-raises (the refund stays pending)."""
    async with sessionmaker() as s:
        order = await s.get(Order, refund.order_id)
    assert order is not None and order.payment_intent_id is not None
    try:
        stripe_refund_id = await at_stripe(gateway, refund, order.payment_intent_id)
    except RefundRefused as refused:
        async with sessionmaker() as s, s.begin():
            await settle(s, refund.id, stripe_refund_id=None, failure=str(refused), source=source)
        raise RefundRefusedByStripe(
            f"Stripe refused refund {refund.id} of order {refund.order_id}: {refused}. Nothing was "
            "refunded; the order is unchanged.", refund_id=refund.id) from refused
    except BaseException:
        async with sessionmaker() as s, s.begin():
            await release(s, refund.id)
        raise
    async with sessionmaker() as s, s.begin():
        return await settle(s, refund.id, stripe_refund_id=stripe_refund_id, failure=None, source=source)


async def resume_stale(sessionmaker: async_sessionmaker[AsyncSession], gateway: PaymentGateway,
                       *, now: datetime | None = None, batch: int = 50) -> dict[str, int]:
    """The reconciler's part: finish pending refunds whose caller went away."""
    now = now or utcnow()
    async with sessionmaker() as s:
        ids = (await s.execute(
            select(Refund.id).where(Refund.status == PENDING,
                                    or_(Refund.claimed_until.is_(None), Refund.claimed_until < now))
            .order_by(Refund.created_at).limit(batch))).scalars().all()
    outcomes: dict[str, int] = {}
    for refund_id in ids:
        async with sessionmaker() as s, s.begin():
            claimed = await claim(s, refund_id)
        if not claimed:
            continue
        async with sessionmaker() as s:
            refund = await s.get(Refund, refund_id)
        assert refund is not None
        try:
            done = await carry_out(sessionmaker, gateway, refund, source="reconciler")
            outcome = f"refund_{done.status}"
        except RefundRefusedByStripe:
            outcome = "refund_failed"
        except ProblemError:  # Stripe unreachable: the next run tries again
            outcome = "refund_stripe_error"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
