"""Async SQLAlchemy engine, the request-scoped transaction and its after-commit hooks.

The request dependency owns the transaction (the unit of work): it commits when the
endpoint returns and rolls back when it raises. Services and repositories only ``flush()``;
they never commit. What must happen only once the change is durable — waking an outbox
relay, invalidating a cache, starting background work — is registered with
:func:`after_commit` on the session: it runs after the outermost transaction commits and is
forgotten if it rolls back, whoever opened the session (a request, a relay, a timer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Hashable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, Table, event, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import FromClause
from sqlalchemy.types import TypeDecorator

from shared.hot_reads import HotPool

logger = logging.getLogger("sluice.db")

#: ``session.info`` keys: the pending after-commit hooks, and the app's relay wakers.
_AFTER_COMMIT = "sluice.after_commit"
RELAY_WAKERS = "sluice.relay_wakers"
#: ``sessionmaker.kw["info"]`` key of the app's :class:`HotPool` (for code handed only the
#: sessionmaker that runs a hot statement, e.g. the orders checkout).
HOT_POOL = "sluice.hot_pool"

Hook = Callable[[], object]


def after_commit(session: AsyncSession | Session, hook: Hook, *, key: Hashable | None = None) -> None:
    """Run ``hook()`` (synchronous, quick: set an event, drop a cache entry, create a task)
    once the session's outermost transaction has committed; forget it if that transaction
    rolls back. Hooks given the same ``key`` run once per transaction. A hook that raises is
    logged, never re-raised: the commit has happened."""
    hooks: dict[Hashable, Hook] = session.info.setdefault(_AFTER_COMMIT, {})
    hooks.setdefault(key if key is not None else object(), hook)


@event.listens_for(Session, "after_commit")
def _run_after_commit_hooks(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the outer transaction may still roll back
    for hook in session.info.pop(_AFTER_COMMIT, {}).values():
        try:
            hook()
        except Exception:
            logger.exception("an after-commit hook failed")


@event.listens_for(Session, "after_transaction_end")
def _discard_after_commit_hooks(session: Session, transaction: SessionTransaction) -> None:
    # After a commit the hooks have already run and been removed; after a rollback of the
    # outermost transaction they must never run.
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


class RelayWakers:
    """Which outbox relays to wake when a transaction that wrote to a destination commits
    (``shared.outbox.enqueue`` registers the wake-up; running relays register themselves)."""

    def __init__(self) -> None:
        self._wakers: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._soon: set[str] = set()

    def register(self, destination: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Add ``wake`` for ``destination``; returns the function that removes it again."""
        self._wakers[destination].append(wake)
        return lambda: self._wakers[destination].remove(wake)

    def wake(self, destination: str) -> None:
        for wake in list(self._wakers.get(destination, ())):
            wake()

    def wake_soon(self, destination: str, delay: float) -> None:
        """Wake ``destination``'s relays ``delay`` seconds from now, once for all the calls
        made meanwhile. For paths that commit one small message per request at hundreds of
        requests a second (data-token issue): a wake per commit makes the relay run once per
        message, which cost that path a quarter of its throughput; this way it delivers them
        in batches, ``delay`` later at most."""
        if destination in self._soon:
            return
        self._soon.add(destination)

        def fire() -> None:
            self._soon.discard(destination)
            self.wake(destination)

        asyncio.get_running_loop().call_later(delay, fire)


def relay_wakers(session: AsyncSession | Session) -> RelayWakers | None:
    """The wakers of the app whose :class:`Database` made ``session`` (None for others)."""
    wakers: RelayWakers | None = session.info.get(RELAY_WAKERS)
    return wakers


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file so a fresh checkout just works."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def _switch_to_wal(cur: Any, attempts: int = 100) -> None:
    """Put a SQLite file in WAL mode (kept in the file: later connections find it so).

    Switching needs an exclusive lock, and SQLite refuses it at once ("database is locked")
    instead of waiting through the busy timeout when replicas connect to a new file at the
    same moment; so the switch is tried again, briefly, until this or another connection has
    made it. Only a file's first connections ever get here: afterwards the mode reads "wal".
    """
    for attempt in range(attempts):
        cur.execute("PRAGMA journal_mode")
        if str(cur.fetchone()[0]).lower() == "wal":
            return
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the adapted driver's OperationalError
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def create_engine(url: str, *, echo: bool = False, **kwargs: Any) -> AsyncEngine:
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, echo=echo, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            _switch_to_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, echo=echo, **kwargs)


class Database:
    """One engine and session factory per app, built in the app factory."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20,
        work_mem: str = "",
    ) -> None:
        self.url = url
        pool: dict[str, Any] = (
            {} if is_sqlite(url) else {"pool_size": pool_size, "max_overflow": max_overflow})
        #: Session settings of every PostgreSQL connection (the SQLAlchemy pool's and the hot pool's).
        server_settings = {"work_mem": work_mem} if work_mem and not is_sqlite(url) else {}
        if server_settings:
            pool["connect_args"] = {"server_settings": server_settings}
        self.engine = create_engine(url, echo=echo, **pool)
        #: Outbox relays of this app, woken after commits that wrote to their destination.
        self.relay_wakers = RelayWakers()
        #: asyncpg straight for single-statement hot reads (shared/hot_reads.py).
        self.hot = HotPool(url, max_size=max(2, pool_size), server_settings=server_settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False,
                                               info={RELAY_WAKERS: self.relay_wakers,
                                                     HOT_POOL: self.hot})

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.hot.close()
        await self.engine.dispose()


async def serialise_with_replicas(session: AsyncSession, key: int, sqlite_table: FromClause) -> None:
    """Hold, until this transaction ends, a lock every replica of the service takes before the
    same work (e.g. creating what a first start creates), so two replicas starting at once do
    it once, not twice: a PostgreSQL transaction-level advisory lock on ``key``; on SQLite the
    database write lock, taken by an UPDATE that matches no row of ``sqlite_table``. Call it
    before the transaction reads what it then decides on."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    table = cast(Table, sqlite_table)
    pk = next(iter(table.primary_key.columns))
    await session.execute(update(table).where(pk != pk).values({pk.name: pk}))


def _database(request: Request) -> Database:
    # shared.runtime.runtime_of(app).db; not imported here because shared.runtime imports this
    # module (the runtime holds a Database).
    db: Database = request.app.state.runtime.db
    return db


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's transaction: commit on success, roll back on any error."""
    db = _database(request)
    async with db.sessionmaker() as session, session.begin():
        yield session


# scope="function": the commit happens before the response is sent, so a
# failed commit becomes an error response instead of a lie.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For requests that only read: every statement commits on its own (autocommit), so the
    request pays no BEGIN and COMMIT round trips. Two statements may see different
    snapshots; use it only where that is acceptable (search: its counts may lag its page)."""
    db = _database(request)
    async with db.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        async with AsyncSession(bind=autocommit) as session:
            yield session


ReadSession = Annotated[AsyncSession, Depends(get_read_session)]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
