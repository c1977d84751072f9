"""Usage records reported by data services; the quota and privacy-budget ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from services.access import usage
from services.access.entitlement_schemas import Usage, UsageCreate
from shared.auth import Principal, require_roles
from shared.db import DbSession
from shared.pagination import CursorParam, LimitParam, Page
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["usage"])

Reporter = Annotated[Principal, Depends(require_roles("service", "provider"))]
UsageReader = Annotated[
    Principal, Depends(require_roles("buyer", "provider", "regulator", "operator", "service"))
]


@router.post(
    "/usage",
    response_model=Usage,
    status_code=status.HTTP_201_CREATED,
    summary="Record one query (data service: service, or the product's provider)",
    description=(
        "The data service reports each executed query (through its outbox). Idempotent by "
        "`usage_id`: a repeat returns the stored record with 200 and counts nothing twice. The "
        "entitlement's query count and epsilon are increased atomically; a report that would "
        "exceed the quota or the privacy budget is refused with 409 `usage-exceeds-limits` "
        "and not recorded (the data service enforces the limits first; do not retry it). "
        "Records carry what metered billing needs (plan, product, version, both organisations, "
        "the query's number on the entitlement, time)."
    ),
    responses={200: {"model": Usage, "description": "Already recorded (same usage_id)"},
               **problem_docs(401, 403, 404, 409, 422)},
)
async def record_usage(
    body: UsageCreate, session: DbSession, caller: Reporter, response: Response
) -> Usage:
    report = usage.UsageReport(**body.model_dump())
    row, created = await usage.record(session, report, caller)
    if not created:
        response.status_code = status.HTTP_200_OK
    return Usage.of(row)


@router.get(
    "/usage",
    response_model=Page[Usage],
    summary="Read usage records (buyer: own; provider: own products; regulator, operator, service: all)",
    description="Buyers read their organisation's usage, providers the usage of their products, "
    "regulators, operators and services all of it. Oldest first; filter by `entitlement_id`.",
    responses=problem_docs(400, 401, 403),
)
async def list_usage(
    session: DbSession,
    caller: UsageReader,
    entitlement_id: str | None = None,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
) -> Page[Usage]:
    rows, nxt = await usage.list_visible(
        session, caller, limit=limit, cursor=cursor, entitlement_id=entitlement_id
    )
    return Page(items=[Usage.of(r) for r in rows], next_cursor=nxt)
