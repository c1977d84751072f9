"""The regulator API: search, read, export and count events (regulator or operator).

Every call is itself appended to the log (actions ``audit.events.listed``,
``audit.event.read``, ``audit.events.exported``, ``audit.stats.read``) before
any data is returned, so no read of the audit log goes unrecorded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from services.audit import checkpoints, queries, tree
from services.audit.queries import EventFilter
from services.audit.routers.transparency import checkpoint_out
from services.audit.runtime import Audit, AuditState
from services.audit.schemas import EventPage, EventWithProof, InclusionProof, Stats
from services.audit.verifylib import b64
from shared.auth import Principal, Regulator
from shared.db import DbSession
from shared.errors import BadRequest, NotFound
from shared.events import StoredEvent, new_event
from shared.logging import request_id_var
from shared.outbox import actor_of
from shared.pagination import CursorParam, LimitParam, encode_cursor, exact_int, read_cursor
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["regulator"])

_WHO = " For regulators and operators (roles `regulator` or `operator`); the read is itself audited."
# shared.events.ACTION_PATTERN, also admitting a prefix that ends in a dot.
_ACTION_FILTER = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.?$"


def event_filter(
    action: Annotated[str | None, Query(
        pattern=_ACTION_FILTER, max_length=128,
        description="Exact action (`orders.order.paid`), or a prefix ending in a dot (`orders.`).",
        examples=["orders."])] = None,
    actor_org: Annotated[str | None, Query(description="Organisation of the actor.")] = None,
    actor_sub: Annotated[str | None, Query(description="Client id of the actor.")] = None,
    subject_type: Annotated[str | None, Query(examples=["order"])] = None,
    subject_id: Annotated[str | None, Query(examples=["ord_7c1e"])] = None,
    service: Annotated[str | None, Query(description="Producing service.", examples=["orders"])] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|failure|denied)$")] = None,
    occurred_since: Annotated[datetime | None, Query(
        description="Events that occurred at or after this instant (RFC 3339).")] = None,
    occurred_until: Annotated[datetime | None, Query(
        description="Events that occurred before this instant (RFC 3339).")] = None,
    from_seq: Annotated[int | None, Query(ge=0, description="First seq (inclusive).")] = None,
    to_seq: Annotated[int | None, Query(ge=0, description="Last seq (exclusive).")] = None,
) -> EventFilter:
    for name, value in (("occurred_since", occurred_since), ("occurred_until", occurred_until)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(
                f"{name} needs a time zone, e.g. 2026-11-28T00:00:00Z.",
                problem="naive-datetime", title="Time without time zone",
            )
    return EventFilter(
        action=action, actor_org=actor_org, actor_sub=actor_sub, subject_type=subject_type,
        subject_id=subject_id, service=service, outcome=outcome, occurred_since=occurred_since,
        occurred_until=occurred_until, from_seq=from_seq, to_seq=to_seq,
    )


Filter = Annotated[EventFilter, Depends(event_filter)]


async def record_read(
    audit: AuditState, principal: Principal, action: str, subject_id: str, details: dict[str, Any]
) -> None:
    """Append the regulator's read to the log (its own transaction, committed
    before any data leaves)."""
    role = "regulator" if "regulator" in principal.roles else "operator"
    event = new_event(
        service="audit", action=action, subject_type="audit_log", subject_id=subject_id,
        actor=actor_of(principal, role=role), request_id=request_id_var.get(), details=details,
    )
    await audit.writer.append([event])


@router.get(
    "/events",
    response_model=EventPage,
    summary="Search events (regulator, operator)",
    description="Events matching every given filter, in log order (`seq`), with cursor pagination. "
    "A listing stops at the log's size when its first page was read (`tree_size`, carried in the "
    "cursor): each read is itself appended, and a listing that followed the growing log would "
    "never end; start a new listing to see later events." + _WHO,
    responses=problem_docs(400, 401, 403, 422),
)
async def list_events(
    audit: Audit, session: DbSession, principal: Regulator, flt: Filter,
    limit: LimitParam = 50, cursor: CursorParam = None,
) -> EventPage:
    after, bound = read_cursor(cursor, lambda p: (exact_int(p["seq"]), exact_int(p["size"]))) or (
        None, None)
    if bound is None:
        # Read before this listing's own read is appended, so the listing never includes it.
        bound = await tree.tree_size(session)
    await record_read(audit, principal, "audit.events.listed", "events",
                      {"filter": flt.describe(), "cursor": cursor, "limit": limit, "tree_size": bound})
    upto = bound if flt.to_seq is None else min(bound, flt.to_seq)
    rows = await queries.list_events(session, replace(flt, to_seq=upto), after, limit + 1)
    nxt = encode_cursor({"seq": rows[limit - 1]["seq"], "size": bound}) if len(rows) > limit else None
    return EventPage(items=[StoredEvent.model_validate(r) for r in rows[:limit]], next_cursor=nxt,
                     tree_size=bound)


@router.get(
    "/events/export",
    summary="Export events as NDJSON (regulator, operator)",
    description="Streams every event matching the filters, one StoredEvent JSON object per line "
    "(`application/x-ndjson`), in log order. Rows are read in chunks, so exports of any size "
    "stream with constant memory." + _WHO,
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "One event per line."},
               **problem_docs(400, 401, 403, 422)},
)
async def export_events(audit: Audit, principal: Regulator, flt: Filter) -> StreamingResponse:
    flt.conditions()  # refuse a bad range before the read is recorded
    await record_read(audit, principal, "audit.events.exported", "events", {"filter": flt.describe()})
    db, settings = audit.db, audit.settings

    async def lines() -> AsyncIterator[bytes]:
        buf: list[str] = []
        async for event in queries.iterate_events(db.sessionmaker, flt, settings.export_chunk_rows):
            buf.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
            if len(buf) >= 500:
                yield ("\n".join(buf) + "\n").encode()
                buf = []
        if buf:
            yield ("\n".join(buf) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get(
    "/events/{seq}",
    response_model=EventWithProof,
    summary="One event with its inclusion proof (regulator, operator)",
    description="The event at `seq`, its leaf hash, the latest checkpoint and the inclusion proof "
    "against it." + _WHO,
    responses=problem_docs(401, 403, 404, 422),
)
async def get_event(
    audit: Audit, session: DbSession, principal: Regulator,
    seq: Annotated[int, Path(ge=0, description="The event's sequence number (leaf index).")],
) -> EventWithProof:
    await record_read(audit, principal, "audit.event.read", str(seq), {"seq": seq})
    found = await queries.get_event(session, seq)
    if found is None:
        raise NotFound(f"No event with seq {seq}; list events with GET /v1/events.")
    event, leaf = found
    cp = await checkpoints.latest(session)
    proof = None
    if cp is not None and seq < cp.tree_size:
        path = await tree.inclusion_proof(session, seq, cp.tree_size, audit.tree_cache)
        proof = InclusionProof(leaf_index=seq, tree_size=cp.tree_size, hashes=[b64(h) for h in path])
    return EventWithProof(
        event=StoredEvent.model_validate(event), leaf_hash=b64(leaf),
        checkpoint=checkpoint_out(cp) if cp else None, inclusion_proof=proof,
    )


@router.get(
    "/stats",
    response_model=Stats,
    summary="Event counts by action and by day (regulator, operator)",
    description="Counts of the events matching the filters, per action and per UTC day of "
    "`occurred_at`." + _WHO,
    responses=problem_docs(400, 401, 403, 422),
)
async def get_stats(audit: Audit, session: DbSession, principal: Regulator, flt: Filter) -> Stats:
    flt.conditions()
    await record_read(audit, principal, "audit.stats.read", "stats", {"filter": flt.describe()})
    return Stats.model_validate(await queries.stats(session, flt))

