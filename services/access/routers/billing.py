"""Billing changes from orders (renewals, grace, holds for non-payment, refunds) and the
usage summaries orders bills metered plans from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from services.access import billing, entitlements
from services.access.entitlement_schemas import Entitlement, EntitlementChangeIn, UsageSummary
from services.access.routers.entitlements import Catalog, present
from shared.auth import Principal, Service, require_roles
from shared.db import DbSession
from shared.problems import problem_docs

router = APIRouter(prefix="/v1", tags=["entitlements"])

UsageReader = Annotated[
    Principal, Depends(require_roles("buyer", "provider", "regulator", "operator", "service"))
]


@router.post(
    "/entitlements/by-order/{order_id}/changes",
    response_model=Entitlement,
    summary="Apply a billing change to an order's entitlement (service)",
    description=(
        "Orders calls this (through its outbox) when a subscription renews (new window and query "
        "allowance), enters or leaves its grace period, is held or released for non-payment "
        "(`billing_hold`), changes plan, or when a partial refund shortens access. Idempotent by "
        "`change_id`: a repeat answers 200 with the entitlement and changes nothing. A change "
        "that makes the entitlement unusable (or usable again) goes to the revocation feed.\n\n"
        "Role: `service`."
    ),
    responses={201: {"model": Entitlement, "description": "Applied now"},
               **problem_docs(401, 403, 404, 409, 422, 503)},
)
async def change_entitlement(
    order_id: str, body: EntitlementChangeIn, session: DbSession, caller: Service, catalog: Catalog,
    response: Response,
) -> Entitlement:
    row, applied = await billing.apply_change(session, catalog, order_id,
                                              billing.Change(**body.model_dump()), caller)
    response.status_code = status.HTTP_201_CREATED if applied else status.HTTP_200_OK
    return await present(session, row)


@router.get(
    "/usage/summary",
    response_model=UsageSummary,
    summary="Count an entitlement's queries after a sequence number (its buyer, its provider, "
    "regulators, operators, services)",
    description="What orders bills a post-paid metered period from: the queries recorded after "
    "`after_seq` and the last sequence number counted (pass it as `after_seq` next time, so every "
    "query is billed once however late it was reported).",
    responses=problem_docs(401, 403, 404, 422),
)
async def usage_summary(
    session: DbSession, caller: UsageReader,
    entitlement_id: Annotated[str, Query(min_length=1, max_length=40)],
    after_seq: Annotated[int, Query(ge=0)] = 0,
) -> UsageSummary:
    await entitlements.get_visible(session, entitlement_id, caller)
    found = await billing.usage_summary(session, entitlement_id, after_seq)
    return UsageSummary(**found.__dict__)
