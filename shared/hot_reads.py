"""Single-statement reads on the hottest paths, straight on asyncpg.

Measured on the catalog's product GET (docs/performance.md): going through SQLAlchemy
costs several times the query itself — a pool check-out with a pre-ping round trip,
statement cache-key generation, result wrapping, the rollback on check-in. A
:class:`HotQuery` is a Core ``SELECT`` compiled once; on PostgreSQL it runs as an asyncpg
prepared statement from a small pool of its own (no ping: a connection found dead is
discarded and the read retried on another; no reset on release: these connections only ever
run autocommit reads). On SQLite it runs through SQLAlchemy as usual, so the same code
and the same tests serve both back ends.

Use it for reads of one statement whose staleness rules are those of autocommit (each
read sees committed data; there is no transaction to share). Writes stay on the
request's session, except a request whose only write is one ``INSERT`` (the data-token
issue's audit event): :meth:`HotQuery.execute` runs it as its own autocommit statement,
which is as atomic as a transaction around it would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import Insert, Select, TextClause
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # shared.db imports this module
    from shared.db import Database

_PG_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
#: A pooled connection that is no longer usable (the server restarted, or an administrator
#: terminated it): discard it and use another.
_DEAD_CONNECTION = (
    asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError, ConnectionError, OSError,
)


class HotPool:
    """A lazily created asyncpg pool beside an app's SQLAlchemy engine (PostgreSQL only)."""

    def __init__(self, url: str, max_size: int = 8, server_settings: Mapping[str, str] | None = None) -> None:
        u = make_url(url)
        self.postgres = u.get_backend_name() == "postgresql"
        self._dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
        self.max_size = max_size
        self.server_settings = dict(server_settings or {})
        self._pool: asyncpg.Pool | None = None
        self._creating = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._creating:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self.max_size, reset=_no_reset,
                        max_inactive_connection_lifetime=60.0,
                        server_settings=self.server_settings or None)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """These connections run single autocommit reads: nothing to reset between uses."""


class HotQuery:
    """One ``SELECT`` (Core, or ``text()`` for PostgreSQL-only SQL) with named bind
    parameters, compiled once."""

    def __init__(self, stmt: Select[Any] | TextClause | Insert) -> None:
        self.stmt = stmt
        compiled = stmt.compile(dialect=_PG_DIALECT)
        self._pg_sql = compiled.string
        self._pg_params = list(compiled.positiontup or [])

    async def one_or_none(self, hot: HotPool, engine: AsyncEngine, **params: Any) -> Mapping[str, Any] | None:
        """The row as a mapping (column name → value), or None."""
        rows = await self._run(hot, engine, params, first=True)
        return rows[0] if rows else None

    async def all(self, hot: HotPool, engine: AsyncEngine, **params: Any) -> list[Mapping[str, Any]]:
        """Every row, as mappings (column name → value)."""
        return await self._run(hot, engine, params, first=False)

    async def execute(self, hot: HotPool, engine: AsyncEngine, **params: Any) -> None:
        """Run a write (one ``INSERT``) in its own autocommit statement. Never retried: a
        connection that died under it may or may not have committed it, so the caller gets
        the error (a dead connection is still discarded). On PostgreSQL, JSON parameters are
        passed as JSON text (asyncpg's json codec)."""
        if not hot.postgres:
            async with engine.begin() as conn:
                await conn.execute(self.stmt, params)
            return
        args = [params[name] for name in self._pg_params]
        pool = await hot.pool()
        async with pool.acquire() as conn:
            try:
                await conn.execute(self._pg_sql, *args)
            except _DEAD_CONNECTION:
                with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                    conn.terminate()
                raise

    async def execute_many(self, hot: HotPool, engine: AsyncEngine,
                           rows: list[dict[str, Any]]) -> None:
        """:meth:`execute` for several parameter sets at once: one pipelined round trip and
        one commit on PostgreSQL (asyncpg ``executemany``, atomic: all rows or none), one
        transaction on SQLite."""
        if not hot.postgres:
            async with engine.begin() as conn:
                await conn.execute(self.stmt, rows)
            return
        args = [[row[name] for name in self._pg_params] for row in rows]
        pool = await hot.pool()
        async with pool.acquire() as conn:
            try:
                await conn.executemany(self._pg_sql, args)
            except _DEAD_CONNECTION:
                with contextlib.suppress(asyncpg.exceptions.InterfaceError):
                    conn.terminate()
                raise

    async def _run(self, hot: HotPool, engine: AsyncEngine, params: dict[str, Any],
                   first: bool) -> list[Mapping[str, Any]]:
        if not hot.postgres:
            async with engine.connect() as conn:
                result = await conn.execute(self.stmt, params)
                return [dict(r._mapping) for r in (result.fetchmany(1) if first else result.all())]
        args = [params[name] for name in self._pg_params]
        pool = await hot.pool()
        for attempt in range(hot.max_size + 1):  # every pooled connection may have died at once
            async with pool.acquire() as conn:
                try:
                    if first:
                        record = await conn.fetchrow(self._pg_sql, *args)
                        records = [] if record is None else [record]
                    else:
                        records = await conn.fetch(self._pg_sql, *args)
                except _DEAD_CONNECTION:
                    with contextlib.suppress(asyncpg.exceptions.InterfaceError):  # already let go
                        conn.terminate()  # the pool opens a fresh one in its place
                    if attempt == hot.max_size:
                        raise
                    continue
            return [dict(r.items()) for r in records]
        raise AssertionError("unreachable")


def fail_waiters(waiters: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """A grouped statement failed: every caller still waiting on it gets the failure (cancelled
    when the group itself was cancelled). The group's loop re-raises a cancellation after this."""
    for waiter in waiters:
        if waiter.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            waiter.cancel()
        else:
            waiter.set_exception(exc)


class GroupedRead:
    """A read of one row by key that, on PostgreSQL, is grouped with the same reads arriving
    while the previous one is in flight: one statement (``many``, ``= ANY(:ids)``) and one
    round trip for all of them instead of one each — on this machine a round trip's socket
    work costs more CPU than the read (docs/performance.md). A group's statement starts only
    after every request in it has asked, so each sees everything committed before it asked
    (a revocation or suspension shows at once, as with a read of its own). A failed statement
    fails every request in its group. On SQLite ``one`` runs alone, as before.

    ``one`` takes the key as the bound parameter ``key``; ``many`` takes ``ids`` and returns
    the key as its ``id`` column.
    """

    def __init__(self, one: HotQuery, many: HotQuery, *, key: str, name: str) -> None:
        self._one, self._many, self._key, self._name = one, many, key, name
        self._groups: weakref.WeakKeyDictionary[Database, _ReadGroup] = weakref.WeakKeyDictionary()

    async def read(self, db: Database, key: str) -> Mapping[str, Any] | None:
        if not db.hot.postgres:
            return await self._one.one_or_none(db.hot, db.engine, **{self._key: key})
        group = self._groups.get(db)
        if group is None:
            group = self._groups[db] = _ReadGroup(self._many, db.hot, db.engine, self._name)
        return await group.read(key)


class _ReadGroup:
    """The waiting callers of one :class:`GroupedRead` on one database, and its drain task."""

    def __init__(self, many: HotQuery, hot: HotPool, engine: AsyncEngine, name: str) -> None:
        self._many, self._hot, self._engine, self._name = many, hot, engine, name
        self._waiting: dict[str, list[asyncio.Future[Mapping[str, Any] | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def read(self, key: str) -> Mapping[str, Any] | None:
        waiter: asyncio.Future[Mapping[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=self._name)
        return await waiter

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await self._many.all(self._hot, self._engine, ids=list(batch))
            except BaseException as exc:
                fail_waiters((w for ws in batch.values() for w in ws), exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            found = {row["id"]: row for row in rows}
            for key, waiters in batch.items():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(found.get(key))
