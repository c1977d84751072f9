"""The fulfilment relay sends consecutive grants in one POST /v1/entitlements/batch and splits
the answer per grant (shared.relays.Outgoing.split): each message delivered, dead-lettered or
retried on its own answer, changes still after their grants, nothing lost while access is down."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.orders.entitlement_commands import ACCESS_DESTINATION, CHANGE
from services.orders.fulfilment import FULFILMENT_RELAY, grant_runs, granted_orders
from services.orders.orders import GRANT, REVOKE
from shared.db import Database
from shared.outbox import OutboxMessage, OutboxRelay, enqueue, outbox
from shared.relays import Delivered, HttpDelivery
from tests.conftest import DatabaseFactory
from tests.orders.conftest import Harness
from tests.orders.fakes import SERVICE_TOKEN, FakeAccess

assert isinstance(FULFILMENT_RELAY.deliverer, HttpDelivery)
DELIVERY: HttpDelivery = FULFILMENT_RELAY.deliverer


def grant(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "buyer_org": "org_buyer_a", "product_id": "prd_1", "version": 1,
            "plan_id": "plan_free", "purpose": "research", "valid_from": "2026-11-01T00:00:00Z",
            "valid_until": "2026-12-01T00:00:00Z"}


@dataclass
class Relayed:
    db: Database
    access: FakeAccess
    relay: OutboxRelay
    granted: list[tuple[str, str | None]]

    async def enqueue(self, *commands: tuple[str, str], again: str = "") -> None:
        """(kind, order id) in this order; a change names the order it changes; ``again``: a
        second copy of a grant (another message id, as a re-sent dead letter is not)."""
        async with self.db.sessionmaker() as s, s.begin():
            for kind, order_id in commands:
                if kind == GRANT:
                    await enqueue(s, kind=GRANT, destination=ACCESS_DESTINATION,
                                  message_id=f"grant:{order_id}{again}", payload=grant(order_id))
                else:
                    change_id = secrets.token_hex(4)
                    await enqueue(s, kind=CHANGE, destination=ACCESS_DESTINATION,
                                  message_id=f"change:{change_id}",
                                  payload={"order_id": order_id, "change_id": change_id,
                                           "reason": "renewal", "valid_until": "2027-01-01T00:00:00Z"})

    async def states(self) -> dict[str, str]:
        async with self.db.sessionmaker() as s:
            rows = (await s.execute(outbox.select().order_by(outbox.c.id))).mappings().all()
        return {r["message_id"]: "dead" if r["dead_at"] else "delivered" if r["delivered_at"] else "pending"
                for r in rows}


@pytest.fixture
async def relayed(database_url: DatabaseFactory) -> AsyncIterator[Relayed]:
    db = Database(database_url("orders"))
    access = FakeAccess()
    granted: list[tuple[str, str | None]] = []

    async def on_delivered(delivered: Sequence[Delivered]) -> None:
        granted.extend(granted_orders(delivered))

    async def token() -> str:
        return SERVICE_TOKEN

    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=access.app)) as http:
            relay = OutboxRelay(db.sessionmaker, ACCESS_DESTINATION,
                                DELIVERY.deliverer(http, "http://access", token, on_delivered),
                                base_backoff=0.0)
            yield Relayed(db, access, relay, granted)
    finally:
        await db.dispose()


def _message(n: int, kind: str) -> OutboxMessage:
    return OutboxMessage(n, kind, f"{kind}:{n}", {"order_id": f"ord_{n}"}, 0)


def test_consecutive_grants_go_together_and_every_other_command_alone_in_order() -> None:
    kinds = [GRANT, GRANT, CHANGE, GRANT, REVOKE, GRANT, GRANT, GRANT]
    runs = list(grant_runs([_message(n, k) for n, k in enumerate(kinds)]))
    assert [[m.id for m in run] for run in runs] == [[0, 1], [2], [3], [4], [5, 6, 7]]


async def test_each_grant_of_a_batch_fulfils_its_own_order_and_changes_follow_their_grants(
        relayed: Relayed) -> None:
    await relayed.enqueue((GRANT, "ord_a"), (GRANT, "ord_b"), (CHANGE, "ord_a"), (GRANT, "ord_c"),
                          (GRANT, "ord_d"), (GRANT, "ord_e"))
    assert await relayed.relay.run_once() == 6
    assert relayed.access.grant_batches == [["ord_a", "ord_b"], ["ord_c", "ord_d", "ord_e"]]
    assert [c["order_id"] for c in relayed.access.changes] == ["ord_a"]  # after its grant: applied
    ents = relayed.access.entitlements
    assert relayed.granted == [(o, ents[o]["id"]) for o in ("ord_a", "ord_b", "ord_c", "ord_d", "ord_e")]
    assert len({e for _, e in relayed.granted}) == 5
    assert set((await relayed.states()).values()) == {"delivered"}

    relayed.granted.clear()  # a replay (e.g. a crash before the mark): each a repeat, granted once
    await relayed.enqueue((GRANT, "ord_a"), (GRANT, "ord_b"), again=":2")
    assert await relayed.relay.run_once() == 2
    assert relayed.granted == [("ord_a", ents["ord_a"]["id"]), ("ord_b", ents["ord_b"]["id"])]
    assert len(ents) == 5


async def test_a_grant_refused_for_good_is_dead_lettered_alone(relayed: Relayed) -> None:
    relayed.access.refuse["ord_bad"] = 422
    await relayed.enqueue((GRANT, "ord_a"), (GRANT, "ord_bad"), (GRANT, "ord_c"), (GRANT, "ord_d"))
    assert await relayed.relay.run_once() == 1  # stopped at the refused one
    states = await relayed.states()
    assert states == {"grant:ord_a": "delivered", "grant:ord_bad": "dead", "grant:ord_c": "pending",
                      "grant:ord_d": "pending"}
    assert relayed.granted == [("ord_a", relayed.access.entitlements["ord_a"]["id"])]
    assert await relayed.relay.run_once() == 2  # the rest, answered as repeats
    assert set((await relayed.states()).values()) == {"delivered", "dead"}
    ents = relayed.access.entitlements
    assert relayed.granted[1:] == [("ord_c", ents["ord_c"]["id"]), ("ord_d", ents["ord_d"]["id"])]
    assert "ord_bad" not in ents


async def test_a_transient_refusal_of_one_grant_retries_from_it(relayed: Relayed) -> None:
    relayed.access.refuse["ord_b"] = 503
    await relayed.enqueue((GRANT, "ord_a"), (GRANT, "ord_b"), (GRANT, "ord_c"))
    assert await relayed.relay.run_once() == 1
    assert await relayed.states() == {"grant:ord_a": "delivered", "grant:ord_b": "pending",
                                      "grant:ord_c": "pending"}
    del relayed.access.refuse["ord_b"]
    assert await relayed.relay.run_once() == 2
    assert [o for o, _ in relayed.granted] == ["ord_a", "ord_b", "ord_c"]


async def test_an_access_that_is_down_delays_the_grants_and_drops_none(relayed: Relayed) -> None:
    await relayed.enqueue(*[(GRANT, f"ord_{n}") for n in range(5)])
    for status in (503, 500, 401):
        relayed.access.fail_with = status
        assert await relayed.relay.run_once() == 0
        assert set((await relayed.states()).values()) == {"pending"}
    relayed.access.fail_with = None
    assert await relayed.relay.run_once() == 5
    assert [o for o, _ in relayed.granted] == [f"ord_{n}" for n in range(5)]


async def test_an_access_without_the_batch_endpoint_gets_the_grants_one_at_a_time(
        relayed: Relayed) -> None:
    relayed.access.app.router.routes[:] = [r for r in relayed.access.app.router.routes
                                           if getattr(r, "path", "") != "/v1/entitlements/batch"]
    await relayed.enqueue((GRANT, "ord_a"), (GRANT, "ord_b"))
    assert await relayed.relay.run_once() == 2
    assert relayed.access.grant_batches == []
    assert [o for o, _ in relayed.granted] == ["ord_a", "ord_b"]


async def test_granted_orders_of_a_batch_are_fulfilled_and_a_refused_one_waits_paid(
        orders: Harness) -> None:
    orders.access.hold_grants = asyncio.Event()
    first = await orders.placed("plan_free")
    while not orders.access.grant_requests:  # the first grant is in flight, held
        await asyncio.sleep(0.02)
    rest = [(await orders.placed("plan_free"))["id"] for _ in range(3)]
    orders.access.refuse[rest[1]] = 422
    orders.access.hold_grants.set()
    for order_id in (first["id"], rest[0], rest[2]):
        done = await orders.wait_status(order_id, "fulfilled")
        assert done["entitlement_id"] == orders.access.entitlements[order_id]["id"]
    assert rest in orders.access.grant_batches  # the three waiting grants went together
    assert (await orders.get(rest[1]))["status"] == "paid"
