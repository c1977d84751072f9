"""Operators' view of the outbox on every service: messages a receiver refused for good.

A dead-lettered message (``outbox.dead_at``, see ``shared.outbox.check_delivered``) is kept,
not sent again, and counted on ``/metrics`` (``sluice_outbox_dead_letters``); once the
receiver or the data is fixed, ``POST .../retry`` puts it back in the queue and, once that
commits, wakes the destination's relay (``shared.relays``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import Principal, require_roles
from shared.db import DbSession, after_commit, utcnow
from shared.errors import NotFound
from shared.outbox import outbox
from shared.pagination import CursorParam, LimitParam, Page, page_of, read_cursor
from shared.problems import problem_docs
from shared.runtime import RelaysDep


class DeadLetter(BaseModel):
    id: int
    destination: str
    kind: str
    message_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    dead_at: datetime


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(id=row.id, destination=row.destination, kind=row.kind, message_id=row.message_id,
                      attempts=row.attempts, last_error=row.last_error, created_at=row.created_at,
                      dead_at=row.dead_at)


async def dead_letter_counts(session: AsyncSession) -> dict[str, int]:
    """Dead-lettered messages per destination (for /metrics)."""
    rows = await session.execute(select(outbox.c.destination, func.count())
                                 .where(outbox.c.dead_at.is_not(None)).group_by(outbox.c.destination))
    return {str(d): int(n) for d, n in rows.all()}


def outbox_router(operator: Callable[..., Awaitable[Principal]] = require_roles("operator")) -> APIRouter:
    """The routes, for callers admitted by ``operator`` (a service whose own verifier takes
    another kind of token, the data service, passes a platform-token check)."""
    router = APIRouter(prefix="/v1/outbox", tags=["operations"], dependencies=[Depends(operator)])

    @router.get("/dead-letters", summary="Messages a receiver refused for good (operator)",
                response_model=Page[DeadLetter], responses=problem_docs(400, 401, 403))
    async def dead_letters(session: DbSession, limit: LimitParam = 50,
                           cursor: CursorParam = None) -> Page[DeadLetter]:
        after = read_cursor(cursor, lambda p: int(p["id"]))
        stmt = select(outbox).where(outbox.c.dead_at.is_not(None)).order_by(outbox.c.id).limit(limit + 1)
        if after is not None:
            stmt = stmt.where(outbox.c.id > after)
        rows, next_cursor = page_of(list((await session.execute(stmt)).all()), limit,
                                    lambda r: {"id": r.id})
        return Page[DeadLetter](items=[_letter(r) for r in rows], next_cursor=next_cursor)

    @router.post("/dead-letters/{message_id}/retry", summary="Send a dead-lettered message again (operator)",
                 response_model=DeadLetter, responses=problem_docs(401, 403, 404))
    async def retry(message_id: int, session: DbSession, relays: RelaysDep) -> dict[str, Any]:
        row = (await session.execute(select(outbox).where(outbox.c.id == message_id,
                                                           outbox.c.dead_at.is_not(None)))).first()
        if row is None:
            raise NotFound(f"No dead-lettered outbox message {message_id}: see GET /v1/outbox/dead-letters.")
        await session.execute(update(outbox).where(outbox.c.id == message_id)
                              .values(dead_at=None, available_at=utcnow()))
        after_commit(session, lambda: relays.wake(row.destination))
        return _letter(row).model_dump()

    return router
