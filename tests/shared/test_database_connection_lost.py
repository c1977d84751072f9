"""A request whose database connection is dropped under it (a PostgreSQL restart or failover,
``pg_terminate_backend``) answers 503 problem+json with Retry-After, not 500: the client did
nothing wrong and should try again; the next request gets a fresh connection from the pool."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Database
from shared.errors import PROBLEM_JSON
from shared.problems import install_problem_handlers
from tests.support import PG_DB_PREFIX, POSTGRES_URL, recreate_pg_database

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="drops a live PostgreSQL connection (SQLite has none to drop): "
    "set SLUICE_TEST_POSTGRES_URL")


async def terminate_when_busy(url: str, marker: str) -> None:
    """Wait until a backend runs the marked query, then terminate it (as an operator would)."""
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for _ in range(200):
                done = await conn.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE :m AND pid <> pg_backend_pid()"), {"m": f"%{marker}%"})
                if done:
                    return
                await asyncio.sleep(0.05)
    finally:
        await admin.dispose()
    raise AssertionError("the request's query never showed up in pg_stat_activity")


async def test_a_request_whose_connection_is_dropped_answers_503_and_the_next_one_works() -> None:
    url = recreate_pg_database(f"{PG_DB_PREFIX}_connection_lost")
    db = Database(url)
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/slow")
    async def slow() -> dict[str, int]:
        async with db.sessionmaker() as session, session.begin():
            await session.execute(text("SELECT pg_sleep(10) -- connection-lost-marker"))
        return {"ok": 1}

    @app.get("/fast")
    async def fast() -> dict[str, int]:
        async with db.sessionmaker() as session:
            return {"ok": int(await session.scalar(text("SELECT 1")) or 0)}

    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp, _ = await asyncio.gather(client.get("/slow"),
                                           terminate_when_busy(url, "connection-lost-marker"))
            assert resp.status_code == 503, resp.text
            assert resp.headers["content-type"] == PROBLEM_JSON
            assert resp.headers["retry-after"] == "1"
            assert resp.json()["type"].endswith("/database-unavailable")
            assert (await client.get("/fast")).json() == {"ok": 1}
    finally:
        await db.dispose()
