"""Producers' outboxes deliver to the audit service through outages: nothing
lost, nothing doubled (shared.outbox + shared.audit_relay against the real app)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from services.audit.models import events
from shared.audit_relay import audit_deliverer
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


async def test_events_survive_an_audit_outage_exactly_once(audit: RunningApp, test_keys: TestKeys,
                                                           tmp_path: Path) -> None:
    producer = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    outbox = outbox_table(MetaData())
    async with producer.begin() as conn:
        await conn.run_sync(outbox.metadata.create_all)
    sessions = async_sessionmaker(producer, expire_on_commit=False)
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
        relay = OutboxRelay(sessions, "audit", audit_deliverer(http, "http://audit.test", token),
                            batch_size=10, base_backoff=0.01, max_backoff=0.05)

        async def pending() -> int:
            async with sessions() as s:
                return int(await s.scalar(select(func.count()).select_from(outbox).where(outbox.c.delivered_at.is_(None))) or 0)

        async def stored() -> list[str]:
            async with audit.app.state.db.sessionmaker() as s:
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
