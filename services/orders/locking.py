"""Row locks that hold on both back ends."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

M = TypeVar("M")


async def locked(session: AsyncSession, model: type[M], key: Any) -> M | None:
    """The row of ``model`` with primary key ``key``, locked until the transaction ends.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite ignores ``FOR UPDATE``, and its driver
    starts a transaction only at the first write, so a plain read happens outside any lock
    and the row can change before our compare-and-set (the refund-versus-fulfilment race of
    issue 12). A no-op ``UPDATE`` first takes SQLite's single write lock, so from then on
    nobody else can change the row until this transaction ends."""
    column = inspect(model).primary_key[0]
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(update(model).where(column == key).values({column.key: column})
                              .execution_options(synchronize_session=False))
    stmt = select(model).where(column == key).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()
