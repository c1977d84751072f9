"""Reading (and, on PostgreSQL, locking) the running services' databases from the tests.

The end-to-end tests look at the services from outside: over HTTP, and in their
databases, never through their code. These helpers run from synchronous test
code (each call gets its own event loop in a worker thread).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.cluster import Cluster


def database_url(cluster: Cluster, service: str) -> str:
    return cluster.procs[service].env[f"SLUICE_{service.upper()}_DATABASE_URL"]


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of one read-only statement."""
    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(r) for r in await conn.execute(text(sql), params)]
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


def outboxes(cluster: Cluster) -> dict[str, list[tuple[str, str, bool]]]:
    """Per service: (kind, message id, delivered?) of every message its outbox ever held
    (for an audit event, the message id is the event id)."""
    return {service: [(str(kind), str(mid), bool(done)) for kind, mid, done in rows(
                database_url(cluster, service),
                "SELECT kind, message_id, delivered_at IS NOT NULL FROM outbox ORDER BY id")]
            for service in cluster.procs}


def is_postgresql(cluster: Cluster) -> bool:
    return cluster.backend == "postgresql"


def waiting_statements(url: str, like: str) -> int:
    """PostgreSQL: statements matching ``like`` that wait for a lock in this database."""
    [(n,)] = rows(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND query ILIKE :like", like=like)
    return int(n)


@contextmanager
def tables_locked(url: str, *tables: str) -> Iterator[None]:
    """PostgreSQL: hold EXCLUSIVE locks on ``tables`` (others may read them, nobody may
    write them) until the block ends, from a connection of the test's own."""
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn, conn.begin():
                for table in tables:
                    await conn.execute(text(f'LOCK TABLE "{table}" IN EXCLUSIVE MODE'))
                locked.set()
                await asyncio.to_thread(release.wait)
        finally:
            await engine.dispose()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:
            failure.append(exc)
            locked.set()

    holder = threading.Thread(target=run, name="table-lock", daemon=True)
    holder.start()
    locked.wait(30)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        holder.join(30)
