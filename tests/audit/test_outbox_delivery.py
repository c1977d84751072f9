"""Producers' outboxes deliver to the audit service through outages: nothing
lost, nothing doubled (shared.outbox + shared.audit_relay against the real app)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from services.audit.models import events
from shared.audit_relay import AUDIT_DELIVERY
from shared.events import Actor
from shared.outbox import OutboxRelay, record_event
from shared.outbox_model import outbox_table
from tests.support import RunningApp, TestKeys


class FlakyAudit(httpx.AsyncBaseTransport):
    """The audit app behind a network that can be down, or lose answers."""

    def __init__(self, app: object) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.mode = "up"
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.mode == "down":
            raise httpx.ConnectError("audit service is down", request=request)
        response = await self.inner.handle_async_request(request)
        if self.mode == "answer-lost":
            await response.aread()
            raise httpx.ReadTimeout("the answer never arrived", request=request)
        return response


outbox = outbox_table(MetaData())


async def _producer(path: Path) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """A producing service's outbox, in its own SQLite file."""
    producer = create_async_engine(f"sqlite+aiosqlite:///{path}")
    async with producer.begin() as conn:
        await conn.run_sync(outbox.metadata.create_all)
    return producer, async_sessionmaker(producer, expire_on_commit=False)


async def test_events_survive_an_audit_outage_exactly_once(audit: RunningApp, test_keys: TestKeys,
                                                           tmp_path: Path) -> None:
    producer, sessions = await _producer(tmp_path / "orders.db")
    recorded = []
    for k in range(5):  # five business transactions, five events each
        async with sessions() as s, s.begin():
            for i in range(5):
                e = await record_event(s, service="orders", action="orders.order.paid", subject_type="order",
                                       subject_id=f"ord_{k}_{i}", actor=Actor(sub="cli_b", org="org_b", role="buyer"),
                                       details={"amount": 100 * i})
                recorded.append(str(e.event_id))

    network = FlakyAudit(audit.app)

    async def token() -> str:
        return test_keys.token(roles=["service"], org="org_platform", sub="svc-orders")

    async with httpx.AsyncClient(transport=network) as http:
        relay = OutboxRelay(sessions, "audit", AUDIT_DELIVERY.deliverer(http, "http://audit.test", token),
                            batch_size=10, base_backoff=0.01, max_backoff=0.05)

        async def pending() -> int:
            async with sessions() as s:
                return int(await s.scalar(select(func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))) or 0)

        async def stored() -> list[str]:
            async with audit.db.sessionmaker() as s:
                return list(await s.scalars(select(events.c.event_id).order_by(events.c.seq)))

        network.mode = "down"
        for _ in range(4):
            assert await relay.run_once() == 0
            await asyncio.sleep(0.06)
        assert network.calls >= 3 and await stored() == [] and await pending() == 25

        network.mode = "answer-lost"  # the audit service appends, the producer never hears back
        while await stored() == []:
            await relay.run_once()
            await asyncio.sleep(0.02)
        assert len(await stored()) == 10 and await pending() == 25

        network.mode = "up"
        for _ in range(200):
            if await pending() == 0:
                break
            await relay.run_once()
            await asyncio.sleep(0.02)
        assert await pending() == 0

    await producer.dispose()
    assert await stored() == recorded  # all 25, once each, in the order they were recorded


async def test_one_event_the_audit_service_refuses_is_dead_lettered_not_its_whole_batch(
        audit: RunningApp, test_keys: TestKeys, tmp_path: Path) -> None:
    """The relay sends events in one request; a permanent refusal of that request cannot say
    which event is wrong, so the events are sent again one at a time: only the refused one is
    dead-lettered, those before it are appended, those after it go in the next batch."""
    producer, sessions = await _producer(tmp_path / "catalog.db")
    recorded = []
    async with sessions() as s, s.begin():
        for i in range(4):
            e = await record_event(s, service="catalog", action="catalog.product.listed",
                                   subject_type="product", subject_id=f"prd_{i}", details={"i": i})
            recorded.append(str(e.event_id))
    async with sessions() as s, s.begin():  # the second event is one the audit service refuses
        [row] = (await s.execute(select(outbox.c.id, outbox.c.payload).where(
            outbox.c.message_id == recorded[1]))).all()
        await s.execute(outbox.update().where(outbox.c.id == row.id)
                        .values(payload={**row.payload, "outcome": "maybe"}))

    async def token() -> str:
        return test_keys.token(roles=["service"], org="org_platform", sub="svc-catalog")

    async def stored() -> list[str]:
        async with audit.db.sessionmaker() as s:
            return list(await s.scalars(select(events.c.event_id).order_by(events.c.seq)))

    requests: list[str] = []

    async def count(request: httpx.Request) -> None:
        requests.append(request.url.path)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit.app),
                                 event_hooks={"request": [count]}) as http:
        relay = OutboxRelay(sessions, "audit", AUDIT_DELIVERY.deliverer(http, "http://audit.test", token))
        assert await relay.run_once() == 1  # the batch, then one by one: 0 appended, 1 refused
        assert len(requests) == 3
        assert await relay.run_once() == 2  # 2 and 3, together again
        assert len(requests) == 4
        assert await relay.run_once() == 0
    async with sessions() as s:
        rows = {r.message_id: r for r in (await s.execute(select(outbox))).all()}
    await producer.dispose()
    assert await stored() == [recorded[0], recorded[2], recorded[3]]
    assert rows[recorded[1]].dead_at is not None and "422" in rows[recorded[1]].last_error
    assert all(rows[m].delivered_at is not None for m in (recorded[0], recorded[2], recorded[3]))
