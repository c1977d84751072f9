"""shared.outbox.record_event_now: the audit event of a request that writes nothing else, as
one autocommit insert (asyncpg on PostgreSQL) — the same row record_event writes, and the
relay delivers it like any other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from shared.db import Database
from shared.events import Actor
from shared.outbox import (
    WAKE_COALESCE_SECONDS,
    OutboxMessage,
    OutboxRelay,
    outbox,
    record_event,
    record_event_now,
)
from tests.conftest import DatabaseFactory


async def _rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(outbox).order_by(outbox.c.id))]


async def test_record_event_now_writes_the_row_record_event_writes(database_url: DatabaseFactory) -> None:
    db = Database(database_url("access"))
    try:
        fields: dict[str, Any] = {
            "service": "access", "action": "access.data_token.issued", "subject_type": "entitlement",
            "subject_id": "ent_1", "actor": Actor(sub="cli_1", org="org_1", role="buyer"),
            "details": {"jti": "j1", "expires_in": 900, "audience": "http://ds.test", "nested": {"a": [1, 2.5]}},
        }
        woken: list[str] = []
        db.relay_wakers.register("audit", lambda: woken.append("audit"))
        async with db.sessionmaker() as session, session.begin():
            before = await record_event(session, **fields)
        now = await record_event_now(db, **fields)
        again = await record_event_now(db, **fields)
        assert woken == ["audit"]  # record_event at its commit; record_event_now's two, together:
        await asyncio.sleep(WAKE_COALESCE_SECONDS * 3)
        assert woken == ["audit", "audit"]
        old, new, _ = await _rows(db)
        for row, event in ((old, before), (new, now)):
            assert row["payload"] == event.model_dump(mode="json")
            assert row["message_id"] == str(event.event_id)
        skip = {"id", "payload", "message_id", "created_at", "available_at"}
        assert {k: v for k, v in old.items() if k not in skip} == {k: v for k, v in new.items() if k not in skip}
        assert new["created_at"] == new["available_at"] and new["created_at"].tzinfo is not None
        assert new["trace_context"] is None and new["delivered_at"] is None and new["attempts"] == 0

        delivered: list[OutboxMessage] = []

        async def deliver(messages: Sequence[OutboxMessage]) -> None:
            delivered.extend(messages)

        assert await OutboxRelay(db.sessionmaker, "audit", deliver).run_once() == 3
        assert [m.payload for m in delivered] == [e.model_dump(mode="json") for e in (before, now, again)]
    finally:
        await db.dispose()
