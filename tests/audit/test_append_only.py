"""Append-only in depth: the database itself refuses UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from services.audit.models import APPEND_ONLY_TABLES
from shared.migrations import downgrade, upgrade
from tests.audit.conftest import make_event, post_events, sign_checkpoint
from tests.support import PG_DB_PREFIX, RunningApp, migrations_dir, recreate_pg_database

STATEMENTS = {
    "events": ["UPDATE events SET action = 'orders.order.refunded' WHERE seq = 0",
               "DELETE FROM events WHERE seq = 0",
               "DELETE FROM events",
               "DELETE FROM events WHERE seq = -1"],
    "tree_nodes": ["UPDATE tree_nodes SET hash = hash", "DELETE FROM tree_nodes"],
    "checkpoints": ["UPDATE checkpoints SET note = 'forged'", "DELETE FROM checkpoints"],
    "log_keys": ["UPDATE log_keys SET private_key = 'x'", "DELETE FROM log_keys"],
}


@pytest.fixture
async def filled(audit: RunningApp, service_headers) -> RunningApp:
    await post_events(audit, service_headers, [make_event(i) for i in range(20)])
    await sign_checkpoint(audit)
    return audit


async def refused(svc: RunningApp, sql: str) -> str:
    async with svc.db.engine.connect() as conn:
        with pytest.raises(DBAPIError) as exc:
            await conn.execute(text(sql))
        await conn.rollback()
    return str(exc.value)


def test_every_log_table_is_guarded() -> None:
    assert set(STATEMENTS) == set(APPEND_ONLY_TABLES)


async def test_every_update_and_delete_is_refused(filled: RunningApp) -> None:
    sqlite = filled.db.engine.dialect.name == "sqlite"
    for stmts in STATEMENTS.values():
        for sql in stmts:
            if "seq = -1" in sql and sqlite:
                continue  # SQLite has row triggers only; a statement that touches no row changes nothing
            assert "append-only" in await refused(filled, sql), sql
    async with filled.db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM events"))).scalar() == 20
        assert (await conn.execute(text("SELECT action FROM events WHERE seq = 0"))).scalar() == "orders.order.paid"


async def test_truncate_is_refused_on_postgresql(filled: RunningApp) -> None:
    if filled.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE (DELETE is refused above)")
    for table in APPEND_ONLY_TABLES:
        assert "append-only" in await refused(filled, f"TRUNCATE {table}"), table


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_upgrade_downgrade_and_upgrade_again(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    else:
        url = recreate_pg_database(f"{PG_DB_PREFIX}_audit_migrations")
    upgrade(migrations_dir("audit"), url)
    assert {"events", "tree_nodes", "checkpoints", "log_keys", "outbox"} <= await _tables(url)
    downgrade(migrations_dir("audit"), url, "0001")
    assert "events" not in await _tables(url)
    downgrade(migrations_dir("audit"), url, "base")
    assert await _tables(url) <= {"alembic_version"}
    upgrade(migrations_dir("audit"), url)
    assert "events" in await _tables(url)
