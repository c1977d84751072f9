"""The fulfilment relay's follow-up moves a whole batch of granted orders at once
(services/orders/fulfilment.py ``mark_fulfilled``): one compare-and-set ``UPDATE`` for the
``paid`` orders and one ``INSERT`` of their events, instead of a locked read-modify-write per
order. These tests hold it to the general path's guarantees: only ``paid`` orders move, each
once, with the row values and the event ``transition`` writes; the other states keep their
own rules (a refund at Stripe only records the entitlement id)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from services.orders import fulfilment
from services.orders.models import Order
from tests.orders.conftest import Harness


async def _paid(orders: Harness, n: int) -> list[str]:
    """``n`` free orders that stay ``paid``: access is down, so their grants wait in the outbox
    and only the test's calls fulfil them."""
    orders.access.fail_with = 503
    return [(await orders.placed("plan_free"))["id"] for _ in range(n)]


async def _rows(orders: Harness, ids: list[str]) -> dict[str, Order]:
    async with orders.ctx.sessionmaker() as s:
        found = (await s.execute(select(Order).where(Order.id.in_(ids)))).scalars().all()
    return {o.id: o for o in found}


async def _fulfilled_events(orders: Harness, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for e in await orders.events("orders.order.fulfilled"):
        if e.subject.id in events:
            events[e.subject.id].append(e.model_dump(mode="json"))
    return events


async def _general_only(_s: Any, _granted: Any) -> set[str]:
    return set()  # the set-based step moves nothing: every order takes the per-order path


async def test_a_batch_fulfils_its_paid_orders_once_as_the_general_path_does(
    orders: Harness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, general = await _paid(orders, 3)
    with monkeypatch.context() as m:
        m.setattr(fulfilment, "_fulfil_paid", _general_only)
        assert await fulfilment.mark_fulfilled(orders.ctx, [(general, "ent_general")]) == 1
    # A repeated order in the batch counts once, with its first grant's entitlement.
    assert await fulfilment.mark_fulfilled(orders.ctx, [(a, "ent_a"), (b, None), (a, "ent_later")]) == 2
    # Delivered again (a retried batch): nothing moves, no second event.
    assert await fulfilment.mark_fulfilled(orders.ctx, [(a, "ent_x"), (b, "ent_y"), (general, "z")]) == 0

    rows = await _rows(orders, [a, b, general])
    assert {i: (r.status, r.entitlement_id) for i, r in rows.items()} == {
        a: ("fulfilled", "ent_a"), b: ("fulfilled", None), general: ("fulfilled", "ent_general")}
    for row in rows.values():
        assert row.fulfilled_at is not None and row.updated_at == row.fulfilled_at

    events = await _fulfilled_events(orders, [a, b, general])
    assert {i: len(e) for i, e in events.items()} == {a: 1, b: 1, general: 1}

    def comparable(event: dict[str, Any]) -> dict[str, Any]:
        details = {k: v for k, v in event["details"].items() if k != "entitlement_id"}
        return {**{k: v for k, v in event.items() if k not in ("event_id", "occurred_at", "subject")},
                "details": details}

    assert comparable(events[a][0]) == comparable(events[general][0])
    assert events[a][0]["details"]["entitlement_id"] == "ent_a"
    assert events[b][0]["details"]["entitlement_id"] is None
    assert events[a][0]["subject"] == {"type": "order", "id": a}


async def test_only_paid_orders_move_and_a_refund_at_stripe_only_records_the_entitlement(
    orders: Harness,
) -> None:
    paid, refunding, refunded = await _paid(orders, 3)
    async with orders.ctx.sessionmaker() as s, s.begin():
        await s.execute(update(Order).where(Order.id == refunding).values(status="refund_pending"))
        await s.execute(update(Order).where(Order.id == refunded).values(status="refunded"))
    granted = [(refunding, "ent_r"), (paid, "ent_p"), (refunded, "ent_gone")]
    assert await fulfilment.mark_fulfilled(orders.ctx, granted) == 1

    rows = await _rows(orders, [paid, refunding, refunded])
    assert rows[paid].status == "fulfilled" and rows[paid].entitlement_id == "ent_p"
    assert rows[refunding].status == "refund_pending" and rows[refunding].entitlement_id == "ent_r"
    assert rows[refunding].fulfilled_at is not None  # the refund decides where it goes next
    assert rows[refunded].status == "refunded" and rows[refunded].entitlement_id is None
    assert rows[refunded].fulfilled_at is None
    events = await _fulfilled_events(orders, [paid, refunding, refunded])
    assert {i: len(e) for i, e in events.items()} == {paid: 1, refunding: 0, refunded: 0}


async def test_concurrent_batches_of_the_same_orders_fulfil_each_once(orders: Harness) -> None:
    ids = await _paid(orders, 4)
    batch = [(i, f"ent_{i}") for i in ids]
    moved = await asyncio.gather(*(fulfilment.mark_fulfilled(orders.ctx, batch) for _ in range(3)))
    assert sum(moved) == len(ids)
    rows = await _rows(orders, ids)
    assert all(r.status == "fulfilled" and r.entitlement_id == f"ent_{i}" for i, r in rows.items())
    events = await _fulfilled_events(orders, ids)
    assert all(len(e) == 1 for e in events.values())
