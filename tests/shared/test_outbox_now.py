"""shared.outbox.record_event given the Database: the audit event of a request that writes
nothing else, as one autocommit insert (asyncpg on PostgreSQL) — the same row record_event writes, and the
relay delivers it like any other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import select

import shared.outbox as outbox_module
from shared.db import Database
from shared.events import Actor
from shared.outbox import (
    WAKE_COALESCE_SECONDS,
    OutboxMessage,
    OutboxRelay,
    outbox,
    record_event,
)
from tests.conftest import DatabaseFactory


async def _rows(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(outbox).order_by(outbox.c.id))]


async def test_the_autocommit_event_is_the_row_the_transactional_one_is(database_url: DatabaseFactory) -> None:
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
        now = await record_event(db, **fields)
        again = await record_event(db, **fields)
        assert woken == ["audit"]  # the session's at its commit; the two autocommit ones, together:
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


async def test_requests_writing_together_share_one_insert_and_each_waits_for_its_commit(
    database_url: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(database_url("access"))
    statements: list[int] = []
    real = outbox_module._INSERT_NOW.execute_many

    async def counted(hot: Any, engine: Any, rows: list[dict[str, Any]]) -> None:
        statements.append(len(rows))
        await real(hot, engine, rows)

    monkeypatch.setattr(outbox_module._INSERT_NOW, "execute_many", counted)
    try:
        async def one(i: int) -> tuple[str, int]:
            event = await record_event(db, service="access", action="access.data_token.issued",
                                           subject_type="entitlement", subject_id=f"ent_{i}")
            # Committed before it returns: visible to another connection at once.
            ids = {r["message_id"] for r in await _rows(db)}
            return str(event.event_id), int(str(event.event_id) in ids)

        results = await asyncio.gather(*(one(i) for i in range(20)))
        assert all(seen for _, seen in results)
        assert statements == [20]  # one statement for the twenty
        rows = await _rows(db)
        assert sorted(r["message_id"] for r in rows) == sorted(eid for eid, _ in results)
        assert sorted(r["payload"]["subject"]["id"] for r in rows) == sorted(f"ent_{i}" for i in range(20))
    finally:
        await db.dispose()


async def test_when_the_shared_insert_fails_every_writer_gets_the_error(
    database_url: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(database_url("access"))
    real = outbox_module._INSERT_NOW.execute_many

    async def broken(hot: Any, engine: Any, rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("database gone")

    try:
        monkeypatch.setattr(outbox_module._INSERT_NOW, "execute_many", broken)
        results = await asyncio.gather(
            *(record_event(db, service="access", action="access.data_token.issued",
                               subject_type="entitlement", subject_id=f"ent_{i}") for i in range(5)),
            return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert await _rows(db) == []
        monkeypatch.setattr(outbox_module._INSERT_NOW, "execute_many", real)
        await record_event(db, service="access", action="access.data_token.issued",
                               subject_type="entitlement", subject_id="ent_after")
        assert len(await _rows(db)) == 1  # the writer carries on after a failure
    finally:
        await db.dispose()
