"""Regulator queries over the stored events (read-only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.log import row_to_stored_json
from services.audit.models import events
from shared.errors import BadRequest

EVENT_COLUMNS = [c for c in events.c if c.name != "leaf_hash"]


@dataclass(frozen=True)
class EventFilter:
    """What a regulator asks for; every field narrows the result (AND)."""

    action: str | None = None
    actor_org: str | None = None
    actor_sub: str | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    service: str | None = None
    outcome: str | None = None
    occurred_since: datetime | None = None
    occurred_until: datetime | None = None
    from_seq: int | None = None
    to_seq: int | None = None

    def describe(self) -> dict[str, Any]:
        """The filter as it goes into the audit event of the read."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if value is not None:
                out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    def conditions(self) -> list[ColumnElement[bool]]:
        if (
            self.occurred_since is not None
            and self.occurred_until is not None
            and self.occurred_since > self.occurred_until
        ):
            raise BadRequest(
                "occurred_since is after occurred_until; swap them or widen the range.",
                problem="invalid-range",
                title="Invalid time range",
            )
        conds: list[ColumnElement[bool]] = []
        if self.action is not None:
            if self.action.endswith("."):
                # Prefix match without LIKE wildcards: every action starting with
                # "orders." sorts between "orders." and "orders/" ('/' follows '.').
                conds += [events.c.action >= self.action, events.c.action < self.action[:-1] + "/"]
            else:
                conds.append(events.c.action == self.action)
        for name in ("actor_org", "actor_sub", "subject_type", "subject_id", "service", "outcome"):
            value = getattr(self, name)
            if value is not None:
                conds.append(events.c[name] == value)
        if self.occurred_since is not None:
            conds.append(events.c.occurred_at >= self.occurred_since)
        if self.occurred_until is not None:
            conds.append(events.c.occurred_at < self.occurred_until)
        if self.from_seq is not None:
            conds.append(events.c.seq >= self.from_seq)
        if self.to_seq is not None:
            conds.append(events.c.seq < self.to_seq)
        return conds


def _select(flt: EventFilter, after_seq: int | None, limit: int) -> Select[Any]:
    stmt = select(*EVENT_COLUMNS).where(*flt.conditions()).order_by(events.c.seq).limit(limit)
    if after_seq is not None:
        stmt = stmt.where(events.c.seq > after_seq)
    return stmt


async def list_events(
    session: AsyncSession, flt: EventFilter, after_seq: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` events after ``after_seq`` in log order, as StoredEvent JSON."""
    rows = await session.execute(_select(flt, after_seq, limit))
    return [row_to_stored_json(r) for r in rows]


async def get_event(session: AsyncSession, seq: int) -> tuple[dict[str, Any], bytes] | None:
    row = (await session.execute(select(events).where(events.c.seq == seq))).first()
    if row is None:
        return None
    return row_to_stored_json(row), bytes(row.leaf_hash)


async def iterate_events(
    sessionmaker: async_sessionmaker[AsyncSession], flt: EventFilter, chunk: int
) -> AsyncIterator[dict[str, Any]]:
    """Every matching event in log order, reading ``chunk`` rows at a time
    (one short transaction per chunk, so an export never holds a snapshot or
    the whole result in memory)."""
    after: int | None = None
    while True:
        async with sessionmaker() as session:
            rows = (await session.execute(_select(flt, after, chunk))).all()
        for row in rows:
            yield row_to_stored_json(row)
        if len(rows) < chunk:
            return
        after = int(rows[-1].seq)


async def stats(session: AsyncSession, flt: EventFilter) -> dict[str, Any]:
    conds = flt.conditions()
    total = await session.scalar(select(func.count()).select_from(events).where(*conds))
    by_action = await session.execute(
        select(events.c.action, func.count())
        .where(*conds)
        .group_by(events.c.action)
        .order_by(events.c.action)
    )
    if session.get_bind().dialect.name == "postgresql":
        day = func.to_char(func.timezone("UTC", events.c.occurred_at), "YYYY-MM-DD")
    else:  # SQLite stores UTC as 'YYYY-MM-DD HH:MM:SS...'
        day = func.substr(events.c.occurred_at, 1, 10)
    by_day = await session.execute(
        select(day.label("day"), func.count()).where(*conds).group_by("day").order_by("day")
    )
    return {
        "total": int(total or 0),
        "by_action": [{"action": a, "count": int(n)} for a, n in by_action],
        "by_day": [{"day": d, "count": int(n)} for d, n in by_day],
    }
