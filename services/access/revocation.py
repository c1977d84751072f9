"""The revocation feed: revoked data-access tokens and revoked or suspended
entitlements, for data services to poll (no FastAPI here).

Each entry has a monotonic id, which is the feed cursor: ``since=<id>`` returns
exactly the entries added after it, in order. Entries are never changed or
deleted; a lifted suspension is a new entry with ``event: "reinstated"``. A data
service that ignores ``event`` keeps refusing a reinstated entitlement until
its tokens' claims are re-checked, which fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.access.models import RevocationEntry
from shared.db import utcnow
from shared.pagination import invalid_cursor

FEED_EVENTS = ("revoked", "suspended", "reinstated")

#: PostgreSQL advisory lock key that orders feed writers (see ``add_entry``).
_FEED_LOCK = 0x51_1CE_FEED


async def lock_feed(session: AsyncSession) -> None:
    """Serialise feed writers until the end of the transaction (PostgreSQL).

    Ids come from a sequence: without this lock a transaction holding id 10
    could commit after one holding id 11, and a poller that already moved past
    11 would never see 10. Writers take the lock before their first insert and
    keep it until commit, so ids become visible in order. A transaction that
    changes several entitlements takes it before its first row update, so two
    such transactions cannot deadlock on row locks plus this lock. Revocations
    are rare; the serialisation costs nothing measurable. Re-entrant.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})


async def add_entry(
    session: AsyncSession,
    *,
    kind: str,
    subject_id: str,
    event: str,
    reason: str,
    entitlement_id: str | None = None,
    expires_at: datetime | None = None,
) -> RevocationEntry:
    await lock_feed(session)
    entry = RevocationEntry(
        kind=kind, subject_id=subject_id, event=event, reason=reason,
        entitlement_id=entitlement_id, expires_at=expires_at, revoked_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    return entry


async def revoke_token(
    session: AsyncSession, *, jti: str, entitlement_id: str | None, expires_at: datetime | None,
    reason: str,
) -> bool:
    """Record a revoked token's ``jti``; ``False`` if it was revoked before."""
    if await is_token_revoked(session, jti):
        return False
    await add_entry(session, kind="token", subject_id=jti, event="revoked", reason=reason,
                    entitlement_id=entitlement_id, expires_at=expires_at)
    return True


async def is_token_revoked(session: AsyncSession, jti: str) -> bool:
    found = await session.scalar(
        select(RevocationEntry.id).where(
            RevocationEntry.kind == "token", RevocationEntry.subject_id == jti
        ).limit(1)
    )
    return found is not None


def parse_since(since: str | None) -> int:
    if since is None or since == "":
        return 0
    if not since.isdigit() or len(since) > 18:
        raise invalid_cursor(
            f"`since` must be a cursor returned as `next_cursor` by this feed (got {since[:40]!r}); "
            "omit it to read the feed from the beginning."
        )
    return int(since)


async def read_feed(
    session: AsyncSession, *, since: int, limit: int
) -> tuple[Sequence[RevocationEntry], int, bool]:
    """Entries after ``since``; returns (entries, cursor to resume from, more waiting)."""
    rows = list(await session.scalars(
        select(RevocationEntry).where(RevocationEntry.id > since)
        .order_by(RevocationEntry.id).limit(limit + 1)
    ))
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = rows[-1].id if rows else since
    return rows, cursor, more
