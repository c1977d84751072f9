"""Newest-first keyset pages (orders, subscriptions, offers): the cursor holds the last
row's creation time and id, so pages stay stable while new rows arrive."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_

from shared.pagination import page_of, read_cursor


class Listed(Protocol):
    id: str
    created_at: datetime


R = TypeVar("R", bound=Listed)


def created_and_id(position: dict[str, Any]) -> tuple[datetime, str]:
    """A cursor's (creation time, id): the last row of the previous page."""
    return datetime.fromisoformat(str(position["t"])), str(position["id"])


def newest_first(stmt: Select[Any], created: Any, ident: Any, cursor: str | None) -> Select[Any]:
    """Order ``stmt`` newest first and start after the cursor's row."""
    stmt = stmt.order_by(created.desc(), ident.desc())
    position = read_cursor(cursor, created_and_id)
    if position is not None:
        at, last = position
        stmt = stmt.where(or_(created < at, and_(created == at, ident < last)))
    return stmt


def next_page(rows: list[R], limit: int) -> tuple[list[R], str | None]:
    """Given up to ``limit + 1`` rows, the page and the cursor of the next one."""
    return page_of(rows, limit, lambda r: {"t": r.created_at.isoformat(), "id": r.id})
