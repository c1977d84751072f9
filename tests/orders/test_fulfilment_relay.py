"""The fulfilment relay is a registration on the common deliverer (shared.relays): its
on_delivered hook fulfils the orders access granted, and a grant access refuses for good is
dead-lettered (the order waits, paid) until an operator sends it again."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from shared.outbox import outbox
from shared.runtime import runtime_of
from tests.orders.conftest import Harness


async def test_a_grant_refused_for_good_is_dead_lettered_and_fulfils_once_sent_again(orders: Harness) -> None:
    orders.access.fail_with = 422
    order = await orders.placed("plan_free")

    async def grant_row() -> dict[str, object]:
        async with orders.ctx.sessionmaker() as s:
            row = (await s.execute(select(outbox).where(outbox.c.message_id == f"grant:{order['id']}"))).first()
        assert row is not None
        return dict(row._mapping)

    for _ in range(200):
        if (await grant_row())["dead_at"] is not None:
            break
        await asyncio.sleep(0.05)
    letter = await grant_row()
    assert letter["dead_at"] is not None and "422" in str(letter["last_error"])
    assert orders.access.grant_attempts.count(order["id"]) == 1  # not sent again
    assert (await orders.get(order["id"]))["status"] == "paid"  # the hook did not run

    orders.access.fail_with = None  # access is fixed; the operator sends the grant again
    assert runtime_of(orders.app).relays.get("access") is not None
    again = await orders.client.post(f"/v1/outbox/dead-letters/{letter['id']}/retry", headers=orders.operator())
    assert again.status_code == 200, again.text
    done = await orders.wait_status(order["id"], "fulfilled")
    assert done["entitlement_id"] == orders.access.entitlements[order["id"]]["id"]
    assert [g["order_id"] for g in orders.access.grant_requests] == [order["id"]]
